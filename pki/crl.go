package pki

import (
	"bytes"
	"crypto/sha256"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emmansun/gmsm/smx509"
)

// MaxCRLSize is the largest CRL file (PEM or DER) accepted.
const MaxCRLSize = 16 << 20

// maxCRLsPerFile bounds the number of "X509 CRL" blocks in one PEM file.
const maxCRLsPerFile = 64

// DefaultCRLCheckInterval is how often CRL files are checked for changes.
const DefaultCRLCheckInterval = 10 * time.Second

// CRLOptions configures a CRLStore.
type CRLOptions struct {
	// CheckInterval is the minimum time between two checks of the files'
	// mtime/size (checked lazily, on use). Zero means
	// DefaultCRLCheckInterval; negative means check on every use.
	CheckInterval time.Duration
	// AllowStale accepts CRLs past their NextUpdate. The default (false) is
	// fail-closed: IsRevoked returns ErrCRLStale for such a CRL.
	AllowStale bool
	// Issuers, when set, are the CA certificates CRLs may come from: every
	// loaded CRL must verify against one of them (else NewCRLStore fails and a
	// reload is refused). Whether set or not, IsRevoked only uses a CRL after
	// verifying its signature against the issuer it is given.
	Issuers []*smx509.Certificate
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// PendingFiles are CRL files that may not exist yet: a CRL this very instance writes when
	// it starts (gm_enroll's crl_file). Such a file, when missing, starts pending like a URL
	// source (IsRevoked fails closed with ErrCRLStale) until it appears, checked on every use
	// until then. Any other missing file fails NewCRLStore.
	PendingFiles []string
}

// CRLStore holds CRLs loaded from files, reloads them when a file changes and
// answers revocation queries. It is safe for concurrent use.
//
// A reload that fails (unreadable file, bad CRL, bad signature) keeps the
// previously loaded CRLs of that file; the failure is reported by LastError.
type CRLStore struct {
	opts  CRLOptions
	paths []string

	mu        sync.Mutex
	files     []*crlFile
	lastCheck time.Time
	lastErr   error
}

type crlFile struct {
	path    string
	modTime time.Time
	size    int64
	crls    []*loadedCRL
	// url sources (path is an http:// or https:// URL) only:
	fetching bool   // a background fetch is running
	etag     string // validator of the last fetched body
	pending  bool   // never fetched successfully: IsRevoked fails closed
	lastErr  error  // failure of the latest background fetch
}

type loadedCRL struct {
	rl      *smx509.RevocationList
	revoked map[string]struct{} // serial number bytes
	// sigOK caches signature checks by SHA-256 of the issuer certificate.
	sigOK map[[32]byte]bool
}

