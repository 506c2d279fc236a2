package client

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/enroll"
)

// TestRenewerKeepsOldPairUntilNewWorks: not due → nothing; due → renewal, but a failing check
// keeps the old pair current and the issued one pending (no second renewal is asked for, which
// the server would refuse); once the check passes the new pair becomes current and is stored.
func TestRenewerKeepsOldPairUntilNewWorks(t *testing.T) {
	ts, st, root := enrolServer(t)
	tok, _, _ := enroll.IssueToken(st, enroll.TokenOptions{Profile: "terminal", CommonName: "POS-9"})
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	e := &Enroller{BaseURL: ts.URL, Roots: []*smx509.Certificate{root.Cert}, Now: clock}
	ctx := context.Background()
	p, err := e.Enroll(ctx, tok, "POS-9", nil)
	if err != nil {
		t.Fatal(err)
	}
	checkErr := errors.New("gateway does not know the new pair yet")
	var stored *EnrolledPair
	r := &Renewer{Enroller: e, RenewBefore: time.Hour,
		Check:   func(context.Context, *EnrolledPair) error { return checkErr },
		OnRenew: func(n *EnrolledPair) error { stored = n; return nil }}
	r.SetCurrent(p)
	if changed, err := r.RenewIfDue(ctx); changed || err != nil {
		t.Fatalf("renewed 48h before expiry with RenewBefore 1h: %v %v", changed, err)
	}
	// 47h30 later the pair (48h validity) is due. The server's clock is the real one, so the
	// signed request must carry a current timestamp: only the renewer's view of "due" moves.
	r.RenewBefore = 49 * time.Hour
	if changed, err := r.RenewIfDue(ctx); changed || !errors.Is(err, checkErr) {
		t.Fatalf("failing check: %v %v", changed, err)
	}
	if r.Current() != p || stored != nil {
		t.Fatal("the old pair was replaced before the new one worked")
	}
	checkErr = nil
	if changed, err := r.RenewIfDue(ctx); !changed || err != nil {
		t.Fatalf("renewal with a passing check: %v %v", changed, err)
	}
	if r.Current() == p || stored != r.Current() || r.Current().Serial == p.Serial {
		t.Fatal("new pair not current or not stored")
	}
	// One issuance only: the pending pair was reused, not a second renewal.
	certs, _ := st.Certs()
	if len(certs) != 2 {
		t.Fatalf("%d pairs issued, want 2 (first + one renewal)", len(certs))
	}
}
