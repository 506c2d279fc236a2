// Package sealstore keeps per-subject secrets — a terminal's collaborative-signing share, a
// terminal's escrowed encryption key — sealed with SM4-GCM under a named, versioned vault key and
// stored one record per (kind, id) in a directory.
//
// Each record holds every version of its secret (a rotated share, a renewed encryption key), so
// data encrypted to an old key stays recoverable. What the store defends against, and how:
//
//   - Someone who can read the directory learns nothing: every secret is sealed under a key that
//     never leaves the vault (an HSM in production).
//   - Someone who can write the directory cannot move a record to another subject, kind or
//     version: the additional data of each seal binds kind, id, secret version and the sealing key's
//     name and version, and a record whose file name, kind or id disagree is refused.
//   - A torn write leaves the previous record: records are written to a temporary file, synced and
//     renamed over the old one; concurrent writers (two instances sharing the directory) are
//     serialised by an advisory lock per record.
//
// A rollback of a whole record file to an older copy (before a Put, a DestroyVersion or a
// Destroy), or its deletion, needs state outside the directory to detect: with a Ledger
// (SetLedger; Redis in the Caddy adapter) every read checks the record against its entry and
// refuses one that disagrees (ErrRolledBack). Without a ledger it is not detected.
package sealstore

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/emmansun/gmsm/sm3"
)

// Limits. A record is read whole; these bound what a hostile file can make the store allocate.
const (
	MaxSecretSize = 64 << 10 // bytes of one secret version
	MaxIDSize     = 256      // bytes of an id
	MaxVersions   = 256      // versions of one record
	maxRecordSize = 64 << 20 // bytes of one record file
	maxKindSize   = 32
	recordFormat  = 1
)

// Errors. Every error the store returns wraps one of these (errors.Is); none carries a secret.
var (
	// ErrNotFound means no record (or no such version) exists for the kind and id.
	ErrNotFound = errors.New("sealstore: not found")
	// ErrIntegrity means a record failed authentication or is malformed: it was altered, moved to
	// another subject, or sealed under a key version the vault no longer has.
	ErrIntegrity = errors.New("sealstore: record failed integrity check")
	// ErrInvalidInput means a kind, id or secret is empty, too long or malformed.
	ErrInvalidInput = errors.New("sealstore: invalid input")
	// ErrFull means the record already holds MaxVersions versions.
	ErrFull = errors.New("sealstore: record holds the maximum number of versions")
	// ErrKey means the vault could not seal or open (token unavailable, key missing).
	ErrKey = errors.New("sealstore: vault key unavailable")
	// ErrStorage means the directory could not be read or written.
	ErrStorage = errors.New("sealstore: storage error")
	// ErrExists means Create found a record of (kind, id) already.
	ErrExists = errors.New("sealstore: record exists")
	// ErrConflict means a conditional write (PutIf, DestroyVersionIf) found the record other
	// than the caller expected: another writer changed it since the caller read it.
	ErrConflict = errors.New("sealstore: record changed")
)

// Key is one version of an SM4 key that seals and opens (a *keyvault.SM4Key).
type Key interface {
	Version() int
	SealGCM(plaintext, aad []byte) ([]byte, error)
	OpenGCM(sealed, aad []byte) ([]byte, error)
}

// Keys resolves a named, versioned sealing key: Current seals new versions, At opens old ones.
type Keys interface {
	Name() string
	Current() (Key, error)
	At(version int) (Key, error)
}

// Store is a directory of sealed records. It is safe for concurrent use, also by several
// processes sharing the directory.
type Store struct {
	dir  string
	keys Keys
	now  func() time.Time
	mu   sync.Mutex // serialises writers within the process (flock serialises processes)
	// ledger, when set, holds every record's state outside the directory (SetLedger).
	ledger Ledger
}