// NewCRLStore loads every file of paths (PEM "X509 CRL" blocks or one DER CRL
// per file). Any file that fails to load fails the call.
//
// A path that is an http:// or https:// URL is a CRL published by a CA (for
// instance gm_enroll's /crl endpoint): it is fetched now (a failure leaves it
// pending: IsRevoked fails closed with ErrCRLStale until a fetch succeeds)
// and then again in the background at most once per CheckInterval, on use,
// with If-None-Match. A fetched CRL older than the one held for its issuer is
// refused (ErrCRLRollback, reported by LastError).
func NewCRLStore(paths []string, opts CRLOptions) (*CRLStore, error) {
	if opts.CheckInterval == 0 {
		opts.CheckInterval = DefaultCRLCheckInterval
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &CRLStore{opts: opts, paths: append([]string(nil), paths...)}
	for _, p := range s.paths {
		if isCRLURL(p) {
			// A CRL published by a CA (gm_enroll's /crl) may not be reachable yet (the CA is
			// this very instance, still starting): the source starts pending, IsRevoked fails
			// closed until the first fetch succeeds, and fetches run in the background.
			f := &crlFile{path: p, pending: true}
			if nf, err := s.fetchURL(f); err == nil {
				f = nf
			} else {
				s.lastErr = errors.Join(s.lastErr, err)
			}
			s.files = append(s.files, f)
			continue
		}
		f, err := s.loadFile(p)
		if err != nil && errors.Is(err, fs.ErrNotExist) && slices.Contains(opts.PendingFiles, p) {
			f, err = &crlFile{path: p, pending: true}, nil
			s.lastErr = errors.Join(s.lastErr, fmt.Errorf("pki: CRL %s not written yet", p))
		}
		if err != nil {
			return nil, err
		}
		s.files = append(s.files, f)
	}
	s.lastCheck = opts.Now()
	return s, nil
}

// ParseCRL parses one CRL in PEM ("X509 CRL") or DER form.
func ParseCRL(data []byte) (*smx509.RevocationList, error) {
	crls, err := parseCRLs(data)
	if err != nil {
		return nil, err
	}
	return crls[0], nil
}

// parseCRLs parses every "X509 CRL" block of PEM data, or data as one DER CRL.
func parseCRLs(data []byte) ([]*smx509.RevocationList, error) {
	if len(data) > MaxCRLSize {
		return nil, fmt.Errorf("%w: CRL input is %d bytes, limit %d", ErrInputTooLarge, len(data), MaxCRLSize)
	}
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: empty input", ErrMalformedCRL)
	}
	if !bytes.Contains(data, []byte("-----BEGIN")) {
		rl, err := smx509.ParseRevocationList(data)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformedCRL, err)
		}
		return []*smx509.RevocationList{rl}, nil
	}
	var out []*smx509.RevocationList
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "X509 CRL" {
			continue
		}
		if len(out) >= maxCRLsPerFile {
			return nil, fmt.Errorf("%w: more than %d CRLs in one input", ErrInputTooLarge, maxCRLsPerFile)
		}
		rl, err := smx509.ParseRevocationList(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: CRL #%d: %v", ErrMalformedCRL, len(out)+1, err)
		}
		out = append(out, rl)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no X509 CRL block found", ErrMalformedPEM)
	}
	return out, nil
}

func (s *CRLStore) loadFile(path string) (*crlFile, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("pki: CRL %s: %w", path, err)
	}
	data, err := readBounded(path, MaxCRLSize)
	if err != nil {
		return nil, fmt.Errorf("pki: CRL %w", err)
	}
	return s.parseSource(&crlFile{path: path, modTime: st.ModTime(), size: st.Size()}, data)
}

// parseSource fills f with the CRLs of data (every one SM2, and verified
// against the configured issuers when there are any).
func (s *CRLStore) parseSource(f *crlFile, data []byte) (*crlFile, error) {
	path := f.path
	rls, err := parseCRLs(data)
	if err != nil {
		return nil, fmt.Errorf("pki: CRL %s: %w", path, err)
	}
	for _, rl := range rls {
		if rl.SignatureAlgorithm != smx509.SM2WithSM3 {
			return nil, fmt.Errorf("pki: CRL %s: %w: signature algorithm %v", path, ErrNotSM2, rl.SignatureAlgorithm)
		}
		url := ""
		if isCRLURL(path) {
			url = path
		}
		if err := CheckCRLScope(rl, url); err != nil {
			return nil, fmt.Errorf("pki: CRL %s: %w", path, err)
		}
		lc := &loadedCRL{rl: rl, revoked: make(map[string]struct{}, len(rl.RevokedCertificateEntries)), sigOK: map[[32]byte]bool{}}
		for _, e := range rl.RevokedCertificateEntries {
			if e.SerialNumber != nil {
				lc.revoked[string(e.SerialNumber.Bytes())+signTag(e.SerialNumber.Sign())] = struct{}{}
			}
		}
		if len(s.opts.Issuers) > 0 {
			if err := s.checkAgainstIssuers(lc); err != nil {
				return nil, fmt.Errorf("pki: CRL %s: %w", path, err)
			}
		}
		f.crls = append(f.crls, lc)
	}
	return f, nil
}

