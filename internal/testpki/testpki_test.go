package testpki

import (
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
)

func TestIssueAsSpecified(t *testing.T) {
	caKey := Key(t)
	ca := Issue(t, Spec{CN: "test CA", Usage: smx509.KeyUsageCertSign, IsCA: true}, caKey, nil, nil)
	if err := ca.CheckSignatureFrom(ca); err != nil {
		t.Fatalf("self-signed CA: %v", err)
	}
	nb, na := time.Now().Add(-48*time.Hour).Truncate(time.Second), time.Now().Add(-24*time.Hour).Truncate(time.Second)
	// A malformed leaf on purpose: encipherment on a signing certificate, expired.
	leaf := Issue(t, Spec{CN: "bank.test", DNS: []string{"bank.test"}, Usage: smx509.KeyUsageDigitalSignature | smx509.KeyUsageKeyEncipherment,
		EKU: []smx509.ExtKeyUsage{smx509.ExtKeyUsageServerAuth}, NotBefore: nb, NotAfter: na}, Key(t), ca, caKey)
	if err := leaf.CheckSignatureFrom(ca); err != nil {
		t.Fatalf("leaf not signed by the CA: %v", err)
	}
	if leaf.Subject.CommonName != "bank.test" || leaf.DNSNames[0] != "bank.test" || leaf.IsCA ||
		leaf.KeyUsage != smx509.KeyUsageDigitalSignature|smx509.KeyUsageKeyEncipherment ||
		leaf.ExtKeyUsage[0] != smx509.ExtKeyUsageServerAuth || !leaf.NotBefore.Equal(nb) || !leaf.NotAfter.Equal(na) {
		t.Fatalf("leaf differs from its spec: %+v", leaf)
	}
	if leaf.SerialNumber.Cmp(ca.SerialNumber) == 0 {
		t.Fatal("two certificates with one serial")
	}
	if leaf.SignatureAlgorithm != smx509.SM2WithSM3 {
		t.Fatalf("signature algorithm %v, want SM2-with-SM3", leaf.SignatureAlgorithm)
	}
}

func TestWriteAndLoad(t *testing.T) {
	dir := t.TempDir()
	key := Key(t)
	cert := Issue(t, Spec{CN: "terminal"}, key, nil, nil)
	certFile := WritePEM(t, dir, "cert.pem", "CERTIFICATE", cert.Raw)
	if got := LoadCert(t, certFile); !got.Equal(cert) {
		t.Fatal("certificate differs after a PEM round trip")
	}
	if got := LoadKey(t, WriteKey(t, dir, "key.pem", key)); !got.Equal(key) {
		t.Fatal("PKCS#8 key differs after a PEM round trip")
	}
	sec1, err := smx509.MarshalSM2PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	var k *sm2.PrivateKey = LoadKey(t, WritePEM(t, dir, "sec1.pem", "EC PRIVATE KEY", sec1))
	if !k.Equal(key) {
		t.Fatal("SEC 1 key differs after a PEM round trip")
	}
}
