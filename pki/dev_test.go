package pki

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"
)

func checkDevPKI(t *testing.T, d *DevPKI, at time.Time, names []string) {
	t.Helper()
	roots, err := LoadCertificatesFile(d.RootCertPath)
	if err != nil || !roots[0].Equal(d.Root.Cert) {
		t.Fatalf("root file: %v", err)
	}
	v, err := NewVerifier(VerifierOptions{Roots: roots, Now: func() time.Time { return at }})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		iss  *Issued
		role Role
	}{{d.Server.Sign, RoleSign}, {d.Server.Enc, RoleEnc}, {d.Platform, RoleSign}, {d.Client.Sign, RoleSign}, {d.Client.Enc, RoleEnc},
		{d.Bank.Sign, RoleSign}, {d.Bank.Enc, RoleEnc}, {d.BankPlatform, RoleSign}} {
		if _, err := v.Verify(tc.iss.Cert, nil, tc.role); err != nil {
			t.Fatalf("%s: %v", tc.iss.Cert.Subject, err)
		}
		if !tc.iss.Key.PublicKey.Equal(tc.iss.Cert.PublicKey) {
			t.Fatal("key mismatch")
		}
	}
	for _, c := range []*smx509.Certificate{d.Server.Sign.Cert, d.Server.Enc.Cert, d.Bank.Sign.Cert, d.Bank.Enc.Cert} {
		for _, n := range names {
			if ip := net.ParseIP(n); ip != nil {
				if c.VerifyHostname(n) != nil {
					t.Fatalf("IP %s missing", n)
				}
			} else if c.VerifyHostname(n) != nil {
				t.Fatalf("name %s missing", n)
			}
		}
	}
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestEnsureDevPKI(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	names := []string{"localhost", "127.0.0.1", "pay.local"}
	d1, err := EnsureDevPKI(dir, names)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	checkDevPKI(t, d1, now, names)
	// Permissions.
	if st, _ := os.Stat(dir); st.Mode().Perm() != 0o700 {
		t.Fatalf("dir mode %v", st.Mode().Perm())
	}
	for _, base := range []string{DevRootBase, DevServerSignBase, DevServerEncBase, DevPlatformBase, DevClientSignBase, DevClientEncBase, DevBankSignBase, DevBankEncBase, DevBankPlatformBase} {
		st, err := os.Stat(filepath.Join(dir, base+".key"))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s.key: %v %v", base, err, st)
		}
		if _, err := os.Stat(filepath.Join(dir, base+".pem")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, devLockName)); !os.IsNotExist(err) {
		t.Fatal("lock file left behind")
	}
	// Reuse: same certificates.
	d2, err := EnsureDevPKI(dir, names)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range [][2]*smx509.Certificate{{d1.Root.Cert, d2.Root.Cert}, {d1.Server.Sign.Cert, d2.Server.Sign.Cert},
		{d1.Server.Enc.Cert, d2.Server.Enc.Cert}, {d1.Platform.Cert, d2.Platform.Cert}, {d1.Client.Enc.Cert, d2.Client.Enc.Cert},
		{d1.Bank.Sign.Cert, d2.Bank.Sign.Cert}, {d1.BankPlatform.Cert, d2.BankPlatform.Cert}} {
		if !p[0].Equal(p[1]) {
			t.Fatalf("%s re-issued without reason", p[0].Subject)
		}
	}
	// Names change (order alone does not count): server pair re-issued only.
	d3, err := EnsureDevPKI(dir, []string{"pay.local", "localhost", "127.0.0.1"})
	if err != nil || !d3.Server.Sign.Cert.Equal(d1.Server.Sign.Cert) {
		t.Fatalf("reordered names re-issued: %v", err)
	}
	names2 := []string{"gw.local", "::1"}
	d4, err := EnsureDevPKI(dir, names2)
	if err != nil {
		t.Fatal(err)
	}
	if d4.Server.Sign.Cert.Equal(d1.Server.Sign.Cert) || d4.Server.Enc.Cert.Equal(d1.Server.Enc.Cert) {
		t.Fatal("server pair not re-issued for new names")
	}
	if !d4.Root.Cert.Equal(d1.Root.Cert) || !d4.Platform.Cert.Equal(d1.Platform.Cert) || !d4.Client.Sign.Cert.Equal(d1.Client.Sign.Cert) {
		t.Fatal("unrelated certificates re-issued")
	}
	if d4.Server.Sign.Cert.VerifyHostname("localhost") == nil {
		t.Fatal("old name kept")
	}
	checkDevPKI(t, d4, now, names2)
	// A corrupt key re-issues its certificate only.
	if err := os.WriteFile(filepath.Join(dir, DevPlatformBase+".key"), []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	d5, err := EnsureDevPKI(dir, names2)
	if err != nil {
		t.Fatal(err)
	}
	if d5.Platform.Cert.Equal(d4.Platform.Cert) || !d5.Server.Sign.Cert.Equal(d4.Server.Sign.Cert) {
		t.Fatal("corrupt platform key not handled")
	}
	// Close to leaf expiry (fixed clock): leafs re-issued, root kept.
	late := d5.Server.Sign.Cert.NotAfter.Add(-29 * 24 * time.Hour)
	d6, err := ensureDevPKI(dir, names2, func() time.Time { return late })
	if err != nil {
		t.Fatal(err)
	}
	if !d6.Root.Cert.Equal(d5.Root.Cert) {
		t.Fatal("root replaced too early")
	}
	for _, p := range [][2]*smx509.Certificate{{d5.Server.Sign.Cert, d6.Server.Sign.Cert}, {d5.Platform.Cert, d6.Platform.Cert}, {d5.Client.Sign.Cert, d6.Client.Sign.Cert}} {
		if p[0].Equal(p[1]) {
			t.Fatalf("%s not renewed", p[0].Subject)
		}
	}
	checkDevPKI(t, d6, late, names2)
	// Close to root expiry: everything replaced.
	end := d6.Root.Cert.NotAfter.Add(-time.Hour)
	d7, err := ensureDevPKI(dir, names2, func() time.Time { return end })
	if err != nil {
		t.Fatal(err)
	}
	if d7.Root.Cert.Equal(d6.Root.Cert) || d7.Server.Sign.Cert.Equal(d6.Server.Sign.Cert) {
		t.Fatal("root near expiry not replaced")
	}
	checkDevPKI(t, d7, end, names2)
	if !bytes.Equal(readFile(t, d7.RootCertPath), EncodeCertificatesPEM(d7.Root.Cert)) {
		t.Fatal("root file not updated")
	}
}

