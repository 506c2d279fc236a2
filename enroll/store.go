package enroll

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gmgate/gmgate/sealstore"
)

// TokenRecord is an enrolment token as stored: never the secret, only its SM3 digest.
type TokenRecord struct {
	ID string `json:"id"`
	// Hash is SM3 of the token's secret part.
	Hash []byte `json:"hash"`
	// Profile names the certificate profile the token enrols under.
	Profile string `json:"profile"`
	// CommonName, when set, is the only subject common name the token may enrol.
	CommonName string    `json:"common_name,omitempty"`
	NotAfter   time.Time `json:"not_after"`
	Created    time.Time `json:"created"`
	// Note is the operator's note (asset number, shop); never interpreted.
	Note string `json:"note,omitempty"`
	// Used is filled by Tokens (list) from the spent marker; Reserved when an issuance holds
	// the token (or a crash left it held: issue a new token).
	Used     bool `json:"used,omitempty"`
	Reserved bool `json:"reserved,omitempty"`
}

// Delivery is what a terminal receives for an issued pair; kept for download.
type Delivery struct {
	// EnvelopedKey is the encryption private key as a GB/T 35276 SM2EnvelopedKey to the signing
	// public key (standard requests).
	EnvelopedKey []byte `json:"enveloped_key,omitempty"`
	// CSRResponse is the GM/T 0092-2020 CSRResponse (sign certificate chain, enveloped key,
	// encryption certificate chain) (standard requests).
	CSRResponse []byte `json:"csr_response,omitempty"`
	// CFCAEncryptedKey is the encryption private key encrypted to the CFCA request's temporary
	// public key, in CFCA's escrow format (CFCA "double" requests).
	CFCAEncryptedKey string `json:"cfca_encrypted_key,omitempty"`
}

// CertRecord is one issued pair.
type CertRecord struct {
	// Serial is the signing certificate's serial number, lower-case hex: the record's ID.
	Serial     string    `json:"serial"`
	EncSerial  string    `json:"enc_serial"`
	CommonName string    `json:"common_name"`
	Profile    string    `json:"profile"`
	SKI        string    `json:"ski"` // hex subject key identifier of the signing key
	NotBefore  time.Time `json:"not_before"`
	NotAfter   time.Time `json:"not_after"`
	IssuedAt   time.Time `json:"issued_at"`
	// Via is "token:<id>" for a first enrolment, "renew:<serial>" for a renewal.
	Via       string    `json:"via"`
	SignCert  []byte    `json:"sign_cert"`
	EncCert   []byte    `json:"enc_cert"`
	Delivery  Delivery  `json:"delivery"`
	Escrowed  bool      `json:"escrowed,omitempty"`
	RenewedBy string    `json:"renewed_by,omitempty"`
	Revoked   bool      `json:"revoked,omitempty"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`
	// RevokedBy is "holder" or "admin:<who>".
	RevokedBy string `json:"revoked_by,omitempty"`
}

// Revocation is one entry of the CRL.
type Revocation struct {
	Serial string
	At     time.Time
}

// Store keeps tokens, issued pairs and revocations. Implementations are safe for concurrent
// use; ReserveToken is atomic (exactly one caller holds a token at a time). A record that fails its
// integrity check is refused with an error wrapping ErrIntegrity, never returned. The listing
// methods (Tokens, Certs, Revocations) return the records that verify together with an error
// wrapping ErrIntegrity naming those that do not: a caller that needs the whole set treats that
// error as a failure.
type Store interface {
	PutToken(TokenRecord) error
	Token(id string) (TokenRecord, error)
	// ReserveToken takes a single-use ID (a token ID, or "renew-<serial>") for one issuance;
	// ErrTokenUsed when it is spent or reserved already. ReleaseToken gives a reservation back
	// (the issuance failed); it leaves a spent ID spent. SpendToken turns the reservation into
	// the permanent spent marker.
	ReserveToken(ctx context.Context, id string) error
	ReleaseToken(id string) error
	SpendToken(id string) error
	Tokens() ([]TokenRecord, error)
	// PutCert creates or replaces a record.
	PutCert(CertRecord) error
	Cert(serial string) (CertRecord, error)
	// CertBySKI returns the newest record of the signing key with that identifier.
	CertBySKI(ski string) (CertRecord, error)
	Certs() ([]CertRecord, error)
	// Revoke marks serial (and its encryption certificate) revoked; revoking twice is not an
	// error. It returns the updated record.
	Revoke(serial, by string, at time.Time) (CertRecord, error)
	// Revocations lists the revoked serials (signing and encryption certificates).
	Revocations() ([]Revocation, error)
}

