package enroll

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"mime"
	"net/http"
	"os"
	"slices"
	"time"

	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/audit"
	"github.com/gmgate/gmgate/pki"
)

// RAEnrollRequest is the JSON body of raenroll: a terminal's request a registration authority
// checked and approved (the token or renewal right was checked there), with the subject it
// approved. The CA checks the request again against its own profile.
type RAEnrollRequest struct {
	// CSR is the terminal's DER PKCS#10 request as received (standard or CFCA double).
	CSR []byte `json:"csr"`
	// Profile names a profile of the CA.
	Profile string `json:"profile"`
	// CommonName is the subject common name the RA approved: the request must carry it.
	CommonName string `json:"common_name"`
	// DNSNames are the DNS names the RA approved: the request must carry exactly these.
	DNSNames []string `json:"dns_names,omitempty"`
}

// RAEnroll is raenroll at the CA: a pair for a request an authorised registration authority
// forwards. The proof of possession, the names (against the CA's profile, the approved
// subject and the RA's scope, Config.RAScopes) and the usages are checked here again; the encryption key pair is generated, escrowed
// and enveloped to the request's signing key here (the RA never sees it). The pair is recorded
// with Via "ra:<name>".
func (s *Server) RAEnroll(ctx context.Context, h *holder, r *http.Request, body []byte) (*Response, error) {
	if h.ra == "" {
		return nil, failf(CodeAuthInvalid, "raenroll is for registration authorities")
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return nil, failf(CodeMediaType, "want application/json")
	}
	var req RAEnrollRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || dec.More() {
		return nil, failf(CodeRequestInvalid, "malformed raenroll body")
	}
	if req.CommonName == "" {
		return nil, failf(CodeRequestInvalid, "common_name required")
	}
	// The RA's scope first: a profile outside it is refused before the CA says whether it
	// exists.
	scope, err := s.raScope(h.ra)
	if err != nil {
		return nil, err
	}
	if err := scope.allowsProfile(req.Profile); err != nil {
		return nil, err
	}
	prof, ok := s.profiles[req.Profile]
	if !ok {
		return nil, failf(CodeRequestInvalid, "unknown profile")
	}
	csr, err := parseCSR(req.CSR)
	if err != nil {
		return nil, err
	}
	cn, dns, err := prof.checkRequest(&csr.CertificateRequest, req.CommonName)
	if err != nil {
		return nil, err
	}
	// The approved common name stands where a token's fixed one does, but it is the RA's word,
	// not the operator's: the profile's pattern applies to it as to a request without one.
	if !prof.cn.MatchString(cn) {
		return nil, failf(CodeNameForbidden, "common name does not match the profile")
	}
	// The names the request carries (checkRequest: the approved common name; the DNS names,
	// each allowed by the profile) must be in the RA's scope too, before the request is
	// reserved.
	if err := scope.allowsNames(cn, dns); err != nil {
		return nil, err
	}
	got, want := slices.Clone(dns), slices.Clone(req.DNSNames)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		return nil, failf(CodeNameForbidden, "the request's DNS names differ from the approved ones")
	}
	// One pair per request: a raenroll sent twice (a retry after a lost answer, or a replay
	// the nonce store has forgotten) is refused as a replay rather than issuing a second pair
	// for one terminal request.
	sum := sm3.Sum(csr.Raw)
	use := singleUse{id: "ra-" + hex.EncodeToString(sum[:16]), notAfter: s.cfg.Now().Add(raRequestRetention), used: CodeReplay}
	if err := s.reserve(ctx, use); err != nil {
		return nil, err
	}
	return s.issue(ctx, csr, prof, cn, dns, "ra:"+h.ra, use)
}

// raRequestRetention is how long the replay-store ledger remembers a raenroll request (its
// marker in the store stays).
const raRequestRetention = 24 * time.Hour

// raMayRevoke checks that the registration authority of h enrolled the pair serial and that
// the pair's profile and names are still in its scope: an RA revokes only its own terminals,
// and not those whose names the operator has since taken out of its scope.
func (s *Server) raMayRevoke(h *holder, serial string) error {
	if serial == "" {
		return failf(CodeRequestInvalid, "serial required")
	}
	scope, err := s.raScope(h.ra)
	if err != nil {
		return err
	}
	rec, err := s.cfg.Store.Cert(serial)
	if errors.Is(err, ErrNotFound) {
		return fail(CodeNotFound, err)
	}
	if err != nil {
		return fail(CodeUnavailable, err)
	}
	if rec.Via != "ra:"+h.ra {
		return failf(CodeAuthInvalid, "a registration authority revokes only the pairs it enrolled")
	}
	return scope.allowsRecord(rec)
}

