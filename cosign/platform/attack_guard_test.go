package platform

import (
	"fmt"
	"testing"
	"time"

	"github.com/gmgate/gmgate/refusal"
)

// TestAttackKeyTableFilledUnauthenticated: an unauthenticated client sends one request without
// a session for each of MaxKeys key IDs it makes up (each refused cosign_unauthenticated and
// counted as a failure). Those entries were never pruned, so every terminal not tracked at
// that moment got cosign_unavailable from then on, until gmgate restarted. The limiter now
// evicts an entry that is not locked out: the genuine terminal signs.
func TestAttackKeyTableFilledUnauthenticated(t *testing.T) {
	const max = 50
	f := newFixture(t, func(c *Config) { c.MaxKeys = max })
	tm := f.enroll("term-genuine")
	f.now = f.now.Add(time.Hour) // the terminal is idle for a while: its entry may be pruned
	for i := 0; i < 3*max; i++ {
		if _, c := f.call(OpSign, "", Request{KeyID: fmt.Sprintf("made-up-%04d", i)}); c != CodeUnauthenticated && c != CodeMalformedRequest && c != CodeUnavailable {
			t.Fatalf("made-up key %d: %s", i, c)
		}
	}
	if _, c := f.sign(tm, f.token(tm.id, OpSign), []byte("pay 1.00 CNY"), nil); c != refusal.OK {
		t.Fatalf("the genuine terminal after the flood: %s", c)
	}
}