// Info describes one version of a secret (never the secret itself).
type Info struct {
	Version    int       // the secret's version, from 1
	Created    time.Time // when it was stored
	KeyVersion int       // the version of the sealing key
}

// record is the file format: JSON, one file per (kind, id).
type record struct {
	Format   int             `json:"format"`
	Kind     string          `json:"kind"`
	ID       string          `json:"id"` // base64 of the id bytes
	Key      string          `json:"key"`
	Versions []recordVersion `json:"versions"`
}

type recordVersion struct {
	N          int    `json:"n"`
	Created    int64  `json:"created"` // unix seconds
	KeyVersion int    `json:"key_version"`
	Sealed     string `json:"sealed"` // base64 of nonce || ciphertext || tag
}

// Open returns a store over dir, creating it (0700) when missing. A directory that others than its
// owner can write is refused: whoever writes it could delete or roll back records.
func Open(dir string, keys Keys) (*Store, error) {
	if dir == "" || keys == nil {
		return nil, fmt.Errorf("%w: a directory and a sealing key are required", ErrInvalidInput)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrStorage, err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrStorage, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%w: %s is not a directory", ErrStorage, dir)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return nil, fmt.Errorf("%w: %s is writable by group or others (mode %o)", ErrStorage, dir, fi.Mode().Perm())
	}
	return &Store{dir: dir, keys: keys, now: time.Now}, nil
}

// Put seals secret as the next version of (kind, id) and returns that version number.
func (s *Store) Put(kind string, id []byte, secret []byte) (int, error) {
	return s.put(kind, id, secret, nil)
}

// Create seals secret as version 1 of a new record (kind, id). If the record exists (any
// version, whoever wrote it: another instance sharing the directory included) nothing is
// written and the error is ErrExists: of two concurrent creators exactly one succeeds.
func (s *Store) Create(kind string, id []byte, secret []byte) error {
	_, err := s.put(kind, id, secret, func(r *record) error {
		if len(r.Versions) > 0 {
			return ErrExists
		}
		return nil
	})
	return err
}

// PutIf seals secret as the next version of the existing record (kind, id) only if match
// approves the record's versions as they are under the record's lock (opened; the caller must
// not keep the secrets): a compare-and-set against what the caller read earlier. No record:
// ErrNotFound (it was destroyed meanwhile: nothing is created); match false: ErrConflict.
func (s *Store) PutIf(kind string, id []byte, secret []byte, match func([]Version) bool) (int, error) {
	return s.put(kind, id, secret, func(r *record) error { return s.matches(kind, id, r, match) })
}

// matches opens r's versions and asks match about them.
func (s *Store) matches(kind string, id []byte, r *record, match func([]Version) bool) error {
	if len(r.Versions) == 0 {
		return ErrNotFound
	}
	vs, err := s.openAll(kind, id, r)
	if err != nil {
		return err
	}
	ok := match(vs)
	for _, v := range vs {
		zero(v.Secret)
	}
	if !ok {
		return ErrConflict
	}
	return nil
}

func (s *Store) put(kind string, id []byte, secret []byte, check func(*record) error) (int, error) {
	if err := checkSubject(kind, id); err != nil {
		return 0, err
	}
	if len(secret) == 0 || len(secret) > MaxSecretSize {
		return 0, fmt.Errorf("%w: a secret is 1 to %d bytes", ErrInvalidInput, MaxSecretSize)
	}
	key, err := s.keys.Current()
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrKey, err)
	}
	var n int
	err = s.update(kind, id, func(r *record, e *LedgerEntry) error {
		if check != nil {
			if err := check(r); err != nil {
				return err
			}
		}
		if len(r.Versions) >= MaxVersions {
			return ErrFull
		}
		n = 1
		if len(r.Versions) > 0 {
			n = r.Versions[len(r.Versions)-1].N + 1
		}
		if e != nil && n <= e.Max {
			n = e.Max + 1 // a destroyed number is never used again
		}
		sealed, err := key.SealGCM(secret, s.aad(kind, id, n, key.Version()))
		if err != nil {
			return fmt.Errorf("%w: %v", ErrKey, err)
		}
		r.Versions = append(r.Versions, recordVersion{
			N: n, Created: s.now().Unix(), KeyVersion: key.Version(), Sealed: base64.StdEncoding.EncodeToString(sealed),
		})
		return nil
	})
	return n, err
}

