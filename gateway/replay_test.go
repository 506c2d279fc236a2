package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gmgate/gmgate/signing"
	"github.com/redis/go-redis/v9"
)

// fakeClock is a settable clock safe for concurrent use.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock(t time.Time) *fakeClock { c := &fakeClock{}; c.ns.Store(t.UnixNano()); return c }
func (c *fakeClock) Now() time.Time       { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Add(d time.Duration)  { c.ns.Add(int64(d)) }

func TestReplayGuardCheck(t *testing.T) {
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name   string
		keyID  string
		nonce  string
		ts     time.Time
		window time.Duration
		want   error
	}{
		{"now", "k", "n1", base, 0, nil},
		{"4m59 old", "k", "n2", base.Add(-4*time.Minute - 59*time.Second), 0, nil},
		{"exactly window old", "k", "n3", base.Add(-5 * time.Minute), 0, nil},
		{"5m01 old", "k", "n4", base.Add(-5*time.Minute - time.Second), 0, ErrTimestampOutOfWindow},
		{"5m01 future", "k", "n5", base.Add(5*time.Minute + time.Second), 0, ErrTimestampOutOfWindow},
		{"custom window", "k", "n6", base.Add(-2 * time.Minute), time.Minute, ErrTimestampOutOfWindow},
		{"zero time", "k", "n7", time.Time{}, 0, ErrTimestampOutOfWindow},
		{"empty nonce", "k", "", base, 0, ErrNonceInvalid},
		{"nonce too long", "k", strings.Repeat("x", MaxNonceLen+1), base, 0, ErrNonceInvalid},
		{"nonce max", "k", strings.Repeat("x", MaxNonceLen), base, 0, nil},
		{"key id too long", strings.Repeat("k", MaxKeyIDLen+1), "n8", base, 0, ErrNonceInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := NewMemoryReplayStore(MemoryReplayOptions{SweepInterval: -1})
			defer st.Close()
			g := &ReplayGuard{Store: st, Window: tc.window, Now: func() time.Time { return base }}
			err := g.Check(context.Background(), tc.keyID, tc.nonce, tc.ts)
			if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Fatalf("Check = %v, want %v", err, tc.want)
			}
			if tc.want == nil {
				if err := g.Check(context.Background(), tc.keyID, tc.nonce, tc.ts); !errors.Is(err, ErrReplay) {
					t.Fatalf("second Check = %v, want ErrReplay", err)
				}
			}
		})
	}
}

func TestMemoryStoreReplayAndExpiry(t *testing.T) {
	clk := newFakeClock(time.Unix(1_700_000_000, 0))
	st := NewMemoryReplayStore(MemoryReplayOptions{SweepInterval: -1, Now: clk.Now})
	defer st.Close()
	ctx := context.Background()
	ttl := 10 * time.Minute
	if err := st.CheckAndStore(ctx, "a", "n", ttl); err != nil {
		t.Fatal(err)
	}
	if err := st.CheckAndStore(ctx, "a", "n", ttl); !errors.Is(err, ErrReplay) {
		t.Fatalf("replay = %v", err)
	}
	// Same nonce, other key, and ambiguous concatenations are distinct.
	for _, kn := range [][2]string{{"b", "n"}, {"an", ""}, {"", "an"}} {
		if err := st.CheckAndStore(ctx, kn[0], kn[1], ttl); err != nil {
			t.Fatalf("%q/%q: %v", kn[0], kn[1], err)
		}
	}
	clk.Add(ttl - time.Nanosecond)
	if err := st.CheckAndStore(ctx, "a", "n", ttl); !errors.Is(err, ErrReplay) {
		t.Fatalf("replay just before expiry = %v", err)
	}
	clk.Add(time.Nanosecond)
	if err := st.CheckAndStore(ctx, "a", "n", ttl); err != nil {
		t.Fatalf("after expiry = %v", err)
	}
	if n := st.Len(); n != 4 {
		t.Fatalf("Len = %d, want 4", n)
	}
	clk.Add(ttl)
	st.Sweep()
	if n := st.Len(); n != 0 {
		t.Fatalf("Len after sweep = %d, want 0", n)
	}
}

