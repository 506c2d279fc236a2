package enroll

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gmgate/gmgate/internal/abuse"
	"github.com/gmgate/gmgate/internal/testenv"
)

// Tests of the limits shared through Redis (Limits.Shared) by two enrolment servers over one
// store, like two gmgate instances behind a load balancer: the real Redis scripts/test.sh
// starts (GMGATE_REDIS_ADDR), or a private redis-server; Missing without either.

// sharedPair returns two servers over a's store, CA and clock, each with its own Redis client
// on addr under one fresh prefix. OnLockout and OnLimitError of both are recorded.
type sharedPair struct {
	a, b     *fixture
	mu       sync.Mutex
	lockouts map[string]int
	errs     []string
}

func newSharedPair(t *testing.T, addr string, l Limits) *sharedPair {
	t.Helper()
	p := &sharedPair{lockouts: map[string]int{}}
	prefix := fmt.Sprintf("gmgate:enroll:test%d:limits:", time.Now().UnixNano()) // fresh keys on a reused Redis
	shared := func() *abuse.RedisStore {
		c := redis.NewClient(&redis.Options{Addr: addr})
		t.Cleanup(func() { c.Close() })
		return &abuse.RedisStore{Client: c, Prefix: prefix, Timeout: 300 * time.Millisecond}
	}
	hooks := func(c *Config) {
		c.Limits = l
		c.Limits.Shared = shared()
		c.ClientAddress = func(r *http.Request) string { return r.Header.Get("X-Test-Client") }
		c.OnLockout = func(scope string) { p.mu.Lock(); p.lockouts[scope]++; p.mu.Unlock() }
		c.OnLimitError = func(scope string, err error) { p.mu.Lock(); p.errs = append(p.errs, scope); p.mu.Unlock() }
	}
	p.a = newFixture(t, hooks)
	cfg := p.a.srv.cfg
	cfg.Limits.Shared = shared()
	srv, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.RefreshCRL(context.Background()); err != nil {
		t.Fatal(err)
	}
	b := *p.a
	b.srv, b.http = srv, httptest.NewServer(srv)
	t.Cleanup(b.http.Close)
	p.b = &b
	return p
}

// try enrols with tok from client on f: "ok" or the refusal code.
func try(t *testing.T, f *fixture, client, tok string) Code {
	t.Helper()
	h := enrolHeaders(tok)
	h.Set("X-Test-Client", client)
	resp, body := f.post(OpSimpleEnroll, h, b64(simpleCSR(t, newKey(t), "T2200")))
	if resp.StatusCode == http.StatusOK {
		return "ok"
	}
	return codeOf(body)
}

// TestSharedLimitsTwoServers: max_failures failed attempts spread over two servers lock the
// client address on both, and max_failures guesses of one token's secret spread over both (from
// several addresses) lock that token on both, each lockout counted once; the request rate of an
// address is one for both servers. Per-process limits let each server grant the whole budget.
func TestSharedLimitsTwoServers(t *testing.T) {
	p := newSharedPair(t, testenv.RedisAddr(t), Limits{RatePerMinute: 1, Burst: 30, MaxFailures: 3, Lockout: time.Minute})
	a, b := p.a, p.b
	addr := "198.51.100.7"
	other := a.token("T2200", time.Hour)
	for i, f := range []*fixture{a, b, a} {
		unknown := "gmet1.AAAAAAAAAAAAAAA" + string(rune('A'+i)) + "." + strings.Repeat("A", 43)
		if code := try(t, f, addr, unknown); code != CodeTokenInvalid {
			t.Fatalf("guess %d: %s", i, code)
		}
	}
	for i, f := range []*fixture{b, a} {
		if code := try(t, f, addr, other); code != CodeLocked {
			t.Fatalf("server %d: valid token from the locked address: %s", i, code)
		}
	}
	good := a.token("T2200", time.Hour)
	wrong := "gmet1." + tokenID(good) + "." + strings.Repeat("A", 43)
	for i, f := range []*fixture{b, a, b} {
		if code := try(t, f, fmt.Sprintf("203.0.113.%d", i+1), wrong); code != CodeTokenInvalid {
			t.Fatalf("secret guess %d: %s", i, code)
		}
	}
	for i, f := range []*fixture{a, b} {
		if code := try(t, f, fmt.Sprintf("192.0.2.%d", 50+i), good); code != CodeLocked {
			t.Fatalf("server %d: locked token with its secret: %s", i, code)
		}
	}
	p.mu.Lock()
	if p.lockouts["address"] != 1 || p.lockouts["token"] != 1 || len(p.errs) != 0 {
		t.Fatalf("lockouts reported %v, limit errors %v", p.lockouts, p.errs)
	}
	p.mu.Unlock()
	if code := try(t, b, "192.0.2.60", other); code != "ok" {
		t.Fatalf("another token from another address: %s", code)
	}
	// The rate of one address, its requests spread over both servers.
	n := 0
	for i := 0; i < 40; i++ {
		f := []*fixture{a, b}[i%2]
		h := enrolHeaders(other)
		h.Set("X-Test-Client", "192.0.2.99")
		_, body := f.post(OpSimpleEnroll, h, []byte("!")) // enroll_csr_invalid: not a failed attempt
		if c := codeOf(body); c == CodeRateLimited {
			n++
		} else if c != CodeCSRInvalid {
			t.Fatalf("request %d: %s", i, c)
		}
	}
	if n != 10 {
		t.Fatalf("%d of 40 requests over two servers rate limited, want 10 (burst 30, one rate)", n)
	}
}

