package platform

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/redis/go-redis/v9"

	"github.com/gmgate/gmgate/cosign"
	"github.com/gmgate/gmgate/gateway"
	"github.com/gmgate/gmgate/internal/testenv"
	"github.com/gmgate/gmgate/refusal"
	"github.com/gmgate/gmgate/sealstore"
)

// Tests of the shared abuse-control state against the real Redis deployments scripts/test.sh
// starts (one server: GMGATE_REDIS_ADDR; a 3-master Cluster: GMGATE_REDIS_CLUSTER_ADDRS). They
// fail without them under GMGATE_REQUIRE_SERVICES=1.

// testPoints is the caddymodule adapter of gm_verify's replay store (cosignPoints).
type testPoints struct{ gateway.ReplayStore }

func (p testPoints) CheckAndStore(ctx context.Context, keyID, nonce string, ttl time.Duration) error {
	err := p.ReplayStore.CheckAndStore(ctx, keyID, nonce, ttl)
	if errors.Is(err, gateway.ErrReplay) {
		return fmt.Errorf("%w: %v", cosign.ErrReused, err)
	}
	return err
}

// redisDeployments returns the configurations to test: the single server and, when started,
// the Cluster.
func redisDeployments(t *testing.T) map[string]*gateway.RedisConfig {
	t.Helper()
	out := map[string]*gateway.RedisConfig{}
	if a := os.Getenv("GMGATE_REDIS_ADDR"); a != "" {
		out["single"] = &gateway.RedisConfig{Addrs: []string{a}}
	} else {
		out["single"] = &gateway.RedisConfig{Addrs: []string{testenv.StartRedis(t)}}
	}
	if c := os.Getenv("GMGATE_REDIS_CLUSTER_ADDRS"); c != "" {
		out["cluster"] = &gateway.RedisConfig{Mode: gateway.RedisCluster, Addrs: strings.Split(c, ",")}
	} else if testenv.Required() {
		t.Fatal("GMGATE_REDIS_CLUSTER_ADDRS unset and GMGATE_REQUIRE_SERVICES=1 (scripts/test.sh starts a Cluster)")
	}
	return out
}