// Get opens the newest version of (kind, id). The caller owns (and should zero) the secret.
func (s *Store) Get(kind string, id []byte) (secret []byte, version int, err error) {
	return s.get(kind, id, 0)
}

// GetVersion opens version n of (kind, id).
func (s *Store) GetVersion(kind string, id []byte, n int) ([]byte, error) {
	if n < 1 {
		return nil, fmt.Errorf("%w: versions start at 1", ErrInvalidInput)
	}
	b, _, err := s.get(kind, id, n)
	return b, err
}

func (s *Store) get(kind string, id []byte, n int) ([]byte, int, error) {
	if err := checkSubject(kind, id); err != nil {
		return nil, 0, err
	}
	r, _, err := s.readChecked(kind, id, false)
	if err != nil {
		return nil, 0, err
	}
	if len(r.Versions) == 0 {
		return nil, 0, ErrNotFound
	}
	v := r.Versions[len(r.Versions)-1]
	if n != 0 {
		i := sort.Search(len(r.Versions), func(i int) bool { return r.Versions[i].N >= n })
		if i == len(r.Versions) || r.Versions[i].N != n {
			return nil, 0, ErrNotFound
		}
		v = r.Versions[i]
	}
	secret, err := s.open(kind, id, v)
	if err != nil {
		return nil, 0, err
	}
	return secret, v.N, nil
}

// Versions lists the versions of (kind, id), oldest first.
func (s *Store) Versions(kind string, id []byte) ([]Info, error) {
	if err := checkSubject(kind, id); err != nil {
		return nil, err
	}
	r, _, err := s.readChecked(kind, id, false)
	if err != nil {
		return nil, err
	}
	out := make([]Info, 0, len(r.Versions))
	for _, v := range r.Versions {
		out = append(out, Info{Version: v.N, Created: time.Unix(v.Created, 0).UTC(), KeyVersion: v.KeyVersion})
	}
	return out, nil
}

// Rewrap reseals every version of (kind, id) under the sealing key's current version (after a
// rotation of the vault key), without the secrets leaving this process. It returns how many
// versions were resealed.
func (s *Store) Rewrap(kind string, id []byte) (int, error) {
	if err := checkSubject(kind, id); err != nil {
		return 0, err
	}
	key, err := s.keys.Current()
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrKey, err)
	}
	count := 0
	err = s.update(kind, id, func(r *record, _ *LedgerEntry) error {
		if len(r.Versions) == 0 {
			return ErrNotFound
		}
		for i, v := range r.Versions {
			if v.KeyVersion == key.Version() {
				continue
			}
			secret, err := s.open(kind, id, v)
			if err != nil {
				return err
			}
			sealed, err := key.SealGCM(secret, s.aad(kind, id, v.N, key.Version()))
			zero(secret)
			if err != nil {
				return fmt.Errorf("%w: %v", ErrKey, err)
			}
			r.Versions[i].KeyVersion = key.Version()
			r.Versions[i].Sealed = base64.StdEncoding.EncodeToString(sealed)
			count++
		}
		return nil
	})
	return count, err
}

