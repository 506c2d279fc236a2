package signing

import (
	"strings"
	"time"
)

// UserIDMode says where a scheme takes the SM2 user ID from.
type UserIDMode int

const (
	// UserIDDefault uses the default ID 1234567812345678 (or the fixed ID given by WithUserID).
	UserIDDefault UserIDMode = iota
	// UserIDFromKeyID uses the bytes of the key ID (certificate serial, certId, app ID...).
	UserIDFromKeyID
)

// config holds every scheme setting; each scheme reads the ones it uses and ignores the rest.
type config struct {
	userID  []byte
	uidMode UserIDMode
	sigEnc  SigEncoding
	textEnc TextEncoding

	// wechatpay-v3-sm2
	authSchema string

	// http-sig-sm2
	label          string
	reqComponents  []string
	respComponents []string
	validity       time.Duration

	// form-sm2 and unionpay-sm2
	signField       string
	excluded        []string
	keyIDField      string
	merchantField   string
	timestampField  string
	timestampLayout string
	nonceField      string
	signTypeField   string
	signTypeValue   string
	embedCert       bool
}

// Option changes a scheme setting. Options that do not concern a scheme are ignored by it.
type Option func(*config)

// WithValidity makes http-sig-sm2 signatures carry expires = created + d (RFC 9421): a verifier
// refuses them after that time. Zero: no expires parameter.
func WithValidity(d time.Duration) Option { return func(c *config) { c.validity = d } }

// WithUserID sets a fixed SM2 user ID (all schemes). nil restores the default ID.
func WithUserID(uid []byte) Option {
	return func(c *config) {
		c.userID = append([]byte(nil), uid...)
		if uid == nil {
			c.userID = nil
		}
		c.uidMode = UserIDDefault
	}
}

// WithUserIDMode sets where the user ID comes from (all schemes): UserIDFromKeyID makes it the
// bytes of the key ID (the certificate serial, UnionPay certId...).
func WithUserIDMode(m UserIDMode) Option { return func(c *config) { c.uidMode = m } }

// WithSignatureEncoding sets DER or Raw r||s (all schemes).
func WithSignatureEncoding(e SigEncoding) Option { return func(c *config) { c.sigEnc = e } }

// WithTextEncoding sets Base64 or Hex for the signature text (wechatpay-v3-sm2, form-sm2,
// unionpay-sm2; http-sig-sm2 always uses the structured-field byte sequence).
func WithTextEncoding(t TextEncoding) Option { return func(c *config) { c.textEnc = t } }

// WithAuthSchema sets the Authorization scheme token of wechatpay-v3-sm2
// (default "WECHATPAY2-SM2-WITH-SM3").
func WithAuthSchema(s string) Option { return func(c *config) { c.authSchema = s } }

// WithLabel sets the RFC 9421 signature label http-sig-sm2 writes and looks for (default "sig1").
// An empty label on Parse means: take the only signature present.
func WithLabel(l string) Option { return func(c *config) { c.label = l } }

// WithRequiredComponents sets the covered components http-sig-sm2 signs and requires for kind
// (component identifiers such as "@method", "@target-uri", "content-digest").
func WithRequiredComponents(kind Kind, components ...string) Option {
	return func(c *config) {
		cs := make([]string, len(components))
		for i, s := range components {
			cs[i] = strings.ToLower(s)
		}
		if kind == Response {
			c.respComponents = cs
		} else {
			c.reqComponents = cs
		}
	}
}

// WithSignField sets the parameter that carries the signature (form-sm2 default "sign",
// unionpay-sm2 default "signature").
func WithSignField(f string) Option { return func(c *config) { c.signField = f } }

// WithExcludedFields sets the parameters, besides the sign field, left out of the signed string
// (form-sm2 default "sign_type"; pass none to sign sign_type too, as Alipay requests do).
func WithExcludedFields(f ...string) Option {
	return func(c *config) { c.excluded = append([]string(nil), f...) }
}

// WithKeyIDField sets the parameter naming the signing key or certificate (form-sm2 default
// "app_cert_sn", unionpay-sm2 "certId"). Empty: none.
func WithKeyIDField(f string) Option { return func(c *config) { c.keyIDField = f } }

// WithMerchantIDField sets the parameter naming the merchant (form-sm2 default "app_id",
// unionpay-sm2 "merId"). Empty: none.
func WithMerchantIDField(f string) Option { return func(c *config) { c.merchantField = f } }

// WithTimestampField sets the timestamp parameter and its layout: "unix" for Unix seconds or a Go
// time layout read in UTC+8 (form-sm2 default "timestamp", "2006-01-02 15:04:05"; unionpay-sm2
// "txnTime", "20060102150405"). Empty field: none. Empty layout: the scheme's default layout.
func WithTimestampField(field, layout string) Option {
	return func(c *config) {
		c.timestampField = field
		if layout != "" {
			c.timestampLayout = layout
		}
	}
}

// WithNonceField sets the parameter used as the replay nonce (form-sm2 default "nonce_str",
// unionpay-sm2 "orderId"). Empty: none.
func WithNonceField(f string) Option { return func(c *config) { c.nonceField = f } }

// WithSignType makes form-sm2 write field=value (e.g. "sign_type", "SM2") when signing and, on
// Parse, reject messages whose field has another non-empty value (ErrUnsupportedAlgorithm).
// Empty field: no sign type.
func WithSignType(field, value string) Option {
	return func(c *config) { c.signTypeField, c.signTypeValue = field, value }
}

// WithEmbedCert makes unionpay-sm2 write Key.Cert as PEM in signPubKeyCert when signing.
func WithEmbedCert(on bool) Option { return func(c *config) { c.embedCert = on } }

func apply(c *config, opts []Option) *config {
	for _, o := range opts {
		if o != nil {
			o(c)
		}
	}
	return c
}

// uidFor returns the user ID for a key ID under the settings (nil = default ID).
func (c *config) uidFor(keyID string) []byte {
	if c.uidMode == UserIDFromKeyID {
		return []byte(keyID)
	}
	return c.userID
}
