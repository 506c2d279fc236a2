package pki

import (
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestCRLPendingFile: a CRL file named in PendingFiles that does not exist yet (a CRL this
// instance writes when it starts) fails every revocation check closed until it appears, then
// is loaded at the next check; a missing file not named there still fails NewCRLStore.
func TestCRLPendingFile(t *testing.T) {
	ca, _, err := NewRootCA(IssueOptions{CommonName: "pending CRL CA"})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.IssuePlatform(IssueOptions{CommonName: "leaf"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "crl.pem")
	if _, err := NewCRLStore([]string{path}, CRLOptions{}); err == nil {
		t.Fatal("a missing file not named pending was accepted")
	}
	st, err := NewCRLStore([]string{path}, CRLOptions{PendingFiles: []string{path}, CheckInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.IsRevoked(leaf.Cert, ca.Cert); !errors.Is(err, ErrCRLStale) {
		t.Fatalf("pending file: %v", err)
	}
	der, err := ca.CreateCRL(nil, big.NewInt(1), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, EncodeCRLPEM(der), 0o600); err != nil {
		t.Fatal(err)
	}
	if revoked, err := st.IsRevoked(leaf.Cert, ca.Cert); err != nil || revoked {
		t.Fatalf("after the file appeared: %v %v", revoked, err)
	}
}