// FileStore is a Store in a directory (0700; files 0600, written to a temporary name and
// renamed): tokens/<id>.json, used/<id> (created exclusively: single use across processes on
// the same file system), certs/<serial>.json, revoked/<serial>, ski/<ski>, crl/<CA>.json (the
// mark of the last CRL the CA signed, CRLMark). The gmgate enroll
// commands work on the same directory while the server runs.
//
// Every file is an authenticated record (format 2): the record's JSON with a tag (SM4-GCM with
// an empty plaintext, sealstore.Tag) under a versioned vault key, binding the record kind, its
// ID (the file name), the key's name and version and the record's bytes. Someone who can write
// the directory but not use the vault key cannot add a record (a token whose secret they
// chose), edit one (profile, expiry, common name, a revoked flag, a delivery) or move one to
// another ID; a record that does not verify is refused (ErrIntegrity) and reported to the
// hook set with OnIntegrityFailure. A rotated key keeps verifying the records of its old
// versions; new records use the current version.
//
// What the tags cannot stop is a rollback: putting back an older, genuine file (a token's
// record without its spent marker, a pair's record from before its revocation). The Server
// keeps spent tokens and renewals in its TokenLedger as well (the Redis replay store when
// configured), takes revocations from the CRL it signed last, and refuses to sign a CRL that
// lists fewer serials than the last one recorded here and in its CRLLedger; docs/enrolment.md
// states what remains.
type FileStore struct {
	dir  string
	keys sealstore.Keys
	mu   sync.Mutex // serialises read-modify-write of records within the process

	onIntegrity atomic.Pointer[func(kind, id string, err error)]
}

// Record kinds (bound into each record's tag; the directory of each kind).
const (
	kindToken   = "token"
	kindSpent   = "spent"
	kindCert    = "cert"
	kindRevoked = "revoked"
	kindSKI     = "ski"
	kindCRL     = "crl" // the mark of the last CRL a CA signed (CRLMark), ID: the CA (caID)
)

// RecordKinds lists the record kinds (the labels of refused-record reports).
func RecordKinds() []string {
	return []string{kindToken, kindSpent, kindCert, kindRevoked, kindSKI, kindCRL}
}

var kindDirs = map[string]string{kindToken: "tokens", kindSpent: "used", kindCert: "certs", kindRevoked: "revoked", kindSKI: "ski", kindCRL: "crl"}

// kindExt is the file name extension of each kind.
var kindExt = map[string]string{kindToken: ".json", kindCert: ".json", kindCRL: ".json"}

// Record-size bounds (a record holds two certificates and a delivery).
const maxRecordSize = 256 << 10

// recordFormat is the format of authenticated records; files without it were written before
// records were authenticated.
const recordFormat = 2

// Store errors about record integrity.
var (
	// ErrIntegrity reports a record that failed its integrity check: forged, edited, moved to
	// another ID, truncated, tagged under another key, or written before records were
	// authenticated (ErrUnauthenticated).
	ErrIntegrity = errors.New("enroll: store record failed its integrity check")
	// ErrUnauthenticated reports a record written before records were authenticated (an older
	// gmgate); it also wraps ErrIntegrity. `gmgate enroll migrate` tags such records after the
	// operator has checked the store.
	ErrUnauthenticated = errors.New("enroll: store record is not authenticated (written by an older gmgate): check the store, then run `gmgate enroll migrate`")
	// ErrStoreKey reports that the vault key of the store could not tag or verify (vault down).
	ErrStoreKey = errors.New("enroll: store key unavailable")
)

// envelope is the on-disk form of every record.
type envelope struct {
	Format     int             `json:"format"`
	Kind       string          `json:"kind"`
	ID         string          `json:"id"`
	Key        string          `json:"key"`
	KeyVersion int             `json:"key_version"`
	Tag        []byte          `json:"tag"`
	Record     json.RawMessage `json:"record"`
}

