package enroll

import (
	"context"
	"crypto/rand"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/audit"
	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/refusal"
)

// Reenroll is simplereenroll for an authenticated holder: a new pair for csrDER under the same
// profile and common name. A certificate renews once: a second renewal (a stolen key racing
// the terminal) is refused with enroll_already_renewed. The old pair stays valid (the terminal
// keeps it until the new one works) until it expires or is revoked.
func (s *Server) Reenroll(ctx context.Context, h *holder, csrDER []byte) (*Response, error) {
	if h.admin != "" {
		return nil, failf(CodeAuthInvalid, "administrators do not re-enrol")
	}
	if h.rec.RenewedBy != "" {
		return nil, failf(CodeAlreadyRenewed, "already renewed by "+h.rec.RenewedBy)
	}
	prof, ok := s.profiles[h.rec.Profile]
	if !ok {
		return nil, failf(CodeUnavailable, "profile of the certificate is no longer configured")
	}
	csr, err := parseCSR(csrDER)
	if err != nil {
		return nil, err
	}
	if h.tlcp {
		// Authorised by the TLCP client certificate: the new request names its subject.
		old, err := smx509.ParseCertificate(h.rec.SignCert)
		if err != nil {
			return nil, fail(CodeInternal, err)
		}
		if !sameSubject(csr.Subject, old.Subject) {
			return nil, failf(CodeNameForbidden, "the request's subject differs from the TLCP client certificate's")
		}
	}
	cn, dns, err := prof.checkRequest(&csr.CertificateRequest, h.rec.CommonName)
	if err != nil {
		return nil, err
	}
	// One renewal per certificate, atomically (the same reserve, issue, spend as tokens).
	use := singleUse{id: "renew-" + h.rec.Serial, notAfter: h.rec.NotAfter, used: CodeAlreadyRenewed}
	if err := s.reserve(ctx, use); err != nil {
		return nil, err
	}
	out, err := s.issue(ctx, csr, prof, cn, dns, "renew:"+h.rec.Serial, use)
	if err != nil {
		return nil, err
	}
	old := h.rec
	old.RenewedBy = out.Serial
	if err := s.cfg.Store.PutCert(old); err != nil {
		return nil, storeFail(err)
	}
	return out, nil
}

