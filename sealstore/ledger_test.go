package sealstore

import (
	"bytes"
	"errors"
	"os"
	"slices"
	"sync"
	"testing"
)

// memLedger is a Ledger in memory (what Redis holds in production).
type memLedger struct {
	mu   sync.Mutex
	m    map[string]LedgerEntry
	fail error
}

func newMemLedger() *memLedger { return &memLedger{m: map[string]LedgerEntry{}} }

func (l *memLedger) LoadEntry(rec string) (*LedgerEntry, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fail != nil {
		return nil, l.fail
	}
	e, ok := l.m[rec]
	if !ok {
		return nil, nil
	}
	e.Live = slices.Clone(e.Live)
	return &e, nil
}

func (l *memLedger) StoreEntry(rec string, e LedgerEntry) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fail != nil {
		return l.fail
	}
	l.m[rec] = e
	return nil
}

// ledgerStore opens a store over a fresh directory, with l as its ledger when not nil.
func ledgerStore(t *testing.T, l Ledger) *Store {
	t.Helper()
	s, err := Open(t.TempDir(), newMemKeys(t, "seal"))
	if err != nil {
		t.Fatal(err)
	}
	if l != nil {
		s.SetLedger(l)
	}
	return s
}

func snapshot(t *testing.T, s *Store, kind string, id []byte) []byte {
	t.Helper()
	b, err := os.ReadFile(s.path(kind, id))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func restore(t *testing.T, s *Store, kind string, id []byte, b []byte) {
	t.Helper()
	if err := os.WriteFile(s.path(kind, id), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// refusedAsRollback checks that every read of (kind, id) is refused with ErrRolledBack
// (an ErrIntegrity).
func refusedAsRollback(t *testing.T, s *Store, kind string, id []byte) {
	t.Helper()
	if _, _, err := s.Get(kind, id); !errors.Is(err, ErrRolledBack) || !errors.Is(err, ErrIntegrity) {
		t.Fatalf("Get: %v, want ErrRolledBack", err)
	}
	if _, err := s.GetAll(kind, id); !errors.Is(err, ErrRolledBack) {
		t.Fatalf("GetAll: %v, want ErrRolledBack", err)
	}
	if _, err := s.Versions(kind, id); !errors.Is(err, ErrRolledBack) {
		t.Fatalf("Versions: %v, want ErrRolledBack", err)
	}
	if _, err := s.Put(kind, id, []byte("more")); !errors.Is(err, ErrRolledBack) {
		t.Fatalf("Put over a rolled-back record: %v, want ErrRolledBack", err)
	}
}

// Attack: the record file of a share copied back to before a rotation (the rotated-away d2
// back as the only version). With the ledger every read refuses; without it (the control)
// the old secret is served, which is what the ledger is for.
func TestAttackRollbackBeforeRotation(t *testing.T) {
	kind, id := "cosign-d2", []byte("term-1")
	for _, withLedger := range []bool{false, true} {
		var l Ledger
		if withLedger {
			l = newMemLedger()
		}
		s := ledgerStore(t, l)
		if err := s.Create(kind, id, []byte("old d2")); err != nil {
			t.Fatal(err)
		}
		old := snapshot(t, s, kind, id)
		if _, err := s.Put(kind, id, []byte("new d2")); err != nil {
			t.Fatal(err)
		}
		if err := s.DestroyVersion(kind, id, 1); err != nil {
			t.Fatal(err)
		}
		restore(t, s, kind, id, old)
		if !withLedger {
			got, _, err := s.Get(kind, id)
			if err != nil || !bytes.Equal(got, []byte("old d2")) {
				t.Fatalf("control without ledger: %q %v", got, err)
			}
			continue
		}
		refusedAsRollback(t, s, kind, id)
	}
}

// Attack: a pending version (rotation started) dropped by copying back the file from before
// it, and a destroyed version spliced back next to the current one.
func TestAttackRollbackPendingAndSplice(t *testing.T) {
	kind, id := "cosign-d2", []byte("term-2")
	s := ledgerStore(t, newMemLedger())
	if err := s.Create(kind, id, []byte("v1")); err != nil {
		t.Fatal(err)
	}
	one := snapshot(t, s, kind, id)
	if _, err := s.Put(kind, id, []byte("v2")); err != nil {
		t.Fatal(err)
	}
	both := snapshot(t, s, kind, id)
	restore(t, s, kind, id, one)
	refusedAsRollback(t, s, kind, id)
	restore(t, s, kind, id, both)
	if err := s.DestroyVersion(kind, id, 1); err != nil {
		t.Fatal(err)
	}
	restore(t, s, kind, id, both) // v1 back next to v2
	refusedAsRollback(t, s, kind, id)
}

// Attack: an escrowed key or share destroyed, its file put back (or a file deleted). The
// number of a destroyed version is never used again by a new record of the same id.
func TestAttackRollbackBeforeDestroy(t *testing.T) {
	kind, id := "escrow", []byte("term-3")
	s := ledgerStore(t, newMemLedger())
	if err := s.Create(kind, id, []byte("secret")); err != nil {
		t.Fatal(err)
	}
	old := snapshot(t, s, kind, id)
	if err := s.Destroy(kind, id); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Get(kind, id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after Destroy: %v, want ErrNotFound", err)
	}
	restore(t, s, kind, id, old)
	if _, _, err := s.Get(kind, id); !errors.Is(err, ErrRolledBack) {
		t.Fatalf("destroyed record put back: %v, want ErrRolledBack", err)
	}
	if err := os.Remove(s.path(kind, id)); err != nil {
		t.Fatal(err)
	}
	if err := s.Create(kind, id, []byte("again")); err != nil {
		t.Fatal(err)
	}
	if _, n, err := s.Get(kind, id); err != nil || n != 2 {
		t.Fatalf("re-created: version %d %v, want 2", n, err)
	}
	again := snapshot(t, s, kind, id)
	if err := os.Remove(s.path(kind, id)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Get(kind, id); !errors.Is(err, ErrRolledBack) {
		t.Fatalf("deleted record: %v, want ErrRolledBack", err)
	}
	restore(t, s, kind, id, again)
	if got, _, err := s.Get(kind, id); err != nil || string(got) != "again" {
		t.Fatalf("restored current copy: %q %v", got, err)
	}
}

// A ledger that cannot answer fails reads and writes closed (ErrStorage); a rewrap keeps the
// record readable.
func TestLedgerErrorsFailClosed(t *testing.T) {
	kind, id := "cosign-d2", []byte("term-4")
	l := newMemLedger()
	s := ledgerStore(t, l)
	if err := s.Create(kind, id, []byte("v1")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Rewrap(kind, id); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Get(kind, id); err != nil {
		t.Fatal(err)
	}
	l.fail = errors.New("redis down")
	if _, _, err := s.Get(kind, id); !errors.Is(err, ErrStorage) {
		t.Fatalf("Get: %v, want ErrStorage", err)
	}
	if _, err := s.Put(kind, id, []byte("v2")); !errors.Is(err, ErrStorage) {
		t.Fatalf("Put: %v, want ErrStorage", err)
	}
	if err := s.Destroy(kind, id); !errors.Is(err, ErrStorage) {
		t.Fatalf("Destroy: %v, want ErrStorage", err)
	}
}

// A record written before the ledger existed is recorded at its first read: a rollback after
// that is refused.
func TestLedgerAdoptsOlderRecords(t *testing.T) {
	kind, id := "enroll-enc", []byte("serial-1")
	s := ledgerStore(t, nil)
	if err := s.Create(kind, id, []byte("v1")); err != nil {
		t.Fatal(err)
	}
	one := snapshot(t, s, kind, id)
	if _, err := s.Put(kind, id, []byte("v2")); err != nil {
		t.Fatal(err)
	}
	s.SetLedger(newMemLedger())
	if _, n, err := s.Get(kind, id); err != nil || n != 2 {
		t.Fatalf("first read with the ledger: %d %v", n, err)
	}
	restore(t, s, kind, id, one)
	refusedAsRollback(t, s, kind, id)
}

// TestWriteWithoutLedgerRefused: a store written with its ledger refuses writes when opened
// without it (an operator's tool run without the Redis flags): a Destroy that left the ledger
// behind would make the share refused for ever and a copy of it put back later accepted.
// Reads still work; opened with the ledger again, the write goes through.
func TestWriteWithoutLedgerRefused(t *testing.T) {
	l := newMemLedger()
	s := ledgerStore(t, l)
	id := []byte("terminal-1")
	if _, err := s.Put("share", id, []byte("secret-1")); err != nil {
		t.Fatal(err)
	}
	bare, err := Open(s.dir, newMemKeys(t, "seal"))
	if err != nil {
		t.Fatal(err)
	}
	bare.keys = s.keys
	if _, _, err := bare.Get("share", id); err != nil {
		t.Fatalf("read without the ledger: %v", err)
	}
	for name, write := range map[string]func() error{
		"destroy": func() error { return bare.Destroy("share", id) },
		"put":     func() error { _, err := bare.Put("share", id, []byte("secret-2")); return err },
		"create":  func() error { return bare.Create("share", []byte("terminal-2"), []byte("x")) },
	} {
		if err := write(); !errors.Is(err, ErrLedgerRequired) {
			t.Errorf("%s without the ledger: %v, want ErrLedgerRequired", name, err)
		}
	}
	if _, _, err := s.Get("share", id); err != nil {
		t.Fatalf("the share after refused writes: %v", err)
	}
	if err := s.Destroy("share", id); err != nil {
		t.Fatalf("destroy with the ledger: %v", err)
	}
	// A store that never had a ledger is written without one as before.
	plain := ledgerStore(t, nil)
	if _, err := plain.Put("share", id, []byte("secret")); err != nil {
		t.Fatalf("store without a ledger: %v", err)
	}
}
