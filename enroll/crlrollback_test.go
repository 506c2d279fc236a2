package enroll

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/redis/go-redis/v9"

	"github.com/gmgate/gmgate/audit"
	"github.com/gmgate/gmgate/internal/abuse"
	"github.com/gmgate/gmgate/internal/testenv"
)

// crlRollbackAttack: a CA revokes r1, then r2; while gmgate is stopped, someone who can write
// the store directory and the CRL file puts back the CRL that listed r1 only (genuine: signed
// by this CA), deletes r2's revocation markers and puts back r2's record from before its
// revocation (genuine too), and, when dropStoreMark, deletes the store's record of the last
// CRL. It returns the fixture, r2 (with its key) and a server over the same configuration (a
// restart). Without a record of the last CRL, that server would sign a CRL without r2 and
// renew r2's pair: an un-revocation.
func crlRollbackAttack(t *testing.T, dropStoreMark bool, mutate ...func(*Config)) (*fixture, *rolledBack, *fixture, *atomic.Int32, []byte) {
	t.Helper()
	var rollbacks atomic.Int32
	mutate = append(mutate, func(c *Config) { c.OnCRLRollback = func() { rollbacks.Add(1) } })
	f := newFixture(t, mutate...)
	ctx := context.Background()
	key2 := newKey(t)
	r1 := f.enrol(newKey(t), "T0701")
	r2 := f.enrol(key2, "T0702")
	if _, err := f.srv.RevokeLocal(ctx, r1.Serial, "operator:bob"); err != nil {
		t.Fatal(err)
	}
	older, err := os.ReadFile(f.crlFile)
	if err != nil {
		t.Fatal(err)
	}
	r2Record, err := os.ReadFile(f.path("certs", r2.Serial+".json"))
	if err != nil {
		t.Fatal(err)
	}
	f.clock.add(time.Second)
	if _, err := f.srv.RevokeLocal(ctx, r2.Serial, "operator:bob"); err != nil {
		t.Fatal(err)
	}
	newest, err := os.ReadFile(f.crlFile)
	if err != nil {
		t.Fatal(err)
	}
	// gmgate stopped; the attack.
	if err := os.WriteFile(f.crlFile, older, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, sn := range []string{r2.Serial, r2.EncSerial} {
		if err := os.Remove(f.path("revoked", sn)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(f.path("certs", r2.Serial+".json"), r2Record, 0o600); err != nil {
		t.Fatal(err)
	}
	if dropStoreMark {
		marks, err := filepath.Glob(f.path("crl", "*.json"))
		if err != nil || len(marks) != 1 {
			t.Fatalf("the store's CRL record: %v %v", marks, err)
		}
		if err := os.Remove(marks[0]); err != nil {
			t.Fatal(err)
		}
	}
	f.clock.add(time.Second)
	srv, err := NewServer(f.srv.cfg)
	if err != nil {
		t.Fatal(err)
	}
	g := *f
	g.srv, g.http = srv, httptest.NewServer(srv)
	t.Cleanup(g.http.Close)
	return f, &rolledBack{Response: r2, key: key2}, &g, &rollbacks, newest
}

// rolledBack is the pair whose revocation the attack tries to undo, with its signing key.
type rolledBack struct {
	*Response
	key *sm2.PrivateKey
}

// checkRollbackRefused: the restarted server signs no CRL (enroll_unavailable on /crl),
// audits crl_rollback and counts it once, and r2's pair stays refused (its renewal is
// enroll_unavailable, not a new pair). Putting the newest CRL back (any copy: it is signed)
// is the recovery: the CRL is signed again and lists r2.
func checkRollbackRefused(t *testing.T, f, g *fixture, r2 *rolledBack, rollbacks *atomic.Int32, newest []byte) {
	t.Helper()
	ctx := context.Background()
	if err := g.srv.RefreshCRL(ctx); !errors.Is(err, ErrCRLRollback) {
		t.Fatalf("a CRL dropping a revocation was signed after the restart: %v", err)
	}
	if _, _, err := g.srv.CRL(ctx); !errors.Is(err, ErrCRLRollback) {
		t.Fatalf("CRL served: %v", err)
	}
	csr := b64(simpleCSR(t, newKey(t), "T0702"))
	h := g.signedHeaders(OpSimpleReenroll, MediaPKCS10, csr, r2.key, r2.Serial, "")
	if resp, body := g.post(OpSimpleReenroll, h, csr); resp.StatusCode == 200 || codeOf(body) != CodeUnavailable {
		t.Fatalf("the revoked pair renewed after the rollback: %d %s", resp.StatusCode, body)
	}
	found := false
	g.audit.mu.Lock()
	recs := append([]audit.Record(nil), g.audit.recs...)
	g.audit.mu.Unlock()
	for _, a := range recs {
		if a.Reason == "crl_rollback" && a.Verdict == audit.VerdictReject && a.Scheme == "enroll/crl" {
			found = true
		}
	}
	if !found {
		t.Fatal("the rollback was not audited (crl_rollback)")
	}
	if n := rollbacks.Load(); n != 1 {
		t.Fatalf("rollbacks counted %d times, want 1", n)
	}
	// Recovery: the newest CRL back in place.
	if err := os.WriteFile(f.crlFile, newest, 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(f.srv.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.RefreshCRL(ctx); err != nil {
		t.Fatalf("the newest CRL put back: %v", err)
	}
	der, _, err := srv.CRL(ctx)
	if err != nil || !crlLists(t, der, r2.Serial) || !crlLists(t, der, r2.EncSerial) {
		t.Fatalf("the recovered CRL does not list r2: %v", err)
	}
	h2 := *g
	h2.srv, h2.http = srv, httptest.NewServer(srv)
	defer h2.http.Close()
	csr = b64(simpleCSR(t, newKey(t), "T0702"))
	h = h2.signedHeaders(OpSimpleReenroll, MediaPKCS10, csr, r2.key, r2.Serial, "")
	if resp, body := h2.post(OpSimpleReenroll, h, csr); resp.StatusCode == 200 || codeOf(body) != CodeCertRevoked {
		t.Fatalf("the revoked pair after the recovery: %d %s", resp.StatusCode, body)
	}
}

// TestAttackCRLFileRolledBack: the store's authenticated record of the last CRL (no ledger:
// the memory replay store) refuses the older CRL file when the store is not rolled back with it.
func TestAttackCRLFileRolledBack(t *testing.T) {
	f, r2, g, n, newest := crlRollbackAttack(t, false)
	checkRollbackRefused(t, f, g, r2, n, newest)
}

// TestAttackCRLFileRolledBackLedger: the ledger's record refuses it even when the store's
// record was deleted too (in memory here; Redis in TestAttackCRLFileRolledBackRedis).
func TestAttackCRLFileRolledBackLedger(t *testing.T) {
	l := &memCRLLedger{}
	f, r2, g, n, newest := crlRollbackAttack(t, true, func(c *Config) { c.CRLLedger = l })
	checkRollbackRefused(t, f, g, r2, n, newest)
}

// TestAttackCRLFileRolledBackRedis: the same over the real Redis (GMGATE_REDIS_ADDR; fails
// under GMGATE_REQUIRE_SERVICES=1 without it), with the store's record deleted: only Redis
// remembers the last CRL.
func TestAttackCRLFileRolledBackRedis(t *testing.T) {
	addr := testenv.RedisAddr(t)
	c := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { c.Close() })
	prefix := fmt.Sprintf("gmgate:enroll:test%d:crl:", time.Now().UnixNano())
	l := RedisCRLLedger{abuse.RedisStore{Client: c, Prefix: prefix, Timeout: time.Second}}
	f, r2, g, n, newest := crlRollbackAttack(t, true, func(c *Config) { c.CRLLedger = l })
	checkRollbackRefused(t, f, g, r2, n, newest)
	// A mark never replaces a newer one.
	ctx := context.Background()
	ca := caID(f.root.Cert.Raw)
	last, err := l.LoadCRLMark(ctx, ca)
	if err != nil || last == nil || last.Count != 4 {
		t.Fatalf("mark in Redis: %+v %v", last, err)
	}
	if err := l.StoreCRLMark(ctx, ca, CRLMark{Number: "1", Count: 0}); err != nil {
		t.Fatal(err)
	}
	if m, err := l.LoadCRLMark(ctx, ca); err != nil || *m != *last {
		t.Fatalf("an older mark replaced the newer: %+v %v", m, err)
	}
}

// memCRLLedger is a CRLLedger in memory.
type memCRLLedger struct {
	m map[string]CRLMark
}

func (l *memCRLLedger) LoadCRLMark(_ context.Context, ca string) (*CRLMark, error) {
	m, ok := l.m[ca]
	if !ok {
		return nil, nil
	}
	return &m, nil
}

func (l *memCRLLedger) StoreCRLMark(_ context.Context, ca string, m CRLMark) error {
	if l.m == nil {
		l.m = map[string]CRLMark{}
	}
	l.m[ca] = m
	return nil
}