// upstreamCRL serves the upstream CA's CRL held, fetching it when none is held or it expired.
func (s *Server) upstreamCRL(ctx context.Context, src CRLSource) ([]byte, *big.Int, error) {
	s.crlMu.Lock()
	der, n, next := s.crlDER, s.crlNumber, s.crlNext
	s.crlMu.Unlock()
	if der != nil && s.cfg.Now().Before(next) {
		return der, n, nil
	}
	if err := s.refreshUpstreamCRL(ctx, src); err != nil {
		return nil, nil, err
	}
	s.crlMu.Lock()
	defer s.crlMu.Unlock()
	return s.crlDER, s.crlNumber, nil
}

// refreshUpstreamCRL fetches the upstream CA's CRL, verifies it against the issuing CA, refuses
// a rollback (a CRL older than, or numbered below, the one served), installs it (crl endpoint,
// CRLFile), and forwards again every revocation of the store the CA's CRL does not list yet.
func (s *Server) refreshUpstreamCRL(ctx context.Context, src CRLSource) error {
	rl, err := src.UpstreamCRL(ctx)
	if err != nil {
		return fmt.Errorf("enroll: upstream CRL: %w", err)
	}
	ca := s.cfg.Issuer.Chain()[0]
	if rl == nil || rl.CheckSignatureFrom(ca) != nil {
		return errors.New("enroll: upstream CRL does not verify against the issuing CA")
	}
	if err := pki.CheckCRLScope(rl, ""); err != nil { // a delta, partial or indirect CRL of the CA
		return fmt.Errorf("enroll: upstream CRL: %w", err)
	}
	now := s.cfg.Now()
	if !rl.NextUpdate.IsZero() && now.After(rl.NextUpdate) {
		return errors.New("enroll: upstream CRL is past its nextUpdate")
	}
	number := rl.Number
	if number == nil {
		number = big.NewInt(0)
	}
	s.crlMu.Lock()
	if s.crlDER == nil {
		// After a restart: the CRL this RA published last (its CRL file) is the floor, so that
		// an older CRL of the CA (kept by someone on the path to the CA) is not re-published.
		s.seedUpstreamCRL(ca, now)
	}
	if s.crlDER != nil && (rl.ThisUpdate.Before(s.crlThis) || number.Cmp(s.crlNumber) < 0) {
		s.crlMu.Unlock()
		return fmt.Errorf("enroll: upstream CRL: %w: number %s / thisUpdate %s older than the one served", pki.ErrCRLRollback, number, rl.ThisUpdate.UTC().Format(time.RFC3339))
	}
	if s.crlDER == nil || !bytes.Equal(s.crlDER, rl.Raw) {
		if s.cfg.CRLFile != "" {
			if err := writeAtomic(s.cfg.CRLFile, pki.EncodeCRLPEM(rl.Raw)); err != nil {
				s.crlMu.Unlock()
				return fmt.Errorf("enroll: writing the CRL file: %w", err)
			}
		}
		listed := make(map[string]bool, len(rl.RevokedCertificateEntries))
		for _, e := range rl.RevokedCertificateEntries {
			if e.SerialNumber != nil {
				listed[e.SerialNumber.Text(16)] = true
			}
		}
		s.crlDER, s.crlNumber, s.crlThis, s.crlListed = bytes.Clone(rl.Raw), number, rl.ThisUpdate, listed
		s.crlNext = rl.NextUpdate
		if s.crlNext.IsZero() {
			s.crlNext = now.Add(s.cfg.CRLValidity)
		}
	}
	s.crlMu.Unlock()
	// Markers that fail their integrity check are not believed (nor forwarded); audited once.
	revs, rerr := s.cfg.Store.Revocations()
	if rerr != nil && !errors.Is(rerr, ErrIntegrity) {
		return fmt.Errorf("enroll: listing revocations: %w", rerr)
	}
	s.auditBadMarkers(rerr)
	s.crlMu.Lock()
	s.auditPickedUp(revs, now)
	s.crlMu.Unlock()
	return s.forwardRevocations(ctx, rl)
}

