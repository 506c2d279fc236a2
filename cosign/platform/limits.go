package platform

import (
	"sync"
	"time"
)

// guard keeps, per key ID, a token bucket (rate limit) and a consecutive-failure counter
// (lockout). It tracks at most maxKeys keys; idle, unlocked entries are pruned first, and when
// every slot is busy a new key is refused (fails closed).
type guard struct {
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

type verdict int

const (
	allowed verdict = iota
	rateLimited
	locked
	guardFull
)

func newGuard(perMinute, burst, maxFailures int, lockout time.Duration, maxKeys int) *guard {
	return &guard{rate: float64(perMinute) / 60, burst: float64(burst), maxFailures: maxFailures,
		lockout: lockout, maxKeys: maxKeys, keys: make(map[string]*keyState)}
}

// admit checks the lockout and takes one token from keyID's bucket.
func (g *guard) admit(keyID string, now time.Time) verdict {
	g.mu.Lock()
	defer g.mu.Unlock()
	st, ok := g.keys[keyID]
	if !ok {
		if len(g.keys) >= g.maxKeys {
			g.prune(now)
			if len(g.keys) >= g.maxKeys {
				return guardFull
			}
		}
		st = &keyState{tokens: g.burst, last: now}
		g.keys[keyID] = st
	}
	if now.Before(st.lockedUntil) {
		return locked
	}
	if el := now.Sub(st.last).Seconds(); el > 0 {
		st.tokens = min(g.burst, st.tokens+el*g.rate)
	}
	st.last = now
	if st.tokens < 1 {
		return rateLimited
	}
	st.tokens--
	return allowed
}

// fail counts a failure; the maxFailures-th consecutive one locks the key for lockout. It
// reports whether the key is now locked.
func (g *guard) fail(keyID string, now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	st, ok := g.keys[keyID]
	if !ok {
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

// succeed resets keyID's failure counter.
func (g *guard) succeed(keyID string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if st, ok := g.keys[keyID]; ok {
		st.failures = 0
	}
}

func (g *guard) prune(now time.Time) {
	for k, st := range g.keys {
		full := st.tokens+now.Sub(st.last).Seconds()*g.rate >= g.burst
		if full && st.failures == 0 && !now.Before(st.lockedUntil) {
			delete(g.keys, k)
		}
	}
}