// marker is the record of the small kinds (spent, revoked, ski).
type marker struct {
	// State of a single-use ID: "reserved" while an issuance holds it, "spent" after.
	State string `json:"state,omitempty"`
	// At is when the token was spent or the certificate revoked.
	At time.Time `json:"at,omitzero"`
	// Serial is the record the ski index names.
	Serial string `json:"serial,omitempty"`
}

// OpenFileStore opens (creating) the store directory; keys is the vault key that tags and
// verifies its records (the Caddy adapter's store_key). Using the key opens the vault: opening
// the store does not.
func OpenFileStore(dir string, keys sealstore.Keys) (*FileStore, error) {
	if dir == "" {
		return nil, errors.New("enroll: store directory required")
	}
	if keys == nil {
		return nil, errors.New("enroll: store key required (the vault key that authenticates the store's records)")
	}
	for _, sub := range []string{"", "tokens", "used", "certs", "revoked", "ski", "crl"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, fmt.Errorf("enroll: store: %w", err)
		}
	}
	return &FileStore{dir: dir, keys: keys}, nil
}

// Dir returns the store directory.
func (s *FileStore) Dir() string { return s.dir }

// OnIntegrityFailure sets a function called with every record refused for integrity (kind
// token, spent, cert, revoked or ski; its ID): for metrics and logs.
func (s *FileStore) OnIntegrityFailure(f func(kind, id string, err error)) { s.onIntegrity.Store(&f) }

// validID accepts the IDs the package creates: lower-case hex or base64url, bounded.
func validID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for _, c := range id {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func (s *FileStore) path(kind, id string) (string, error) {
	if !validID(id) {
		return "", fmt.Errorf("%w: bad identifier", ErrNotFound)
	}
	return filepath.Join(s.dir, kindDirs[kind], id+kindExt[kind]), nil
}

func writeAtomic(path string, data []byte) error { return writeAtomicMode(path, data, 0o600) }

func writeAtomicMode(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	name := tmp.Name()
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(name)
		}
	}()
	if err := tmp.Chmod(mode); err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(name, path); err != nil {
		return err
	}
	ok = true
	return nil
}

// tagData is what a record's tag authenticates (the key version is bound by the key itself:
// each version is a different key).
func tagData(kind, id, keyName string, record []byte) []byte {
	b := make([]byte, 0, 64+len(kind)+len(id)+len(keyName)+len(record))
	b = append(b, "gmgate-enroll-record-v2\x00"...)
	for _, f := range [][]byte{[]byte(kind), []byte(id), []byte(keyName)} {
		b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(record)))
	return append(b, record...)
}

// seal returns the file content of record v of (kind, id).
func (s *FileStore) seal(kind, id string, v any) ([]byte, error) {
	rec, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return s.sealRaw(kind, id, rec)
}

func (s *FileStore) sealRaw(kind, id string, rec []byte) ([]byte, error) {
	name := s.keys.Name()
	ver, tag, err := sealstore.Tag(s.keys, tagData(kind, id, name, rec))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrStoreKey, err)
	}
	return json.Marshal(envelope{Format: recordFormat, Kind: kind, ID: id, Key: name, KeyVersion: ver, Tag: tag, Record: rec})
}

// open verifies data as the record of (kind, id) and returns the record's JSON.
func (s *FileStore) open(kind, id string, data []byte) ([]byte, error) {
	var env envelope
	if err := json.Unmarshal(data, &env); err != nil {
		if kind == kindRevoked || kind == kindSpent || kind == kindSKI {
			if isLegacyMarker(kind, data) {
				return nil, fmt.Errorf("%w: %w", ErrIntegrity, ErrUnauthenticated)
			}
		}
		return nil, fmt.Errorf("%w: not a record", ErrIntegrity)
	}
	if env.Format == 0 {
		return nil, fmt.Errorf("%w: %w", ErrIntegrity, ErrUnauthenticated)
	}
	if env.Format != recordFormat || env.Kind != kind || env.ID != id {
		return nil, fmt.Errorf("%w: the record names another kind, identifier or format", ErrIntegrity)
	}
	if env.Key != s.keys.Name() {
		return nil, fmt.Errorf("%w: tagged under key %q, the store's key is %q", ErrIntegrity, env.Key, s.keys.Name())
	}
	err := sealstore.CheckTag(s.keys, env.KeyVersion, env.Tag, tagData(kind, id, env.Key, env.Record))
	switch {
	case errors.Is(err, sealstore.ErrIntegrity):
		return nil, fmt.Errorf("%w: the tag does not verify", ErrIntegrity)
	case err != nil:
		return nil, fmt.Errorf("%w: %v", ErrStoreKey, err)
	}
	return env.Record, nil
}