func TestMemoryStoreFullFailsClosed(t *testing.T) {
	clk := newFakeClock(time.Unix(1_700_000_000, 0))
	st := NewMemoryReplayStore(MemoryReplayOptions{MaxEntries: 128, SweepInterval: -1, Now: clk.Now})
	defer st.Close()
	ctx := context.Background()
	var stored []string
	full := 0
	for i := 0; i < 2000; i++ {
		n := fmt.Sprint("n", i)
		err := st.CheckAndStore(ctx, "k", n, time.Minute)
		switch {
		case err == nil:
			stored = append(stored, n)
		case errors.Is(err, ErrReplayStoreFull):
			full++
		default:
			t.Fatal(err)
		}
	}
	if len(stored) != 128 || full != 2000-128 || st.Len() != 128 {
		t.Fatalf("stored %d refused %d len %d; want 128 stored", len(stored), full, st.Len())
	}
	// No live entry was evicted.
	for _, n := range stored {
		if err := st.CheckAndStore(ctx, "k", n, time.Minute); !errors.Is(err, ErrReplay) {
			t.Fatalf("live nonce %s forgotten: %v", n, err)
		}
	}
	// FailOpen never accepts when the store is full.
	g := &ReplayGuard{Store: st, FailOpen: true, Now: clk.Now}
	refused := 0
	for i := 0; i < 50; i++ {
		if err := g.Check(ctx, "k", fmt.Sprint("x", i), clk.Now()); errors.Is(err, ErrReplayStoreFull) {
			refused++
		}
	}
	if refused != 50 {
		t.Fatalf("FailOpen guard accepted %d nonces on a full store", 50-refused)
	}
	// Once entries expire, space is reclaimed without a sweeper.
	clk.Add(time.Minute)
	for i := 0; i < 128; i++ {
		if err := st.CheckAndStore(ctx, "k", fmt.Sprint("m", i), time.Minute); err != nil && !errors.Is(err, ErrReplayStoreFull) {
			t.Fatal(err)
		}
	}
	if st.Len() == 0 || st.Len() > 128 {
		t.Fatalf("Len after expiry = %d", st.Len())
	}
}

