package cryptosvc

import (
	"crypto/rand"
	"testing"
	"time"

	"github.com/emmansun/gmsm/pkcs7"
	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/refusal"
)

// TestAttackCMSSignerConfusion: a SignedData whose only SignerInfo names (issuer, serial) of a
// trusted signer, with an attacker's self-made certificate carrying that same issuer DN and
// serial and the attacker's key. Whatever the order of the certificates, the certificate the
// chain check accepts must be the one whose key verifies, and the reported signer the one
// verified: the message is refused, never answered as signed by the trusted signer.
func TestAttackCMSSignerConfusion(t *testing.T) {
	p := loadTestPKI(t)
	s := certService(t, p, nil)
	data := []byte("transfer 100.00 to 6222...")
	attacker, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &smx509.Certificate{SerialNumber: p.signer.Cert.SerialNumber, RawSubject: p.signer.Cert.RawIssuer,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: smx509.KeyUsageDigitalSignature}
	der, err := smx509.CreateCertificate(rand.Reader, tmpl, tmpl, &attacker.PublicKey, attacker)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := smx509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	build := func(trustedFirst bool) []byte {
		sd, err := pkcs7.NewSignedData(data)
		if err != nil {
			t.Fatal(err)
		}
		sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSM3)
		if trustedFirst {
			sd.AddCertificate(p.signer.Cert)
		}
		if err := sd.AddSigner(forged, attacker, pkcs7.SignerInfoConfig{}); err != nil {
			t.Fatal(err)
		}
		if !trustedFirst {
			sd.AddCertificate(p.signer.Cert)
		}
		out, err := sd.Finish()
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	rows := []struct {
		name string
		cms  []byte
		want refusal.Code
	}{
		{"forged certificate first", build(false), CodeCertUntrusted},
		{"trusted certificate first", build(true), CodeBadSignature},
	}
	for _, tc := range rows {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := call(t, s, risk, OpVerifyMessage, item{"cms": b64(tc.cms)})
			if err == nil {
				t.Fatalf("answered: signer %+v", resp.Results[0].Signer)
			}
			mustCode(t, err, tc.want)
		})
	}
}
