package abuse

import (
	"context"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm3"
	"github.com/redis/go-redis/v9"

	"github.com/gmgate/gmgate/internal/testenv"
)

// Tests of both Limiter implementations through one table. The Redis ones run against the
// real Redis deployments scripts/test.sh starts (one server: GMGATE_REDIS_ADDR; a 3-master
// Cluster: GMGATE_REDIS_CLUSTER_ADDRS) and fail without them under GMGATE_REQUIRE_SERVICES=1.

// limiterImpl makes two limiters as two instances would have them: the same Guard for the
// memory implementation (one process), two Redis limiters with their own clients over one
// prefix for Redis.
type limiterImpl struct {
	name string
	two  func(t *testing.T, l Limits) (a, b Limiter)
}

func limiterImpls(t *testing.T) []limiterImpl {
	impls := []limiterImpl{{"memory", func(_ *testing.T, l Limits) (Limiter, Limiter) {
		g := NewGuard(l)
		return g, g
	}}}
	client := map[string]func() redis.UniversalClient{}
	addr := testenv.RedisAddr(t)
	client["redis"] = func() redis.UniversalClient { return redis.NewClient(&redis.Options{Addr: addr}) }
	if c := testenv.RedisClusterAddrs(t); c != nil {
		client["redis-cluster"] = func() redis.UniversalClient { return redis.NewClusterClient(&redis.ClusterOptions{Addrs: c}) }
	}
	for _, name := range []string{"redis", "redis-cluster"} {
		mk := client[name]
		if mk == nil {
			continue
		}
		impls = append(impls, limiterImpl{name, func(t *testing.T, l Limits) (Limiter, Limiter) {
			prefix := fmt.Sprintf("gmgate:abuse:test%d:", time.Now().UnixNano()) // fresh keys on a reused Redis
			var out [2]Limiter
			for i := range out {
				c := mk()
				t.Cleanup(func() { c.Close() })
				r, err := NewRedis(RedisStore{Client: c, Prefix: prefix, Timeout: 2 * time.Second}, l)
				if err != nil {
					t.Fatal(err)
				}
				out[i] = r
			}
			return out[0], out[1]
		}})
	}
	return impls
}

// TestLimiters: for each implementation, with requests and failures spread over two
// instances: the burst is admitted then refused (one rate for both); the MaxFailures-th
// consecutive failure locks the key on both (a success in between resets the count); Locked
// sees the lock without taking from the rate; the lock ends after Lockout; other keys are not
// affected; MaxFailures 0 never locks; none of it fails.
func TestLimiters(t *testing.T) {
	ctx := context.Background()
	for _, impl := range limiterImpls(t) {
		t.Run(impl.name, func(t *testing.T) {
			lockout := 700 * time.Millisecond
			a, b := impl.two(t, Limits{RatePerMinute: 1, Burst: 3, MaxFailures: 3, Lockout: lockout, MaxKeys: 100})
			must := func(v Verdict, err error) Verdict {
				t.Helper()
				if err != nil {
					t.Fatal(err)
				}
				return v
			}
			mustB := func(v bool, err error) bool {
				t.Helper()
				if err != nil {
					t.Fatal(err)
				}
				return v
			}
			now := time.Now
			for i, l := range []Limiter{a, b, a} {
				if v := must(l.Admit(ctx, "rate", now())); v != Allowed {
					t.Fatalf("burst %d: %v", i, v)
				}
			}
			for i, l := range []Limiter{a, b} {
				if v := must(l.Admit(ctx, "rate", now())); v != RateLimited {
					t.Fatalf("past the burst, instance %d: %v", i, v)
				}
			}
			if v := must(b.Admit(ctx, "other", now())); v != Allowed {
				t.Fatalf("another key: %v", v)
			}

			if mustB(a.Fail(ctx, "f", now())) || mustB(b.Fail(ctx, "f", now())) {
				t.Fatal("locked before max failures")
			}
			if err := a.Succeed(ctx, "f"); err != nil {
				t.Fatal(err)
			}
			if mustB(b.Fail(ctx, "f", now())) || mustB(a.Fail(ctx, "f", now())) {
				t.Fatal("a success did not reset the failure count")
			}
			if mustB(a.Locked(ctx, "f", now())) {
				t.Fatal("locked after two failures")
			}
			if !mustB(b.Fail(ctx, "f", now())) {
				t.Fatal("the third consecutive failure (over both instances) did not lock")
			}
			locked := now()
			for i, l := range []Limiter{a, b} {
				if !mustB(l.Locked(ctx, "f", now())) {
					t.Fatalf("instance %d: not locked", i)
				}
				if v := must(l.Admit(ctx, "f", now())); v != Locked {
					t.Fatalf("instance %d: admit during the lockout: %v", i, v)
				}
			}
			if mustB(a.Locked(ctx, "other", now())) || mustB(a.Locked(ctx, "never-seen", now())) {
				t.Fatal("other keys locked")
			}
			time.Sleep(time.Until(locked.Add(lockout + 200*time.Millisecond)))
			for i, l := range []Limiter{a, b} {
				if mustB(l.Locked(ctx, "f", now())) {
					t.Fatalf("instance %d: still locked after the lockout", i)
				}
			}
			if v := must(b.Admit(ctx, "f", now())); v != Allowed {
				t.Fatalf("after the lockout: %v", v)
			}

			c, _ := impl.two(t, Limits{RatePerMinute: 60, Burst: 1, MaxFailures: 0, Lockout: time.Minute, MaxKeys: 100})
			for i := 0; i < 5; i++ {
				if mustB(c.Fail(ctx, "z", now())) {
					t.Fatal("max failures 0 locked")
				}
			}
			if mustB(c.Locked(ctx, "z", now())) {
				t.Fatal("max failures 0 locked")
			}
		})
	}
}

