package caddymodule

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/gmgate/gmgate/gateway"
)

// memoryReplayStores holds the one in-memory nonce store of every gm_verify of the process,
// whatever their max_entries (its bound is the largest of the handlers holding it: two sites
// with different values share their nonces, and a reload that changes the value keeps them). It
// outlives a configuration reload (the new handlers take the store before the old
// ones let it go): a reload must not forget the nonces of the window, or every request accepted in
// the last minutes could be replayed once. Sharing one store between handlers is also what stops a
// request accepted by one site from being replayed on another (nonces are bound to the signing
// certificate, not to the site).
var memoryReplayStores = caddy.NewUsagePool()

// pooledMemoryStore is the memory store in memoryReplayStores.
type pooledMemoryStore struct{ *gateway.MemoryReplayStore }

// memoryStoreBounds holds the max_entries of every live holder of the shared memory store.
var memoryStoreBounds = &memoryBounds{by: map[int]int{}}

// memoryBounds tracks the max_entries of the live holders of the shared store.
type memoryBounds struct {
	mu   sync.Mutex
	next int
	by   map[int]int // holder -> max_entries
}

// set records holder's bound (0: remove the holder) and returns the largest live one.
func (b *memoryBounds) set(holder, max int) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if max == 0 {
		delete(b.by, holder)
	} else {
		b.by[holder] = max
	}
	largest := 0
	for _, v := range b.by {
		largest = maxInt(largest, v)
	}
	return largest
}

func maxInt(a, b int) int {
	if a > b {
		return a
	}
	return b
}

// Destruct closes the store when its last handler is cleaned up.
func (p pooledMemoryStore) Destruct() error { return p.MemoryReplayStore.Close() }

// acquireMemoryReplayStore returns the process's memory store for the bound maxEntries and its
// pool key; release it with releaseMemoryReplayStore.
func acquireMemoryReplayStore(maxEntries int) (*gateway.MemoryReplayStore, int, error) {
	if maxEntries <= 0 {
		maxEntries = gateway.DefaultMemoryReplayMaxEntries
	}
	v, _, err := memoryReplayStores.LoadOrNew(memoryReplayKey, func() (caddy.Destructor, error) {
		return pooledMemoryStore{gateway.NewMemoryReplayStore(gateway.MemoryReplayOptions{MaxEntries: maxEntries})}, nil
	})
	if err != nil {
		return nil, 0, err
	}
	p := v.(pooledMemoryStore)
	b := memoryStoreBounds
	b.mu.Lock()
	b.next++
	holder := b.next
	b.mu.Unlock()
	p.SetMaxEntries(b.set(holder, maxEntries))
	return p.MemoryReplayStore, holder, nil
}

// memoryReplayKey is the pool key of the process's one memory store.
const memoryReplayKey = "gm_verify/memory"

// releaseMemoryReplayStore lets go of the store taken by holder with acquireMemoryReplayStore.
func releaseMemoryReplayStore(holder int, st *gateway.MemoryReplayStore) error {
	if largest := memoryStoreBounds.set(holder, 0); largest > 0 && st != nil {
		st.SetMaxEntries(largest)
	}
	_, err := memoryReplayStores.Delete(memoryReplayKey)
	return err
}

// replayRetentions holds the nonce retention (2 × window + skew, in nanoseconds) of every live
// gm_verify of the process, and longestRetention the largest: every guard keeps its nonces at
// least that long (gateway.ReplayGuard.MinRetention). Sites with different windows share their
// nonces (the memory store, or one Redis); without the floor a request accepted by a site with a
// short window could be replayed, once its nonce was forgotten, to a site with a longer window
// that accepts the same signature.
var (
	replayRetentions = &memoryBounds{by: map[int]int{}}
	longestRetention atomic.Int64
)

// holdRetention records a handler's retention and returns its holder number.
func holdRetention(r time.Duration) int {
	b := replayRetentions
	b.mu.Lock()
	b.next++
	holder := b.next
	b.mu.Unlock()
	longestRetention.Store(int64(b.set(holder, int(r))))
	return holder
}

// releaseRetention forgets holder's retention.
func releaseRetention(holder int) {
	longestRetention.Store(int64(replayRetentions.set(holder, 0)))
}

// minRetention is every guard's gateway.ReplayGuard.MinRetention.
func minRetention() time.Duration { return time.Duration(longestRetention.Load()) }
