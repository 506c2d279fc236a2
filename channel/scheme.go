package channel

import (
	"fmt"
	"strings"

	"github.com/gmgate/gmgate/signing"
)

// SchemeSettings selects a signature scheme of package signing and its per-bank settings, so
// that a new acquirer's variant is configuration, not code. Zero values keep the scheme's
// defaults (see package signing and docs/channel.md).
type SchemeSettings struct {
	// Name is the scheme: "unionpay-sm2", "http-sig-sm2", "wechatpay-v3-sm2" or "form-sm2".
	Name string
	// UserID is a fixed SM2 user ID; empty keeps the scheme's rule (default ID
	// 1234567812345678, or the certId for unionpay-sm2).
	UserID string
	// UserIDFromKeyID makes the user ID the bytes of the key ID (certId, serial, keyid).
	UserIDFromKeyID bool
	// SignatureEncoding is "der" or "raw" (r||s); empty keeps the scheme's default.
	SignatureEncoding string
	// TextEncoding is "base64" or "hex"; empty keeps the scheme's default.
	TextEncoding string

	// Signed-string rule of the parameter schemes (form-sm2, unionpay-sm2). form-sm2 signs the
	// sorted k=v&... string itself; unionpay-sm2 signs the lower-case hex SM3 of it.
	SignField       string   // field carrying the signature
	ExcludedFields  []string // fields left out of the signed string besides SignField
	KeyIDField      string   // field naming the certificate (certId, app_cert_sn)
	MerchantIDField string   // field naming the merchant (merId, app_id)
	TimestampField  string   // timestamp field
	TimestampLayout string   // "unix", "unixms" or a Go layout read in UTC+8
	NonceField      string   // nonce field

	// http-sig-sm2: label and covered components of requests and replies.
	Label           string
	Components      []string
	ReplyComponents []string

	// wechatpay-v3-sm2: Authorization scheme token.
	AuthSchema string
}

// Build returns the configured scheme.
func (s SchemeSettings) Build() (signing.Scheme, error) {
	var opts []signing.Option
	if s.UserID != "" {
		if len(s.UserID) > signing.MaxUserIDLen {
			return nil, fmt.Errorf("channel: user ID too long")
		}
		opts = append(opts, signing.WithUserID([]byte(s.UserID)))
	}
	if s.UserIDFromKeyID {
		opts = append(opts, signing.WithUserIDMode(signing.UserIDFromKeyID))
	}
	switch strings.ToLower(s.SignatureEncoding) {
	case "":
	case "der", "asn1":
		opts = append(opts, signing.WithSignatureEncoding(signing.DER))
	case "raw", "rs", "r||s":
		opts = append(opts, signing.WithSignatureEncoding(signing.Raw))
	default:
		return nil, fmt.Errorf("channel: unknown signature encoding %q (der, raw)", s.SignatureEncoding)
	}
	switch strings.ToLower(s.TextEncoding) {
	case "":
	case "base64":
		opts = append(opts, signing.WithTextEncoding(signing.Base64))
	case "hex":
		opts = append(opts, signing.WithTextEncoding(signing.Hex))
	default:
		return nil, fmt.Errorf("channel: unknown text encoding %q (base64, hex)", s.TextEncoding)
	}
	if s.SignField != "" {
		opts = append(opts, signing.WithSignField(s.SignField))
	}
	if s.ExcludedFields != nil {
		opts = append(opts, signing.WithExcludedFields(s.ExcludedFields...))
	}
	if s.KeyIDField != "" {
		opts = append(opts, signing.WithKeyIDField(s.KeyIDField))
	}
	if s.MerchantIDField != "" {
		opts = append(opts, signing.WithMerchantIDField(s.MerchantIDField))
	}
	if s.TimestampField != "" || s.TimestampLayout != "" {
		if s.TimestampField == "" || s.TimestampLayout == "" {
			return nil, fmt.Errorf("channel: timestamp field and layout go together")
		}
		opts = append(opts, signing.WithTimestampField(s.TimestampField, s.TimestampLayout))
	}
	if s.NonceField != "" {
		opts = append(opts, signing.WithNonceField(s.NonceField))
	}
	if s.Label != "" {
		opts = append(opts, signing.WithLabel(s.Label))
	}
	if len(s.Components) > 0 {
		opts = append(opts, signing.WithRequiredComponents(signing.Request, s.Components...))
	}
	if len(s.ReplyComponents) > 0 {
		opts = append(opts, signing.WithRequiredComponents(signing.Response, s.ReplyComponents...))
	}
	if s.AuthSchema != "" {
		opts = append(opts, signing.WithAuthSchema(s.AuthSchema))
	}
	switch s.Name {
	case signing.UnionPayName:
		return signing.NewUnionPay(opts...), nil
	case signing.HTTPSigName:
		return signing.NewHTTPSig(opts...), nil
	case signing.WechatPayName:
		return signing.NewWechatPay(opts...), nil
	case signing.FormName:
		return signing.NewForm(opts...), nil
	case "":
		return nil, fmt.Errorf("channel: no scheme named")
	}
	return nil, fmt.Errorf("channel: unknown scheme %q (one of %s)", s.Name, strings.Join(signing.Names(), ", "))
}

// isParamScheme reports whether the scheme carries its signature inside the body parameters.
func isParamScheme(name string) bool {
	return name == signing.UnionPayName || name == signing.FormName
}

// signatureHeaders lists the reply headers a scheme uses for its signature; they are removed
// from the reply forwarded to the back end.
func signatureHeaders(name string) []string {
	switch name {
	case signing.HTTPSigName:
		return []string{"Signature", "Signature-Input", "Content-Digest"}
	case signing.WechatPayName:
		return []string{signing.HeaderWechatpayTimestamp, signing.HeaderWechatpayNonce,
			signing.HeaderWechatpaySignature, signing.HeaderWechatpaySerial, signing.HeaderWechatpaySignatureType}
	}
	return nil
}