// Destroy removes the record of (kind, id) with all its versions. Removing a record that does not
// exist returns ErrNotFound.
func (s *Store) Destroy(kind string, id []byte) error {
	if err := checkSubject(kind, id); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkLedgerMarker(); err != nil {
		return err
	}
	path := s.path(kind, id)
	unlock, err := lockFile(path + ".lock")
	if err != nil {
		return err
	}
	defer unlock()
	if s.ledger != nil {
		// the ledger first: a copy of the file put back later is refused
		r, e, err := s.readChecked(kind, id, true)
		if err != nil {
			return err
		}
		if r == nil {
			return ErrNotFound
		}
		if err := s.storeEntry(kind, id, entryOf(&record{}, &LedgerEntry{Max: entryOf(r, e).Max})); err != nil {
			return err
		}
	}
	if err := os.Remove(path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return ErrNotFound
		}
		return fmt.Errorf("%w: %v", ErrStorage, err)
	}
	return syncDir(filepath.Dir(path))
}

// Version is one opened version of a secret (GetAll). The caller owns (and should zero) Secret.
type Version struct {
	Info
	Secret []byte
}

// GetAll opens every version of (kind, id), oldest first, from one read of the record (a caller
// that keeps a current and a pending version, such as a share being rotated, sees both
// consistently). Any version that fails to open fails the whole call.
func (s *Store) GetAll(kind string, id []byte) ([]Version, error) {
	if err := checkSubject(kind, id); err != nil {
		return nil, err
	}
	r, _, err := s.readChecked(kind, id, false)
	if err != nil {
		return nil, err
	}
	if len(r.Versions) == 0 {
		return nil, ErrNotFound
	}
	return s.openAll(kind, id, r)
}

// openAll opens every version of r; any failure fails the whole call.
func (s *Store) openAll(kind string, id []byte, r *record) ([]Version, error) {
	out := make([]Version, 0, len(r.Versions))
	for _, v := range r.Versions {
		secret, err := s.open(kind, id, v)
		if err != nil {
			for _, o := range out {
				zero(o.Secret)
			}
			return nil, err
		}
		out = append(out, Version{
			Info:   Info{Version: v.N, Created: time.Unix(v.Created, 0).UTC(), KeyVersion: v.KeyVersion},
			Secret: secret,
		})
	}
	return out, nil
}

// DestroyVersion removes version n of (kind, id) and keeps the others (their seals are bound to
// their own version numbers, so nothing else changes). Put numbers from the newest version kept,
// so destroying the newest lets its number be used again: like a rollback of the whole file, a
// copy of the destroyed seal spliced back in is not detected here. Removing the last version is
// refused (ErrInvalidInput): use Destroy; a missing version is ErrNotFound.
func (s *Store) DestroyVersion(kind string, id []byte, n int) error {
	return s.destroyVersion(kind, id, n, nil)
}

// DestroyVersionIf is DestroyVersion only if match approves the record's versions as they are
// under the record's lock (see PutIf): ErrNotFound when the record is gone, ErrConflict when
// match refuses.
func (s *Store) DestroyVersionIf(kind string, id []byte, n int, match func([]Version) bool) error {
	return s.destroyVersion(kind, id, n, match)
}

func (s *Store) destroyVersion(kind string, id []byte, n int, match func([]Version) bool) error {
	if err := checkSubject(kind, id); err != nil {
		return err
	}
	if n < 1 {
		return fmt.Errorf("%w: versions start at 1", ErrInvalidInput)
	}
	if _, _, err := s.readChecked(kind, id, false); err != nil {
		return err // no record: do not create an empty one
	}
	return s.update(kind, id, func(r *record, _ *LedgerEntry) error {
		if len(r.Versions) == 0 {
			return ErrNotFound // destroyed between the read and the lock
		}
		if match != nil {
			if err := s.matches(kind, id, r, match); err != nil {
				return err
			}
		}
		i := sort.Search(len(r.Versions), func(i int) bool { return r.Versions[i].N >= n })
		if i == len(r.Versions) || r.Versions[i].N != n {
			return ErrNotFound
		}
		if len(r.Versions) == 1 {
			return fmt.Errorf("%w: version %d is the last one: use Destroy", ErrInvalidInput, n)
		}
		r.Versions = append(r.Versions[:i], r.Versions[i+1:]...)
		return nil
	})
}

