package pki

import (
	"encoding/pem"
	"math/big"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"
	tjsm2 "github.com/tjfoc/gmsm/sm2"
	tjx509 "github.com/tjfoc/gmsm/x509"
)

// TestTjfocVerifiesIssued has an independent SM2 implementation
// (github.com/tjfoc/gmsm) verify a chain, a CRL and keys produced here, and
// checks that a key it encrypts parses here.
func TestTjfocVerifiesIssued(t *testing.T) {
	nb := t0.Add(-time.Hour)
	root, _, err := NewRootCA(IssueOptions{CommonName: "Interop Root", NotBefore: nb})
	if err != nil {
		t.Fatal(err)
	}
	inter, _, err := root.IssueIntermediateCA(IssueOptions{CommonName: "Interop Issuing CA", NotBefore: nb})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := inter.IssueServerPair(IssueOptions{CommonName: "localhost", DNSNames: []string{"localhost"}, NotBefore: nb})
	if err != nil {
		t.Fatal(err)
	}
	parse := func(c *smx509.Certificate) *tjx509.Certificate {
		t.Helper()
		tc, err := tjx509.ParseCertificate(c.Raw)
		if err != nil {
			t.Fatalf("tjfoc cannot parse %s: %v", c.Subject, err)
		}
		return tc
	}
	roots, inters := tjx509.NewCertPool(), tjx509.NewCertPool()
	roots.AddCert(parse(root.Cert))
	inters.AddCert(parse(inter.Cert))
	opts := tjx509.VerifyOptions{Roots: roots, Intermediates: inters, CurrentTime: t0, KeyUsages: []tjx509.ExtKeyUsage{tjx509.ExtKeyUsageAny}}
	for _, iss := range []*Issued{pair.Sign, pair.Enc} {
		tc := parse(iss.Cert)
		if _, err := tc.Verify(opts); err != nil {
			t.Fatalf("tjfoc rejects %s: %v", iss.Cert.Subject, err)
		}
		if tc.KeyUsage != tjx509.KeyUsage(iss.Cert.KeyUsage) {
			t.Fatalf("key usage read differently: %v vs %v", tc.KeyUsage, iss.Cert.KeyUsage)
		}
		// Our plain PKCS#8 key parses in tjfoc, to the same scalar.
		kp, _ := MarshalPrivateKeyPEM(iss.Key, nil)
		b, _ := pem.Decode(kp)
		tk, err := tjx509.ParsePKCS8UnecryptedPrivateKey(b.Bytes)
		if err != nil || tk.D.Cmp(iss.Key.D) != 0 {
			t.Fatalf("tjfoc key parse: %v", err)
		}
	}
	// The check can fail: a certificate from another root is rejected.
	other, _, _ := NewRootCA(IssueOptions{CommonName: "Interop Root", NotBefore: nb})
	stranger, _ := other.IssuePlatform(IssueOptions{CommonName: "stranger", NotBefore: nb})
	if _, err := parse(stranger.Cert).Verify(opts); err == nil {
		t.Fatal("tjfoc accepted a certificate from another root")
	}
	// CRL signature.
	der, err := inter.CreateCRLAt([]smx509.RevocationListEntry{{SerialNumber: pair.Sign.Cert.SerialNumber}}, big.NewInt(1), t0, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	crl, err := tjx509.ParseCRL(EncodeCRLPEM(der))
	if err != nil {
		t.Fatal(err)
	}
	if err := parse(inter.Cert).CheckCRLSignature(crl); err != nil {
		t.Fatalf("tjfoc rejects the CRL signature: %v", err)
	}
	if err := parse(root.Cert).CheckCRLSignature(crl); err == nil {
		t.Fatal("tjfoc accepted the CRL under the wrong issuer")
	}
	if len(crl.TBSCertList.RevokedCertificates) != 1 || crl.TBSCertList.RevokedCertificates[0].SerialNumber.Cmp(pair.Sign.Cert.SerialNumber) != 0 {
		t.Fatal("revoked entry")
	}
	// A key encrypted by tjfoc parses here.
	tk, err := tjsm2.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	encPEM, err := tjx509.WritePrivateKeyToPem(tk, []byte("tj pw"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParsePrivateKeyPEM(encPEM, []byte("tj pw"))
	if err != nil || got.D.Cmp(tk.D) != 0 {
		t.Fatalf("tjfoc encrypted key: %v", err)
	}
}
