package enroll

import (
	"context"
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
	"time"
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
	// Used is filled by Tokens (list) from the consumption marker.
	Used bool `json:"used,omitempty"`
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
// use; ConsumeToken is atomic (exactly one caller succeeds per token).
type Store interface {
	PutToken(TokenRecord) error
	Token(id string) (TokenRecord, error)
	// ConsumeToken marks the token used; ErrTokenUsed when it was used before.
	ConsumeToken(ctx context.Context, id string, notAfter time.Time) error
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
// the same file system), certs/<serial>.json, revoked/<serial>. The gmgate enroll commands
// work on the same directory while the server runs.
type FileStore struct {
	dir string
	mu  sync.Mutex // serialises read-modify-write of records within the process
}

// Record-size bounds (a record holds two certificates and a delivery).
const maxRecordSize = 256 << 10

// OpenFileStore opens (creating) the store directory.
func OpenFileStore(dir string) (*FileStore, error) {
	if dir == "" {
		return nil, errors.New("enroll: store directory required")
	}
	for _, sub := range []string{"", "tokens", "used", "certs", "revoked", "ski"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, fmt.Errorf("enroll: store: %w", err)
		}
	}
	return &FileStore{dir: dir}, nil
}

// Dir returns the store directory.
func (s *FileStore) Dir() string { return s.dir }

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

func (s *FileStore) path(kind, id, ext string) (string, error) {
	if !validID(id) {
		return "", fmt.Errorf("%w: bad identifier", ErrNotFound)
	}
	return filepath.Join(s.dir, kind, id+ext), nil
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

func readJSON(path string, v any) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return ErrNotFound
	}
	if err != nil {
		return err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxRecordSize+1))
	if err != nil {
		return err
	}
	if len(data) > maxRecordSize {
		return fmt.Errorf("enroll: record %s too large", filepath.Base(path))
	}
	return json.Unmarshal(data, v)
}

func (s *FileStore) putJSON(kind, id string, v any) error {
	p, err := s.path(kind, id, ".json")
	if err != nil {
		return err
	}
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return writeAtomic(p, data)
}

// PutToken stores a token record.
func (s *FileStore) PutToken(t TokenRecord) error { return s.putJSON("tokens", t.ID, t) }

// Token returns a token record.
func (s *FileStore) Token(id string) (TokenRecord, error) {
	var t TokenRecord
	p, err := s.path("tokens", id, ".json")
	if err != nil {
		return t, err
	}
	err = readJSON(p, &t)
	return t, err
}

// ConsumeToken creates used/<id> exclusively.
func (s *FileStore) ConsumeToken(_ context.Context, id string, _ time.Time) error {
	p, err := s.path("used", id, "")
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
	_, werr := f.WriteString(time.Now().UTC().Format(time.RFC3339Nano))
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	return werr
}

func (s *FileStore) list(kind string) ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(s.dir, kind))
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, ".") || e.IsDir() {
			continue
		}
		ids = append(ids, strings.TrimSuffix(n, ".json"))
	}
	sort.Strings(ids)
	return ids, nil
}

// Tokens lists the token records, with Used filled.
func (s *FileStore) Tokens() ([]TokenRecord, error) {
	ids, err := s.list("tokens")
	if err != nil {
		return nil, err
	}
	out := make([]TokenRecord, 0, len(ids))
	for _, id := range ids {
		t, err := s.Token(id)
		if err != nil {
			return nil, err
		}
		if p, err := s.path("used", id, ""); err == nil {
			if _, err := os.Stat(p); err == nil {
				t.Used = true
			}
		}
		out = append(out, t)
	}
	return out, nil
}

// PutCert stores a certificate record, and ski/<ski> naming the newest record of its signing
// key (CertBySKI reads one file: the lookup precedes signature verification, so it must not
// cost a scan of the store per unauthenticated request).
func (s *FileStore) PutCert(c CertRecord) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.putJSON("certs", c.Serial, c); err != nil {
		return err
	}
	if c.SKI == "" {
		return nil
	}
	p, err := s.path("ski", c.SKI, "")
	if err != nil {
		return err
	}
	if cur, err := os.ReadFile(p); err == nil && string(cur) != c.Serial {
		if prev, err := s.Cert(string(cur)); err == nil && prev.IssuedAt.After(c.IssuedAt) {
			return nil // an older record rewritten (renewed_by, revoked): the index stays
		}
	}
	return writeAtomic(p, []byte(c.Serial))
}

// Cert returns the record of a signing-certificate serial (lower-case hex).
func (s *FileStore) Cert(serial string) (CertRecord, error) {
	var c CertRecord
	p, err := s.path("certs", strings.ToLower(serial), ".json")
	if err != nil {
		return c, err
	}
	err = readJSON(p, &c)
	return c, err
}

// CertBySKI returns the newest record of the signing key with that identifier (ski/<ski>).
func (s *FileStore) CertBySKI(ski string) (CertRecord, error) {
	p, err := s.path("ski", strings.ToLower(ski), "")
	if err != nil {
		return CertRecord{}, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return CertRecord{}, ErrNotFound
	}
	if err != nil {
		return CertRecord{}, err
	}
	defer f.Close()
	serial, err := io.ReadAll(io.LimitReader(f, 129))
	if err != nil {
		return CertRecord{}, err
	}
	c, err := s.Cert(string(serial))
	if err == nil && c.SKI != strings.ToLower(ski) {
		return CertRecord{}, ErrNotFound // the index names a record of another key: altered
	}
	return c, err
}

// Certs lists every certificate record.
func (s *FileStore) Certs() ([]CertRecord, error) {
	ids, err := s.list("certs")
	if err != nil {
		return nil, err
	}
	out := make([]CertRecord, 0, len(ids))
	for _, id := range ids {
		c, err := s.Cert(id)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
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
	stamp := []byte(at.UTC().Format(time.RFC3339Nano))
	for _, sn := range []string{c.Serial, c.EncSerial} {
		if sn == "" {
			continue
		}
		p, err := s.path("revoked", sn, "")
		if err != nil {
			return c, err
		}
		if err := writeAtomic(p, stamp); err != nil {
			return c, err
		}
	}
	c.Revoked, c.RevokedAt, c.RevokedBy = true, at.UTC(), by
	return c, s.putJSON("certs", c.Serial, c)
}

// Revocations lists the revoked serials with their revocation times.
func (s *FileStore) Revocations() ([]Revocation, error) {
	ids, err := s.list("revoked")
	if err != nil {
		return nil, err
	}
	out := make([]Revocation, 0, len(ids))
	for _, id := range ids {
		p := filepath.Join(s.dir, "revoked", id)
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		at, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(string(data)))
		if err != nil {
			return nil, fmt.Errorf("enroll: revocation marker %s: %w", id, err)
		}
		if _, ok := new(big.Int).SetString(id, 16); !ok {
			return nil, fmt.Errorf("enroll: revocation marker %s: not a serial", id)
		}
		out = append(out, Revocation{Serial: id, At: at})
	}
	return out, nil
}
