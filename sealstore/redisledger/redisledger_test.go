package redisledger

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gmgate/gmgate/internal/abuse"
	"github.com/gmgate/gmgate/internal/testenv"
	"github.com/gmgate/gmgate/internal/testpki"
	"github.com/gmgate/gmgate/sealstore"
)

// TestAttackShareRolledBackRedis: a share record file copied back to before its rotation, and a
// destroyed record put back, are refused by a store whose ledger is in the real Redis
// (GMGATE_REDIS_ADDR; fails under GMGATE_REQUIRE_SERVICES=1 without it), also by a second
// store over the same directory (another instance, or this one after a restart); the entry
// never goes back.
func TestAttackShareRolledBackRedis(t *testing.T) {
	addr := testenv.RedisAddr(t)
	c := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { c.Close() })
	l, err := New(abuse.RedisStore{Client: c, Prefix: fmt.Sprintf("gmgate:test%d:ledger:", time.Now().UnixNano()), Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	keys := testpki.NewSealKeys(t, "shares")
	open := func() *sealstore.Store {
		s, err := sealstore.Open(dir, keys)
		if err != nil {
			t.Fatal(err)
		}
		s.SetLedger(l)
		return s
	}
	s := open()
	kind, id := "cosign-d2", []byte("term-1")
	if err := s.Create(kind, id, []byte("old d2")); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, kind, "*.json"))
	if len(files) != 1 {
		t.Fatalf("record files: %v", files)
	}
	old, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(kind, id, []byte("new d2")); err != nil {
		t.Fatal(err)
	}
	if err := s.DestroyVersion(kind, id, 1); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(files[0], old, 0o600); err != nil {
		t.Fatal(err)
	}
	for i, st := range []*sealstore.Store{s, open()} {
		if _, _, err := st.Get(kind, id); !errors.Is(err, sealstore.ErrRolledBack) {
			t.Fatalf("store %d: rolled-back share: %v, want ErrRolledBack", i, err)
		}
		if _, err := st.GetAll(kind, id); !errors.Is(err, sealstore.ErrRolledBack) {
			t.Fatalf("store %d: GetAll: %v, want ErrRolledBack", i, err)
		}
	}
	// An older entry never replaces the newer one.
	name := filepath.Base(files[0])
	name = name[:len(name)-len(".json")]
	if err := l.StoreEntry(name, sealstore.LedgerEntry{Max: 1, Live: []int{1}}); err == nil {
		t.Fatal("the ledger went back")
	}
	if e, err := l.LoadEntry(name); err != nil || e == nil || e.Max != 2 || len(e.Live) != 1 || e.Live[0] != 2 {
		t.Fatalf("entry: %+v %v", e, err)
	}
}
