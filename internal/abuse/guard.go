// Package abuse holds the in-process abuse controls shared by gmgate's services: per key (a
// terminal key ID, a client address, an enrolment token ID) a token bucket (rate limit) and a
// consecutive-failure counter (lockout), over a bounded number of keys.
package abuse

import (
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

// Verdict is what Admit decides.
type Verdict int

// Verdicts.
const (
	Allowed Verdict = iota
	RateLimited
	Locked
	Full
)

// NewGuard returns a guard allowing perMinute requests per key and minute with bursts of burst,
// locking a key for lockout after maxFailures consecutive failures (maxFailures < 1: never),
// and tracking at most maxKeys keys.
func NewGuard(perMinute, burst, maxFailures int, lockout time.Duration, maxKeys int) *Guard {
	return &Guard{rate: float64(perMinute) / 60, burst: float64(burst), maxFailures: maxFailures,
		lockout: lockout, maxKeys: maxKeys, keys: make(map[string]*keyState)}
}

// Admit checks the lockout and takes one token from key's bucket.
func (g *Guard) Admit(key string, now time.Time) Verdict {
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

// Locked reports whether key is locked out now, without taking a token.
func (g *Guard) Locked(key string, now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	st, ok := g.keys[key]
	return ok && now.Before(st.lockedUntil)
}

// Fail counts a failure of key; the maxFailures-th consecutive one locks the key for lockout.
// It reports whether the key is now locked. A key not admitted before is tracked from here
// (when a slot is free).
func (g *Guard) Fail(key string, now time.Time) bool {
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

// Succeed resets key's failure counter.
func (g *Guard) Succeed(key string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if st, ok := g.keys[key]; ok {
		st.failures = 0
	}
}

func (g *Guard) prune(now time.Time) {
	for k, st := range g.keys {
		full := st.tokens+now.Sub(st.last).Seconds()*g.rate >= g.burst
		if full && st.failures == 0 && !now.Before(st.lockedUntil) {
			delete(g.keys, k)
		}
	}
}