// TestRedisUnavailable: every operation of a Redis limiter whose Redis is down (stopped, or
// never reachable) returns an error within the timeout, never a verdict that lets the
// request through.
func TestRedisUnavailable(t *testing.T) {
	ctx := context.Background()
	addr := testenv.StartRedis(t)
	stopped := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { stopped.Close() })
	l := Limits{RatePerMinute: 60, Burst: 5, MaxFailures: 3, Lockout: time.Minute}
	r, err := NewRedis(RedisStore{Client: stopped, Prefix: "gmgate:abuse:down:", Timeout: 200 * time.Millisecond}, l)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := r.Admit(ctx, "k", time.Now()); err != nil || v != Allowed {
		t.Fatalf("with Redis up: %v %v", v, err)
	}
	stopped.Do(ctx, "SHUTDOWN", "NOSAVE")
	never := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	t.Cleanup(func() { never.Close() })
	unreachable, err := NewRedis(RedisStore{Client: never, Prefix: "p:", Timeout: 200 * time.Millisecond}, l)
	if err != nil {
		t.Fatal(err)
	}
	for name, lim := range map[string]Limiter{"stopped": r, "unreachable": unreachable} {
		start := time.Now()
		if _, err := lim.Admit(ctx, "k", time.Now()); err == nil {
			t.Errorf("%s: admit without an error", name)
		}
		if _, err := lim.Locked(ctx, "k", time.Now()); err == nil {
			t.Errorf("%s: locked without an error", name)
		}
		if _, err := lim.Fail(ctx, "k", time.Now()); err == nil {
			t.Errorf("%s: fail without an error", name)
		}
		if err := lim.Succeed(ctx, "k"); err == nil {
			t.Errorf("%s: succeed without an error", name)
		}
		if el := time.Since(start); el > 10*time.Second {
			t.Errorf("%s: %v: the timeout is not applied", name, el)
		}
	}
}

// TestRedisOptions: a store without client or with a prefix that is empty, too long or holds
// a hash tag is refused, and so are limits without a rate, a burst or a lockout; the keys of
// one limited key share one hash tag (one Cluster slot) after the prefix, fixed-length
// whatever the key, differ between keys, and keep gm_cosign's layout.
func TestRedisOptions(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	ok := Limits{RatePerMinute: 60, Burst: 10, MaxFailures: 5, Lockout: time.Minute}
	for _, s := range []RedisStore{{Prefix: "p:"}, {Client: c}, {Client: c, Prefix: "a{b}:"}, {Client: c, Prefix: strings.Repeat("p", 200)}} {
		if _, err := NewRedis(s, ok); err == nil {
			t.Errorf("store %+v accepted", s)
		}
	}
	for _, l := range []Limits{{Burst: 1}, {RatePerMinute: 1}, {RatePerMinute: 1, Burst: 1, MaxFailures: 1}} {
		if _, err := NewRedis(RedisStore{Client: c, Prefix: "p:"}, l); err == nil {
			t.Errorf("limits %+v accepted", l)
		}
	}
	r, err := NewRedis(RedisStore{Client: c, Prefix: "gmgate:x:"}, ok)
	if err != nil {
		t.Fatal(err)
	}
	lock, rate, fail := r.keys("term-1")
	// The layout of gm_cosign's keys before they moved here: a rolling upgrade keeps lockouts.
	h := sm3.Sum([]byte("term-1"))
	if want := "gmgate:x:{" + hex.EncodeToString(h[:16]) + "}:lock"; lock != want {
		t.Fatalf("lock key %q, want %q", lock, want)
	}
	tag := func(s string) string { return s[strings.Index(s, "{") : strings.Index(s, "}")+1] }
	for _, k := range []string{lock, rate, fail} {
		if !strings.HasPrefix(k, "gmgate:x:{") || tag(k) != tag(lock) {
			t.Fatalf("keys %q %q %q", lock, rate, fail)
		}
	}
	long, _, _ := r.keys(strings.Repeat("k", 10000))
	if l2, _, _ := r.keys("term-2"); l2 == lock || len(long) != len(lock) {
		t.Fatalf("keys %q %q %q", lock, l2, long)
	}
}