// isLegacyMarker reports whether data is a marker as an older gmgate wrote it (an RFC 3339
// time, or a serial for the ski index).
func isLegacyMarker(kind string, data []byte) bool {
	t := strings.TrimSpace(string(data))
	if kind == kindSKI {
		return t != "" && validID(t)
	}
	_, err := time.Parse(time.RFC3339Nano, t)
	return err == nil
}

func (s *FileStore) readFile(kind, id string) ([]byte, error) {
	p, err := s.path(kind, id)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxRecordSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxRecordSize {
		return nil, fmt.Errorf("%w: record larger than %d bytes", ErrIntegrity, maxRecordSize)
	}
	return data, nil
}

// get reads, verifies and decodes the record of (kind, id) into v.
func (s *FileStore) get(kind, id string, v any) error {
	data, err := s.readFile(kind, id)
	if err == nil {
		var rec []byte
		if rec, err = s.open(kind, id, data); err == nil {
			dec := json.NewDecoder(bytes.NewReader(rec))
			dec.DisallowUnknownFields()
			if derr := dec.Decode(v); derr != nil {
				err = fmt.Errorf("%w: record does not decode", ErrIntegrity)
			}
		}
	}
	if errors.Is(err, ErrIntegrity) {
		err = &RecordError{Kind: kind, ID: id, Err: err}
		if f := s.onIntegrity.Load(); f != nil {
			(*f)(kind, id, err)
		}
	}
	return err
}

// RecordError names the store record an error is about.
type RecordError struct {
	Kind, ID string
	Err      error
}

func (e *RecordError) Error() string {
	return "enroll: " + e.Kind + " record " + e.ID + ": " + e.Err.Error()
}
func (e *RecordError) Unwrap() error { return e.Err }

func (s *FileStore) put(kind, id string, v any) error {
	p, err := s.path(kind, id)
	if err != nil {
		return err
	}
	data, err := s.seal(kind, id, v)
	if err != nil {
		return err
	}
	return writeAtomic(p, data)
}

// PutToken stores a token record.
func (s *FileStore) PutToken(t TokenRecord) error {
	t.Used, t.Reserved = false, false
	return s.put(kindToken, t.ID, t)
}

// Token returns a token record.
func (s *FileStore) Token(id string) (TokenRecord, error) {
	var t TokenRecord
	if err := s.get(kindToken, id, &t); err != nil {
		return TokenRecord{}, err
	}
	if t.ID != id || t.Used || t.Reserved {
		return TokenRecord{}, s.integrity(kindToken, id, "the record names another token")
	}
	return t, nil
}

func (s *FileStore) integrity(kind, id, what string) error {
	err := &RecordError{Kind: kind, ID: id, Err: fmt.Errorf("%w: %s", ErrIntegrity, what)}
	if f := s.onIntegrity.Load(); f != nil {
		(*f)(kind, id, err)
	}
	return err
}

// Single-use states.
const (
	stateReserved = "reserved"
	stateSpent    = "spent"
)

// ReserveToken creates used/<id> exclusively, as an authenticated "reserved" marker.
func (s *FileStore) ReserveToken(_ context.Context, id string) error {
	p, err := s.path(kindSpent, id)
	if err != nil {
		return err
	}
	data, err := s.seal(kindSpent, id, marker{State: stateReserved, At: time.Now().UTC()})
	if err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return ErrTokenUsed
	}
	if err != nil {
		return err
	}
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		os.Remove(p)
	}
	return werr
}

// ReleaseToken removes used/<id> when it is a reservation that verifies; a spent marker, or
// one that does not verify, stays (the ID stays unusable).
func (s *FileStore) ReleaseToken(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var m marker
	if err := s.get(kindSpent, id, &m); err != nil {
		return err
	}
	if m.State != stateReserved {
		return nil
	}
	p, _ := s.path(kindSpent, id)
	return os.Remove(p)
}

