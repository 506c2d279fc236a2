package enroll

import (
	"context"
	"errors"
	"math/big"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/pki"
)

// TestAttackUpstreamCRLRollbackAfterRestart: someone on the path from the RA to the CA keeps
// a CRL the CA signed before a terminal's revocation (still within its nextUpdate) and serves
// it when the RA restarts. The restarted RA holds no CRL in memory yet; it must not publish
// that CRL over the newer one its crl_file holds (the revoked terminal would pay again
// wherever the RA's CRL is trusted).
func TestAttackUpstreamCRLRollbackAfterRestart(t *testing.T) {
	s := newRASetup(t)
	now := time.Now()
	// The CA's CRL of an hour ago, listing nothing (captured traffic).
	old, err := s.ca.root.CreateCRLAt(nil, big.NewInt(now.Add(-2*time.Hour).UnixMilli()), now.Add(-2*time.Hour), now.Add(22*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	key := newKey(t)
	r := s.ra.enrol(key, "T0900")
	rb := []byte(`{}`)
	resp, body := s.ra.post(OpRevoke, s.ra.signedHeaders(OpRevoke, "application/json", rb, key, r.Serial, ""), rb)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke: %d %s", resp.StatusCode, body)
	}
	if rl := s.raCRL(t); !listed(rl, r.Serial) {
		t.Fatal("the RA's CRL does not list the revoked terminal")
	}

	// The RA restarts (same store, same crl_file); the path to the CA now serves the old CRL.
	s.proxy.SetHook(func(w http.ResponseWriter, r *http.Request, _ []byte) bool {
		if !strings.HasSuffix(r.URL.Path, "/"+OpCRL) {
			return false
		}
		w.Header().Set("Content-Type", MediaCRL)
		_, _ = w.Write(old)
		return true
	})
	up, err := NewUpstreamIssuer(UpstreamConfig{URL: s.up.base.String(), Chain: []*smx509.Certificate{s.ca.root.Cert},
		Key: s.raKey, Cert: s.raCert, CRLCheckInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(Config{Issuer: up, Store: s.ra.store, Nonces: &memNonces{}, Audit: &sink{}, CRLFile: s.ra.crlFile,
		Profiles: []Profile{{Name: "terminal", Organization: []string{"Acme Pay"}, OrganizationalUnit: []string{"terminals"},
			DNSNames: []string{"*.pos.example"}, Validity: 30 * 24 * time.Hour}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.RefreshCRL(context.Background()); !errors.Is(err, pki.ErrCRLRollback) {
		t.Errorf("restarted RA took an older CRL of the CA: %v", err)
	}
	data, err := os.ReadFile(s.ra.crlFile)
	if err != nil {
		t.Fatal(err)
	}
	rl, err := pki.ParseCRL(data)
	if err != nil {
		t.Fatal(err)
	}
	if !listed(rl, r.Serial) {
		t.Fatal("the restarted RA re-published an older CRL: the revoked terminal is valid again")
	}
	if der, _, err := srv.CRL(context.Background()); err == nil {
		if rl, err := smx509.ParseRevocationList(der); err == nil && !listed(rl, r.Serial) {
			t.Fatal("the restarted RA serves an older CRL: the revoked terminal is valid again")
		}
	}
}
