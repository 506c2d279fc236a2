package signing

import (
	"crypto/ecdsa"
	"time"
)

// FormName is the registry name of the signed-parameters scheme.
const FormName = "form-sm2"

// Form is the "form-sm2" scheme: the parameters of a form (application/x-www-form-urlencoded) or
// flat JSON object body, every non-empty one except sign (and sign_type) sorted by key, joined
// `k=v&...`, SM2-signed, the signature in field sign. Defaults (Alipay style): default user ID,
// DER, Base64, merchant field app_id, key ID field app_cert_sn, timestamp "2006-01-02 15:04:05"
// (UTC+8), nonce field nonce_str, sign_type=SM2. Options make other variants: the certificate
// serial as user ID (WithUserIDMode(UserIDFromKeyID)), Raw r||s, Hex.
type Form struct{ p paramScheme }

// NewForm returns the form-sm2 scheme with opts applied.
func NewForm(opts ...Option) *Form {
	c := config{
		sigEnc:          DER,
		textEnc:         Base64,
		signField:       "sign",
		excluded:        []string{"sign_type"},
		keyIDField:      "app_cert_sn",
		merchantField:   "app_id",
		timestampField:  "timestamp",
		timestampLayout: "2006-01-02 15:04:05",
		nonceField:      "nonce_str",
		signTypeField:   "sign_type",
		signTypeValue:   "SM2",
	}
	return &Form{p: paramScheme{name: FormName, c: *apply(&c, opts)}}
}

// Name returns "form-sm2".
func (f *Form) Name() string { return FormName }

// Sign sets the merchant, key ID, timestamp, nonce and sign type fields (those configured and
// given), signs, and rewrites m.Body with the sign field added (form bodies are re-encoded with
// sorted keys; JSON bodies keep their values).
func (f *Form) Sign(m *Message, k Key, now time.Time, nonce string) error {
	return f.p.sign(m, k, now, nonce)
}

// Parse reads the parameters and the sign field and builds the signed string.
func (f *Form) Parse(m *Message) (*Signed, error) { return f.p.parse(m) }

// Verify checks the SM2 signature of s.
func (f *Form) Verify(s *Signed, pub *ecdsa.PublicKey) error { return f.p.verify(s, pub) }
