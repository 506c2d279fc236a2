package gateway

import (
	"bytes"
	"crypto/rand"
	"encoding/pem"
	"errors"
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

func TestEnvelopeOpenErrors(t *testing.T) {
	key := newSM2Key(t)
	cert := newEncCert(t, key)
	other := newSM2Key(t)
	otherCert := newEncCert(t, other)
	plain := []byte("hello")
	good, err := pkcs7.EncryptSM(pkcs.SM4GCM, plain, []*smx509.Certificate{cert})
	if err != nil {
		t.Fatal(err)
	}
	forOther, _ := pkcs7.EncryptSM(pkcs.SM4CBC, plain, []*smx509.Certificate{otherCert})
	aes, _ := pkcs7.Encrypt(pkcs.AES128CBC, plain, []*smx509.Certificate{cert})
	ecb, _ := pkcs7.EncryptSM(pkcs.SM4ECB, plain, []*smx509.Certificate{cert})
	tampered := append([]byte{}, good...)
	tampered[len(tampered)-1] ^= 1
	psk, _ := pkcs7.EncryptSMUsingPSK(pkcs.SM4CBC, plain, make([]byte, 16))
	wrongKey := &envelope.Opener{Cert: cert, Key: other} // right recipient, wrong private key
	tests := []struct {
		name   string
		opener *envelope.Opener
		body   []byte
		want   error
		code   Code
	}{
		{"empty", nil, nil, envelope.ErrFormat, CodeEnvelopeInvalid},
		{"spaces", nil, []byte(" \n"), envelope.ErrFormat, CodeEnvelopeInvalid},
		{"garbage base64", nil, []byte("!!!not base64!!!"), envelope.ErrFormat, CodeEnvelopeInvalid},
		{"truncated DER", nil, good[:len(good)-10], envelope.ErrFormat, CodeEnvelopeInvalid},
		{"trailing data", nil, append(append([]byte{}, good...), 0, 0), envelope.ErrFormat, CodeEnvelopeInvalid},
		{"not enveloped (PSK encrypted data)", nil, psk, envelope.ErrFormat, CodeEnvelopeInvalid},
		{"pem wrong type", nil, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: good}), envelope.ErrFormat, CodeEnvelopeInvalid},
		{"other recipient", nil, forOther, envelope.ErrRecipient, CodeEnvelopeInvalid},
		{"AES content", nil, aes, envelope.ErrAlgorithm, CodeEnvelopeInvalid},
		{"SM4-ECB content", nil, ecb, envelope.ErrAlgorithm, CodeEnvelopeInvalid},
		{"tampered GCM", nil, tampered, envelope.ErrDecrypt, CodeEnvelopeInvalid},
		{"wrong private key", wrongKey, good, envelope.ErrDecrypt, CodeEnvelopeInvalid},
		{"too large", &envelope.Opener{Cert: cert, Key: key, MaxSize: 64}, good, envelope.ErrTooLarge, CodeBodyTooLarge},
		{"too large base64", &envelope.Opener{Cert: cert, Key: key, MaxSize: 64}, bytes.Repeat([]byte("A"), 10000), envelope.ErrTooLarge, CodeBodyTooLarge},
		{"no key", &envelope.Opener{Cert: cert}, good, ErrEnvelope, CodeEnvelopeInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.opener
			if o == nil {
				o = &envelope.Opener{Cert: cert, Key: key}
			}
			got, err := o.Open(tc.body)
			if !errors.Is(err, tc.want) || got != nil {
				t.Fatalf("Open = %q, %v; want %v", got, err, tc.want)
			}
			if c := CodeOf(err); c != tc.code {
				t.Fatalf("code %s, want %s", c, tc.code)
			}
		})
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
