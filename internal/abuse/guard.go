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
// maxKeys keys; idle, unlocked entries are pruned first, and when every slot is busy a new key
// is refused (Full: fails closed). It is safe for concurrent use.
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
	st, ok := g.keys[key]
	if !ok {
		if len(g.keys) >= g.maxKeys {
			g.prune(now)
			if len(g.keys) >= g.maxKeys {
				return Full
			}
		}
		st = &keyState{tokens: g.burst, last: now}
		g.keys[key] = st
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
// here (when a slot is free; when none is, the failure is not counted). It never fails.
func (g *Guard) Fail(_ context.Context, key string, now time.Time) (bool, error) {
	return g.fail(key, now), nil
}

func (g *Guard) fail(key string, now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	st, ok := g.keys[key]
	if !ok {
		if len(g.keys) >= g.maxKeys {
			g.prune(now)
			if len(g.keys) >= g.maxKeys {
				return false
			}
		}
		st = &keyState{tokens: g.burst, last: now}
		g.keys[key] = st
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

func (g *Guard) prune(now time.Time) {
	for k, st := range g.keys {
		full := st.tokens+now.Sub(st.last).Seconds()*g.rate >= g.burst
		if full && st.failures == 0 && !now.Before(st.lockedUntil) {
			delete(g.keys, k)
		}
	}
}
