// Package testpki issues SM2 test certificates for the protocol packages'
// tests (tlcp, tls13sm): any key usage, extended key usage and validity,
// including the malformed ones that negative tests need and that pki's
// policy-enforcing issuer refuses to make. It also writes them as PEM files
// for the independent implementations (Tongsuo) those tests run. Import it
// from _test.go files only.
package testpki

import (
	"crypto/rand"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
)

// Spec describes a certificate to issue.
type Spec struct {
	CN    string
	DNS   []string
	Usage smx509.KeyUsage
	EKU   []smx509.ExtKeyUsage
	// NotBefore zero means an hour ago; NotAfter zero means in 24 hours.
	NotBefore, NotAfter time.Time
	IsCA                bool
}

var serial atomic.Int64

// Key returns a new SM2 private key.
func Key(t testing.TB) *sm2.PrivateKey {
	t.Helper()
	k, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Issue signs spec for key's public key with parentKey (self-signed when
// parent is nil), with subject CN and O "gmgate test" and a unique serial.
func Issue(t testing.TB, spec Spec, key *sm2.PrivateKey, parent *smx509.Certificate, parentKey *sm2.PrivateKey) *smx509.Certificate {
	t.Helper()
	if spec.NotBefore.IsZero() {
		spec.NotBefore = time.Now().Add(-time.Hour)
	}
	if spec.NotAfter.IsZero() {
		spec.NotAfter = time.Now().Add(24 * time.Hour)
	}
	tmpl := &smx509.Certificate{
		SerialNumber:          big.NewInt(1000 + serial.Add(1)),
		Subject:               pkix.Name{CommonName: spec.CN, Organization: []string{"gmgate test"}},
		NotBefore:             spec.NotBefore,
		NotAfter:              spec.NotAfter,
		KeyUsage:              spec.Usage,
		ExtKeyUsage:           spec.EKU,
		DNSNames:              spec.DNS,
		BasicConstraintsValid: true,
		IsCA:                  spec.IsCA,
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := smx509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := smx509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// WritePEM writes DER blocks of type typ to dir/name (0600) and returns the path.
func WritePEM(t testing.TB, dir, name, typ string, ders ...[]byte) string {
	t.Helper()
	var out []byte
	for _, d := range ders {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: d})...)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, out, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// WriteKey writes k as a PKCS#8 "PRIVATE KEY" PEM file and returns the path.
func WriteKey(t testing.TB, dir, name string, k any) string {
	t.Helper()
	der, err := smx509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return WritePEM(t, dir, name, "PRIVATE KEY", der)
}

// LoadCert reads the first PEM certificate of path.
func LoadCert(t testing.TB, path string) *smx509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := smx509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// LoadKey reads the SM2 private key of path (PKCS#8, or the SEC 1 form
// Tongsuo also writes).
func LoadKey(t testing.TB, path string) *sm2.PrivateKey {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		t.Fatalf("%s: no PEM", path)
	}
	if k, err := smx509.ParsePKCS8PrivateKey(b.Bytes); err == nil {
		if sk, ok := k.(*sm2.PrivateKey); ok {
			return sk
		}
		t.Fatalf("%s: %T is not SM2", path, k)
	}
	k, err := smx509.ParseSM2PrivateKey(b.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return k
}