// List returns the ids of every record of kind, in no particular order. Records that fail to
// parse are reported in the error (joined) and left out.
func (s *Store) List(kind string) ([][]byte, error) {
	if err := checkKind(kind); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(filepath.Join(s.dir, kind))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("%w: %v", ErrStorage, err)
	}
	var ids [][]byte
	var errs []error
	for _, e := range entries {
		name := e.Name()
		if filepath.Ext(name) != ".json" {
			continue
		}
		r, err := s.readFile(filepath.Join(s.dir, kind, name))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		id, err := base64.StdEncoding.DecodeString(r.ID)
		if err != nil || r.Kind != kind || s.fileName(kind, id) != name {
			errs = append(errs, fmt.Errorf("%s: %w: names another subject", name, ErrIntegrity))
			continue
		}
		ids = append(ids, id)
	}
	return ids, errors.Join(errs...)
}

// aad binds a sealed secret to its place: kind, id, secret version and the sealing key.
func (s *Store) aad(kind string, id []byte, n, keyVersion int) []byte {
	b := make([]byte, 0, 64+len(kind)+len(id))
	b = append(b, "gmgate-sealstore-v1\x00"...)
	b = appendField(b, []byte(kind))
	b = appendField(b, id)
	b = appendField(b, []byte(s.keys.Name()))
	b = binary.BigEndian.AppendUint32(b, uint32(n))
	b = binary.BigEndian.AppendUint32(b, uint32(keyVersion))
	return b
}

func appendField(b, f []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
	return append(b, f...)
}

func (s *Store) open(kind string, id []byte, v recordVersion) ([]byte, error) {
	sealed, err := base64.StdEncoding.DecodeString(v.Sealed)
	if err != nil || v.KeyVersion < 1 {
		return nil, fmt.Errorf("%w: version %d is malformed", ErrIntegrity, v.N)
	}
	key, err := s.keys.At(v.KeyVersion)
	if err != nil {
		return nil, fmt.Errorf("%w: sealing key version %d: %v", ErrKey, v.KeyVersion, err)
	}
	secret, err := key.OpenGCM(sealed, s.aad(kind, id, v.N, v.KeyVersion))
	if err != nil {
		return nil, fmt.Errorf("%w: version %d does not open", ErrIntegrity, v.N)
	}
	return secret, nil
}

// fileName is hex(SM3(kind, id)): ids may hold any bytes, file names may not.
func (s *Store) fileName(kind string, id []byte) string {
	h := sm3.New()
	h.Write(appendField(appendField(nil, []byte(kind)), id))
	return hex.EncodeToString(h.Sum(nil)) + ".json"
}

func (s *Store) path(kind string, id []byte) string {
	return filepath.Join(s.dir, kind, s.fileName(kind, id))
}

func (s *Store) read(kind string, id []byte) (*record, error) {
	r, err := s.readFile(s.path(kind, id))
	if err != nil {
		return nil, err
	}
	if err := s.checkRecord(r, kind, id); err != nil {
		return nil, err
	}
	return r, nil
}

func (s *Store) checkRecord(r *record, kind string, id []byte) error {
	rid, err := base64.StdEncoding.DecodeString(r.ID)
	if err != nil || r.Kind != kind || string(rid) != string(id) || r.Key != s.keys.Name() || r.Format != recordFormat {
		return fmt.Errorf("%w: the record names another subject, key or format", ErrIntegrity)
	}
	if len(r.Versions) > MaxVersions {
		return fmt.Errorf("%w: too many versions", ErrIntegrity)
	}
	for i, v := range r.Versions {
		if v.N < 1 || (i > 0 && v.N <= r.Versions[i-1].N) {
			return fmt.Errorf("%w: versions out of order", ErrIntegrity)
		}
	}
	return nil
}

