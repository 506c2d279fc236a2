package gateway

import (
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/signing"
)

func TestIdentityLookupForms(t *testing.T) {
	p := newTestPKI(t)
	c := p.good.Sign.Cert
	hexS := signing.SerialHex(c.SerialNumber)
	for _, k := range []string{hexS, strings.ToLower(hexS), "00" + hexS, "0x" + hexS, colonHex(hexS), c.SerialNumber.String()} {
		id, err := p.identities.Lookup(k)
		if err != nil || id.Cert != c {
			t.Errorf("Lookup(%q) = %v, %v", k, id, err)
		}
	}
	for _, k := range []string{"", "zz", strings.Repeat("F", 2000), "12345"} {
		if _, err := p.identities.Lookup(k); CodeOf(err) != CodeUnknownKey {
			t.Errorf("Lookup(%q): %v", k, err)
		}
	}
}

func colonHex(s string) string {
	if len(s)%2 == 1 {
		s = "0" + s
	}
	var parts []string
	for i := 0; i < len(s); i += 2 {
		parts = append(parts, s[i:i+2])
	}
	return strings.Join(parts, ":")
}

func writePEM(t *testing.T, path string, certs ...*smx509.Certificate) {
	t.Helper()
	if err := os.WriteFile(path, pki.EncodeCertificatesPEM(certs...), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestIdentityDirReload(t *testing.T) {
	p := newTestPKI(t)
	dir := t.TempDir()
	writePEM(t, filepath.Join(dir, "m1.pem"), p.good.Sign.Cert, p.root.Cert) // chain in the file
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("ignored"), 0o600); err != nil {
		t.Fatal(err)
	}
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	s, err := NewIdentityStore(IdentityOptions{Verifier: p.verifier, Dir: dir, ReloadInterval: time.Minute, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() != 1 {
		t.Fatalf("%d identities", s.Len())
	}
	k2 := signing.SerialHex(p.other.Sign.Cert.SerialNumber)
	if _, err := s.Lookup(k2); CodeOf(err) != CodeUnknownKey {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(dir, "m2.crt"), p.other.Sign.Cert)
	// Not reloaded before the interval...
	if _, err := s.Lookup(k2); CodeOf(err) != CodeUnknownKey {
		t.Fatalf("reloaded too early: %v", err)
	}
	// ...but after it.
	now.Add(int64(2 * time.Minute))
	if id, err := s.Lookup(k2); err != nil || !id.Cert.Equal(p.other.Sign.Cert) {
		t.Fatalf("after reload: %v", err)
	}
	// A broken file keeps the previous set and reports the error.
	if err := os.WriteFile(filepath.Join(dir, "bad.pem"), []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	now.Add(int64(2 * time.Minute))
	if _, err := s.Lookup(k2); err != nil {
		t.Fatalf("lost identities on a bad reload: %v", err)
	}
	if s.LastError() == nil {
		t.Fatal("reload error not reported")
	}
	// Removing a file removes the identity.
	if err := os.Remove(filepath.Join(dir, "bad.pem")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "m2.crt")); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lookup(k2); CodeOf(err) != CodeUnknownKey || s.LastError() != nil {
		t.Fatalf("after removal: %v", err)
	}
	if _, err := NewIdentityStore(IdentityOptions{Verifier: p.verifier, Dir: filepath.Join(dir, "missing")}); err == nil {
		t.Fatal("missing directory accepted")
	}
	if _, err := NewIdentityStore(IdentityOptions{Dir: dir}); err == nil {
		t.Fatal("no verifier accepted")
	}
}

// TestIdentityCacheRechecksExpiry: a cached good verification does not outlive the certificate.
func TestIdentityCacheRechecksExpiry(t *testing.T) {
	p := newTestPKI(t)
	short, err := p.root.IssuePlatform(pki.IssueOptions{CommonName: "short", NotBefore: time.Now().Add(-time.Minute), Validity: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	s, err := NewIdentityStore(IdentityOptions{Verifier: p.verifier, Certificates: []*smx509.Certificate{short.Cert}, CacheTTL: time.Hour, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	k := signing.SerialHex(short.Cert.SerialNumber)
	if _, err := s.Lookup(k); err != nil {
		t.Fatal(err)
	}
	now.Add(int64(5 * time.Minute))
	if _, err := s.Lookup(k); CodeOf(err) != CodeCertExpired {
		t.Fatalf("expired certificate served from cache: %v", err)
	}
}

func TestParseBinding(t *testing.T) {
	for in, want := range map[string]Binding{"": BindNone, "none": BindNone, "cert": BindCertificate, "Subject": BindSubject} {
		if b, err := ParseBinding(in); err != nil || b != want {
			t.Errorf("%q: %v %v", in, b, err)
		}
	}
	if _, err := ParseBinding("maybe"); err == nil {
		t.Fatal("accepted")
	}
}