func TestEnsureDevPKIDefaultsAndErrors(t *testing.T) {
	d, err := EnsureDevPKI(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	checkDevPKI(t, d, time.Now(), []string{"localhost", "127.0.0.1"})
	if _, err := EnsureDevPKI("", nil); err == nil {
		t.Fatal("empty dir accepted")
	}
	if _, err := EnsureDevPKI(t.TempDir(), []string{"a", ""}); err == nil {
		t.Fatal("empty name accepted")
	}
}

func TestEnsureDevPKIRace(t *testing.T) {
	dir := t.TempDir()
	const n = 4
	var wg sync.WaitGroup
	res := make([]*DevPKI, n)
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			res[i], errs[i] = EnsureDevPKI(dir, []string{"localhost"})
		}(i)
	}
	wg.Wait()
	for i := 0; i < n; i++ {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if !res[i].Root.Cert.Equal(res[0].Root.Cert) || !res[i].Server.Sign.Cert.Equal(res[0].Server.Sign.Cert) {
			t.Fatal("racing callers got different PKIs")
		}
	}
	// What is on disk is what they got.
	d, err := EnsureDevPKI(dir, []string{"localhost"})
	if err != nil || !d.Root.Cert.Equal(res[0].Root.Cert) {
		t.Fatalf("disk differs: %v", err)
	}
	// No temporary files left.
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.Name()[0] == '.' {
			t.Fatalf("leftover %s", e.Name())
		}
	}
}

func TestEnsureDevPKIStaleLock(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, devLockName)
	if err := os.WriteFile(p, []byte("999999"), 0o600); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-devLockStale - time.Minute)
	if err := os.Chtimes(p, old, old); err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureDevPKI(dir, nil); err != nil {
		t.Fatal(err)
	}
}