func signTag(sign int) string {
	if sign < 0 {
		return "-"
	}
	return ""
}

func serialKey(c *smx509.Certificate) string {
	if c.SerialNumber == nil {
		return ""
	}
	return string(c.SerialNumber.Bytes()) + signTag(c.SerialNumber.Sign())
}

// checkAgainstIssuers verifies lc against the configured issuer of the same name.
func (s *CRLStore) checkAgainstIssuers(lc *loadedCRL) error {
	named := false
	for _, is := range s.opts.Issuers {
		if is == nil || !bytes.Equal(is.RawSubject, lc.rl.RawIssuer) {
			continue
		}
		named = true
		if lc.verify(is) {
			return nil
		}
	}
	if named {
		return &VerifyError{Err: ErrCRLBadSignature, Subject: lc.rl.Issuer.String(), Detail: "CRL signature does not verify against any configured issuer of that name"}
	}
	return &VerifyError{Err: ErrUnknownIssuer, Subject: lc.rl.Issuer.String(), Detail: "CRL issuer is not a configured CA"}
}

// verify checks lc's signature against issuer, caching the result.
func (lc *loadedCRL) verify(issuer *smx509.Certificate) bool {
	h := sha256.Sum256(issuer.Raw)
	if ok, seen := lc.sigOK[h]; seen {
		return ok
	}
	ok := lc.rl.CheckSignatureFrom(issuer) == nil
	lc.sigOK[h] = ok
	return ok
}

// maybeReload re-reads changed files, at most once per CheckInterval.
// Caller holds s.mu.
func (s *CRLStore) maybeReload(now time.Time, force bool) {
	if !force && s.opts.CheckInterval > 0 && now.Sub(s.lastCheck) < s.opts.CheckInterval && !now.Before(s.lastCheck) && !s.pendingFile() {
		return
	}
	s.lastCheck = now
	var errs []error
	for i, f := range s.files {
		if isCRLURL(f.path) {
			if force {
				// Reload: fetch now, without the lock (the network is slow; IsRevoked keeps
				// answering from the CRLs held meanwhile), even while a background fetch runs
				// (a background fetch may install meanwhile: what Reload fetched is then judged
				// against what is held now, so a rollback is reported whichever came first).
				s.mu.Unlock()
				nf, err := s.fetchURL(f)
				s.mu.Lock()
				if err != nil {
					errs = append(errs, err)
					continue
				}
				if err := s.install(i, s.files[i], nf); err != nil {
					errs = append(errs, err)
				}
				continue
			}
			if f.fetching {
				continue
			}
			if f.lastErr != nil {
				errs = append(errs, f.lastErr)
			}
			f.fetching = true
			go s.backgroundFetch(i, f)
			continue
		}
		st, err := os.Stat(f.path)
		if err != nil {
			errs = append(errs, fmt.Errorf("pki: CRL %s: %w", f.path, err))
			continue
		}
		if !f.pending && st.ModTime().Equal(f.modTime) && st.Size() == f.size {
			continue
		}
		nf, err := s.loadFile(f.path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.files[i] = nf
	}
	s.lastErr = errors.Join(errs...)
}

// pendingFile reports whether a PendingFiles file has not appeared yet (it is then checked on
// every use: a stat, until it loads).
func (s *CRLStore) pendingFile() bool {
	for _, f := range s.files {
		if f.pending && !isCRLURL(f.path) {
			return true
		}
	}
	return false
}

// Reload checks every file now and reloads the changed ones. It returns the
// reload failures (the previous CRLs of a failing file are kept).
func (s *CRLStore) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.maybeReload(s.opts.Now(), true)
	return s.lastErr
}

// CRLInfo describes one loaded CRL for monitoring.
type CRLInfo struct {
	Path       string    // the file it was loaded from
	Issuer     string    // the issuer name (RFC 4514)
	NextUpdate time.Time // zero when the CRL has none
}

