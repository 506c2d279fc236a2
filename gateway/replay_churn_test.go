package gateway

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// Under constant churn (nonces expire while new ones arrive at a steady rate) the store's
// memory follows the number of live nonces: it must not keep growing (a Go map that is only
// deleted from never shrinks).
func TestMemoryReplayStoreChurnStaysBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("churn test: -short")
	}
	var clock atomic.Int64
	clock.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	s := NewMemoryReplayStore(MemoryReplayOptions{SweepInterval: -1, Now: func() time.Time { return time.Unix(0, clock.Load()) }})
	defer s.Close()
	const (
		perTick = 5000
		ttl     = 20 * time.Second // 20 ticks of 1 s: ~100k live nonces
		ticks   = 400
	)
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	ctx := context.Background()
	var warm uint64
	n := 0
	for tick := 0; tick < ticks; tick++ {
		for i := 0; i < perTick; i++ {
			if err := s.CheckAndStore(ctx, "k", fmt.Sprint(n), ttl); err != nil {
				t.Fatal(err)
			}
			n++
		}
		clock.Add(int64(time.Second))
		if tick%10 == 0 {
			s.Sweep()
		}
		if tick == 60 { // steady state: three lifetimes in
			warm = heap()
		}
	}
	s.Sweep()
	live, end := s.Len(), heap()
	if live > 2*perTick*20 {
		t.Fatalf("%d entries held, want about %d", live, perTick*20)
	}
	if end > warm+warm/2 {
		t.Fatalf("heap grew from %d to %d bytes under churn with %d live entries", warm, end, live)
	}
	t.Logf("heap %d -> %d bytes, %d live entries", warm, end, live)
}

// A sweep that frees nothing still refreshes the shard's expiry bound (a reused slot can leave it
// stale), so later inserts into a full shard do not scan it again.
func TestMemoryReplaySweepRefreshesBound(t *testing.T) {
	sh := memoryShard{m: map[memoryKey]int64{{1}: 100, {2}: 200}, minExpiry: 10}
	sh.sweepLocked(50)
	if len(sh.m) != 2 || sh.minExpiry != 100 {
		t.Fatalf("entries %d, minExpiry %d; want 2 and 100", len(sh.m), sh.minExpiry)
	}
	sh.sweepLocked(150)
	if len(sh.m) != 1 || sh.minExpiry != 200 {
		t.Fatalf("entries %d, minExpiry %d; want 1 and 200", len(sh.m), sh.minExpiry)
	}
}
