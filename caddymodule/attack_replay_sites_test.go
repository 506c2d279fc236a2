package caddymodule

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/gmgate/gmgate/gateway"
)

// TestAttackReplayAcrossWindows: two gm_verify sites share their nonces (the process's memory
// store, or one Redis) but have different replay windows, 1m and 10m. form-sm2 signs no path and
// wechatpay-v3-sm2 no host, so the same signed request is acceptable to both. The short site
// used to keep a nonce 2 × 1m: from then on the request was accepted once more by the long
// site, whose window still held its timestamp. Every guard now keeps nonces as long as the
// longest retention of the live gm_verify handlers.
func TestAttackReplayAcrossWindows(t *testing.T) {
	base := time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)
	var now atomic.Int64
	now.Store(base.UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	// The shared store, on the test's clock (the process's own store ticks in real time).
	shared := gateway.NewMemoryReplayStore(gateway.MemoryReplayOptions{SweepInterval: -1, Now: clock})
	defer shared.Close()

	guard := func(window time.Duration) (*gateway.ReplayGuard, *Verify) {
		h := &Verify{Replay: &ReplayConfig{Window: caddy.Duration(window)}}
		g, err := h.replayGuard()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = h.release() })
		g.Store, g.Now = shared, clock
		return g, h
	}
	short, _ := guard(time.Minute)
	long, longH := guard(10 * time.Minute)
	ctx := context.Background()
	if err := short.Check(ctx, "fp", "nonce-1", base); err != nil {
		t.Fatalf("genuine request on the short site: %v", err)
	}
	now.Add(int64(3 * time.Minute))
	if err := long.Check(ctx, "fp", "nonce-1", base); !errors.Is(err, gateway.ErrReplay) {
		t.Fatalf("the request replayed to the long-window site: %v, want ErrReplay", err)
	}

	// Once the long site is gone, its floor goes with it.
	if err := longH.release(); err != nil {
		t.Fatal(err)
	}
	if r := minRetention(); r >= 20*time.Minute {
		t.Fatalf("retention floor %v after the long site was released", r)
	}
}