// CRLs describes every loaded CRL (after a reload check, bounded by CheckInterval like IsRevoked),
// so that a monitor can alert before a CRL's NextUpdate passes and revocation checks fail closed.
func (s *CRLStore) CRLs() []CRLInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.maybeReload(s.opts.Now(), false)
	var out []CRLInfo
	for _, f := range s.files {
		for _, lc := range f.crls {
			out = append(out, CRLInfo{Path: f.path, Issuer: lc.rl.Issuer.String(), NextUpdate: lc.rl.NextUpdate})
		}
	}
	return out
}

// LastError returns the failures of the latest reload check, or nil.
func (s *CRLStore) LastError() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastErr
}

// IsRevoked reports whether cert is listed in a CRL issued by issuer. Only
// CRLs whose issuer name equals issuer's subject (and whose authority key
// identifier, when both are present, equals issuer's subject key identifier)
// are considered; each must verify against issuer's key, else the result is
// an error wrapping ErrCRLBadSignature. When no CRL of issuer is loaded, cert
// is not revoked. When the newest CRL of issuer is past its NextUpdate and
// AllowStale is false, a non-revoked cert yields an error wrapping ErrCRLStale.
func (s *CRLStore) IsRevoked(cert *smx509.Certificate, issuer *smx509.Certificate) (bool, error) {
	if cert == nil || issuer == nil {
		return false, errors.New("pki: IsRevoked: nil certificate")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opts.Now()
	s.maybeReload(now, false)

	for _, f := range s.files {
		if f.pending {
			return false, certError(ErrCRLStale, issuer, "CRL %s was never fetched; no revocation decision is possible yet", f.path)
		}
	}
	var newest *loadedCRL
	key := serialKey(cert)
	revoked := false
	for _, f := range s.files {
		for _, lc := range f.crls {
			rl := lc.rl
			if !bytes.Equal(rl.RawIssuer, issuer.RawSubject) {
				continue
			}
			if len(rl.AuthorityKeyId) > 0 && len(issuer.SubjectKeyId) > 0 && !bytes.Equal(rl.AuthorityKeyId, issuer.SubjectKeyId) {
				continue // same name, other CA key
			}
			if !lc.verify(issuer) {
				return false, certError(ErrCRLBadSignature, issuer, "CRL %s (issuer %q)", f.path, rl.Issuer.String())
			}
			if _, ok := lc.revoked[key]; ok {
				revoked = true
			}
			if newest == nil || rl.ThisUpdate.After(newest.rl.ThisUpdate) {
				newest = lc
			}
		}
	}
	if revoked {
		return true, nil
	}
	if newest != nil && !s.opts.AllowStale && !newest.rl.NextUpdate.IsZero() && now.After(newest.rl.NextUpdate) {
		return false, certError(ErrCRLStale, issuer, "newest CRL of this issuer expired at %s (now %s)",
			newest.rl.NextUpdate.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return false, nil
}

// CRLFetchTimeout bounds one fetch of a CRL published at a URL.
const CRLFetchTimeout = 10 * time.Second

// isCRLURL reports whether a CRL source is a URL rather than a file.
func isCRLURL(p string) bool {
	return strings.HasPrefix(p, "https://") || strings.HasPrefix(p, "http://")
}

// crlHTTPClient fetches CRLs published at URLs. A CRL is signed: the transport
// needs no trust of its own, and the signature (and, when configured, the
// issuer) is checked like a file's.
var crlHTTPClient = &http.Client{Timeout: CRLFetchTimeout}

// fetchURL fetches f's URL (conditionally on the last ETag). It returns nil
// and no error when the CRL did not change.
func (s *CRLStore) fetchURL(f *crlFile) (*crlFile, error) {
	req, err := http.NewRequest(http.MethodGet, f.path, nil)
	if err != nil {
		return nil, fmt.Errorf("pki: CRL %s: %w", f.path, err)
	}
	req.Header.Set("Accept", "application/pkix-crl")
	if f.etag != "" && !f.pending {
		req.Header.Set("If-None-Match", f.etag)
	}
	resp, err := crlHTTPClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("pki: CRL %s: %w", f.path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotModified && !f.pending {
		return nil, nil
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("pki: CRL %s: HTTP status %d", f.path, resp.StatusCode)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxCRLSize+1))
	if err != nil {
		return nil, fmt.Errorf("pki: CRL %s: %w", f.path, err)
	}
	if len(data) > MaxCRLSize {
		return nil, fmt.Errorf("pki: CRL %s: %w: limit %d bytes", f.path, ErrInputTooLarge, MaxCRLSize)
	}
	nf, err := s.parseSource(&crlFile{path: f.path, etag: resp.Header.Get("ETag")}, data)
	if err != nil {
		return nil, err
	}
	return nf, nil
}

// backgroundFetch refreshes the URL source f (index i) and installs the result.
func (s *CRLStore) backgroundFetch(i int, f *crlFile) {
	nf, err := s.fetchURL(f)
	s.mu.Lock()
	defer s.mu.Unlock()
	f.fetching = false
	if err == nil {
		err = s.install(i, f, nf)
	}
	f.lastErr = err
}

// install replaces the URL source old (index i) with nf (nil: unchanged),
// unless the store moved on meanwhile or nf would roll a CRL back: a CRL
// older (thisUpdate) than the one held for the same issuer is refused, so a
// replayed, validly signed old CRL cannot un-revoke a certificate.
// It returns the rollback error. Caller holds s.mu.
func (s *CRLStore) install(i int, old, nf *crlFile) error {
	if nf == nil || i >= len(s.files) || s.files[i] != old {
		return nil
	}
	for _, held := range old.crls {
		for _, lc := range nf.crls {
			if bytes.Equal(held.rl.RawIssuer, lc.rl.RawIssuer) && lc.rl.ThisUpdate.Before(held.rl.ThisUpdate) {
				return fmt.Errorf("pki: CRL %s: %w: thisUpdate %s is older than the held CRL's %s", old.path, ErrCRLRollback,
					lc.rl.ThisUpdate.UTC().Format(time.RFC3339), held.rl.ThisUpdate.UTC().Format(time.RFC3339))
			}
		}
	}
	s.files[i] = nf
	return nil
}

// EncodeCRLPEM encodes a DER CRL as an "X509 CRL" PEM block.
func EncodeCRLPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
}

// Latest returns the newest loaded CRL (by thisUpdate) issued by issuer, after verifying its
// signature against issuer: what a registration authority re-publishes for its upstream CA.
// It fails (ErrCRLStale) while a URL source was never fetched, and (ErrUnknownIssuer) when no
// CRL of issuer is loaded. Like IsRevoked, it triggers the lazy reload check.
func (s *CRLStore) Latest(issuer *smx509.Certificate) (*smx509.RevocationList, error) {
	if issuer == nil {
		return nil, errors.New("pki: Latest: nil issuer")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.maybeReload(s.opts.Now(), false)
	var newest *loadedCRL
	for _, f := range s.files {
		if f.pending {
			return nil, certError(ErrCRLStale, issuer, "CRL %s was never fetched", f.path)
		}
		for _, lc := range f.crls {
			if !bytes.Equal(lc.rl.RawIssuer, issuer.RawSubject) {
				continue
			}
			if len(lc.rl.AuthorityKeyId) > 0 && len(issuer.SubjectKeyId) > 0 && !bytes.Equal(lc.rl.AuthorityKeyId, issuer.SubjectKeyId) {
				continue
			}
			if !lc.verify(issuer) {
				return nil, certError(ErrCRLBadSignature, issuer, "CRL %s (issuer %q)", f.path, lc.rl.Issuer.String())
			}
			if newest == nil || lc.rl.ThisUpdate.After(newest.rl.ThisUpdate) {
				newest = lc
			}
		}
	}
	if newest == nil {
		return nil, certError(ErrUnknownIssuer, issuer, "no CRL of this issuer is loaded")
	}
	return newest.rl, nil
}
