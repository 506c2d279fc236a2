package enroll

import (
	"context"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"
	"github.com/gmgate/gmgate/audit"
	"github.com/gmgate/gmgate/pki"
)

// TestOfflineRevocationPickedUp: a revocation written into the store by another process (the
// gmgate enroll revoke command) reaches the CRL at the next refresh and is audited once.
func TestOfflineRevocationPickedUp(t *testing.T) {
	f := newFixture(t)
	r := f.enrol(newKey(t), "T0600")
	if _, err := f.store.Revoke(r.Serial, "operator:bob", f.clock.now()); err != nil {
		t.Fatal(err)
	}
	if err := f.srv.RefreshCRL(context.Background()); err != nil {
		t.Fatal(err)
	}
	der, _, err := f.srv.CRL(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !crlLists(t, der, r.Serial) || !crlLists(t, der, r.EncSerial) {
		t.Fatal("offline revocation not in the CRL")
	}
	a := f.audit.last()
	if a.Scheme != "enroll/revoke" || a.KeyID != "operator:bob" || a.CertSerial != r.Serial {
		t.Fatalf("audit of the picked-up revocation: %+v", a)
	}
	n := len(f.audit.recs)
	f.clock.add(13 * time.Hour) // past half the CRL validity: re-signed, not re-audited
	if err := f.srv.RefreshCRL(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(f.audit.recs) != n {
		t.Fatal("revocation audited twice")
	}
}

func crlLists(t *testing.T, der []byte, serial string) bool {
	t.Helper()
	rl, err := smx509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range rl.RevokedCertificateEntries {
		if serialHex(e.SerialNumber) == serial {
			return true
		}
	}
	return false
}

// TestAttackUnrevokeByDeletingMarkers: someone who can write the store directory deletes the
// revocation markers of a revoked pair (they are not signed). Before, the next CRL left the pair
// out and every gateway accepted it again. Now the serials of the last CRL the CA signed stay
// listed — from memory, and after a restart from the signed CRL file — and the missing marker is
// an audit entry.
func TestAttackUnrevokeByDeletingMarkers(t *testing.T) {
	f := newFixture(t)
	r := f.enrol(newKey(t), "T0601")
	if _, err := f.store.Revoke(r.Serial, "operator:bob", f.clock.now()); err != nil {
		t.Fatal(err)
	}
	if err := f.srv.RefreshCRL(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, sn := range []string{r.Serial, r.EncSerial} {
		if err := os.Remove(filepath.Join(f.store.Dir(), "revoked", sn)); err != nil {
			t.Fatal(err)
		}
	}
	if revs, _ := f.store.Revocations(); len(revs) != 0 {
		t.Fatalf("the attack did not remove the markers: %v", revs)
	}
	listsBoth := func(srv *Server) bool {
		if err := srv.RefreshCRL(context.Background()); err != nil {
			t.Fatal(err)
		}
		der, _, err := srv.CRL(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return crlLists(t, der, r.Serial) && crlLists(t, der, r.EncSerial)
	}
	if !listsBoth(f.srv) {
		t.Fatal("un-revoked by deleting the markers (same process)")
	}
	if a := f.audit.last(); a.Reason != "revocation_marker_missing" || a.Verdict != audit.VerdictReject {
		t.Fatalf("missing marker not audited: %+v", a)
	}
	restarted, err := NewServer(f.srv.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !listsBoth(restarted) {
		t.Fatal("un-revoked by deleting the markers (after a restart)")
	}
	// A CRL file that does not verify against the CA is not believed (nor does it add entries).
	other, _, err := pki.NewRootCA(pki.IssueOptions{CommonName: "Rogue CA"})
	if err != nil {
		t.Fatal(err)
	}
	rogue, err := other.CreateCRL(nil, big.NewInt(1), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.crlFile, pki.EncodeCRLPEM(rogue), 0o600); err != nil {
		t.Fatal(err)
	}
	again, err := NewServer(f.srv.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if entries := again.previousCRLEntries(); entries != nil {
		t.Fatalf("a CRL of another CA was taken as this CA's: %v", entries)
	}
}
