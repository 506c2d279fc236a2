package gateway

import (
	"crypto/rand"
	"fmt"
	"testing"

	"github.com/emmansun/gmsm/pkcs"
	"github.com/emmansun/gmsm/pkcs7"
	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/envelope"
	"github.com/gmgate/gmgate/pki"
)

// newEncCert issues an SM2 encryption certificate for key from a test CA (pki, the one issuer).
func newEncCert(t testing.TB, key *sm2.PrivateKey) *smx509.Certificate {
	t.Helper()
	ca, _, err := pki.NewRootCA(pki.IssueOptions{CommonName: "gmgate test root"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := ca.IssueFor(&key.PublicKey, pki.RoleEnc, pki.IssueOptions{CommonName: "gmgate platform enc"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Every error of the envelope opener (its own tests, envelope/envelope_test.go, make each one
// happen) maps to the gateway code a client sees: a body over the bound is body_too_large, every
// other failure one envelope_invalid.
func TestEnvelopeErrorCodes(t *testing.T) {
	for _, c := range []struct {
		err  error
		code Code
	}{
		{envelope.ErrFormat, CodeEnvelopeInvalid},
		{envelope.ErrRecipient, CodeEnvelopeInvalid},
		{envelope.ErrAlgorithm, CodeEnvelopeInvalid},
		{envelope.ErrDecrypt, CodeEnvelopeInvalid},
		{envelope.ErrInvalid, CodeEnvelopeInvalid},
		{envelope.ErrTooLarge, CodeBodyTooLarge},
	} {
		if got := CodeOf(fmt.Errorf("opening: %w", c.err)); got != c.code {
			t.Errorf("%v: code %s, want %s", c.err, got, c.code)
		}
	}
	// And through a real opener: a tampered GCM envelope and an oversized one.
	key := newSM2Key(t)
	cert := newEncCert(t, key)
	good, err := pkcs7.EncryptSM(pkcs.SM4GCM, []byte("hello"), []*smx509.Certificate{cert})
	if err != nil {
		t.Fatal(err)
	}
	tampered := append([]byte{}, good...)
	tampered[len(tampered)-1] ^= 1
	if _, err := (&envelope.Opener{Cert: cert, Key: key}).Open(tampered); CodeOf(err) != CodeEnvelopeInvalid {
		t.Fatalf("tampered: %v", err)
	}
	if _, err := (&envelope.Opener{Cert: cert, Key: key, MaxSize: 64}).Open(good); CodeOf(err) != CodeBodyTooLarge {
		t.Fatalf("too large: %v", err)
	}
}

func newSM2Key(t testing.TB) *sm2.PrivateKey {
	t.Helper()
	k, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
