package signing

import (
	"crypto/ecdsa"
	"encoding/pem"
	"time"
)

// UnionPayName is the registry name of the UnionPay SM2 scheme.
const UnionPayName = "unionpay-sm2"

// UnionPay is the "unionpay-sm2" scheme (signMethod=21): every non-blank field except signature,
// sorted, joined `k=v&...`; SM3 of that string as lower-case hex; SM2 over the ASCII of the hex
// with user ID = certId (the decimal serial of the signing certificate); raw r||s; Base64 in
// field signature. Optional signPubKeyCert (PEM) carries the certificate. Replies are the same.
// Defaults: merchant field merId, timestamp txnTime ("20060102150405", UTC+8), nonce orderId.
type UnionPay struct{ p paramScheme }

// NewUnionPay returns the unionpay-sm2 scheme with opts applied.
func NewUnionPay(opts ...Option) *UnionPay {
	c := config{
		uidMode:         UserIDFromKeyID,
		sigEnc:          Raw,
		textEnc:         Base64,
		signField:       "signature",
		keyIDField:      "certId",
		merchantField:   "merId",
		timestampField:  "txnTime",
		timestampLayout: "20060102150405",
		nonceField:      "orderId",
		signTypeField:   "signMethod",
		signTypeValue:   "21",
	}
	return &UnionPay{p: paramScheme{name: UnionPayName, c: *apply(&c, opts), digestHex: true,
		requireSignType: true, keyIDFromCert: true}}
}

// Name returns "unionpay-sm2".
func (u *UnionPay) Name() string { return UnionPayName }

// Sign sets signMethod=21, certId (Key.KeyID, or the decimal serial of Key.Cert), merId,
// txnTime and orderId when configured and absent, optionally signPubKeyCert, signs, and
// rewrites m.Body with signature added.
func (u *UnionPay) Sign(m *Message, k Key, now time.Time, nonce string) error {
	return u.p.sign(m, k, now, nonce)
}

// Parse reads the fields, requires signMethod=21 and certId, and builds the signed bytes (the
// lower-case hex SM3 of the sorted string). Params holds every field, signPubKeyCert included.
func (u *UnionPay) Parse(m *Message) (*Signed, error) { return u.p.parse(m) }

// Verify checks the SM2 signature of s (user ID = certId).
func (u *UnionPay) Verify(s *Signed, pub *ecdsa.PublicKey) error { return u.p.verify(s, pub) }

func certPEM(der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}
