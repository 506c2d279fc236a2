package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/signing"
)

// Identity defaults and bounds.
const (
	// DefaultIdentityReloadInterval is the minimum time between two checks of
	// the identity directory for changes (checked lazily, on lookup).
	DefaultIdentityReloadInterval = 5 * time.Second
	// DefaultIdentityCacheTTL is how long a successful or failed chain
	// verification of a certificate is reused. Validity dates are rechecked
	// on every lookup whatever the cache says.
	DefaultIdentityCacheTTL = 30 * time.Second
	// MaxIdentityFiles bounds the files read from an identity directory.
	MaxIdentityFiles = 10000
)

// Binding ties the request signing certificate to the TLCP client.
type Binding int

// Bindings.
const (
	// BindNone: no relation to the TLCP client is required.
	BindNone Binding = iota
	// BindCertificate: the signing certificate must be the TLCP client's
	// signing certificate (same DER).
	BindCertificate
	// BindSubject: the signing certificate must have the same subject as the
	// TLCP client's signing certificate.
	BindSubject
)

// ParseBinding parses "", "none", "cert"/"certificate" or "subject".
func ParseBinding(s string) (Binding, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "none", "off", "false":
		return BindNone, nil
	case "cert", "certificate", "true", "on":
		return BindCertificate, nil
	case "subject":
		return BindSubject, nil
	}
	return BindNone, fmt.Errorf("gateway: unknown TLCP binding %q (none, cert, subject)", s)
}

// ErrBindingMismatch is wrapped (with CodeCertUntrusted) when the signing
// certificate is not bound to the TLCP client as required.
var ErrBindingMismatch = errors.New("gateway: signing certificate not bound to the TLCP client")

// CheckBinding checks that cert is bound to the TLCP client certificate peer
// under b. A nil peer fails every binding except BindNone.
func CheckBinding(b Binding, cert, peer *smx509.Certificate) error {
	switch b {
	case BindNone:
		return nil
	case BindCertificate:
		if peer != nil && cert != nil && bytes.Equal(cert.Raw, peer.Raw) {
			return nil
		}
	case BindSubject:
		if peer != nil && cert != nil && len(cert.RawSubject) > 0 && bytes.Equal(cert.RawSubject, peer.RawSubject) {
			return nil
		}
	}
	return WithCode(CodeCertUntrusted, ErrBindingMismatch)
}

// Identity is a client signing certificate known to the gateway.
type Identity struct {
	// Cert is the signing certificate.
	Cert *smx509.Certificate
	// Subject is the certificate subject (RFC 4514 string).
	Subject string
	// SerialHex is the serial in upper-case hex (WeChat Pay serial_no form).
	SerialHex string
	// SerialDecimal is the serial in decimal (UnionPay certId form).
	SerialDecimal string
	// Fingerprint is the SM3 fingerprint of the certificate (pki.FingerprintSM3).
	Fingerprint string

	chain []*smx509.Certificate // extra certificates loaded with it
	mu    sync.Mutex
	until time.Time // verification cache expiry
	err   error     // cached verification result
}

func newIdentity(c *smx509.Certificate, chain []*smx509.Certificate) *Identity {
	return &Identity{
		Cert:          c,
		Subject:       c.Subject.String(),
		SerialHex:     signing.SerialHex(c.SerialNumber),
		SerialDecimal: signing.SerialDecimal(c.SerialNumber),
		Fingerprint:   pki.FingerprintSM3(c),
		chain:         chain,
	}
}

// IdentityOptions configures NewIdentityStore.
type IdentityOptions struct {
	// Verifier checks chain, validity, sign usage and CRL. Required.
	Verifier *pki.Verifier
	// Certificates are identities given directly (e.g. from the key vault).
	Certificates []*smx509.Certificate
	// Files are PEM/DER certificate files; every non-CA certificate of a
	// file is an identity, CA certificates of the file help build its chain.
	Files []string
	// Dir is a directory of such files (*.pem, *.crt, *.cer, *.der),
	// reloaded lazily when its listing (names, sizes, mtimes) changes.
	Dir string
	// ReloadInterval is the minimum time between two checks of Dir
	// (default DefaultIdentityReloadInterval; negative: every lookup).
	ReloadInterval time.Duration
	// CacheTTL is how long a chain verification result is reused (default
	// DefaultIdentityCacheTTL; negative: never cached).
	CacheTTL time.Duration
	// Now is the clock (default time.Now); give the pki.Verifier the same.
	Now func() time.Time
}

type identityIndex struct {
	byHex map[string][]*Identity // normalised upper-case hex, no leading zeros
	byDec map[string][]*Identity
	all   []*Identity
}

// IdentityStore finds client signing certificates by key ID and verifies
// them. It is safe for concurrent use.
type IdentityStore struct {
	opts   IdentityOptions
	static []*Identity

	idx atomic.Pointer[identityIndex]

	reloadMu  sync.Mutex
	lastCheck atomic.Int64 // unix nanos
	dirSig    string
	lastErr   atomic.Pointer[error]
}

