package abuse

import (
	"fmt"
	"testing"
	"time"
)

// TestAttackGuardFilledWithFailures: an unauthenticated client fills a Guard's table with
// keys it chose (gm_cosign key IDs that do not authenticate, gm_enroll client addresses from
// an IPv6 prefix), each with one failure. Such entries were never pruned (a failure count
// never expired), so every key not tracked yet, every genuine terminal, was refused (Full)
// until the process restarted. A full table now makes room by evicting an entry that is not
// locked out; a locked-out key is never evicted (its lockout holds).
func TestAttackGuardFilledWithFailures(t *testing.T) {
	const max = 64
	now := time.Unix(1_000_000, 0)
	g := NewGuard(Limits{RatePerMinute: 60, Burst: 5, MaxFailures: 3, Lockout: time.Hour, MaxKeys: max})
	// A victim key locked out by a guesser.
	for i := 0; i < 3; i++ {
		g.fail("victim", now)
	}
	for i := 0; i < 10*max; i++ {
		k := fmt.Sprintf("attacker-%d", i)
		if v := g.admit(k, now); v != Allowed && v != Full {
			t.Fatalf("%s: %v", k, v)
		}
		g.fail(k, now)
	}
	if v := g.admit("genuine-terminal", now.Add(time.Second)); v != Allowed {
		t.Fatalf("a genuine key after the table was filled with failures: %v", v)
	}
	if !locked(g, "victim", now.Add(time.Minute)) {
		t.Fatal("filling the table evicted a locked-out key: its lockout is gone")
	}
	if len(g.keys) > max {
		t.Fatalf("%d keys tracked, bound %d", len(g.keys), max)
	}
	// A table of locked-out keys only still fails closed.
	h := NewGuard(Limits{RatePerMinute: 60, Burst: 5, MaxFailures: 1, Lockout: time.Hour, MaxKeys: 2})
	h.fail("a", now)
	h.fail("b", now)
	if v := h.admit("c", now); v != Full {
		t.Fatalf("a table of locked-out keys: %v", v)
	}
}
