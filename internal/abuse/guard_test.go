package abuse

import (
	"context"
	"testing"
	"time"
)

// TestGuard: the burst is admitted then the rate; the maxFailures-th consecutive failure locks
// the key for the lockout (a success in between resets the count); a full table refuses new
// keys until idle entries can be pruned; failures of a key never admitted count too.
func TestGuard(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	g := NewGuard(Limits{RatePerMinute: 60, Burst: 3, MaxFailures: 3, Lockout: time.Minute, MaxKeys: 2})
	for i := 0; i < 3; i++ {
		if v := g.admit("a", now); v != Allowed {
			t.Fatalf("burst %d: %v", i, v)
		}
	}
	if v := g.admit("a", now); v != RateLimited {
		t.Fatalf("past the burst: %v", v)
	}
	if v := g.admit("a", now.Add(time.Second)); v != Allowed {
		t.Fatalf("one second later: %v", v)
	}
	g.fail("a", now)
	g.fail("a", now)
	g.Succeed(context.Background(), "a")
	if g.fail("a", now) || g.fail("a", now) {
		t.Fatal("locked before max_failures consecutive failures")
	}
	if !g.fail("a", now) {
		t.Fatal("not locked at the third consecutive failure")
	}
	if v := g.admit("a", now.Add(30*time.Second)); v != Locked || !locked(g, "a", now) {
		t.Fatalf("during the lockout: %v", v)
	}
	if v := g.admit("a", now.Add(61*time.Second)); v != Allowed {
		t.Fatalf("after the lockout: %v", v)
	}
	if g.fail("b", now); g.fail("b", now) || !g.fail("b", now) {
		t.Fatal("failures of a key never admitted")
	}
	if v := g.admit("c", now); v != Full {
		t.Fatalf("third key in a table of 2 busy ones: %v", v)
	}
	g2 := NewGuard(Limits{RatePerMinute: 60, Burst: 1, Lockout: time.Minute, MaxKeys: 1})
	g2.admit("x", now)
	if v := g2.admit("y", now.Add(time.Minute)); v != Allowed {
		t.Fatalf("idle entry not pruned: %v", v)
	}
	for i := 0; i < 10; i++ {
		if g2.fail("y", now) {
			t.Fatal("maxFailures 0 locked")
		}
	}
}

func locked(g *Guard, key string, now time.Time) bool {
	l, _ := g.Locked(context.Background(), key, now)
	return l
}
