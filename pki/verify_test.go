package pki

import (
	"crypto/rand"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
)

// fixture is a three-level test PKI built directly with smx509.
type fixture struct {
	root, inter       *smx509.Certificate
	rootKey, interKey *sm2.PrivateKey
	sign, enc         *smx509.Certificate
}

type validity struct{ from, to time.Time }

var (
	okRange   = validity{t0.Add(-24 * time.Hour), t0.Add(365 * 24 * time.Hour)}
	pastRange = validity{t0.Add(-48 * time.Hour), t0.Add(-time.Hour)}
	futRange  = validity{t0.Add(time.Hour), t0.Add(48 * time.Hour)}
)

func caTmpl(cn string, v validity) *smx509.Certificate {
	return &smx509.Certificate{
		Subject: pkix.Name{CommonName: cn, Organization: []string{"gmgate test"}}, NotBefore: v.from, NotAfter: v.to,
		IsCA: true, BasicConstraintsValid: true, KeyUsage: smx509.KeyUsageCertSign | smx509.KeyUsageCRLSign,
	}
}

func leafTmpl(cn string, ku smx509.KeyUsage, v validity) *smx509.Certificate {
	return &smx509.Certificate{
		Subject: pkix.Name{CommonName: cn}, NotBefore: v.from, NotAfter: v.to,
		BasicConstraintsValid: true, KeyUsage: ku, DNSNames: []string{"pay.example"},
		ExtKeyUsage: []smx509.ExtKeyUsage{smx509.ExtKeyUsageServerAuth},
	}
}

const (
	kuSign = smx509.KeyUsageDigitalSignature | smx509.KeyUsageContentCommitment
	kuEnc  = smx509.KeyUsageKeyEncipherment | smx509.KeyUsageDataEncipherment | smx509.KeyUsageKeyAgreement
)

func newFixture(t testing.TB, rootV, interV, leafV validity) *fixture {
	t.Helper()
	f := &fixture{}
	f.root, f.rootKey = rawCert(t, caTmpl("Test Root", rootV), nil, nil)
	f.inter, f.interKey = rawCert(t, caTmpl("Test Inter", interV), f.root, f.rootKey)
	f.sign, _ = rawCert(t, leafTmpl("leaf sign", kuSign, leafV), f.inter, f.interKey)
	f.enc, _ = rawCert(t, leafTmpl("leaf enc", kuEnc, leafV), f.inter, f.interKey)
	return f
}