// sharedState builds an instance's shared state with a client of its own.
func sharedState(t *testing.T, conf *gateway.RedisConfig, prefix string) *SharedState {
	t.Helper()
	c, err := conf.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	pts, err := gateway.NewRedisReplayStore(gateway.RedisReplayOptions{Client: c, Prefix: prefix + "pt:", Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	st, err := NewSharedState(SharedStateOptions{Client: c, Prefix: prefix, Timeout: time.Second, Points: testPoints{pts}})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// twoInstances returns two services sharing one share store and one Redis (each its own
// client), like two gmgate instances behind a load balancer.
func twoInstances(t *testing.T, conf *gateway.RedisConfig, mod func(*Config)) (a, b *fixture) {
	prefix := fmt.Sprintf("gmgate:cosign:test%d:", time.Now().UnixNano()) // fresh keys on a reused Redis
	shares := &memShares{m: map[string][]sealstore.Version{}}
	mk := func() *fixture {
		return newFixture(t, func(c *Config) {
			c.Shares = shares
			c.Shared = sharedState(t, conf, prefix)
			if mod != nil {
				mod(c)
			}
		})
	}
	return mk(), mk()
}

// TestSharedStateTwoInstances: a Q_1 (or T_1) used on instance A is refused on B, a lockout
// reached through A (or by failures spread over A and B) holds on B, and the rate limit is one
// for both; on a single Redis and on a Cluster.
func TestSharedStateTwoInstances(t *testing.T) {
	for name, conf := range redisDeployments(t) {
		t.Run(name, func(t *testing.T) {
			a, b := twoInstances(t, conf, func(c *Config) {
				c.RatePerMinute, c.Burst, c.MaxFailures, c.Lockout = 1, 6, 3, time.Hour
			})
			// freshness: the same Q_1 on A then on B
			tm := a.enroll("term-fresh")
			e, _ := cosign.Digest(tm.pub, nil, []byte("pay 1.00 CNY"))
			sg, _ := cosign.StartSign(rand.Reader, tm.pub, e)
			req := Request{KeyID: tm.id, E: e, Q1: sg.Q1()}
			if _, code := a.call(OpSign, a.token(tm.id, OpSign), req); code != refusal.OK {
				t.Fatalf("first use on A: %s", code)
			}
			if _, code := b.call(OpSign, b.token(tm.id, OpSign), req); code != CodeReusedPoint {
				t.Fatalf("Q_1 replayed on B: %s, want %s", code, CodeReusedPoint)
			}
			dc, _ := cosign.StartDecrypt(rand.Reader, mustEncrypt(t, tm))
			dreq := Request{KeyID: tm.id, T1: dc.T1()}
			if _, code := b.call(OpDecrypt, b.token(tm.id, OpDecrypt), dreq); code != refusal.OK {
				t.Fatalf("decrypt on B: %s", code)
			}
			if _, code := a.call(OpDecrypt, a.token(tm.id, OpDecrypt), dreq); code != CodeReusedPoint {
				t.Fatalf("T_1 replayed on A: %s", code)
			}

			// lockout reached through A holds on B
			tl := a.enroll("term-lock")
			bad := func(f *fixture) refusal.Code {
				_, code := f.sign(tl, f.token(tl.id, OpSign), []byte("x"), func(r *Request) { r.Q1 = []byte{4, 1, 2} })
				return code
			}
			for i := 0; i < 3; i++ {
				if code := bad(a); code != CodeInvalidPoint {
					t.Fatalf("failure %d on A: %s", i, code)
				}
			}
			if _, code := b.sign(tl, b.token(tl.id, OpSign), []byte("pay"), nil); code != CodeLocked {
				t.Fatalf("after a lockout through A, B answers %s, want %s", code, CodeLocked)
			}
			// failures spread over both instances count together
			ts := a.enroll("term-spread")
			for i, f := range []*fixture{a, b} {
				if _, code := f.sign(ts, f.token(ts.id, OpSign), []byte("x"), func(r *Request) { r.Q1 = []byte{4} }); code != CodeInvalidPoint {
					t.Fatalf("failure %d: %s", i, code)
				}
			}
			if _, code := a.sign(ts, a.token(ts.id, OpSign), []byte("x"), func(r *Request) { r.Q1 = []byte{4} }); code != CodeInvalidPoint {
				t.Fatal(code)
			}
			for _, f := range []*fixture{a, b} {
				if _, code := f.sign(ts, f.token(ts.id, OpSign), []byte("pay"), nil); code != CodeLocked {
					t.Fatalf("failures spread over A and B: %s, want %s", code, CodeLocked)
				}
			}
			// a success on one instance resets the count for both
			tr := a.enroll("term-reset")
			for i := 0; i < 2; i++ {
				a.sign(tr, a.token(tr.id, OpSign), []byte("x"), func(r *Request) { r.Q1 = []byte{4} })
			}
			if _, code := b.sign(tr, b.token(tr.id, OpSign), []byte("pay"), nil); code != refusal.OK {
				t.Fatalf("success on B: %s", code)
			}
			if _, code := a.sign(tr, a.token(tr.id, OpSign), []byte("x"), func(r *Request) { r.Q1 = []byte{4} }); code != CodeInvalidPoint {
				t.Fatalf("after the reset, one failure is not a lockout: %s", code)
			}

			// the rate is global: a burst of 6 (keygen took one), then both refuse
			tq := a.enroll("term-rate")
			var ok, limited int
			for i := 0; i < 10; i++ {
				f := []*fixture{a, b}[i%2]
				switch _, code := f.sign(tq, f.token(tq.id, OpSign), []byte(fmt.Sprint("pay ", i)), nil); code {
				case refusal.OK:
					ok++
				case CodeRateLimited:
					limited++
				default:
					t.Fatalf("request %d: %s", i, code)
				}
			}
			if ok != 5 || limited != 5 {
				t.Fatalf("over two instances with burst 6 after keygen: %d admitted, %d limited; want 5 and 5", ok, limited)
			}
		})
	}
}

func mustEncrypt(t *testing.T, tm *terminal) []byte {
	t.Helper()
	ct, err := sm2.EncryptASN1(rand.Reader, tm.pub, []byte("card 6222 0000"))
	if err != nil {
		t.Fatal(err)
	}
	return ct
}

// callQuiet is call for goroutines: it returns the code and never fails the test itself.
func (f *fixture) callQuiet(op, token string, req any) refusal.Code {
	body, _ := json.Marshal(req)
	r := httptest.NewRequest(http.MethodPost, "/cosign/"+op, bytes.NewReader(body))
	r.Header.Set("Authorization", "Bearer "+token)
	w := httptest.NewRecorder()
	f.svc.ServeHTTP(w, r)
	if w.Code == http.StatusOK {
		return refusal.OK
	}
	code, _, _ := refusal.ParseBody(w.Body.Bytes())
	return refusal.Code(code)
}

// TestSharedStateConcurrentReplay: one Q_1 sent many times at once to two instances is
// co-signed exactly once.
func TestSharedStateConcurrentReplay(t *testing.T) {
	for name, conf := range redisDeployments(t) {
		t.Run(name, func(t *testing.T) {
			a, b := twoInstances(t, conf, func(c *Config) {
				c.RatePerMinute, c.Burst, c.MaxFailures, c.Observe = 1<<20, 1<<20, 100, nil
			})
			tm := a.enroll("term-race")
			e, _ := cosign.Digest(tm.pub, nil, []byte("pay"))
			sg, _ := cosign.StartSign(rand.Reader, tm.pub, e)
			req := Request{KeyID: tm.id, E: e, Q1: sg.Q1()}
			tokA, tokB := a.token(tm.id, OpSign), b.token(tm.id, OpSign)
			var okN, reused atomic.Int32
			var wg sync.WaitGroup
			for i := 0; i < 16; i++ {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					f, tok := a, tokA
					if i%2 == 1 {
						f, tok = b, tokB
					}
					switch code := f.callQuiet(OpSign, tok, req); code {
					case refusal.OK:
						okN.Add(1)
					case CodeReusedPoint:
						reused.Add(1)
					default:
						t.Errorf("request %d: %s", i, code)
					}
				}(i)
			}
			wg.Wait()
			if okN.Load() != 1 || reused.Load() != 15 {
				t.Fatalf("one Q_1 sent 16 times over two instances: %d co-signed, %d refused as reused; want 1 and 15", okN.Load(), reused.Load())
			}
		})
	}
}

// TestSharedStateRedisDownFailsClosed: with its Redis stopped, the service refuses every
// co-operation (503 cosign_unavailable) within the timeout and reports the failure.
func TestSharedStateRedisDownFailsClosed(t *testing.T) {
	addr := testenv.StartRedis(t)
	conf := &gateway.RedisConfig{Addrs: []string{addr}, Timeout: 200 * time.Millisecond}
	var mu sync.Mutex
	var states []string
	a, _ := twoInstances(t, conf, func(c *Config) {
		c.OnStateError = func(state string, err error) {
			mu.Lock()
			states = append(states, state)
			mu.Unlock()
		}
	})
	tm := a.enroll("term-down")
	if _, code := a.sign(tm, a.token(tm.id, OpSign), []byte("pay"), nil); code != refusal.OK {
		t.Fatalf("with Redis up: %s", code)
	}
	c := redis.NewClient(&redis.Options{Addr: addr})
	c.Do(context.Background(), "SHUTDOWN", "NOSAVE")
	c.Close()
	start := time.Now()
	if _, code := a.sign(tm, a.token(tm.id, OpSign), []byte("pay"), nil); code != CodeUnavailable {
		t.Fatalf("with Redis down: %s, want %s", code, CodeUnavailable)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("refusal took %v: the timeout is not applied", el)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(states) == 0 || states[0] != "limits" {
		t.Fatalf("state errors reported: %v, want limits", states)
	}
}

// TestSharedStatePointsDownFailsClosed: a point store that fails refuses the request (it is
// never co-signed unchecked).
func TestSharedStatePointsDownFailsClosed(t *testing.T) {
	addr := testenv.StartRedis(t)
	c := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { c.Close() })
	st, err := NewSharedState(SharedStateOptions{Client: c, Points: failingPoints{}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	f := newFixture(t, func(cfg *Config) {
		cfg.Shared = st
		cfg.OnStateError = func(state string, err error) { got = append(got, state) }
	})
	tm := f.enroll(fmt.Sprint("term-pts-", time.Now().UnixNano()))
	if _, code := f.sign(tm, f.token(tm.id, OpSign), []byte("pay"), nil); code != CodeUnavailable {
		t.Fatalf("point store down: %s, want %s", code, CodeUnavailable)
	}
	if len(got) != 1 || got[0] != "points" {
		t.Fatalf("state errors %v", got)
	}
}

type failingPoints struct{}

func (failingPoints) CheckAndStore(context.Context, string, string, time.Duration) error {
	return errors.New("redis: connection refused")
}

// TestSharedStateOptions: no client, no point store, a prefix with a hash tag or too long are
// refused (the key layout under the prefix is internal/abuse's TestRedisOptions).
func TestSharedStateOptions(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	for _, o := range []SharedStateOptions{
		{},
		{Client: c},
		{Points: failingPoints{}},
		{Client: c, Points: failingPoints{}, Prefix: "a{b}:"},
		{Client: c, Points: failingPoints{}, Prefix: strings.Repeat("p", 200)},
	} {
		if _, err := NewSharedState(o); err == nil {
			t.Errorf("options %+v accepted", o)
		}
	}
	if _, err := NewSharedState(SharedStateOptions{Client: c, Points: failingPoints{}}); err != nil {
		t.Fatal(err)
	}
}