// seedUpstreamCRL takes the CRL of CRLFile as the one served when it verifies against the
// issuing CA: no CRL older than it is published after a restart, and it is served until its
// nextUpdate if the CA cannot be reached. A file that does not parse or verify is ignored
// (the first CRL fetched replaces it). The caller holds s.crlMu.
func (s *Server) seedUpstreamCRL(ca *smx509.Certificate, now time.Time) {
	if s.cfg.CRLFile == "" {
		return
	}
	data, err := os.ReadFile(s.cfg.CRLFile)
	if err != nil {
		return
	}
	rl, err := pki.ParseCRL(data)
	if err != nil || rl.CheckSignatureFrom(ca) != nil || pki.CheckCRLScope(rl, "") != nil {
		return
	}
	number := rl.Number
	if number == nil {
		number = big.NewInt(0)
	}
	listed := make(map[string]bool, len(rl.RevokedCertificateEntries))
	for _, e := range rl.RevokedCertificateEntries {
		if e.SerialNumber != nil {
			listed[e.SerialNumber.Text(16)] = true
		}
	}
	s.crlDER, s.crlNumber, s.crlThis, s.crlListed = bytes.Clone(rl.Raw), number, rl.ThisUpdate, listed
	s.crlNext = rl.NextUpdate
	if s.crlNext.IsZero() {
		s.crlNext = now
	}
}

// forwardRevocations sends the upstream CA every pair revoked in the store that its CRL does
// not list (a forward that failed at revocation time, or `gmgate enroll revoke --store`).
func (s *Server) forwardRevocations(ctx context.Context, rl *smx509.RevocationList) error {
	listed := make(map[string]bool, len(rl.RevokedCertificateEntries))
	for _, e := range rl.RevokedCertificateEntries {
		if e.SerialNumber != nil {
			listed[serialHex(e.SerialNumber)] = true
		}
	}
	all, err := s.cfg.Store.Certs()
	if err != nil && !errors.Is(err, ErrIntegrity) {
		return fmt.Errorf("enroll: listing certificates: %w", err)
	}
	var errs []error
	now := s.cfg.Now()
	for _, rec := range all {
		if !rec.Revoked || listed[rec.Serial] || !now.Before(rec.NotAfter) || !s.forwardDue(rec.Serial, now) {
			continue
		}
		err := s.cfg.Issuer.RevokePair(ctx, rec, rec.RevokedBy)
		s.forwardDone(rec.Serial, now, err)
		if s.cfg.Audit != nil {
			ar := audit.Record{Time: s.cfg.Now(), Direction: audit.DirectionOutbound, Scheme: "enroll/forward-revoke",
				KeyID: rec.RevokedBy, CertSerial: rec.Serial, Verdict: audit.VerdictAccept, Reason: audit.ReasonOK}
			if err != nil {
				ar.Verdict, ar.Reason = audit.VerdictReject, string(CodeOf(issuerError(err)))
			}
			_ = s.cfg.Audit.Append(ar)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("enroll: forwarding the revocation of %s: %w", rec.Serial, err))
		}
	}
	return errors.Join(errs...)
}

// forwardRetry is the backoff of a revocation the upstream CA did not take.
type forwardRetry struct {
	next  time.Time
	delay time.Duration
}

// Forwarding backoff: from one CRL check to maxForwardDelay, doubling per failure, so that a CA
// refusing a revocation for good does not get (and the audit log record) one attempt per check.
const (
	minForwardDelay = 10 * time.Second
	maxForwardDelay = time.Hour
)

func (s *Server) forwardDue(serial string, now time.Time) bool {
	s.fwdMu.Lock()
	defer s.fwdMu.Unlock()
	r, ok := s.fwdRetry[serial]
	return !ok || !now.Before(r.next)
}

func (s *Server) forwardDone(serial string, now time.Time, err error) {
	s.fwdMu.Lock()
	defer s.fwdMu.Unlock()
	if err == nil {
		delete(s.fwdRetry, serial)
		return
	}
	if s.fwdRetry == nil {
		s.fwdRetry = map[string]forwardRetry{}
	}
	r := s.fwdRetry[serial]
	r.delay = min(max(2*r.delay, minForwardDelay), maxForwardDelay)
	r.next = now.Add(r.delay)
	s.fwdRetry[serial] = r
}