func (f *fixture) verifier(t testing.TB, crls *CRLStore, now time.Time) *Verifier {
	t.Helper()
	v, err := NewVerifier(VerifierOptions{Roots: []*smx509.Certificate{f.root}, CRLs: crls, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func crlDER(t testing.TB, issuer *smx509.Certificate, key *sm2.PrivateKey, number int64, this, next time.Time, revoked ...*smx509.Certificate) []byte {
	t.Helper()
	var entries []smx509.RevocationListEntry
	for _, c := range revoked {
		entries = append(entries, smx509.RevocationListEntry{SerialNumber: c.SerialNumber, RevocationTime: this})
	}
	der, err := smx509.CreateRevocationList(rand.Reader, &smx509.RevocationList{
		Number: big.NewInt(number), ThisUpdate: this, NextUpdate: next, RevokedCertificateEntries: entries,
	}, issuer, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestVerifyOK(t *testing.T) {
	f := newFixture(t, okRange, okRange, okRange)
	v := f.verifier(t, nil, t0)
	for _, tc := range []struct {
		c    *smx509.Certificate
		role Role
	}{{f.sign, RoleSign}, {f.enc, RoleEnc}} {
		// The intermediate comes from the peer.
		chains, err := v.Verify(tc.c, []*smx509.Certificate{f.inter}, tc.role)
		if err != nil {
			t.Fatalf("%v: %v", tc.role, err)
		}
		if len(chains) != 1 || len(chains[0]) != 3 || !chains[0][0].Equal(tc.c) || !chains[0][2].Equal(f.root) {
			t.Fatalf("unexpected chains %v", chains)
		}
	}
	// The intermediate configured in the verifier instead.
	v2, err := NewVerifier(VerifierOptions{Roots: []*smx509.Certificate{f.root}, Intermediates: []*smx509.Certificate{f.inter}, Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v2.Verify(f.sign, nil, RoleSign); err != nil {
		t.Fatal(err)
	}
	// Without any intermediate: unknown issuer.
	if _, err := v.Verify(f.sign, nil, RoleSign); !errors.Is(err, ErrUnknownIssuer) {
		t.Fatalf("no intermediate: %v", err)
	}
	// EKU restriction.
	v3, _ := NewVerifier(VerifierOptions{Roots: []*smx509.Certificate{f.root}, Now: func() time.Time { return t0 },
		ExtKeyUsages: []smx509.ExtKeyUsage{smx509.ExtKeyUsageCodeSigning}})
	if _, err := v3.Verify(f.sign, []*smx509.Certificate{f.inter}, RoleSign); !errors.Is(err, ErrWrongUsage) {
		t.Fatalf("EKU: %v", err)
	}
}

func TestVerifyFailures(t *testing.T) {
	good := newFixture(t, okRange, okRange, okRange)
	other := newFixture(t, okRange, okRange, okRange)
	p256der, _ := p256Cert(t)
	p256, err := smx509.ParseCertificate(p256der)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		f       *fixture
		leaf    func(*fixture) *smx509.Certificate
		role    Role
		want    error
		subject string // certificate the error must name
	}{
		{"leaf expired", newFixture(t, okRange, okRange, pastRange), func(f *fixture) *smx509.Certificate { return f.sign }, RoleSign, ErrExpired, "CN=leaf sign"},
		{"leaf not yet valid", newFixture(t, okRange, okRange, futRange), func(f *fixture) *smx509.Certificate { return f.enc }, RoleEnc, ErrNotYetValid, "CN=leaf enc"},
		{"intermediate expired", newFixture(t, okRange, pastRange, okRange), func(f *fixture) *smx509.Certificate { return f.sign }, RoleSign, ErrExpired, "CN=Test Inter,O=gmgate test"},
		{"intermediate not yet valid", newFixture(t, okRange, futRange, okRange), func(f *fixture) *smx509.Certificate { return f.sign }, RoleSign, ErrNotYetValid, "CN=Test Inter,O=gmgate test"},
		{"root expired", newFixture(t, pastRange, okRange, okRange), func(f *fixture) *smx509.Certificate { return f.sign }, RoleSign, ErrExpired, "CN=Test Root,O=gmgate test"},
		{"root not yet valid", newFixture(t, futRange, okRange, okRange), func(f *fixture) *smx509.Certificate { return f.enc }, RoleEnc, ErrNotYetValid, "CN=Test Root,O=gmgate test"},
		{"enc used as sign", good, func(f *fixture) *smx509.Certificate { return f.enc }, RoleSign, ErrWrongUsage, "CN=leaf enc"},
		{"sign used as enc", good, func(f *fixture) *smx509.Certificate { return f.sign }, RoleEnc, ErrWrongUsage, "CN=leaf sign"},
		{"CA used as sign", good, func(f *fixture) *smx509.Certificate { return f.inter }, RoleSign, ErrWrongUsage, "CN=Test Inter,O=gmgate test"},
		{"unknown issuer", good, func(*fixture) *smx509.Certificate { return other.sign }, RoleSign, ErrUnknownIssuer, "CN=leaf sign"},
		{"non-SM2 leaf", good, func(*fixture) *smx509.Certificate { return p256 }, RoleSign, ErrNotSM2, "CN=p256"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := tc.f.verifier(t, nil, t0)
			leaf := tc.leaf(tc.f)
			inters := []*smx509.Certificate{tc.f.inter}
			if leaf == other.sign {
				inters = []*smx509.Certificate{other.inter}
			}
			_, err := v.Verify(leaf, inters, tc.role)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			var ve *VerifyError
			if !errors.As(err, &ve) {
				t.Fatalf("not a *VerifyError: %T", err)
			}
			if ve.Subject != tc.subject || ve.Serial == "" {
				t.Fatalf("error names %q serial %q, want %q", ve.Subject, ve.Serial, tc.subject)
			}
			// Distinct sentinels: no other sentinel matches.
			for _, s := range []error{ErrExpired, ErrNotYetValid, ErrWrongUsage, ErrUnknownIssuer, ErrRevoked, ErrNotSM2} {
				if s != tc.want && errors.Is(err, s) {
					t.Fatalf("error also matches %v", s)
				}
			}
		})
	}
	// The intermediate is valid again once time moves into its window.
	f := newFixture(t, okRange, futRange, okRange)
	if _, err := f.verifier(t, nil, t0.Add(2*time.Hour)).Verify(f.sign, []*smx509.Certificate{f.inter}, RoleSign); err != nil {
		t.Fatalf("later: %v", err)
	}
}

func TestNewVerifierRejects(t *testing.T) {
	p256der, _ := p256Cert(t)
	p256, _ := smx509.ParseCertificate(p256der)
	f := newFixture(t, okRange, okRange, okRange)
	if _, err := NewVerifier(VerifierOptions{}); err == nil {
		t.Fatal("no roots accepted")
	}
	if _, err := NewVerifier(VerifierOptions{Roots: []*smx509.Certificate{p256}}); !errors.Is(err, ErrNotSM2) {
		t.Fatalf("P-256 root: %v", err)
	}
	if _, err := NewVerifier(VerifierOptions{Roots: []*smx509.Certificate{f.sign}}); !errors.Is(err, ErrWrongUsage) {
		t.Fatalf("leaf as root: %v", err)
	}
	v := f.verifier(t, nil, t0)
	if len(v.RootCertificates()) != 1 || v.Roots() == nil {
		t.Fatal("roots")
	}
	many := make([]*smx509.Certificate, MaxPeerIntermediates+1)
	for i := range many {
		many[i] = f.inter
	}
	if _, err := v.Verify(f.sign, many, RoleSign); !errors.Is(err, ErrInvalidChain) {
		t.Fatalf("too many intermediates: %v", err)
	}
}

func TestVerifyTongsuo(t *testing.T) {
	roots, err := LoadCertificatesFile(tongsuoPath(t, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	now := roots[0].NotBefore.Add(30 * 24 * time.Hour)
	v, err := NewVerifier(VerifierOptions{Roots: roots, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		file string
		role Role
	}{
		{"server_sign_cert.pem", RoleSign}, {"server_enc_cert.pem", RoleEnc},
		{"client_sign_cert.pem", RoleSign}, {"client_enc_cert.pem", RoleEnc},
	} {
		certs, err := LoadCertificatesFile(tongsuoPath(t, tc.file))
		if err != nil {
			t.Fatal(err)
		}
		chains, err := v.Verify(certs[0], nil, tc.role)
		if err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		if len(chains) != 1 || len(chains[0]) != 2 || !chains[0][1].Equal(roots[0]) {
			t.Fatalf("%s: chain %v", tc.file, chains)
		}
		wrong := RoleSign
		if tc.role == RoleSign {
			wrong = RoleEnc
		}
		if _, err := v.Verify(certs[0], nil, wrong); !errors.Is(err, ErrWrongUsage) {
			t.Fatalf("%s as %v: %v", tc.file, wrong, err)
		}
		// After the leaf's NotAfter: expired.
		late, _ := NewVerifier(VerifierOptions{Roots: roots, Now: func() time.Time { return certs[0].NotAfter.Add(time.Second) }})
		if _, err := late.Verify(certs[0], nil, tc.role); !errors.Is(err, ErrExpired) {
			t.Fatalf("%s late: %v", tc.file, err)
		}
	}
}

func TestCRLRevokedAndReload(t *testing.T) {
	f := newFixture(t, okRange, okRange, okRange)
	dir := t.TempDir()
	rootCRL := writeFile(t, dir, "root.crl", EncodeCRLPEM(crlDER(t, f.root, f.rootKey, 1, t0.Add(-time.Hour), t0.Add(24*time.Hour))))
	interPath := writeFile(t, dir, "inter.crl", crlDER(t, f.inter, f.interKey, 1, t0.Add(-time.Hour), t0.Add(24*time.Hour)))
	now := t0
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	store, err := NewCRLStore([]string{rootCRL, interPath}, CRLOptions{Now: clock, Issuers: []*smx509.Certificate{f.root, f.inter}})
	if err != nil {
		t.Fatal(err)
	}
	v, _ := NewVerifier(VerifierOptions{Roots: []*smx509.Certificate{f.root}, CRLs: store, Now: clock})
	inters := []*smx509.Certificate{f.inter}
	if _, err := v.Verify(f.sign, inters, RoleSign); err != nil {
		t.Fatalf("before revocation: %v", err)
	}
	// Revoke the sign certificate: new CRL file content (DER), new mtime.
	if err := os.WriteFile(interPath, crlDER(t, f.inter, f.interKey, 2, t0, t0.Add(24*time.Hour), f.sign), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = os.Chtimes(interPath, t0.Add(time.Minute), t0.Add(time.Minute))
	// Within CheckInterval the old CRL is still used (lazy check).
	mu.Lock()
	now = t0.Add(5 * time.Second)
	mu.Unlock()
	if _, err := v.Verify(f.sign, inters, RoleSign); err != nil {
		t.Fatalf("before the check interval: %v", err)
	}
	mu.Lock()
	now = t0.Add(11 * time.Second)
	mu.Unlock()
	_, err = v.Verify(f.sign, inters, RoleSign)
	if !errors.Is(err, ErrRevoked) {
		t.Fatalf("after reload: %v", err)
	}
	var ve *VerifyError
	if !errors.As(err, &ve) || ve.Subject != "CN=leaf sign" {
		t.Fatalf("error does not name the leaf: %v", err)
	}
	if _, err := v.Verify(f.enc, inters, RoleEnc); err != nil {
		t.Fatalf("enc cert not revoked: %v", err)
	}
	// Revoke the intermediate itself in the root's CRL: the enc leaf fails too.
	if err := os.WriteFile(rootCRL, EncodeCRLPEM(crlDER(t, f.root, f.rootKey, 2, t0, t0.Add(24*time.Hour), f.inter)), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = os.Chtimes(rootCRL, t0.Add(2*time.Minute), t0.Add(2*time.Minute))
	if err := store.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(f.enc, inters, RoleEnc); !errors.Is(err, ErrRevoked) || !strings.Contains(err.Error(), "Test Inter") {
		t.Fatalf("revoked intermediate: %v", err)
	}
	// A broken rewrite is refused and the previous CRL kept.
	if err := os.WriteFile(interPath, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = os.Chtimes(interPath, t0.Add(3*time.Minute), t0.Add(3*time.Minute))
	if err := store.Reload(); !errors.Is(err, ErrMalformedCRL) {
		t.Fatalf("bad reload: %v", err)
	}
	if store.LastError() == nil {
		t.Fatal("LastError empty")
	}
	if revoked, err := store.IsRevoked(f.sign, f.inter); err != nil || !revoked {
		t.Fatalf("previous CRL lost: %v %v", revoked, err)
	}
}

func TestCRLStale(t *testing.T) {
	f := newFixture(t, okRange, okRange, okRange)
	p := writeFile(t, t.TempDir(), "inter.crl", crlDER(t, f.inter, f.interKey, 1, t0.Add(-2*time.Hour), t0.Add(-time.Hour)))
	for _, allow := range []bool{false, true} {
		store, err := NewCRLStore([]string{p}, CRLOptions{Now: func() time.Time { return t0 }, AllowStale: allow})
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.verifier(t, store, t0).Verify(f.sign, []*smx509.Certificate{f.inter}, RoleSign)
		if allow && err != nil {
			t.Fatalf("AllowStale: %v", err)
		}
		if !allow && (!errors.Is(err, ErrCRLStale) || errors.Is(err, ErrRevoked)) {
			t.Fatalf("stale: %v", err)
		}
	}
}

func TestCRLBadSignature(t *testing.T) {
	f := newFixture(t, okRange, okRange, okRange)
	dir := t.TempDir()
	der := crlDER(t, f.inter, f.interKey, 1, t0.Add(-time.Hour), t0.Add(time.Hour))
	rl, err := ParseCRL(der)
	if err != nil {
		t.Fatal(err)
	}
	// Flip a bit of the signature value (the last bytes of the DER).
	bad := append([]byte(nil), der...)
	bad[len(bad)-3] ^= 0x01
	if rl2, err := ParseCRL(bad); err != nil || rl2.CheckSignatureFrom(f.inter) == nil {
		t.Fatalf("tampered CRL should parse and fail its signature: %v", err)
	}
	p := writeFile(t, dir, "bad.crl", bad)
	// Without Issuers: loads, but is refused when used.
	store, err := NewCRLStore([]string{p}, CRLOptions{Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.verifier(t, store, t0).Verify(f.sign, []*smx509.Certificate{f.inter}, RoleSign)
	if !errors.Is(err, ErrCRLBadSignature) {
		t.Fatalf("use: %v", err)
	}
	// With Issuers: refused at load.
	if _, err := NewCRLStore([]string{p}, CRLOptions{Issuers: []*smx509.Certificate{f.inter}}); !errors.Is(err, ErrCRLBadSignature) {
		t.Fatalf("load: %v", err)
	}
	// A CRL signed by an impostor CA with the same name but another key.
	imp := newFixture(t, okRange, okRange, okRange)
	impInter, impKey := rawCert(t, caTmpl("Test Inter", okRange), imp.root, imp.rootKey)
	ip := writeFile(t, dir, "imp.crl", crlDER(t, impInter, impKey, 1, t0.Add(-time.Hour), t0.Add(time.Hour), f.sign))
	if _, err := NewCRLStore([]string{ip}, CRLOptions{Issuers: []*smx509.Certificate{f.inter}}); !errors.Is(err, ErrCRLBadSignature) {
		t.Fatalf("impostor at load: %v", err)
	}
	store2, err := NewCRLStore([]string{ip}, CRLOptions{Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	// Its authority key id names another key: it is ignored, the leaf is not revoked.
	if revoked, err := store2.IsRevoked(f.sign, f.inter); revoked || err != nil {
		t.Fatalf("impostor CRL used: %v %v", revoked, err)
	}
	// Unknown CRL issuer at load.
	if _, err := NewCRLStore([]string{ip}, CRLOptions{Issuers: []*smx509.Certificate{f.root}}); !errors.Is(err, ErrUnknownIssuer) {
		t.Fatalf("unknown CRL issuer: %v", err)
	}
	_ = rl
}

func TestCRLParseErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, ErrMalformedCRL},
		{"garbage DER", []byte{0x30, 0x01, 0x00}, ErrMalformedCRL},
		{"PEM without CRL", []byte("-----BEGIN FOO-----\n-----END FOO-----\n"), ErrMalformedPEM},
		{"too large", make([]byte, MaxCRLSize+1), ErrInputTooLarge},
	} {
		if _, err := ParseCRL(tc.data); !errors.Is(err, tc.want) {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if tc.data != nil {
			p := filepath.Join(dir, "x.crl")
			_ = os.WriteFile(p, tc.data, 0o600)
			if _, err := NewCRLStore([]string{p}, CRLOptions{}); !errors.Is(err, tc.want) {
				t.Fatalf("%s file: %v", tc.name, err)
			}
		}
	}
	if _, err := NewCRLStore([]string{filepath.Join(dir, "missing.crl")}, CRLOptions{}); err == nil {
		t.Fatal("missing file accepted")
	}
}

func TestCRLConcurrent(t *testing.T) {
	f := newFixture(t, okRange, okRange, okRange)
	p := writeFile(t, t.TempDir(), "inter.crl", crlDER(t, f.inter, f.interKey, 1, t0.Add(-time.Hour), t0.Add(time.Hour), f.enc))
	store, err := NewCRLStore([]string{p}, CRLOptions{Now: func() time.Time { return t0 }, CheckInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	v := f.verifier(t, store, t0)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 20; j++ {
				if _, err := v.Verify(f.sign, []*smx509.Certificate{f.inter}, RoleSign); err != nil {
					errs <- err
					return
				}
				if _, err := v.Verify(f.enc, []*smx509.Certificate{f.inter}, RoleEnc); !errors.Is(err, ErrRevoked) {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