// SpendToken replaces used/<id> with an authenticated "spent" marker.
func (s *FileStore) SpendToken(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.put(kindSpent, id, marker{State: stateSpent, At: time.Now().UTC()})
}

func (s *FileStore) list(kind string) ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(s.dir, kindDirs[kind]))
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, ".") || e.IsDir() {
			continue
		}
		ids = append(ids, strings.TrimSuffix(n, kindExt[kind]))
	}
	sort.Strings(ids)
	return ids, nil
}

// Tokens lists the token records, with Used filled (from a spent marker that verifies).
func (s *FileStore) Tokens() ([]TokenRecord, error) {
	ids, err := s.list(kindToken)
	if err != nil {
		return nil, err
	}
	out := make([]TokenRecord, 0, len(ids))
	var bad []error
	for _, id := range ids {
		t, err := s.Token(id)
		if errors.Is(err, ErrIntegrity) {
			bad = append(bad, err)
			continue
		}
		if err != nil {
			return nil, err
		}
		var m marker
		switch err := s.get(kindSpent, id, &m); {
		case err == nil && m.State == stateReserved:
			t.Reserved = true
		case err == nil:
			t.Used = true
		case errors.Is(err, ErrNotFound):
		case errors.Is(err, ErrIntegrity):
			bad = append(bad, err)
			t.Used = true // a marker that does not verify still blocks the token
		default:
			return nil, err
		}
		out = append(out, t)
	}
	return out, errors.Join(bad...)
}

// PutCert stores a certificate record, and ski/<ski> naming the newest record of its signing
// key (CertBySKI reads one file: the lookup precedes signature verification, so it must not
// cost a scan of the store per unauthenticated request).
func (s *FileStore) PutCert(c CertRecord) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.put(kindCert, c.Serial, c); err != nil {
		return err
	}
	if c.SKI == "" {
		return nil
	}
	var cur marker
	if err := s.get(kindSKI, c.SKI, &cur); err == nil && cur.Serial != c.Serial {
		if prev, err := s.Cert(cur.Serial); err == nil && prev.IssuedAt.After(c.IssuedAt) {
			return nil // an older record rewritten (renewed_by, revoked): the index stays
		}
	}
	return s.put(kindSKI, c.SKI, marker{Serial: c.Serial})
}

// Cert returns the record of a signing-certificate serial (lower-case hex).
func (s *FileStore) Cert(serial string) (CertRecord, error) {
	serial = strings.ToLower(serial)
	var c CertRecord
	if err := s.get(kindCert, serial, &c); err != nil {
		return CertRecord{}, err
	}
	if c.Serial != serial {
		return CertRecord{}, s.integrity(kindCert, serial, "the record names another certificate")
	}
	return c, nil
}

// CertBySKI returns the newest record of the signing key with that identifier (ski/<ski>).
func (s *FileStore) CertBySKI(ski string) (CertRecord, error) {
	ski = strings.ToLower(ski)
	var m marker
	if err := s.get(kindSKI, ski, &m); err != nil {
		return CertRecord{}, err
	}
	c, err := s.Cert(m.Serial)
	if err == nil && c.SKI != ski {
		return CertRecord{}, s.integrity(kindSKI, ski, "the index names a record of another key")
	}
	return c, err
}

