package sealstore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
)

// Ledger keeps, outside the store's directory, the state of every record the store wrote:
// the highest version number it ever held and the versions it holds now (LedgerEntry).
// Someone who can write the directory but not the ledger cannot then roll a record file back
// to an older copy (before a Put, a DestroyVersion or a Destroy) nor delete it: a record that
// disagrees with its entry is refused (ErrRolledBack). The Caddy adapter keeps the ledger in
// Redis when the site has `replay { store redis }` (package sealstore/redisledger).
//
// record names the record: hex SM3 of its kind and id (its file name, without ".json"). Load
// returns nil and no error when no entry exists; any error makes the store fail closed
// (ErrStorage). Store replaces the entry; the store calls it under the record's lock.
type Ledger interface {
	LoadEntry(record string) (*LedgerEntry, error)
	StoreEntry(record string, e LedgerEntry) error
}

// LedgerEntry is a record's state in the Ledger.
type LedgerEntry struct {
	// Max is the highest version number the record ever held (a destroyed one included).
	Max int `json:"max"`
	// Live are the version numbers it holds now, ascending (none after Destroy).
	Live []int `json:"live"`
}

// ErrRolledBack means a record disagrees with the ledger: a version the ledger holds is
// missing (the file is older than the ledger, or deleted) or a destroyed version is back. It
// wraps ErrIntegrity.
var ErrRolledBack = fmt.Errorf("%w: record older than the ledger (rolled back or deleted)", ErrIntegrity)

// ErrLedgerRequired means the store was opened without its ledger but keeps one (a write with
// the ledger left a marker in the directory): changing it now would leave the ledger behind
// (a destroyed share the ledger still lists, refused for ever; a record file put back later
// accepted), so nothing is written. Open the store with its ledger.
var ErrLedgerRequired = errors.New("sealstore: this store keeps a ledger outside its directory: open it with the ledger to change it")

// ledgerMarker is the file, in the store's directory, saying that the store keeps a ledger. It
// guards operators' tools against writing without the ledger; it is no protection against
// someone who can write the directory (the ledger is).
const ledgerMarker = "LEDGER"

// checkLedgerMarker, before a write: with a ledger, the directory says so; without one, it must
// not.
func (s *Store) checkLedgerMarker() error {
	path := filepath.Join(s.dir, ledgerMarker)
	_, err := os.Lstat(path)
	switch {
	case s.ledger == nil && err == nil:
		return ErrLedgerRequired
	case s.ledger == nil && errors.Is(err, os.ErrNotExist):
		return nil
	case s.ledger != nil && errors.Is(err, os.ErrNotExist):
		return writeAtomic(path, []byte("This store keeps a ledger outside this directory (Redis): write to it only with the ledger.\n"))
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("%w: %v", ErrStorage, err)
	}
	return nil
}

// SetLedger makes s check every record it reads against l and record every write in l. Call it
// before the store is used.
func (s *Store) SetLedger(l Ledger) { s.ledger = l }

// ledgerName is the record's name in the ledger.
func (s *Store) ledgerName(kind string, id []byte) string {
	n := s.fileName(kind, id)
	return n[:len(n)-len(".json")]
}

// loadEntry returns the ledger entry of (kind, id) (nil without a ledger or entry).
func (s *Store) loadEntry(kind string, id []byte) (*LedgerEntry, error) {
	if s.ledger == nil {
		return nil, nil
	}
	e, err := s.ledger.LoadEntry(s.ledgerName(kind, id))
	if err != nil {
		return nil, fmt.Errorf("%w: ledger: %v", ErrStorage, err)
	}
	if e != nil && (e.Max < 0 || len(e.Live) > MaxVersions) {
		return nil, fmt.Errorf("%w: ledger entry malformed", ErrStorage)
	}
	return e, nil
}

// checkLedger compares the record as read (r nil: no file) with its entry e: every version
// the entry holds must be there, and no version at or below e.Max that the entry does not
// hold (destroyed). A version above e.Max is a write whose ledger update did not happen yet.
func checkLedger(r *record, e *LedgerEntry) error {
	if e == nil {
		return nil
	}
	var have []int
	if r != nil {
		for _, v := range r.Versions {
			have = append(have, v.N)
		}
	}
	for _, n := range e.Live {
		if !slices.Contains(have, n) {
			return fmt.Errorf("%w: version %d missing", ErrRolledBack, n)
		}
	}
	for _, n := range have {
		if n <= e.Max && !slices.Contains(e.Live, n) {
			return fmt.Errorf("%w: destroyed version %d present", ErrRolledBack, n)
		}
	}
	return nil
}

// entryOf is the ledger entry of record r after a write (prev: the entry before it).
func entryOf(r *record, prev *LedgerEntry) LedgerEntry {
	e := LedgerEntry{Live: []int{}}
	if prev != nil {
		e.Max = prev.Max
	}
	for _, v := range r.Versions {
		e.Live = append(e.Live, v.N)
		e.Max = max(e.Max, v.N)
	}
	return e
}

// readChecked reads (kind, id) and checks it against the ledger. With a ledger the read holds
// the record's lock (a writer updates the file and the ledger under it, so a reader never sees
// one without the other). locked says the caller holds it already.
func (s *Store) readChecked(kind string, id []byte, locked bool) (*record, *LedgerEntry, error) {
	if s.ledger == nil {
		r, err := s.read(kind, id)
		return r, nil, err
	}
	path := s.path(kind, id)
	if !locked {
		if _, err := os.Stat(path); err == nil {
			unlock, err := lockFile(path + ".lock")
			if err != nil {
				return nil, nil, err
			}
			defer unlock()
		}
	}
	e, err := s.loadEntry(kind, id)
	if err != nil {
		return nil, nil, err
	}
	r, err := s.read(kind, id)
	switch {
	case errors.Is(err, ErrNotFound):
		if err := checkLedger(nil, e); err != nil {
			return nil, nil, err
		}
		return nil, e, err
	case err != nil:
		return nil, nil, err
	}
	if err := checkLedger(r, e); err != nil {
		return nil, nil, err
	}
	if e == nil && len(r.Versions) > 0 {
		// a record from before the ledger (or the ledger's data lost): recorded as read now,
		// so that from here on a rollback of it is refused
		ne := entryOf(r, nil)
		if err := s.storeEntry(kind, id, ne); err != nil {
			return nil, nil, err
		}
		e = &ne
	}
	return r, e, nil
}
