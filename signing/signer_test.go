package signing

import (
	"crypto"
	"crypto/ecdsa"
	"errors"
	"io"
	"net/http"
	"testing"

	"github.com/emmansun/gmsm/sm2"
)

// opaqueSigner stands for an HSM- or vault-backed key: it only exposes crypto.Signer and checks
// that it is called the way gmsm's *sm2.PrivateKey expects (raw message, SM2SignerOption, no
// pre-hash).
type opaqueSigner struct {
	key   *sm2.PrivateKey
	calls int
}

func (o *opaqueSigner) Public() crypto.PublicKey { return &o.key.PublicKey }

func (o *opaqueSigner) Sign(r io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	o.calls++
	if _, ok := opts.(*sm2.SM2SignerOption); !ok || opts.HashFunc() != 0 {
		return nil, errors.New("not called with an SM2 signer option")
	}
	return o.key.Sign(r, msg, opts)
}

func TestOpaqueSignerAllSchemes(t *testing.T) {
	o := &opaqueSigner{key: newKey(t)}
	pub := o.Public().(*ecdsa.PublicKey)
	for _, name := range Names() {
		s, _ := Lookup(name)
		m := &Message{Method: "POST", Target: "/p", Authority: "h", Header: http.Header{}, Body: []byte("a=1")}
		if err := s.Sign(m, Key{Signer: o, KeyID: "12345", MerchantID: "m"}, testNow, ""); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := parseVerify(s, m, pub); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if o.calls != len(Names()) {
		t.Fatalf("signer called %d times", o.calls)
	}
}

// Key.UserID overrides the scheme setting when signing; the verifier must then use the same ID.
func TestKeyUserIDOverride(t *testing.T) {
	priv := newKey(t)
	s := NewWechatPay()
	m := &Message{Method: "GET", Target: "/", Header: http.Header{}}
	if err := s.Sign(m, Key{Signer: priv, KeyID: "S", MerchantID: "1", UserID: []byte("custom")}, testNow, ""); err != nil {
		t.Fatal(err)
	}
	sd, err := s.Parse(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Verify(sd, &priv.PublicKey); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("default ID accepted a custom-ID signature: %v", err)
	}
	sd.UserID = []byte("custom")
	if err := s.Verify(sd, &priv.PublicKey); err != nil {
		t.Fatal(err)
	}
}
