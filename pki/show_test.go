package pki

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"
)

// TestDescribeTongsuo compares against values printed by the system OpenSSL 3
// (`openssl x509 -fingerprint -sm3`, `-serial`, `-text`) for the Tongsuo cert.
func TestDescribeTongsuo(t *testing.T) {
	certs, err := LoadCertificatesFile(tongsuoPath(t, "server_sign_cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	c := certs[0]
	const fp = "5978626a0002213a800c3cda9e1c6b768652ef499034e711fff5f1b5491b7493"
	if got := FingerprintSM3(c); got != fp {
		t.Fatalf("fingerprint %s", got)
	}
	d := Describe(c)
	for _, want := range []string{
		"CN=localhost (server_sign),O=Peer Test,C=CN",
		"CN=Peer Test SM2 Root CA,O=Peer Test,C=CN",
		"3e9\n", "1001\n", // serial 0x03E9 in hex and decimal
		"2026-11-25T18:14:52Z", "2029-02-27T18:14:52Z",
		"digitalSignature, nonRepudiation", "serverAuth",
		"Role:                  sign",
		"DNS:localhost, IP:127.0.0.1",
		fp,
		"04894a5547addf655eb37ae74fd95c5f35904b1d395aad0eebb64e858cf2ab673c5c7ce94bee051f3edd9a76d035669a897a21591357334cf3231f6292e41cc780",
		"SM2-SM3",
		"CA:FALSE",
	} {
		if !strings.Contains(d, want) {
			t.Errorf("Describe lacks %q:\n%s", want, d)
		}
	}
}

func TestDescribeRoles(t *testing.T) {
	nb := t0.Add(-time.Hour)
	root, rootKey, err := NewRootCA(IssueOptions{CommonName: "R", NotBefore: nb})
	if err != nil {
		t.Fatal(err)
	}
	pair, _ := root.IssueClientPair(IssueOptions{CommonName: "c", EmailAddresses: []string{"a@b.example"}, IPAddresses: []net.IP{net.ParseIP("::1")}, NotBefore: nb})
	mixed, _ := rawCert(t, leafTmpl("mixed", kuSign|kuEnc, okRange), root.Cert, rootKey)
	p256der, _ := p256Cert(t)
	p256, err := smx509.ParseCertificate(p256der)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		c    *smx509.Certificate
		want []string
	}{
		{root.Cert, []string{"Role:                  ca", "CA:TRUE", "keyCertSign, cRLSign", "Extended key usage:    none"}},
		{mixed, []string{"Role:                  none (key usage mixes signature and encipherment"}},
		{p256, []string{"ECDSA (not SM2)", "ECDSA-SHA256", "Subject alt names:     none"}},
		{pair.Enc.Cert, []string{"Role:                  enc", "keyEncipherment, dataEncipherment, keyAgreement", "clientAuth", "email:a@b.example", "IP:::1"}},
	} {
		d := Describe(tc.c)
		for _, w := range tc.want {
			if !strings.Contains(d, w) {
				t.Errorf("lacks %q:\n%s", w, d)
			}
		}
	}
	if Describe(nil) == "" || FingerprintSM3(nil) != "" {
		t.Fatal("nil handling")
	}
}
