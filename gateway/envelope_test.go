package gateway

import (
	"bytes"
	"crypto/rand"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/emmansun/gmsm/pkcs"
	"github.com/emmansun/gmsm/pkcs7"
	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/envelope"
)

// newEncCert makes a self-signed SM2 certificate for key with the given usage.
func newEncCert(t testing.TB, key *sm2.PrivateKey, serial int64, usage smx509.KeyUsage) *smx509.Certificate {
	t.Helper()
	tmpl := &smx509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkixName("gmgate platform enc"),
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     usage,
		SubjectKeyId: big.NewInt(serial*7919 + 1).Bytes(),
	}
	der, err := smx509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := smx509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

const encUsage = smx509.KeyUsageKeyEncipherment | smx509.KeyUsageDataEncipherment

func TestEnvelopeOpenErrors(t *testing.T) {
	key := newSM2Key(t)
	cert := newEncCert(t, key, 11, encUsage)
	other := newSM2Key(t)
	otherCert := newEncCert(t, other, 12, encUsage)
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

func pkixName(cn string) pkix.Name {
	return pkix.Name{CommonName: cn, Organization: []string{"gmgate test"}}
}

func newSM2Key(t testing.TB) *sm2.PrivateKey {
	t.Helper()
	k, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