func TestMemoryStoreBackgroundSweep(t *testing.T) {
	st := NewMemoryReplayStore(MemoryReplayOptions{SweepInterval: 10 * time.Millisecond})
	defer st.Close()
	for i := 0; i < 100; i++ {
		if err := st.CheckAndStore(context.Background(), "k", fmt.Sprint(i), time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for st.Len() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("sweeper left %d entries", st.Len())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestMemoryStoreConcurrentExactlyOnce(t *testing.T) {
	st := NewMemoryReplayStore(MemoryReplayOptions{})
	defer st.Close()
	g := &ReplayGuard{Store: st}
	const nonces, workers = 20, 16
	var accepted [nonces]atomic.Int32
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < nonces; i++ {
				err := g.Check(context.Background(), "key", fmt.Sprint("nonce-", i), time.Now())
				if err == nil {
					accepted[i].Add(1)
				} else if !errors.Is(err, ErrReplay) {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	for i := range accepted {
		if n := accepted[i].Load(); n != 1 {
			t.Fatalf("nonce %d accepted %d times", i, n)
		}
	}
}

// errStore always fails like an unreachable backend.
type errStore struct{ err error }

func (e errStore) CheckAndStore(context.Context, string, string, time.Duration) error { return e.err }
func (errStore) Close() error                                                         { return nil }

func TestReplayGuardStoreFailure(t *testing.T) {
	ctx := context.Background()
	closed := NewMemoryReplayStore(MemoryReplayOptions{})
	closed.Close()
	tests := []struct {
		name     string
		store    ReplayStore
		failOpen bool
		want     error
	}{
		{"closed store fails closed", closed, false, ErrReplayStoreUnavailable},
		{"closed store fail open", closed, true, nil},
		{"opaque error is unavailable", errStore{errors.New("boom")}, false, ErrReplayStoreUnavailable},
		{"opaque error fail open", errStore{errors.New("boom")}, true, nil},
		{"full never fails open", errStore{ErrReplayStoreFull}, true, ErrReplayStoreFull},
		{"nil store", nil, false, ErrReplayStoreUnavailable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var seen int
			g := &ReplayGuard{Store: tc.store, FailOpen: tc.failOpen, OnStoreError: func(error) { seen++ }}
			err := g.Check(ctx, "k", "n", time.Now())
			if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Fatalf("Check = %v, want %v", err, tc.want)
			}
			if tc.store != nil && seen != 1 {
				t.Fatalf("OnStoreError called %d times", seen)
			}
		})
	}
}

func newRedisGuard(t *testing.T, addr string, failOpen bool) (*ReplayGuard, *RedisReplayStore) {
	t.Helper()
	g, st := newRedisGuardTB(t, addr)
	g.FailOpen = failOpen
	return g, st
}

func newRedisGuardTB(t testing.TB, addr string) (*ReplayGuard, *RedisReplayStore) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 32, DialTimeout: 200 * time.Millisecond, MaxRetries: -1})
	st, err := NewRedisReplayStore(RedisReplayOptions{Client: c, Prefix: "gmgate-test:" + t.Name() + ":", Timeout: 5 * time.Second, CloseClient: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &ReplayGuard{Store: st}, st
}

// TestRedisTwoGuardsExactlyOnce is the proof of issue 4: two verifier
// instances with separate Redis clients share one real Redis; every
// (keyID, nonce) sent many times concurrently to both is accepted once.
func TestRedisTwoGuardsExactlyOnce(t *testing.T) {
	addr := sharedRedisAddr(t)
	g1, _ := newRedisGuard(t, addr, false)
	g2, _ := newRedisGuard(t, addr, false)
	run := fmt.Sprint(time.Now().UnixNano()) // fresh nonces if the Redis is reused
	const nonces, perGuard = 50, 12
	var accepted [nonces]atomic.Int32
	var replays atomic.Int32
	var wg sync.WaitGroup
	for _, g := range []*ReplayGuard{g1, g2} {
		for w := 0; w < perGuard; w++ {
			wg.Add(1)
			go func(g *ReplayGuard) {
				defer wg.Done()
				for i := 0; i < nonces; i++ {
					err := g.Check(context.Background(), "merchant-1", fmt.Sprint(run, "-", i), time.Now())
					switch {
					case err == nil:
						accepted[i].Add(1)
					case errors.Is(err, ErrReplay):
						replays.Add(1)
					default:
						t.Error(err)
					}
				}
			}(g)
		}
	}
	wg.Wait()
	for i := range accepted {
		if n := accepted[i].Load(); n != 1 {
			t.Fatalf("nonce %d accepted %d times, want exactly 1", i, n)
		}
	}
	if want := int32(nonces * (2*perGuard - 1)); replays.Load() != want {
		t.Fatalf("replays = %d, want %d", replays.Load(), want)
	}
}

func TestRedisKeyAndTTL(t *testing.T) {
	addr := sharedRedisAddr(t)
	g, st := newRedisGuard(t, addr, false)
	g.Window = 3 * time.Second
	nonce := fmt.Sprint("ttl-", time.Now().UnixNano())
	if err := g.Check(context.Background(), "k", nonce, time.Now()); err != nil {
		t.Fatal(err)
	}
	key := st.Key("k", nonce)
	if len(key) != len(st.prefix)+64 || len(st.Key("k", strings.Repeat("z", 1<<16))) != len(key) {
		t.Fatalf("key length not fixed: %q", key)
	}
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	pttl, err := c.PTTL(context.Background(), key).Result()
	if err != nil {
		t.Fatal(err)
	}
	if pttl <= 6*time.Second || pttl > 6*time.Second+DefaultClockSkew {
		t.Fatalf("PTTL = %v, want in (2 × window, 2 × window + skew]", pttl)
	}
	if err := c.PExpire(context.Background(), key, time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	if err := g.Check(context.Background(), "k", nonce, time.Now()); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
}

// TestRedisStoppedFailsClosed stops a private Redis: the guard must then
// refuse (503 path) unless FailOpen.
func TestRedisStoppedFailsClosed(t *testing.T) {
	srv := startRedis(t)
	closedG, _ := newRedisGuard(t, srv.Addr, false)
	openG, _ := newRedisGuard(t, srv.Addr, true)
	ctx := context.Background()
	if err := closedG.Check(ctx, "k", "before", time.Now()); err != nil {
		t.Fatalf("with redis up: %v", err)
	}
	srv.Stop()
	start := time.Now()
	if err := closedG.Check(ctx, "k", "after", time.Now()); !errors.Is(err, ErrReplayStoreUnavailable) {
		t.Fatalf("with redis down = %v, want ErrReplayStoreUnavailable", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("fail-closed took %v; timeout not applied", el)
	}
	if err := openG.Check(ctx, "k", "after", time.Now()); err != nil {
		t.Fatalf("FailOpen guard with redis down = %v, want nil", err)
	}
	if err := closedG.Check(ctx, "k", "before", time.Now().Add(-10*time.Minute)); !errors.Is(err, ErrTimestampOutOfWindow) {
		t.Fatalf("window still checked first: %v", err)
	}
}

func TestRedisStoreOptions(t *testing.T) {
	if _, err := NewRedisReplayStore(RedisReplayOptions{}); err == nil {
		t.Fatal("nil client accepted")
	}
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	if _, err := NewRedisReplayStore(RedisReplayOptions{Client: c, Prefix: strings.Repeat("p", 200)}); err == nil {
		t.Fatal("long prefix accepted")
	}
}

// TestHTTPSigExpiresEnforced: an http-sig-sm2 request whose signed "expires" has passed is
// refused (timestamp_out_of_window) even inside the replay window, and does not consume its
// nonce; before, expires was parsed and ignored.
func TestHTTPSigExpiresEnforced(t *testing.T) {
	p := newTestPKI(t)
	now := time.Now()
	scheme := signing.NewHTTPSig(signing.WithValidity(10 * time.Second))
	v := newTestVerifier(t, p, func(o *VerifierOptions) {
		o.Scheme = scheme
		o.Replay.Now = func() time.Time { return now.Add(2 * time.Minute) } // inside the 5m window
	})
	m := &signing.Message{Kind: signing.Request, Method: http.MethodPost, Target: "/pay", Authority: "gw.example",
		Scheme: "http", Header: http.Header{"Content-Type": {"application/json"}}, Body: []byte(`{"a":1}`)}
	key := signing.Key{Signer: p.good.Sign.Key, Cert: p.good.Sign.Cert, KeyID: signing.SerialHex(p.good.Sign.Cert.SerialNumber)}
	if err := scheme.Sign(m, key, now, ""); err != nil {
		t.Fatal(err)
	}
	send := func() error {
		r := httptest.NewRequest(http.MethodPost, "/pay", strings.NewReader(string(m.Body)))
		r.Host = "gw.example"
		r.Header = m.Header.Clone()
		_, err := v.Verify(context.Background(), r, nil)
		return err
	}
	if err := send(); CodeOf(err) != CodeTimestampOutOfWindow {
		t.Fatalf("expired signature: %v", err)
	}
	v.o.Replay.Now = func() time.Time { return now.Add(5 * time.Second) }
	if err := send(); err != nil {
		t.Fatalf("the same request before its expiry: %v (its nonce must not have been consumed)", err)
	}
}