// Certs lists every certificate record.
func (s *FileStore) Certs() ([]CertRecord, error) {
	ids, err := s.list(kindCert)
	if err != nil {
		return nil, err
	}
	out := make([]CertRecord, 0, len(ids))
	var bad []error
	for _, id := range ids {
		c, err := s.Cert(id)
		if errors.Is(err, ErrIntegrity) {
			bad = append(bad, err)
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, errors.Join(bad...)
}

// Revoke marks a pair revoked: revoked/<serial> and revoked/<enc serial> markers (what the CRL
// is built from), then the record.
func (s *FileStore) Revoke(serial, by string, at time.Time) (CertRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.Cert(serial)
	if err != nil {
		return c, err
	}
	if c.Revoked {
		return c, nil
	}
	for _, sn := range []string{c.Serial, c.EncSerial} {
		if sn == "" {
			continue
		}
		if err := s.put(kindRevoked, sn, marker{At: at.UTC()}); err != nil {
			return c, err
		}
	}
	c.Revoked, c.RevokedAt, c.RevokedBy = true, at.UTC(), by
	return c, s.put(kindCert, c.Serial, c)
}

// Revocations lists the revoked serials with their revocation times.
func (s *FileStore) Revocations() ([]Revocation, error) {
	ids, err := s.list(kindRevoked)
	if err != nil {
		return nil, err
	}
	out := make([]Revocation, 0, len(ids))
	var bad []error
	for _, id := range ids {
		var m marker
		err := s.get(kindRevoked, id, &m)
		if err == nil {
			if _, ok := new(big.Int).SetString(id, 16); !ok || m.At.IsZero() {
				err = s.integrity(kindRevoked, id, "not a serial or no time")
			}
		}
		if errors.Is(err, ErrIntegrity) {
			bad = append(bad, err)
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, Revocation{Serial: id, At: m.At})
	}
	return out, errors.Join(bad...)
}

// Migration is what Migrate found (and, when applied, tagged).
type Migration struct {
	// Tagged are the records written before records were authenticated ("kind/id"): tagged
	// when applied, to be tagged otherwise.
	Tagged []string
	// Refused are the records that are neither authenticated nor readable as an older gmgate
	// wrote them, or whose tag does not verify: never tagged (remove or restore them).
	Refused []string
	// Current counts the records already authenticated.
	Current int
}

// Migrate finds the records an older gmgate wrote (without tags) and, when apply is set, tags
// them under the current store key. Tagging vouches for the records as they are: the
// operator checks the store first (gmgate enroll migrate lists what it would tag and asks).
// Records that do not parse as an older record, or that carry a tag that does not verify,
// are reported and left alone.
func (s *FileStore) Migrate(apply bool) (Migration, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var m Migration
	for _, kind := range []string{kindToken, kindCert, kindSpent, kindRevoked, kindSKI} {
		ids, err := s.list(kind)
		if err != nil {
			return m, err
		}
		for _, id := range ids {
			name := kindDirs[kind] + "/" + id
			data, err := s.readFile(kind, id)
			if err != nil {
				if errors.Is(err, ErrIntegrity) || errors.Is(err, ErrNotFound) {
					m.Refused = append(m.Refused, name)
					continue
				}
				return m, err
			}
			_, err = s.open(kind, id, data)
			switch {
			case err == nil:
				m.Current++
				continue
			case errors.Is(err, ErrStoreKey):
				return m, err
			case !errors.Is(err, ErrUnauthenticated):
				m.Refused = append(m.Refused, name)
				continue
			}
			rec, ok := legacyRecord(kind, id, data)
			if !ok {
				m.Refused = append(m.Refused, name)
				continue
			}
			m.Tagged = append(m.Tagged, name)
			if !apply {
				continue
			}
			sealed, err := s.sealRaw(kind, id, rec)
			if err != nil {
				return m, err
			}
			p, _ := s.path(kind, id)
			if err := writeAtomic(p, sealed); err != nil {
				return m, err
			}
		}
	}
	return m, nil
}

// legacyRecord converts a record an older gmgate wrote into this format's record JSON.
func legacyRecord(kind, id string, data []byte) ([]byte, bool) {
	strict := func(v any) bool {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		return dec.Decode(v) == nil
	}
	var v any
	switch kind {
	case kindToken:
		var t TokenRecord
		if !strict(&t) || t.ID != id || len(t.Hash) != 32 || t.Profile == "" {
			return nil, false
		}
		t.Used = false
		v = t
	case kindCert:
		var c CertRecord
		if !strict(&c) || c.Serial != id || len(c.SignCert) == 0 {
			return nil, false
		}
		v = c
	case kindSpent, kindRevoked:
		at, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(string(data)))
		if err != nil {
			return nil, false
		}
		v = marker{At: at.UTC()}
		if kind == kindSpent {
			v = marker{State: stateSpent, At: at.UTC()}
		}
	case kindSKI:
		sn := strings.TrimSpace(string(data))
		if !validID(sn) {
			return nil, false
		}
		v = marker{Serial: sn}
	}
	rec, err := json.Marshal(v)
	return rec, err == nil
}
