package pki

import (
	"crypto/rand"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/internal/testenv"
)

// tongsuoPath is a Tongsuo-generated PKI file (testenv: fails under GMGATE_REQUIRE_SERVICES=1
// when absent).
func tongsuoPath(t testing.TB, name string) string {
	t.Helper()
	return filepath.Join(testenv.InteropDir(t, "tongsuo", "pki"), name)
}

// t0 is the fixed "now" of tests.
var t0 = time.Date(2027, 3, 1, 12, 0, 0, 0, time.UTC)

// rawCert builds a certificate straight from a template with smx509 (test
// helper independent of issue.go). parent == nil means self-signed.
func rawCert(t testing.TB, tmpl *smx509.Certificate, parent *smx509.Certificate, parentKey *sm2.PrivateKey) (*smx509.Certificate, *sm2.PrivateKey) {
	t.Helper()
	key, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if tmpl.SerialNumber == nil {
		tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := smx509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := smx509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
