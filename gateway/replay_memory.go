package gateway

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of MemoryReplayStore.
const (
	// DefaultMemoryReplayMaxEntries bounds the number of remembered nonces.
	DefaultMemoryReplayMaxEntries = 1_000_000
	// DefaultMemoryReplaySweep is the period of the background expiry sweep.
	DefaultMemoryReplaySweep = 30 * time.Second

	memoryReplayShards = 64
)

// MemoryReplayOptions configures NewMemoryReplayStore.
type MemoryReplayOptions struct {
	// MaxEntries bounds the number of live nonces (default 1e6). The bound is
	// split evenly over 64 shards, so a shard may refuse a nonce slightly
	// before the whole store holds MaxEntries.
	MaxEntries int
	// SweepInterval is the period of the background sweep removing expired
	// nonces (default 30s; negative disables the goroutine).
	SweepInterval time.Duration
	// Now returns the current time (default time.Now).
	Now func() time.Time
}

// MemoryReplayStore is a bounded in-process ReplayStore for one gateway
// instance. Nonces are keyed by a 128-bit truncated SM3 digest of (keyID,
// nonce), so memory per entry is fixed whatever the nonce length. When a shard
// is full of live entries, new nonces are refused with ErrReplayStoreFull.
type MemoryReplayStore struct {
	shards   [memoryReplayShards]memoryShard
	perShard atomic.Int64
	now      func() time.Time
	stop     chan struct{}
	done     chan struct{}
	once     sync.Once
}

type memoryKey [16]byte

type memoryShard struct {
	mu sync.Mutex
	m  map[memoryKey]int64 // expiry, unix nanoseconds
	// minExpiry is a lower bound of the expiries in m (0 when unknown/empty);
	// when now < minExpiry, a sweep cannot free anything.
	minExpiry int64
}

// NewMemoryReplayStore returns a MemoryReplayStore and starts its sweeper.
// Call Close to stop it.
func NewMemoryReplayStore(opts MemoryReplayOptions) *MemoryReplayStore {
	max := opts.MaxEntries
	if max <= 0 {
		max = DefaultMemoryReplayMaxEntries
	}
	s := &MemoryReplayStore{now: opts.Now, stop: make(chan struct{}), done: make(chan struct{})}
	s.SetMaxEntries(max)
	if s.now == nil {
		s.now = time.Now
	}
	for i := range s.shards {
		s.shards[i].m = make(map[memoryKey]int64)
	}
	interval := opts.SweepInterval
	if interval == 0 {
		interval = DefaultMemoryReplaySweep
	}
	if interval > 0 {
		go s.sweeper(interval)
	} else {
		close(s.done)
	}
	return s
}

var errMemoryStoreClosed = errors.New("memory replay store closed")

// SetMaxEntries changes the bound of live nonces (<= 0: the default) without forgetting any:
// a smaller bound refuses new nonces until enough expire.
func (s *MemoryReplayStore) SetMaxEntries(max int) {
	if max <= 0 {
		max = DefaultMemoryReplayMaxEntries
	}
	s.perShard.Store(int64((max + memoryReplayShards - 1) / memoryReplayShards))
}

// CheckAndStore implements ReplayStore.
func (s *MemoryReplayStore) CheckAndStore(ctx context.Context, keyID, nonce string, ttl time.Duration) error {
	select {
	case <-s.stop:
		return fmt.Errorf("%w: %w", ErrReplayStoreUnavailable, errMemoryStoreClosed)
	default:
	}
	if ttl <= 0 {
		ttl = time.Millisecond
	}
	d := nonceDigest(keyID, nonce)
	var k memoryKey
	copy(k[:], d[:])
	sh := &s.shards[int(d[16])%memoryReplayShards]
	now := s.now().UnixNano()
	exp := now + int64(ttl)

	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e, ok := sh.m[k]; ok {
		if e > now {
			return ErrReplay
		}
		sh.m[k] = exp // expired entry: reuse the slot
		return nil
	}
	if int64(len(sh.m)) >= s.perShard.Load() {
		if sh.minExpiry != 0 && now >= sh.minExpiry {
			sh.sweepLocked(now)
		}
		if int64(len(sh.m)) >= s.perShard.Load() {
			return ErrReplayStoreFull
		}
	}
	sh.m[k] = exp
	if sh.minExpiry == 0 || exp < sh.minExpiry {
		sh.minExpiry = exp
	}
	return nil
}

// sweepLocked drops expired entries and recomputes minExpiry. The live entries move to a new
// map sized for them: deleting from a Go map never shrinks it, and under constant churn (every
// nonce expires after 2 windows while new ones arrive) a map that is only deleted from keeps
// growing although the number of live entries is level.
func (sh *memoryShard) sweepLocked(now int64) {
	live := 0
	var min int64
	for _, e := range sh.m {
		if e > now {
			live++
			if min == 0 || e < min {
				min = e
			}
		}
	}
	// minExpiry is recomputed even when nothing expired: a reused slot may have left it stale,
	// and a stale bound would make every insert into a full shard scan it again.
	sh.minExpiry = min
	if live == len(sh.m) {
		return
	}
	m := make(map[memoryKey]int64, live)
	for k, e := range sh.m {
		if e > now {
			m[k] = e
		}
	}
	sh.m = m
}

// Sweep removes every expired entry now. The background sweeper calls it
// periodically; it is exported for tests and for callers without a sweeper.
func (s *MemoryReplayStore) Sweep() {
	now := s.now().UnixNano()
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		if sh.minExpiry != 0 && now >= sh.minExpiry {
			sh.sweepLocked(now)
		}
		sh.mu.Unlock()
	}
}

// Len returns the number of entries currently held (live or not yet swept).
func (s *MemoryReplayStore) Len() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

func (s *MemoryReplayStore) sweeper(interval time.Duration) {
	defer close(s.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.Sweep()
		}
	}
}

// Close stops the sweeper; later CheckAndStore calls fail with
// ErrReplayStoreUnavailable. Close is idempotent.
func (s *MemoryReplayStore) Close() error {
	s.once.Do(func() { close(s.stop) })
	<-s.done
	return nil
}
