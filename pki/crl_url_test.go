package pki

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"
)

// crlServer publishes whatever CRL is set, like gm_enroll's /crl endpoint.
type crlServer struct {
	mu     sync.Mutex
	der    []byte
	status int
	hits   int
}

func (c *crlServer) set(der []byte, status int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.der, c.status = der, status
}

func (c *crlServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hits++
	if c.status != http.StatusOK {
		w.WriteHeader(c.status)
		return
	}
	w.Header().Set("Content-Type", "application/pkix-crl")
	_, _ = w.Write(c.der)
}

// TestCRLStoreURLSource: a CRL published at a URL is fetched, refreshed without restart (a
// revocation published later is seen), fails closed while never fetched, and a replayed older
// CRL (validly signed, without the revocation) cannot un-revoke a certificate.
func TestCRLStoreURLSource(t *testing.T) {
	f := newFixture(t, okRange, okRange, okRange)
	srv := &crlServer{status: http.StatusServiceUnavailable}
	ts := httptest.NewServer(srv)
	defer ts.Close()

	now := t0
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	store, err := NewCRLStore([]string{ts.URL + "/crl"}, CRLOptions{Now: clock, CheckInterval: -1, Issuers: []*smx509.Certificate{f.root, f.inter}})
	if err != nil {
		t.Fatalf("a CA that is not up yet must not fail the store: %v", err)
	}
	v := f.verifier(t, store, t0)
	if _, err := v.Verify(f.sign, []*smx509.Certificate{f.inter}, RoleSign); !errors.Is(err, ErrCRLStale) {
		t.Fatalf("never-fetched URL CRL: got %v, want fail-closed ErrCRLStale", err)
	}
	if _, err := store.Latest(f.inter); !errors.Is(err, ErrCRLStale) {
		t.Fatalf("Latest of a never-fetched URL CRL: %v, want ErrCRLStale", err)
	}

	empty := crlDER(t, f.inter, f.interKey, 1, t0.Add(-time.Hour), t0.Add(24*time.Hour))
	srv.set(empty, http.StatusOK)
	if err := store.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(f.sign, []*smx509.Certificate{f.inter}, RoleSign); err != nil {
		t.Fatalf("after fetch: %v", err)
	}

	// The CA revokes the certificate; the next use triggers a background fetch.
	revoked := crlDER(t, f.inter, f.interKey, 2, t0.Add(-time.Minute), t0.Add(24*time.Hour), f.sign)
	srv.set(revoked, http.StatusOK)
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := v.Verify(f.sign, []*smx509.Certificate{f.inter}, RoleSign)
		if errors.Is(err, ErrRevoked) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("revocation published at the URL never seen: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Rollback: the attacker serves the older, validly signed CRL. A forced reload reports it;
	// the held CRL stays (Latest, used by a registration authority to re-publish it, too).
	srv.set(empty, http.StatusOK)
	if err := store.Reload(); !errors.Is(err, ErrCRLRollback) {
		t.Fatalf("reload of an older CRL: %v, want ErrCRLRollback", err)
	}
	if _, err := v.Verify(f.sign, []*smx509.Certificate{f.inter}, RoleSign); !errors.Is(err, ErrRevoked) {
		t.Fatalf("an older CRL un-revoked the certificate: %v", err)
	}
	if rl, err := store.Latest(f.inter); err != nil || rl.Number.Int64() != 2 {
		t.Fatalf("Latest after a rollback attempt: %v %v", rl, err)
	}
	if _, err := store.Latest(f.root); !errors.Is(err, ErrUnknownIssuer) {
		t.Fatalf("Latest of an issuer without a CRL: %v", err)
	}

	// A CRL from another CA at the URL is refused (issuers configured), keeping the held one.
	other := newFixture(t, okRange, okRange, okRange)
	srv.set(crlDER(t, other.inter, other.interKey, 9, t0, t0.Add(time.Hour)), http.StatusOK)
	if err := store.Reload(); err == nil {
		t.Fatal("a CRL signed by a stranger was accepted")
	}
	if _, err := v.Verify(f.sign, []*smx509.Certificate{f.inter}, RoleSign); !errors.Is(err, ErrRevoked) {
		t.Fatalf("stranger's CRL replaced the held one: %v", err)
	}
}

// TestCRLStoreURLBounds: an oversized body is refused.
func TestCRLStoreURLBounds(t *testing.T) {
	big := make([]byte, MaxCRLSize+10)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(big) }))
	defer ts.Close()
	store, err := NewCRLStore([]string{ts.URL}, CRLOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.LastError(); !errors.Is(err, ErrInputTooLarge) {
		t.Fatalf("oversized CRL: %v", err)
	}
}

// TestNewCAChecksKey: a CA is never assembled from a certificate and another key.
func TestNewCAChecksKey(t *testing.T) {
	f := newFixture(t, okRange, okRange, okRange)
	if _, err := NewCA(f.inter, f.interKey); err != nil {
		t.Fatal(err)
	}
	if _, err := NewCA(f.inter, f.rootKey); !errors.Is(err, ErrWrongUsage) {
		t.Fatalf("mismatched key: %v", err)
	}
	if _, err := NewCA(f.sign, f.interKey); err == nil {
		t.Fatal("leaf accepted as CA")
	}
}
