package enroll

import (
	"context"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"
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
