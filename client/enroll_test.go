package client

import (
	"context"
	"errors"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/enroll"
	"github.com/gmgate/gmgate/internal/testpki"
	"github.com/gmgate/gmgate/pki"
)

type nonceSet struct {
	mu sync.Mutex
	m  map[string]bool
}

func (n *nonceSet) CheckAndStore(_ context.Context, k, v string, _ time.Duration) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.m[k+"|"+v] {
		return enroll.ErrSeen
	}
	n.m[k+"|"+v] = true
	return nil
}

func enrolServer(t *testing.T) (*httptest.Server, *enroll.FileStore, *pki.CA) {
	t.Helper()
	root, _, err := pki.NewRootCA(pki.IssueOptions{CommonName: "SDK test CA"})
	if err != nil {
		t.Fatal(err)
	}
	st, err := enroll.OpenFileStore(filepath.Join(t.TempDir(), "enroll"), testpki.NewSealKeys(t, "enroll-store"))
	if err != nil {
		t.Fatal(err)
	}
	ca, err := enroll.NewLocalCA([]*smx509.Certificate{root.Cert}, root.Key, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := enroll.NewServer(enroll.Config{Issuer: ca, Store: st, Nonces: &nonceSet{m: map[string]bool{}},
		Profiles: []enroll.Profile{{Name: "terminal", Validity: 48 * time.Hour}}})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	return ts, st, root
}

// TestEnrollerLifecycle: the SDK enrols, downloads, renews and revokes; a revoked pair cannot
// renew.
func TestEnrollerLifecycle(t *testing.T) {
	ts, st, root := enrolServer(t)
	tok, _, err := enroll.IssueToken(st, enroll.TokenOptions{Profile: "terminal", CommonName: "POS-1"})
	if err != nil {
		t.Fatal(err)
	}
	e := &Enroller{BaseURL: ts.URL + "/.well-known/est", Roots: []*smx509.Certificate{root.Cert}}
	ctx := context.Background()
	p, err := e.Enroll(ctx, tok, "POS-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.CheckUsage(p.Enc.Certificate, pki.RoleEnc); err != nil {
		t.Fatal(err)
	}
	if !p.Enc.Key.(*sm2.PrivateKey).PublicKey.Equal(p.Enc.Certificate.PublicKey) {
		t.Fatal("encryption key does not match")
	}
	if _, err := e.Enroll(ctx, tok, "POS-1", nil); !isCode(err, "enroll_token_used") {
		t.Fatalf("token reuse: %v", err)
	}
	d, err := e.Download(ctx, p.Sign.Key.(*sm2.PrivateKey))
	if err != nil || d.Serial != p.Serial {
		t.Fatalf("download: %v", err)
	}
	p2, err := e.Reenroll(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if p2.Serial == p.Serial || p2.Sign.Certificate.Subject.CommonName != "POS-1" {
		t.Fatal("renewal")
	}
	if err := e.Revoke(ctx, p2); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Reenroll(ctx, p2); !isCode(err, "enroll_cert_revoked") {
		t.Fatalf("renewal after revocation: %v", err)
	}
}

// TestEnrollerRefusesRogueCA: a pair that does not chain to the terminal's roots is refused
// (a rogue enrolment server cannot plant its own CA in the terminal).
func TestEnrollerRefusesRogueCA(t *testing.T) {
	ts, st, _ := enrolServer(t)
	other, _, _ := pki.NewRootCA(pki.IssueOptions{CommonName: "Expected CA"})
	tok, _, _ := enroll.IssueToken(st, enroll.TokenOptions{Profile: "terminal"})
	e := &Enroller{BaseURL: ts.URL, Roots: []*smx509.Certificate{other.Cert}}
	if _, err := e.Enroll(context.Background(), tok, "POS-2", nil); !errors.Is(err, ErrEnrolResponse) {
		t.Fatalf("rogue CA: %v", err)
	}
}

func isCode(err error, code string) bool {
	var ee *EnrolError
	return errors.As(err, &ee) && ee.Code == code
}
