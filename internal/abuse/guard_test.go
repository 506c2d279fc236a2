package abuse

import (
	"testing"
	"time"
)

// TestGuard: the burst is admitted then the rate; the maxFailures-th consecutive failure locks
// the key for the lockout (a success in between resets the count); a full table refuses new
// keys until idle entries can be pruned; failures of a key never admitted count too.
func TestGuard(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	g := NewGuard(60, 3, 3, time.Minute, 2)
	for i := 0; i < 3; i++ {
		if v := g.Admit("a", now); v != Allowed {
			t.Fatalf("burst %d: %v", i, v)
		}
	}
	if v := g.Admit("a", now); v != RateLimited {
		t.Fatalf("past the burst: %v", v)
	}
	if v := g.Admit("a", now.Add(time.Second)); v != Allowed {
		t.Fatalf("one second later: %v", v)
	}
	g.Fail("a", now)
	g.Fail("a", now)
	g.Succeed("a")
	if g.Fail("a", now) || g.Fail("a", now) {
		t.Fatal("locked before max_failures consecutive failures")
	}
	if !g.Fail("a", now) {
		t.Fatal("not locked at the third consecutive failure")
	}
	if v := g.Admit("a", now.Add(30*time.Second)); v != Locked || !g.Locked("a", now) {
		t.Fatalf("during the lockout: %v", v)
	}
	if v := g.Admit("a", now.Add(61*time.Second)); v != Allowed {
		t.Fatalf("after the lockout: %v", v)
	}
	if g.Fail("b", now); g.Fail("b", now) || !g.Fail("b", now) {
		t.Fatal("failures of a key never admitted")
	}
	if v := g.Admit("c", now); v != Full {
		t.Fatalf("third key in a table of 2 busy ones: %v", v)
	}
	g2 := NewGuard(60, 1, 0, time.Minute, 1)
	g2.Admit("x", now)
	if v := g2.Admit("y", now.Add(time.Minute)); v != Allowed {
		t.Fatalf("idle entry not pruned: %v", v)
	}
	for i := 0; i < 10; i++ {
		if g2.Fail("y", now) {
			t.Fatal("maxFailures 0 locked")
		}
	}
}
