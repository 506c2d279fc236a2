package gateway

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestAttackReplayAtWindowEdge: a captured request is replayed when its nonce has just been
// forgotten while its timestamp is still inside the window. Nonces used to be remembered for
// exactly 2 × window after the check: a request signed at the window's future edge (a terminal
// clock ahead) was accepted again at that very instant, and an instance whose clock is behind
// the one that accepted it kept accepting the timestamp for as long as the clocks differ, after
// the shared store had dropped the nonce. Nonces are now kept 2 × window + ClockSkew.
func TestAttackReplayAtWindowEdge(t *testing.T) {
	const w = 5 * time.Minute
	base := time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)
	ctx := context.Background()

	t.Run("one instance, the future edge", func(t *testing.T) {
		clk := newFakeClock(base)
		st := NewMemoryReplayStore(MemoryReplayOptions{SweepInterval: -1, Now: clk.Now})
		defer st.Close()
		g := &ReplayGuard{Store: st, Window: w, Now: clk.Now}
		ts := base.Add(w) // signed by a terminal whose clock runs a window ahead
		if err := g.Check(ctx, "fp", "n-edge", ts); err != nil {
			t.Fatalf("genuine request: %v", err)
		}
		clk.Add(2 * w) // ts is exactly one window old: still accepted
		if err := g.Check(ctx, "fp", "n-edge", ts); !errors.Is(err, ErrReplay) {
			t.Fatalf("replay at the window edge: %v, want ErrReplay", err)
		}
	})

	t.Run("two instances, clocks 10s apart, one store", func(t *testing.T) {
		store := newFakeClock(base) // the shared store's own clock (Redis expires keys by it)
		st := NewMemoryReplayStore(MemoryReplayOptions{SweepInterval: -1, Now: store.Now})
		defer st.Close()
		ahead := &ReplayGuard{Store: st, Window: w, Now: func() time.Time { return store.Now().Add(10 * time.Second) }}
		behind := &ReplayGuard{Store: st, Window: w, Now: store.Now}
		ts := base.Add(w + 5*time.Second) // within the window of the instance that is ahead
		if err := ahead.Check(ctx, "fp", "n-skew", ts); err != nil {
			t.Fatalf("genuine request: %v", err)
		}
		store.Add(2*w + time.Second) // the store forgot the nonce
		if err := behind.Check(ctx, "fp", "n-skew", ts); !errors.Is(err, ErrReplay) {
			t.Fatalf("replay to the instance whose clock is behind: %v, want ErrReplay", err)
		}
	})

	t.Run("control: a nonce is forgotten once no instance accepts its time", func(t *testing.T) {
		clk := newFakeClock(base)
		st := NewMemoryReplayStore(MemoryReplayOptions{SweepInterval: -1, Now: clk.Now})
		defer st.Close()
		g := &ReplayGuard{Store: st, Window: w, Now: clk.Now}
		if err := g.Check(ctx, "fp", "n-old", base); err != nil {
			t.Fatal(err)
		}
		clk.Add(w + time.Second)
		if err := g.Check(ctx, "fp", "n-old", base); !errors.Is(err, ErrTimestampOutOfWindow) {
			t.Fatalf("old request: %v, want ErrTimestampOutOfWindow", err)
		}
		clk.Add(w + DefaultClockSkew)
		if n := st.Len(); n != 1 {
			t.Fatalf("store holds %d entries", n)
		}
		st.Sweep()
		if n := st.Len(); n != 0 {
			t.Fatalf("nonce kept after 2 × window + skew: %d entries", n)
		}
	})
}