func (s *Store) readFile(path string) (*record, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, ErrNotFound
		}
		return nil, fmt.Errorf("%w: %v", ErrStorage, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxRecordSize+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrStorage, err)
	}
	if len(data) > maxRecordSize {
		return nil, fmt.Errorf("%w: record larger than %d bytes", ErrIntegrity, maxRecordSize)
	}
	var r record
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("%w: record is not valid JSON", ErrIntegrity)
	}
	return &r, nil
}

// update runs f on the current record of (kind, id) (an empty one when there is none) under the
// record's lock and writes the result atomically.
func (s *Store) update(kind string, id []byte, f func(*record, *LedgerEntry) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	dir := filepath.Join(s.dir, kind)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("%w: %v", ErrStorage, err)
	}
	if err := s.checkLedgerMarker(); err != nil {
		return err
	}
	path := s.path(kind, id)
	unlock, err := lockFile(path + ".lock")
	if err != nil {
		return err
	}
	defer unlock()
	r, e, err := s.readChecked(kind, id, true)
	switch {
	case errors.Is(err, ErrNotFound):
		r = &record{Format: recordFormat, Kind: kind, ID: base64.StdEncoding.EncodeToString(id), Key: s.keys.Name()}
	case err != nil:
		return err
	}
	before := entryOf(r, e)
	if err := f(r, e); err != nil {
		return err
	}
	data, err := json.MarshalIndent(r, "", " ")
	if err != nil {
		return fmt.Errorf("%w: %v", ErrStorage, err)
	}
	if s.ledger == nil {
		return writeAtomic(path, data)
	}
	after := entryOf(r, e)
	if slices.Equal(before.Live, after.Live) {
		return writeAtomic(path, data) // a rewrap: same versions
	}
	// A version removed: the ledger first (a crash between leaves the record refused, never
	// the destroyed version usable). A version added: the file first (a crash between leaves
	// a version above the ledger's Max, which is accepted).
	removed := len(after.Live) <= len(before.Live)
	if removed {
		if err := s.storeEntry(kind, id, after); err != nil {
			return err
		}
	}
	if err := writeAtomic(path, data); err != nil {
		return err
	}
	if !removed {
		return s.storeEntry(kind, id, after)
	}
	return nil
}

func (s *Store) storeEntry(kind string, id []byte, e LedgerEntry) error {
	if err := s.ledger.StoreEntry(s.ledgerName(kind, id), e); err != nil {
		return fmt.Errorf("%w: ledger: %v", ErrStorage, err)
	}
	return nil
}

func writeAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return fmt.Errorf("%w: %v", ErrStorage, err)
	}
	name := tmp.Name()
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(name)
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("%w: %v", ErrStorage, err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("%w: %v", ErrStorage, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("%w: %v", ErrStorage, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("%w: %v", ErrStorage, err)
	}
	if err := os.Rename(name, path); err != nil {
		return fmt.Errorf("%w: %v", ErrStorage, err)
	}
	ok = true
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrStorage, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("%w: %v", ErrStorage, err)
	}
	return nil
}

// lockFile takes an exclusive advisory lock (flock) on path, creating it.
func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrStorage, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: %v", ErrStorage, err)
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

func checkKind(kind string) error {
	if len(kind) == 0 || len(kind) > maxKindSize {
		return fmt.Errorf("%w: a kind is 1 to %d characters", ErrInvalidInput, maxKindSize)
	}
	for _, c := range kind {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return fmt.Errorf("%w: a kind is lower-case letters, digits and '-'", ErrInvalidInput)
		}
	}
	return nil
}

func checkSubject(kind string, id []byte) error {
	if err := checkKind(kind); err != nil {
		return err
	}
	if len(id) == 0 || len(id) > MaxIDSize {
		return fmt.Errorf("%w: an id is 1 to %d bytes", ErrInvalidInput, MaxIDSize)
	}
	return nil
}

func zero(b []byte) {
	for i := range b {
		b[i] = 0
	}
}
