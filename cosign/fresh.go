package cosign

import (
	"errors"
	"sync"
	"time"

	"github.com/emmansun/gmsm/sm3"
)

// ErrReused: the terminal's ephemeral point Q_1 (or decryption point T_1) was already presented
// for this key within the guard's window. An honest terminal draws a fresh w_1 every time; a
// repeated Q_1 is a replayed request or a terminal whose randomness is broken (which leaks d_1
// to anyone who sees two of its signatures).
var ErrReused = errors.New("cosign: ephemeral point reused")

// ErrGuardFull: the guard holds its maximum of unexpired entries; it refuses (fails closed)
// rather than forget a point early.
var ErrGuardFull = errors.New("cosign: freshness guard full")

// FreshnessGuard remembers, per key, the ephemeral points it has accepted within a window, and
// refuses a repeat. It keeps SM3(key || 0 || point) only. Safe for concurrent use.
type FreshnessGuard struct {
	mu     sync.Mutex
	window time.Duration
	max    int
	seen   map[[sm3.Size]byte]time.Time
	fifo   []guardEntry // insertion order; expiry is monotonic in it
	head   int
}

type guardEntry struct {
	h   [sm3.Size]byte
	exp time.Time
}

// NewFreshnessGuard makes a guard remembering points for window (> 0) and at most max (> 0)
// unexpired points at once; size max to at least the co-operation rate times window.
func NewFreshnessGuard(window time.Duration, max int) *FreshnessGuard {
	if window <= 0 || max <= 0 {
		panic("cosign: NewFreshnessGuard needs a positive window and size")
	}
	return &FreshnessGuard{window: window, max: max, seen: make(map[[sm3.Size]byte]time.Time)}
}

// Check records point for keyID at now, returning ErrReused when it was seen within the window
// and ErrGuardFull when the guard cannot remember it.
func (g *FreshnessGuard) Check(keyID string, point []byte, now time.Time) error {
	h := sm3.New()
	h.Write([]byte(keyID))
	h.Write([]byte{0})
	h.Write(point)
	var k [sm3.Size]byte
	h.Sum(k[:0])
	g.mu.Lock()
	defer g.mu.Unlock()
	g.expire(now)
	if exp, ok := g.seen[k]; ok && now.Before(exp) {
		return ErrReused
	}
	if len(g.seen) >= g.max {
		return ErrGuardFull
	}
	exp := now.Add(g.window)
	g.seen[k] = exp
	g.fifo = append(g.fifo, guardEntry{k, exp})
	return nil
}

// Len is the number of remembered points.
func (g *FreshnessGuard) Len() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.seen)
}

func (g *FreshnessGuard) expire(now time.Time) {
	for g.head < len(g.fifo) && !now.Before(g.fifo[g.head].exp) {
		e := g.fifo[g.head]
		if exp, ok := g.seen[e.h]; ok && !now.Before(exp) {
			delete(g.seen, e.h)
		}
		g.head++
	}
	if g.head > 1024 && g.head*2 > len(g.fifo) {
		g.fifo = append(g.fifo[:0:0], g.fifo[g.head:]...)
		g.head = 0
	}
}