// TestSharedLimitsRedisDown: with the limits' Redis stopped, enrolment (and every limited
// operation) is refused with enroll_unavailable, audited, reported to OnLimitError, and nothing
// is issued: the request never goes through unchecked.
func TestSharedLimitsRedisDown(t *testing.T) {
	addr := testenv.StartRedis(t)
	p := newSharedPair(t, addr, Limits{RatePerMinute: 60, Burst: 10, MaxFailures: 3, Lockout: time.Minute})
	a := p.a
	if code := try(t, a, "192.0.2.1", a.token("T2200", time.Hour)); code != "ok" {
		t.Fatalf("with Redis up: %s", code)
	}
	c := redis.NewClient(&redis.Options{Addr: addr})
	c.Do(context.Background(), "SHUTDOWN", "NOSAVE")
	c.Close()
	before, err := a.store.Certs()
	if err != nil {
		t.Fatal(err)
	}
	tok := a.token("T2200", time.Hour)
	for i, f := range []*fixture{a, p.b} {
		if code := try(t, f, "192.0.2.1", tok); code != CodeUnavailable {
			t.Fatalf("server %d with Redis down: %s, want %s", i, code, CodeUnavailable)
		}
		if r := f.audit.last(); r.Reason != string(CodeUnavailable) || r.Verdict != "reject" {
			t.Fatalf("audit: %+v", r)
		}
	}
	if after, _ := a.store.Certs(); len(after) != len(before) {
		t.Fatalf("%d certificates issued with Redis down", len(after)-len(before))
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.errs) < 2 || p.errs[0] != "address" {
		t.Fatalf("limit errors reported: %v", p.errs)
	}
}

// failingLimiter is a limiter whose state is unavailable.
type failingLimiter struct{}

var errLimiterDown = errors.New("limiter state unavailable")

func (failingLimiter) Admit(context.Context, string, time.Time) (abuse.Verdict, error) {
	return abuse.Allowed, errLimiterDown
}
func (failingLimiter) Locked(context.Context, string, time.Time) (bool, error) {
	return false, errLimiterDown
}
func (failingLimiter) Fail(context.Context, string, time.Time) (bool, error) {
	return false, errLimiterDown
}
func (failingLimiter) Succeed(context.Context, string) error { return errLimiterDown }

// TestLimitErrorsFailClosed: a limiter that fails, for the client address or for the token ID
// alone, refuses a valid enrolment with enroll_unavailable and issues nothing, even though its
// verdict (Allowed, not locked) would let the request through.
func TestLimitErrorsFailClosed(t *testing.T) {
	for _, scope := range []string{"address", "token"} {
		t.Run(scope, func(t *testing.T) {
			var got []string
			f := newFixture(t, func(c *Config) {
				c.OnLimitError = func(s string, err error) { got = append(got, s) }
			})
			if scope == "address" {
				f.srv.addrs = failingLimiter{}
			} else {
				f.srv.tokens = failingLimiter{}
			}
			before, _ := f.store.Certs()
			if code := try(t, f, "", f.token("T2200", time.Hour)); code != CodeUnavailable {
				t.Fatalf("%s limiter down: %s, want %s", scope, code, CodeUnavailable)
			}
			if after, _ := f.store.Certs(); len(after) != len(before) {
				t.Fatal("issued with the limiter down")
			}
			if r := f.audit.last(); r.Reason != string(CodeUnavailable) || r.Verdict != "reject" {
				t.Fatalf("audit: %+v", r)
			}
			if len(got) != 1 || got[0] != scope {
				t.Fatalf("limit errors reported: %v", got)
			}
		})
	}
}