// NewIdentityStore loads the configured identities. Any unreadable file or
// directory fails the call; later directory reload failures keep the previous
// set and are reported by LastError.
func NewIdentityStore(opts IdentityOptions) (*IdentityStore, error) {
	if opts.Verifier == nil {
		return nil, errors.New("gateway: identity store needs a pki.Verifier")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.ReloadInterval == 0 {
		opts.ReloadInterval = DefaultIdentityReloadInterval
	}
	if opts.CacheTTL == 0 {
		opts.CacheTTL = DefaultIdentityCacheTTL
	}
	s := &IdentityStore{opts: opts}
	for _, c := range opts.Certificates {
		if c == nil {
			return nil, errors.New("gateway: nil identity certificate")
		}
		s.static = append(s.static, newIdentity(c, nil))
	}
	for _, f := range opts.Files {
		ids, err := loadIdentityFile(f)
		if err != nil {
			return nil, err
		}
		s.static = append(s.static, ids...)
	}
	var dirIDs []*Identity
	if opts.Dir != "" {
		sig, ids, err := loadIdentityDir(opts.Dir)
		if err != nil {
			return nil, err
		}
		s.dirSig, dirIDs = sig, ids
		s.lastCheck.Store(opts.Now().UnixNano())
	}
	s.idx.Store(buildIndex(s.static, dirIDs))
	return s, nil
}

func loadIdentityFile(path string) ([]*Identity, error) {
	certs, err := pki.LoadCertificatesFile(path)
	if err != nil {
		return nil, fmt.Errorf("gateway: identity file %s: %w", filepath.Base(path), err)
	}
	var leaves, cas []*smx509.Certificate
	for _, c := range certs {
		if c.IsCA {
			cas = append(cas, c)
		} else {
			leaves = append(leaves, c)
		}
	}
	out := make([]*Identity, 0, len(leaves))
	for _, c := range leaves {
		out = append(out, newIdentity(c, cas))
	}
	return out, nil
}

func identityFileName(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".pem", ".crt", ".cer", ".der":
		return !strings.HasPrefix(name, ".")
	}
	return false
}

// dirListing returns the sorted candidate files of dir and a signature of
// their names, sizes and modification times.
func dirListing(dir string) ([]string, string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, "", fmt.Errorf("gateway: identity directory: %w", err)
	}
	var names []string
	var sb strings.Builder
	for _, e := range ents {
		if e.IsDir() || !identityFileName(e.Name()) {
			continue
		}
		if len(names) >= MaxIdentityFiles {
			return nil, "", fmt.Errorf("gateway: identity directory holds more than %d files", MaxIdentityFiles)
		}
		info, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		names = append(names, e.Name())
		fmt.Fprintf(&sb, "%s\x00%d\x00%d\n", e.Name(), info.Size(), info.ModTime().UnixNano())
	}
	sort.Strings(names)
	return names, sb.String(), nil
}

func loadIdentityDir(dir string) (string, []*Identity, error) {
	names, sig, err := dirListing(dir)
	if err != nil {
		return "", nil, err
	}
	var out []*Identity
	for _, n := range names {
		ids, err := loadIdentityFile(filepath.Join(dir, n))
		if err != nil {
			return "", nil, err
		}
		out = append(out, ids...)
	}
	return sig, out, nil
}

// normHex normalises a hex serial: optional colons or spaces removed,
// upper case, leading zeros dropped. ok is false when s is not hex.
func normHex(s string) (string, bool) {
	s = strings.TrimSpace(s)
	if strings.ContainsAny(s, ": ") {
		s = strings.NewReplacer(":", "", " ", "").Replace(s)
	}
	s = strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
	if s == "" || len(s) > 128 {
		return "", false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return "", false
		}
	}
	s = strings.TrimLeft(s, "0")
	for i := 0; i < len(s); i++ {
		if s[i] >= 'a' {
			s = strings.ToUpper(s)
			break
		}
	}
	if s == "" {
		s = "0"
	}
	return s, true
}

func normDec(s string) (string, bool) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 160 {
		return "", false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return "", false
		}
	}
	n, ok := new(big.Int).SetString(s, 10)
	if !ok {
		return "", false
	}
	return n.String(), true
}

func buildIndex(lists ...[]*Identity) *identityIndex {
	ix := &identityIndex{byHex: map[string][]*Identity{}, byDec: map[string][]*Identity{}}
	for _, l := range lists {
		for _, id := range l {
			h, _ := normHex(id.SerialHex)
			ix.byHex[h] = append(ix.byHex[h], id)
			ix.byDec[id.SerialDecimal] = append(ix.byDec[id.SerialDecimal], id)
			ix.all = append(ix.all, id)
		}
	}
	return ix
}