// sameSubject reports whether a request's subject names the certificate's: the same common
// name, and every attribute the request carries present with the same value in the
// certificate (the CA adds the profile's O and OU, which requests usually leave out).
func sameSubject(req, cert pkix.Name) bool {
	if req.CommonName == "" || req.CommonName != cert.CommonName {
		return false
	}
	for _, a := range req.Names {
		found := false
		for _, b := range cert.Names {
			if a.Type.Equal(b.Type) && fmt.Sprint(a.Value) == fmt.Sprint(b.Value) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// Download returns the holder's issued pair (its certificates and key delivery as issued).
func (s *Server) Download(h *holder) (*Response, error) {
	if h.admin != "" {
		return nil, failf(CodeAuthInvalid, "administrators do not download pairs")
	}
	return s.response(h.rec), nil
}

// RevokeRequest is the JSON body of a revoke request.
type RevokeRequest struct {
	// Serial is the signing-certificate serial (hex) to revoke. A holder may omit it (its own)
	// and may not name another; an administrator must name it.
	Serial string `json:"serial,omitempty"`
}

// Revoke revokes a pair (signing and encryption certificates) and re-signs the CRL at once.
func (s *Server) Revoke(ctx context.Context, h *holder, body []byte) (CertRecord, error) {
	var req RevokeRequest
	if len(body) > 0 {
		dec := json.NewDecoder(strings.NewReader(string(body)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			return CertRecord{}, fail(CodeRequestInvalid, err)
		}
	}
	serial := strings.ToLower(req.Serial)
	by := "holder"
	switch {
	case h.admin != "":
		if serial == "" {
			return CertRecord{}, failf(CodeRequestInvalid, "serial required")
		}
		by = "admin:" + h.admin
	case h.ra != "":
		if err := s.raMayRevoke(h, serial); err != nil {
			return CertRecord{}, err
		}
		by = "ra:" + h.ra
	case serial == "":
		serial = h.rec.Serial
	case serial != h.rec.Serial:
		return CertRecord{}, failf(CodeAuthInvalid, "a holder revokes only its own certificate")
	}
	rec, err := s.cfg.Store.Revoke(serial, by, s.cfg.Now())
	if errors.Is(err, ErrNotFound) {
		return rec, fail(CodeNotFound, err)
	}
	if err != nil {
		return rec, storeFail(err)
	}
	s.markRevoked(rec.Serial, rec.EncSerial)
	if s.cfg.IdentityDir != "" {
		if err := os.Remove(filepath.Join(s.cfg.IdentityDir, rec.Serial+".pem")); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return rec, fail(CodeUnavailable, err)
		}
	}
	// An upstream CA is told at once; if it cannot be, the pair stays revoked here (no more
	// renewal or download) and the CRL loop forwards it again until the CA's CRL lists it.
	if err := s.cfg.Issuer.RevokePair(ctx, rec, by); err != nil {
		return rec, issuerError(err)
	}
	if err := s.RefreshCRL(ctx); err != nil {
		return rec, fail(CodeUnavailable, err)
	}
	return rec, nil
}

// RecoverRequest is the JSON body of a recover request: the serial (hex) of the pair's signing
// or encryption certificate.
type RecoverRequest struct {
	Serial string `json:"serial"`
}

// Recovered is the answer to a recover request: the escrowed encryption private key as a
// GB/T 35276 SM2EnvelopedKey to the administrator's signing public key (never in clear).
type Recovered struct {
	Serial       string `json:"serial"`
	EncSerial    string `json:"enc_serial"`
	EncCert      []byte `json:"enc_cert"`
	EnvelopedKey []byte `json:"enveloped_key"`
}

// Recover returns a pair's escrowed encryption key to an administrator, enveloped to the
// administrator's signing key. Every recovery is an audit entry (enroll/recover).
func (s *Server) Recover(h *holder, adminCert *smx509.Certificate, body []byte) (*Recovered, error) {
	if h.admin == "" || adminCert == nil {
		return nil, failf(CodeAuthInvalid, "recovery is for administrators")
	}
	if s.cfg.Escrow == nil {
		return nil, failf(CodeNotFound, "no escrow configured")
	}
	var req RecoverRequest
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || req.Serial == "" {
		return nil, failf(CodeRequestInvalid, "serial required")
	}
	serial := strings.ToLower(req.Serial)
	rec, err := s.cfg.Store.Cert(serial)
	if errors.Is(err, ErrNotFound) {
		rec, err = s.certByEncSerial(serial)
	}
	if errors.Is(err, ErrNotFound) {
		return nil, fail(CodeNotFound, err)
	}
	if err != nil {
		return nil, storeFail(err)
	}
	d, err := s.cfg.Escrow.Get(rec.EncSerial)
	if err != nil {
		return nil, fail(CodeUnavailable, fmt.Errorf("enroll: escrow: %w", err))
	}
	defer clear(d)
	key, err := sm2.NewPrivateKey(d)
	if err != nil {
		return nil, fail(CodeInternal, err)
	}
	defer key.D.SetInt64(0)
	enc, err := smx509.ParseCertificate(rec.EncCert)
	if err != nil || !key.PublicKey.Equal(enc.PublicKey) {
		return nil, failf(CodeInternal, "escrowed key does not match the encryption certificate")
	}
	pub, ok := signPublic(adminCert.PublicKey)
	if !ok {
		return nil, failf(CodeAuthInvalid, "administrator key is not SM2")
	}
	env, err := sm2.MarshalEnvelopedPrivateKey(rand.Reader, pub, key)
	if err != nil {
		return nil, fail(CodeInternal, err)
	}
	return &Recovered{Serial: rec.Serial, EncSerial: rec.EncSerial, EncCert: rec.EncCert, EnvelopedKey: env}, nil
}

// certByEncSerial finds the pair of an encryption serial among the records that verify; when
// none matches and some record was refused, the refusal is the answer (it may be the one).
func (s *Server) certByEncSerial(enc string) (CertRecord, error) {
	all, err := s.cfg.Store.Certs()
	for _, c := range all {
		if c.EncSerial == enc {
			return c, nil
		}
	}
	if err != nil {
		return CertRecord{}, err
	}
	return CertRecord{}, ErrNotFound
}

// RevokeLocal revokes serial on behalf of an operator (the gmgate enroll revoke command path
// when run against a live server is the admin request; this is for tests and tools holding
// the Server) and re-signs the CRL.
func (s *Server) RevokeLocal(ctx context.Context, serial, by string) (CertRecord, error) {
	return s.Revoke(ctx, &holder{admin: by}, []byte(`{"serial":"`+strings.ToLower(serial)+`"}`))
}

// CRL returns the current CRL (DER) and its number, re-signing it first when the revocations
// changed (another process, the gmgate enroll revoke command, wrote the store) or half of its
// validity has passed.
func (s *Server) CRL(ctx context.Context) ([]byte, *big.Int, error) {
	if src, ok := s.cfg.Issuer.(CRLSource); ok {
		return s.upstreamCRL(ctx, src)
	}
	if err := s.RefreshCRL(ctx); err != nil {
		s.crlMu.Lock()
		der, n := s.crlDER, s.crlNumber
		s.crlMu.Unlock()
		if der != nil && s.cfg.Now().Before(s.crlNext) {
			return der, n, nil // keep serving the valid CRL; the error is for the logs
		}
		return nil, nil, err
	}
	s.crlMu.Lock()
	defer s.crlMu.Unlock()
	return s.crlDER, s.crlNumber, nil
}

// RefreshCRL re-signs the CRL when the revocation set changed or half its validity passed,
// and writes CRLFile.
func (s *Server) RefreshCRL(ctx context.Context) error {
	if src, ok := s.cfg.Issuer.(CRLSource); ok {
		return s.refreshUpstreamCRL(ctx, src)
	}
	signer := s.cfg.Issuer.(CRLSigner) // NewServer checked
	revs, err := s.cfg.Store.Revocations()
	if err != nil && !errors.Is(err, ErrIntegrity) {
		return fmt.Errorf("enroll: listing revocations: %w", err)
	}
	// A marker that does not verify is not believed (a forged one would revoke someone else's
	// pair); the others are published. Each refused marker is audited once.
	s.auditBadMarkers(err)
	sort.Slice(revs, func(i, j int) bool { return revs[i].Serial < revs[j].Serial })
	h := sm3.New()
	for _, r := range revs {
		fmt.Fprintf(h, "%s %d\n", r.Serial, r.At.UnixNano())
	}
	set := string(h.Sum(nil))
	now := s.cfg.Now()
	s.crlMu.Lock()
	defer s.crlMu.Unlock()
	if s.crlDER != nil && set == s.crlSet && now.Before(s.crlThis.Add(s.cfg.CRLValidity/2)) {
		return nil
	}
	entries := make([]smx509.RevocationListEntry, 0, len(revs))
	listed := map[string]bool{}
	for _, r := range revs {
		n, ok := new(big.Int).SetString(r.Serial, 16)
		if !ok {
			continue
		}
		listed[n.Text(16)] = true
		entries = append(entries, smx509.RevocationListEntry{SerialNumber: n, RevocationTime: r.At.UTC()})
	}
	// A revocation is never undone: every serial of the last CRL this CA signed stays listed,
	// whatever the store says now (someone who can write the store directory could delete a
	// revocation marker; the CRL is signed, the markers are not).
	for _, e := range s.previousCRLEntries() {
		if listed[e.SerialNumber.Text(16)] {
			continue
		}
		listed[e.SerialNumber.Text(16)] = true
		entries = append(entries, e)
		if s.cfg.Audit != nil {
			_ = s.cfg.Audit.Append(audit.Record{Time: now, Direction: audit.DirectionInbound, Scheme: "enroll/crl",
				CertSerial: e.SerialNumber.Text(16), Verdict: audit.VerdictReject, Reason: "revocation_marker_missing"})
		}
	}
	// A CRL listing fewer serials than the last one recorded (the CRL file replaced by an
	// older CRL of this CA while the store's markers were deleted) is not signed: fail closed.
	if err := s.checkCRLMark(ctx, entries, now); err != nil {
		return err
	}
	// CRL numbers grow with time (milliseconds), and strictly within the process and past
	// the last CRL recorded.
	number := big.NewInt(now.UnixMilli())
	if s.crlNumber != nil && number.Cmp(s.crlNumber) <= 0 {
		number = new(big.Int).Add(s.crlNumber, big.NewInt(1))
	}
	if s.crlMark != nil {
		if last, ok := new(big.Int).SetString(s.crlMark.Number, 10); ok && number.Cmp(last) <= 0 {
			number = last.Add(last, big.NewInt(1))
		}
	}
	this := now.Add(-time.Minute).UTC().Truncate(time.Second)
	der, err := signer.SignCRL(ctx, entries, number, this, now.Add(s.cfg.CRLValidity).UTC().Truncate(time.Second))
	if err != nil {
		return fmt.Errorf("enroll: signing the CRL: %w", err)
	}
	if s.cfg.CRLFile != "" {
		if err := writeAtomic(s.cfg.CRLFile, pki.EncodeCRLPEM(der)); err != nil {
			return fmt.Errorf("enroll: writing the CRL file: %w", err)
		}
	}
	// Recorded once the CRL file is written, never ahead of it.
	if err := s.recordCRLMark(ctx, markOf(entries, number, this)); err != nil {
		return err
	}
	s.crlDER, s.crlNumber, s.crlSet, s.crlListed = der, number, set, listed
	s.crlThis, s.crlNext = this, now.Add(s.cfg.CRLValidity)
	s.auditPickedUp(revs, now)
	return nil
}

// previousCRLEntries returns the entries of the last CRL this CA signed: the one in memory, or
// at start the CRL file, when its signature verifies against the issuing CA. The caller holds
// s.crlMu.
func (s *Server) previousCRLEntries() []smx509.RevocationListEntry {
	der := s.crlDER
	if der == nil && s.cfg.CRLFile != "" {
		data, err := os.ReadFile(s.cfg.CRLFile)
		if err != nil {
			return nil
		}
		rl, err := pki.ParseCRL(data)
		if err != nil {
			return nil
		}
		chain := s.cfg.Issuer.Chain()
		if len(chain) == 0 || rl.CheckSignatureFrom(chain[0]) != nil {
			return nil
		}
		return rl.RevokedCertificateEntries
	}
	if der == nil {
		return nil
	}
	rl, err := smx509.ParseRevocationList(der)
	if err != nil {
		return nil
	}
	return rl.RevokedCertificateEntries
}

// auditPickedUp writes an audit entry for each revocation this server did not make itself
// (`gmgate enroll revoke --store`, another instance sharing the store) when it first sees it.
// Revocations present when the server starts are taken as known. Caller holds s.crlMu.
func (s *Server) auditPickedUp(revs []Revocation, now time.Time) {
	first := s.crlKnown == nil
	if first {
		s.crlKnown = make(map[string]bool, len(revs))
	}
	for _, r := range revs {
		if s.crlKnown[r.Serial] {
			continue
		}
		s.crlKnown[r.Serial] = true
		if first || s.cfg.Audit == nil {
			continue
		}
		rec, err := s.cfg.Store.Cert(r.Serial)
		if err != nil {
			continue // the encryption certificate of a pair: audited with its signing one
		}
		_ = s.cfg.Audit.Append(audit.Record{Time: now, Direction: audit.DirectionInbound, Scheme: "enroll/revoke",
			KeyID: rec.RevokedBy, CertSerial: rec.Serial, Verdict: audit.VerdictAccept, Reason: string(refusal.OK)})
	}
}

// auditBadMarkers audits, once per process, each revocation marker Revocations refused.
func (s *Server) auditBadMarkers(err error) {
	if err == nil {
		return
	}
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	s.crlMu.Lock()
	defer s.crlMu.Unlock()
	if s.crlBad == nil {
		s.crlBad = map[string]bool{}
	}
	for _, e := range errs {
		var re *RecordError
		if !errors.As(e, &re) || s.crlBad[re.ID] {
			continue
		}
		s.crlBad[re.ID] = true
		if s.cfg.Audit != nil {
			_ = s.cfg.Audit.Append(audit.Record{Time: s.cfg.Now(), Direction: audit.DirectionInbound, Scheme: "enroll/store",
				CertSerial: re.ID, Verdict: audit.VerdictReject, Reason: "revocation_marker_refused"})
		}
	}
}

// ensureCRL signs the first CRL when none was signed yet (revokedInCRL needs it: it carries
// the revocations of the previous CRL file, which the store's markers may have lost).
func (s *Server) ensureCRL(ctx context.Context) error {
	s.crlMu.Lock()
	have := s.crlDER != nil
	s.crlMu.Unlock()
	if have {
		return nil
	}
	return s.RefreshCRL(ctx)
}

// revokedInCRL reports whether serial is listed in the last CRL this server signed.
func (s *Server) revokedInCRL(serial string) bool {
	n, ok := new(big.Int).SetString(serial, 16)
	if !ok {
		return false
	}
	s.crlMu.Lock()
	defer s.crlMu.Unlock()
	return s.crlListed[n.Text(16)]
}

// markRevoked records serials this server revoked (and audited) itself.
func (s *Server) markRevoked(serials ...string) {
	s.crlMu.Lock()
	defer s.crlMu.Unlock()
	if s.crlKnown == nil {
		s.crlKnown = map[string]bool{}
	}
	for _, sn := range serials {
		s.crlKnown[sn] = true
	}
}

// Run re-checks the CRL every interval until ctx ends (revocations written by another process
// reach CRLFile and /crl without a request). Errors are reported through onErr.
func (s *Server) Run(ctx context.Context, interval time.Duration, onErr func(error)) {
	if interval <= 0 {
		interval = 10 * time.Second
	}
	if _, ok := s.cfg.Issuer.(CRLSource); ok {
		// The upstream CA's CRL is fetched at once (NewServer does not touch the network).
		if err := s.RefreshCRL(ctx); err != nil && onErr != nil {
			onErr(err)
		}
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.RefreshCRL(ctx); err != nil && onErr != nil {
				onErr(err)
			}
		}
	}
}

// Expiring counts the valid (not revoked, not expired, not renewed) signing certificates that
// expire within d: the dashboard's "terminal certificates expiring" figure.
func Expiring(st Store, now time.Time, d time.Duration) (int, error) {
	all, err := st.Certs()
	if err != nil && !errors.Is(err, ErrIntegrity) {
		return 0, err
	}
	n := 0
	for _, c := range all {
		if c.Revoked || c.RenewedBy != "" || !now.Before(c.NotAfter) {
			continue
		}
		if c.NotAfter.Sub(now) <= d {
			n++
		}
	}
	return n, err
}
