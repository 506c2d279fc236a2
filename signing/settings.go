package signing

import (
	"errors"
	"fmt"
	"strings"
)

// Settings selects a built-in scheme by name with its per-party settings, so that a new
// acquirer's or terminal vendor's variant is configuration, not code. Zero values keep the
// scheme's defaults. It is the one place where configuration (Caddy's gm_verify and gm_channel,
// package channel) turns into a Scheme.
type Settings struct {
	// Name is the scheme: "wechatpay-v3-sm2", "http-sig-sm2", "form-sm2" or "unionpay-sm2".
	Name string `json:"name"`
	// UserID is a fixed SM2 user ID; empty keeps the scheme's rule (default ID
	// 1234567812345678, or the certId for unionpay-sm2). At most MaxUserIDLen bytes.
	UserID string `json:"user_id,omitempty"`
	// UserIDFromKeyID makes the user ID the bytes of the key ID (certId, serial, keyid).
	UserIDFromKeyID bool `json:"user_id_from_key_id,omitempty"`
	// SignatureEncoding is "der" or "raw" (r||s); empty keeps the scheme's default.
	SignatureEncoding string `json:"signature_encoding,omitempty"`
	// TextEncoding is "base64" or "hex"; empty keeps the scheme's default.
	TextEncoding string `json:"text_encoding,omitempty"`

	// SignField is the parameter carrying the signature (form-sm2, unionpay-sm2).
	SignField string `json:"sign_field,omitempty"`
	// ExcludedFields are left out of the signed string besides SignField.
	ExcludedFields []string `json:"excluded_fields,omitempty"`
	// KeyIDField names the certificate (certId, app_cert_sn).
	KeyIDField string `json:"key_id_field,omitempty"`
	// MerchantIDField names the merchant (merId, app_id).
	MerchantIDField string `json:"merchant_id_field,omitempty"`
	// TimestampField is the timestamp parameter.
	TimestampField string `json:"timestamp_field,omitempty"`
	// TimestampLayout is the layout of TimestampField: "unix", "unixms" or a Go layout read in
	// UTC+8 (empty keeps the scheme's layout).
	TimestampLayout string `json:"timestamp_layout,omitempty"`
	// NonceField is the parameter used as the replay nonce.
	NonceField string `json:"nonce_field,omitempty"`

	// Label is the RFC 9421 signature label (http-sig-sm2).
	Label string `json:"label,omitempty"`
	// Components are the covered components of requests (http-sig-sm2).
	Components []string `json:"components,omitempty"`
	// ReplyComponents are the covered components of replies (http-sig-sm2).
	ReplyComponents []string `json:"reply_components,omitempty"`

	// AuthSchema is the Authorization scheme token (wechatpay-v3-sm2).
	AuthSchema string `json:"auth_schema,omitempty"`
}

// Build returns the configured scheme.
func (s Settings) Build() (Scheme, error) {
	var opts []Option
	if s.UserID != "" {
		if len(s.UserID) > MaxUserIDLen {
			return nil, errors.New("signing: user ID too long")
		}
		opts = append(opts, WithUserID([]byte(s.UserID)))
	}
	if s.UserIDFromKeyID {
		opts = append(opts, WithUserIDMode(UserIDFromKeyID))
	}
	switch strings.ToLower(s.SignatureEncoding) {
	case "":
	case "der", "asn1":
		opts = append(opts, WithSignatureEncoding(DER))
	case "raw", "rs", "r||s":
		opts = append(opts, WithSignatureEncoding(Raw))
	default:
		return nil, fmt.Errorf("signing: unknown signature encoding %q (der, raw)", s.SignatureEncoding)
	}
	switch strings.ToLower(s.TextEncoding) {
	case "":
	case "base64":
		opts = append(opts, WithTextEncoding(Base64))
	case "hex":
		opts = append(opts, WithTextEncoding(Hex))
	default:
		return nil, fmt.Errorf("signing: unknown text encoding %q (base64, hex)", s.TextEncoding)
	}
	if s.SignField != "" {
		opts = append(opts, WithSignField(s.SignField))
	}
	if s.ExcludedFields != nil {
		opts = append(opts, WithExcludedFields(s.ExcludedFields...))
	}
	if s.KeyIDField != "" {
		opts = append(opts, WithKeyIDField(s.KeyIDField))
	}
	if s.MerchantIDField != "" {
		opts = append(opts, WithMerchantIDField(s.MerchantIDField))
	}
	if s.TimestampLayout != "" && s.TimestampField == "" {
		return nil, errors.New("signing: a timestamp layout needs a timestamp field")
	}
	if s.TimestampField != "" {
		opts = append(opts, WithTimestampField(s.TimestampField, s.TimestampLayout))
	}
	if s.NonceField != "" {
		opts = append(opts, WithNonceField(s.NonceField))
	}
	if s.Label != "" {
		opts = append(opts, WithLabel(s.Label))
	}
	if len(s.Components) > 0 {
		opts = append(opts, WithRequiredComponents(Request, s.Components...))
	}
	if len(s.ReplyComponents) > 0 {
		opts = append(opts, WithRequiredComponents(Response, s.ReplyComponents...))
	}
	if s.AuthSchema != "" {
		opts = append(opts, WithAuthSchema(s.AuthSchema))
	}
	return New(s.Name, opts...)
}
