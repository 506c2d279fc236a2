// Package abuse holds the abuse controls shared by gmgate's services: per key (a terminal key
// ID, a client address, an enrolment token ID) a rate limit and a consecutive-failure counter
// (lockout), behind one interface (Limiter) with two implementations: Guard, in this process
// over a bounded number of keys, and Redis, shared by every instance through Redis scripts.
package abuse

import (
	"context"
	"sync"
	"time"
)

// Guard keeps, per key, a token bucket and a consecutive-failure counter. It tracks at most
// maxKeys keys; idle, unlocked entries are pruned first, then a new key evicts an entry that is
// not locked out (an evicted key starts afresh); only when every entry is locked out is a new
// key refused (Full: fails closed). It is safe for concurrent use.
type Guard struct {
	mu          sync.Mutex
	rate        float64 // tokens per second
	burst       float64
	maxFailures int
	lockout     time.Duration
	maxKeys     int
	keys        map[string]*keyState
}

type keyState struct {
	tokens      float64
	last        time.Time
	failures    int
	lockedUntil time.Time
}

// NewGuard returns a guard with the limits l: RatePerMinute requests per key and minute with
// bursts of Burst, a key locked for Lockout after MaxFailures consecutive failures
// (MaxFailures < 1: never), at most MaxKeys keys tracked.
func NewGuard(l Limits) *Guard {
	return &Guard{rate: float64(l.RatePerMinute) / 60, burst: float64(l.Burst), maxFailures: l.MaxFailures,
		lockout: l.Lockout, maxKeys: l.MaxKeys, keys: make(map[string]*keyState)}
}

// Admit checks the lockout and takes one token from key's bucket. It never fails.
func (g *Guard) Admit(_ context.Context, key string, now time.Time) (Verdict, error) {
	return g.admit(key, now), nil
}

func (g *Guard) admit(key string, now time.Time) Verdict {
	g.mu.Lock()
	defer g.mu.Unlock()
	st := g.entry(key, now)
	if st == nil {
		return Full
	}
	if now.Before(st.lockedUntil) {
		return Locked
	}
	if el := now.Sub(st.last).Seconds(); el > 0 {
		st.tokens = min(g.burst, st.tokens+el*g.rate)
	}
	st.last = now
	if st.tokens < 1 {
		return RateLimited
	}
	st.tokens--
	return Allowed
}

// Locked reports whether key is locked out now, without taking a token. It never fails.
func (g *Guard) Locked(_ context.Context, key string, now time.Time) (bool, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	st, ok := g.keys[key]
	return ok && now.Before(st.lockedUntil), nil
}

// Fail counts a failure of key; the maxFailures-th consecutive one locks the key for lockout.
// It reports whether this failure locked the key. A key not admitted before is tracked from
// here (when every entry is locked out, the failure is not counted). It never fails.
func (g *Guard) Fail(_ context.Context, key string, now time.Time) (bool, error) {
	return g.fail(key, now), nil
}

func (g *Guard) fail(key string, now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	st := g.entry(key, now)
	if st == nil {
		return false
	}
	if g.maxFailures < 1 {
		return false
	}
	st.failures++
	if st.failures >= g.maxFailures {
		st.failures = 0
		st.lockedUntil = now.Add(g.lockout)
		return true
	}
	return false
}

// Succeed resets key's failure counter. It never fails.
func (g *Guard) Succeed(_ context.Context, key string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if st, ok := g.keys[key]; ok {
		st.failures = 0
	}
	return nil
}

// entry returns key's state, tracking it when it is new: in a full table idle entries are
// pruned, and when none is idle one entry that is not locked out is evicted (the least recently
// used of a few sampled), so that keys an attacker chose, each with a failure count, cannot
// fill the table and shut every other key out. nil when every entry is locked out (Full).
// The caller holds g.mu.
func (g *Guard) entry(key string, now time.Time) *keyState {
	if st, ok := g.keys[key]; ok {
		return st
	}
	if len(g.keys) >= g.maxKeys {
		g.prune(now)
		if len(g.keys) >= g.maxKeys && !g.evict(now) {
			return nil
		}
	}
	st := &keyState{tokens: g.burst, last: now}
	g.keys[key] = st
	return st
}

// evictSample is how many unlocked entries evict compares.
const evictSample = 8

// evict removes the least recently used of up to evictSample entries that are not locked out
// (map order: a random sample). It reports false when it found none.
func (g *Guard) evict(now time.Time) bool {
	victim, n := "", 0
	var oldest time.Time
	for k, st := range g.keys {
		if now.Before(st.lockedUntil) {
			continue
		}
		if victim == "" || st.last.Before(oldest) {
			victim, oldest = k, st.last
		}
		if n++; n >= evictSample {
			break
		}
	}
	if victim == "" {
		return false
	}
	delete(g.keys, victim)
	return true
}

func (g *Guard) prune(now time.Time) {
	for k, st := range g.keys {
		full := st.tokens+now.Sub(st.last).Seconds()*g.rate >= g.burst
		if full && st.failures == 0 && !now.Before(st.lockedUntil) {
			delete(g.keys, k)
		}
	}
}