// maybeReload reloads Dir when its listing changed, at most once per
// ReloadInterval. Failures keep the previous identities.
func (s *IdentityStore) maybeReload() {
	if s.opts.Dir == "" {
		return
	}
	now := s.opts.Now().UnixNano()
	if s.opts.ReloadInterval > 0 && now-s.lastCheck.Load() < int64(s.opts.ReloadInterval) {
		return
	}
	if !s.reloadMu.TryLock() {
		return // another goroutine is reloading; use the current set
	}
	defer s.reloadMu.Unlock()
	s.lastCheck.Store(now)
	_, sig, err := dirListing(s.opts.Dir)
	if err != nil {
		s.lastErr.Store(&err)
		return
	}
	if sig == s.dirSig {
		return
	}
	sig, ids, err := loadIdentityDir(s.opts.Dir)
	if err != nil {
		s.lastErr.Store(&err)
		return
	}
	s.dirSig = sig
	s.lastErr.Store(nil)
	s.idx.Store(buildIndex(s.static, ids))
}

// Reload re-reads the directory now, ignoring ReloadInterval and the
// listing signature. On failure the previous identities stay in use.
func (s *IdentityStore) Reload() error {
	if s.opts.Dir == "" {
		return nil
	}
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	s.lastCheck.Store(s.opts.Now().UnixNano())
	sig, ids, err := loadIdentityDir(s.opts.Dir)
	if err != nil {
		s.lastErr.Store(&err)
		return err
	}
	s.dirSig = sig
	s.lastErr.Store(nil)
	s.idx.Store(buildIndex(s.static, ids))
	return nil
}

// LastError returns the error of the last failed directory reload, if any.
func (s *IdentityStore) LastError() error {
	if p := s.lastErr.Load(); p != nil {
		return *p
	}
	return nil
}

// Len returns the number of known identities.
func (s *IdentityStore) Len() int { return len(s.idx.Load().all) }

// candidates returns the identities whose serial matches keyID read as hex
// or, when none does, read as decimal. Either way the signature must still
// verify with the certificate found.
func (s *IdentityStore) candidates(keyID string) []*Identity {
	ix := s.idx.Load()
	if h, ok := normHex(keyID); ok {
		if out := ix.byHex[h]; len(out) > 0 {
			return out
		}
	}
	if d, ok := normDec(keyID); ok {
		return ix.byDec[d]
	}
	return nil
}

// Lookup finds the identity for keyID (certificate serial in hex or decimal)
// and verifies it. Errors carry a Code: CodeUnknownKey, CodeCertExpired,
// CodeCertNotYetValid, CodeCertRevoked, CodeCertWrongUsage or
// CodeCertUntrusted. When several certificates share the serial, the first
// one that verifies wins; otherwise the first one's error is returned.
func (s *IdentityStore) Lookup(keyID string) (*Identity, error) {
	if len(keyID) > MaxKeyIDLen {
		return nil, WithCode(CodeUnknownKey, errors.New("gateway: key ID too long"))
	}
	s.maybeReload()
	cands := s.candidates(keyID)
	if len(cands) == 0 {
		return nil, WithCode(CodeUnknownKey, errors.New("gateway: no certificate for key ID"))
	}
	var firstErr error
	for _, id := range cands {
		err := s.verify(id)
		if err == nil {
			return id, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return nil, firstErr
}

// verify checks validity dates now, and the chain (cached for CacheTTL).
func (s *IdentityStore) verify(id *Identity) error {
	now := s.opts.Now()
	if now.Before(id.Cert.NotBefore) {
		return WithCode(CodeCertNotYetValid, pki.ErrNotYetValid)
	}
	if now.After(id.Cert.NotAfter) {
		return WithCode(CodeCertExpired, pki.ErrExpired)
	}
	id.mu.Lock()
	defer id.mu.Unlock()
	if s.opts.CacheTTL > 0 && now.Before(id.until) {
		return id.err
	}
	_, err := s.opts.Verifier.Verify(id.Cert, id.chain, pki.RoleSign)
	if err != nil {
		err = WithCode(certCode(err), err)
	}
	id.err = err
	id.until = now.Add(s.opts.CacheTTL)
	return err
}

// certCode maps a pki verification error to its reason code. Errors that
// prevent a revocation decision (stale or badly signed CRL) are untrusted:
// verification fails closed.
func certCode(err error) Code {
	switch {
	case errors.Is(err, pki.ErrExpired):
		return CodeCertExpired
	case errors.Is(err, pki.ErrNotYetValid):
		return CodeCertNotYetValid
	case errors.Is(err, pki.ErrRevoked):
		return CodeCertRevoked
	case errors.Is(err, pki.ErrWrongUsage):
		return CodeCertWrongUsage
	}
	return CodeCertUntrusted
}
