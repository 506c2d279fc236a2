package enroll

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/emmansun/gmsm/pkcs7"
	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/audit"
	"github.com/gmgate/gmgate/internal/abuse"
	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/signing"
)

// Operations (the last path segment of a request, as in EST's /.well-known/est/<op>).
const (
	OpCACerts        = "cacerts"
	OpSimpleEnroll   = "simpleenroll"
	OpSimpleReenroll = "simplereenroll"
	OpDownload       = "download"
	OpRevoke         = "revoke"
	OpCRL            = "crl"
	// OpRecover returns an escrowed encryption key to an administrator (enveloped to the
	// administrator's signing key).
	OpRecover = "recover"
	// OpRAEnroll and OpRARevoke are the registration-authority operations: another gmgate's
	// gm_enroll (UpstreamIssuer) forwards a checked terminal request, or a revocation, to this
	// one acting as its CA (docs/enrolment.md, "Upstream CAs").
	OpRAEnroll = "raenroll"
	OpRARevoke = "rarevoke"
)

// Defaults.
const (
	// DefaultMaxRequestSize bounds a request body (a base64 PKCS#10 request is ~1 KiB).
	DefaultMaxRequestSize = 64 << 10
	// DefaultWindow is the accepted age of a signed request (created) in both directions.
	DefaultWindow = 5 * time.Minute
	// DefaultCRLValidity is the distance to a CRL's nextUpdate; a CRL is re-signed at half of it
	// and at every revocation.
	DefaultCRLValidity = 24 * time.Hour
)

// Escrow archives centrally generated encryption private keys (package sealstore through the
// Caddy adapter: SM4-GCM under a vault key). Put must be durable before it returns: the key is
// delivered only once it is escrowed.
// Get returns the escrowed key of id (the encryption certificate's serial) for recovery.
type Escrow interface {
	Put(id string, secret []byte) error
	Get(id string) ([]byte, error)
}

// NonceStore remembers single-use values: CheckAndStore stores (keyID, nonce) for ttl and
// returns nil, or an error wrapping ErrSeen when it was stored before and has not expired; any
// other error means the store cannot decide (the request is refused, fail closed). The Caddy
// adapter passes gm_verify's replay store (memory, or Redis shared by every instance).
type NonceStore interface {
	CheckAndStore(ctx context.Context, keyID, nonce string, ttl time.Duration) error
}

// ErrSeen is what a NonceStore wraps for a value stored before.
var ErrSeen = errors.New("enroll: value already used")

// AdminAuthorizer returns the signing certificate of the administrator a signed request names
// (keyid "admin:<name>"), after checking it (chain, validity, signing usage, revocation: the
// Caddy adapter uses a pki.Verifier over the configured administrator roots). The server then
// verifies the request's signature with it. An error refuses the request.
type AdminAuthorizer func(name string) (*smx509.Certificate, error)

// Config configures a Server.
type Config struct {
	// Issuer issues the pairs; it is a CRLSigner (LocalCA: the Server's CRL) or a CRLSource
	// (UpstreamIssuer: the upstream CA's CRL is re-published). Required.
	Issuer Issuer
	// Store keeps tokens, issued pairs and revocations. Required.
	Store Store
	// Profiles are the certificate profiles tokens refer to. At least one.
	Profiles []Profile
	// TokenLedger, when set, records every token's (and every renewal's) single use as well as
	// the Store's exclusive marker: SET-if-absent of the ID until its expiry. The Caddy adapter
	// passes the replay store (Redis when configured: outside the store directory, so a spent
	// token put back by restoring the directory stays spent; memory: for the process's lifetime).
	TokenLedger NonceStore
	// CRLLedger, when set, records the mark of every CRL the CA signs (number, thisUpdate,
	// count and digest of its serials) outside the store directory; the Store keeps a copy as
	// an authenticated record. A CRL that would list fewer serials than the last one recorded
	// (the CRL file replaced by an older CRL and revocation markers deleted) is not signed:
	// the CA fails closed (enroll_unavailable) and audits crl_rollback. The Caddy adapter
	// passes Redis when `replay { store redis }` is configured.
	CRLLedger CRLLedger
	// OnCRLRollback, when set, is called once per process when a CRL rollback is refused (for
	// metrics).
	OnCRLRollback func()
	// Nonces remembers the nonces of signed requests (re-enrol, download, revoke) for twice
	// the Window. Required (the gateway's memory or Redis replay store).
	Nonces NonceStore
	// Escrow, when set, archives every encryption private key before it is delivered; an
	// escrow failure refuses the issuance (enroll_unavailable).
	Escrow Escrow
	// Audit receives one entry per operation (accepted or refused). Optional.
	Audit audit.Sink
	// Admin authorises administrative revocations. Optional (none: holders only).
	Admin AdminAuthorizer
	// RA authorises registration authorities (keyid "ra:<name>"): another gmgate's gm_enroll
	// in front of this one (UpstreamIssuer) forwarding its terminals' requests to raenroll and
	// its revocations to rarevoke. Optional (none: the RA operations are refused).
	RA AdminAuthorizer
	// RAScopes binds each registration authority (by the name of its keyid "ra:<name>") to the
	// profiles it may request and the names it may enrol or revoke. An RA without a scope is
	// refused every RA operation (enroll_ra_out_of_scope: fails closed).
	RAScopes map[string]RAScope
	// CRLFile, when set, receives the current CRL (PEM, atomically replaced) whenever it is
	// re-signed, for the TLCP listener / gm_verify / gm_channel of this instance (their crl
	// option reloads it on change).
	CRLFile string
	// IdentityDir, when set, receives every issued signing certificate as <serial>.pem (and
	// loses it on revocation): point gm_verify's identities { dir } at it so enrolled terminals
	// can pay at once. Revocation is enforced by the CRL either way.
	IdentityDir string
	// CRLValidity is the distance from a CRL's thisUpdate to its nextUpdate. Default 24h.
	CRLValidity time.Duration
	// MaxRequestSize bounds a request body, in bytes. Default 64 KiB.
	MaxRequestSize int64
	// Window is the accepted clock difference of a signed request. Default 5m.
	Window time.Duration
	// RequestIDHeader names the header copied into audit entries.
	RequestIDHeader string
	// PeerCertificate, when set, returns the signing certificate the client authenticated with
	// in the TLCP handshake of the request's connection (its CertificateVerify proved the key),
	// or nil. simplereenroll then accepts it instead of a signed request: the certificate must
	// be one this CA issued and the store holds, valid and unrevoked, and the new request must
	// name the same subject. The Caddy adapter reads the TLCP listener's connection state.
	PeerCertificate func(r *http.Request) *smx509.Certificate
	// Limits bound requests per client address and failed attempts per client address and per
	// token ID. Zero fields take the defaults (DefaultLimits).
	Limits Limits
	// ClientAddress returns the address a request is counted under (the Caddy adapter: the
	// client IP, which honours the server's trusted_proxies). Default: the host of RemoteAddr.
	ClientAddress func(r *http.Request) string
	// OnLockout, when set, is called when a client address ("address") or a token ID ("token")
	// gets locked out (metrics).
	OnLockout func(scope string)
	// OnLimitError, when set, is told every failure of the limits' state (Limits.Shared) with
	// its scope ("address" or "token"): the log.
	OnLimitError func(scope string, err error)
	// Observe, when set, is called once per request with the operation and its code (metrics).
	Observe func(op string, code Code)
	// Now returns the current time. Default time.Now.
	Now func() time.Time
}

// Limits are the abuse controls of the enrolment endpoints (every operation but cacerts and
// crl).
type Limits struct {
	// RatePerMinute and Burst bound the requests of one client address (token bucket).
	// Defaults 60 and 20.
	RatePerMinute, Burst int
	// MaxFailures consecutive failed attempts (a token that is unknown, wrong, expired, used or
	// whose record fails its integrity check; a signed request that does not authenticate) lock
	// the client address, and MaxFailures failed attempts on one token ID lock that token, for
	// Lockout. Defaults 10 and 15m.
	MaxFailures int
	Lockout     time.Duration
	// MaxKeys bounds the addresses (and the token IDs) tracked in this process; when all are
	// busy a new one evicts one that is not locked out, and only when all are locked out is it
	// refused (enroll_rate_limited: fails closed). Default 100000. It does not apply with
	// Shared.
	MaxKeys int
	// Shared, when set, keeps the rates, failure counts and lockouts in Redis, shared by every
	// instance configured with the same store and limits: an attacker spreading token guesses
	// over N instances gets the budget of one. Addresses live under Prefix+"addr:", token IDs
	// under Prefix+"token:". Any Redis error refuses the request with enroll_unavailable
	// (audited; fails closed). Nil: the state lives in this process.
	Shared *abuse.RedisStore
}

// DefaultLimits are the limits of zero Limits fields.
var DefaultLimits = Limits{RatePerMinute: 60, Burst: 20, MaxFailures: 10, Lockout: 15 * time.Minute, MaxKeys: 100000}

// Server is the enrolment service. It is safe for concurrent use.
type Server struct {
	cfg      Config
	addrs    abuse.Limiter // per client address: rate and failed attempts
	tokens   abuse.Limiter // per token ID: failed attempts
	profiles map[string]*Profile
	raScopes map[string]*RAScope
	scheme   signing.Scheme
	verifier *pki.Verifier
	cacerts  []byte // base64 PKCS#7 certs-only

	crlMu     sync.Mutex
	crlDER    []byte
	crlNumber *big.Int
	crlThis   time.Time
	crlNext   time.Time
	crlSet    string          // SM3 of the sorted revocation list the CRL was built from
	crlKnown  map[string]bool // revoked serials already seen (audit of picked-up revocations)
	crlListed map[string]bool // serials (lower-case hex) of the last CRL signed
	crlBad    map[string]bool // revocation markers refused for integrity, audited once
	crlMark   *CRLMark        // the newest record of the last CRL signed (store, ledger)

	crlRollbackSeen bool // a CRL rollback was audited and counted

	fwdMu    sync.Mutex
	fwdRetry map[string]forwardRetry // upstream issuers: revocations the CA refused or missed
}

// RequestScheme is the signature scheme of signed enrolment requests: http-sig-sm2 covering
// the method, the path (which binds the operation) and the SM3 content digest.
func RequestScheme() signing.Scheme {
	return signing.NewHTTPSig(signing.WithRequiredComponents(signing.Request, "@method", "@path", "content-digest"))
}

// CheckProfiles checks profiles as NewServer does (names, patterns, no duplicates), for a
// configuration check that builds no server.
func CheckProfiles(profiles []Profile) error {
	if len(profiles) == 0 {
		return errors.New("enroll: at least one profile is required")
	}
	seen := map[string]bool{}
	for _, p := range profiles {
		if err := p.compile(); err != nil {
			return err
		}
		if seen[p.Name] {
			return fmt.Errorf("enroll: profile %s defined twice", p.Name)
		}
		seen[p.Name] = true
	}
	return nil
}

// NewServer checks cfg and returns the server. It writes nothing and uses no key: the first
// CRL is signed (and CRLFile written) by the first RefreshCRL, Run, CRL request or signed
// request.
func NewServer(cfg Config) (*Server, error) {
	if cfg.Issuer == nil || cfg.Store == nil || cfg.Nonces == nil {
		return nil, errors.New("enroll: Issuer, Store and Nonces are required")
	}
	if len(cfg.Profiles) == 0 {
		return nil, errors.New("enroll: at least one profile is required")
	}
	if cfg.CRLValidity <= 0 {
		cfg.CRLValidity = DefaultCRLValidity
	}
	if cfg.MaxRequestSize <= 0 {
		cfg.MaxRequestSize = DefaultMaxRequestSize
	}
	if cfg.Window <= 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	l, d := &cfg.Limits, DefaultLimits
	for _, f := range []struct {
		v   *int
		def int
	}{{&l.RatePerMinute, d.RatePerMinute}, {&l.Burst, d.Burst}, {&l.MaxFailures, d.MaxFailures}, {&l.MaxKeys, d.MaxKeys}} {
		if *f.v < 0 {
			return nil, errors.New("enroll: negative limit")
		}
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	if l.Lockout <= 0 {
		l.Lockout = d.Lockout
	}
	s := &Server{cfg: cfg, profiles: map[string]*Profile{}, scheme: RequestScheme()}
	addrs := abuse.Limits{RatePerMinute: l.RatePerMinute, Burst: l.Burst, MaxFailures: l.MaxFailures, Lockout: l.Lockout, MaxKeys: l.MaxKeys}
	tokens := addrs // token IDs are only locked out, never rate limited (no Admit)
	if l.Shared == nil {
		tokens.RatePerMinute, tokens.Burst = 1<<20, 1<<20
		s.addrs, s.tokens = abuse.NewGuard(addrs), abuse.NewGuard(tokens)
	} else {
		var err error
		st := *l.Shared
		st.Prefix = l.Shared.Prefix + "addr:"
		if s.addrs, err = abuse.NewRedis(st, addrs); err != nil {
			return nil, fmt.Errorf("enroll: limits: %w", err)
		}
		st.Prefix = l.Shared.Prefix + "token:"
		if s.tokens, err = abuse.NewRedis(st, tokens); err != nil {
			return nil, fmt.Errorf("enroll: limits: %w", err)
		}
	}
	for i := range cfg.Profiles {
		p := cfg.Profiles[i]
		if err := p.compile(); err != nil {
			return nil, err
		}
		if _, dup := s.profiles[p.Name]; dup {
			return nil, fmt.Errorf("enroll: profile %s defined twice", p.Name)
		}
		s.profiles[p.Name] = &p
	}
	scopes, err := compileRAScopes(cfg.RAScopes, s.profiles)
	if err != nil {
		return nil, err
	}
	s.raScopes = scopes
	_, signs := cfg.Issuer.(CRLSigner)
	_, sources := cfg.Issuer.(CRLSource)
	if signs == sources {
		return nil, errors.New("enroll: the Issuer must either sign CRLs (CRLSigner) or publish them (CRLSource)")
	}
	chain := cfg.Issuer.Chain()
	if len(chain) == 0 {
		return nil, errors.New("enroll: issuer has no CA certificate")
	}
	root := chain[len(chain)-1]
	v, err := pki.NewVerifier(pki.VerifierOptions{Roots: []*smx509.Certificate{root}, Intermediates: chain[:len(chain)-1], Now: cfg.Now})
	if err != nil {
		return nil, fmt.Errorf("enroll: CA chain: %w", err)
	}
	s.verifier = v
	var raw []byte
	for _, c := range chain {
		raw = append(raw, c.Raw...)
	}
	p7, err := pkcs7.DegenerateCertificate(raw)
	if err != nil {
		return nil, fmt.Errorf("enroll: cacerts: %w", err)
	}
	s.cacerts = []byte(base64.StdEncoding.EncodeToString(p7))
	return s, nil
}

// Profile returns the named profile.
func (s *Server) Profile(name string) (*Profile, bool) {
	p, ok := s.profiles[name]
	return p, ok
}

// Response is the JSON body of a successful simpleenroll, simplereenroll or download
// (docs/enrolment.md). Binary fields are standard base64 (encoding/json).
type Response struct {
	Serial    string    `json:"serial"`
	EncSerial string    `json:"enc_serial"`
	NotAfter  time.Time `json:"not_after"`
	SignCert  []byte    `json:"sign_cert"`
	EncCert   []byte    `json:"enc_cert"`
	// Chain is the CA chain, issuing CA first.
	Chain [][]byte `json:"chain"`
	Delivery
}

func (s *Server) response(rec CertRecord) *Response {
	r := &Response{Serial: rec.Serial, EncSerial: rec.EncSerial, NotAfter: rec.NotAfter, SignCert: rec.SignCert, EncCert: rec.EncCert, Delivery: rec.Delivery}
	for _, c := range s.cfg.Issuer.Chain() {
		r.Chain = append(r.Chain, c.Raw)
	}
	return r
}

func serialHex(n *big.Int) string { return strings.ToLower(n.Text(16)) }

// Enroll is simpleenroll: a first pair for csrDER, authorised by token. keyID is filled with
// the token ID for the audit entry.
func (s *Server) Enroll(ctx context.Context, token string, csrDER []byte) (*Response, string, error) {
	id, secret, ok := parseToken(token)
	if !ok {
		return nil, "", failf(CodeTokenInvalid, "malformed token")
	}
	defer clear(secret)
	rec, err := s.cfg.Store.Token(id)
	if errors.Is(err, ErrNotFound) {
		return nil, id, failf(CodeTokenInvalid, "unknown token")
	}
	if err != nil {
		return nil, id, storeFail(err)
	}
	if !checkTokenSecret(rec, secret) {
		return nil, id, failf(CodeTokenInvalid, "token secret does not match")
	}
	now := s.cfg.Now()
	if !now.Before(rec.NotAfter) {
		return nil, id, failf(CodeTokenExpired, "token expired")
	}
	prof, ok := s.profiles[rec.Profile]
	if !ok {
		return nil, id, failf(CodeTokenInvalid, "token names an unknown profile")
	}
	csr, err := parseCSR(csrDER)
	if err != nil {
		return nil, id, err
	}
	cn, dns, err := prof.checkRequest(&csr.CertificateRequest, rec.CommonName)
	if err != nil {
		return nil, id, err
	}
	// The token is reserved only by a request that passed every check (a malformed request
	// does not burn it) and spent only once the pair is issued (a CA, vault or escrow failure
	// gives it back); concurrent uses of one token get exactly one pair.
	use := singleUse{id: rec.ID, notAfter: rec.NotAfter, used: CodeTokenUsed}
	if err := s.reserve(ctx, use); err != nil {
		return nil, id, err
	}
	out, err := s.issue(ctx, csr, prof, cn, dns, "token:"+id, use)
	return out, id, err
}

// singleUse is what an issuance spends: a token, or a certificate's one renewal.
type singleUse struct {
	id       string // token ID, or "renew-<serial>"
	notAfter time.Time
	used     Code // the refusal when it was spent: enroll_token_used, enroll_already_renewed
}

// reserve takes use for one issuance (the store's exclusive marker).
func (s *Server) reserve(ctx context.Context, use singleUse) error {
	err := s.cfg.Store.ReserveToken(ctx, use.id)
	switch {
	case errors.Is(err, ErrTokenUsed):
		return fail(use.used, err)
	case err != nil:
		return storeFail(err)
	}
	return nil
}

// release gives a reservation back after a failed issuance.
func (s *Server) release(use singleUse) {
	if err := s.cfg.Store.ReleaseToken(use.id); err != nil && !errors.Is(err, ErrNotFound) {
		// The ID stays held (a retry is refused as used): fail closed, and say so.
		s.auditStore(s.cfg.Now(), use.id, "reservation_not_released")
	}
}

// spend records the single use of a reserved ID once its pair is issued: in the TokenLedger
// first, which the store directory cannot roll back, then as the store's spent marker. A
// ledger that saw the ID before means its spent marker was removed from the store (the
// directory rolled back): refused as used, audited, and the pair just issued is discarded.
func (s *Server) spend(ctx context.Context, use singleUse, now time.Time) error {
	if l := s.cfg.TokenLedger; l != nil {
		err := l.CheckAndStore(ctx, "gmgate-enroll-token", use.id, use.notAfter.Sub(now)+s.cfg.Window)
		switch {
		case errors.Is(err, ErrSeen):
			_ = s.cfg.Store.SpendToken(use.id)
			s.auditStore(now, use.id, "spent_marker_rolled_back")
			return fail(use.used, fmt.Errorf("enroll: %s was spent before (its spent marker was removed from the store): %w", use.id, err))
		case err != nil:
			return fail(CodeUnavailable, err)
		}
	}
	if err := s.cfg.Store.SpendToken(use.id); err != nil {
		return storeFail(err)
	}
	return nil
}

// auditStore writes an audit entry about the store itself (a record refused, a rollback seen).
func (s *Server) auditStore(now time.Time, id, reason string) {
	if s.cfg.Audit != nil {
		_ = s.cfg.Audit.Append(audit.Record{Time: now, Direction: audit.DirectionInbound, Scheme: "enroll/store",
			KeyID: id, Verdict: audit.VerdictReject, Reason: reason})
	}
}

// cfcaRequest is a parsed request; TmpPublicKey is set for a CFCA "double" request.
type cfcaRequest = smx509.CertificateRequestCFCA

// maxCSRSize bounds a DER request.
const maxCSRSize = 16 << 10

// parseCSR parses a DER PKCS#10 request, standard or CFCA "double" (with a temporary public
// key attribute). It never panics on hostile input.
func parseCSR(der []byte) (*cfcaRequest, error) {
	if len(der) == 0 || len(der) > maxCSRSize {
		return nil, failf(CodeCSRInvalid, "request empty or too large")
	}
	csr, err := smx509.ParseCFCACertificateRequest(der)
	if err != nil {
		return nil, fail(CodeCSRInvalid, fmt.Errorf("enroll: parsing the request: %w", err))
	}
	return csr, nil
}

// issue issues, escrows and records a pair for a checked request whose single use (use) is
// reserved: it spends use once the pair and its delivery exist, and releases it when anything
// before that fails.
func (s *Server) issue(ctx context.Context, csr *cfcaRequest, prof *Profile, cn string, dns []string, via string, use singleUse) (*Response, error) {
	spent := false
	defer func() {
		if !spent {
			s.release(use)
		}
	}()
	signPub, ok := signPublic(csr.PublicKey)
	if !ok {
		return nil, failf(CodeCSRInvalid, "request key is not SM2")
	}
	var tmpPub *ecdsa.PublicKey
	if csr.TmpPublicKey != nil {
		if tmpPub, ok = signPublic(csr.TmpPublicKey); !ok {
			return nil, failf(CodeCSRInvalid, "CFCA temporary key is not SM2")
		}
	}
	pair, err := s.cfg.Issuer.IssuePair(ctx, &PairRequest{SignPublicKey: signPub, CSR: csr.Raw, CommonName: cn, DNSNames: dns, Profile: prof})
	if err != nil {
		return nil, issuerError(err)
	}
	if pair != nil && pair.EncKey != nil {
		defer zeroKey(pair)
	}
	if err := s.checkIssued(pair, issuedCheck{signPub: signPub, cn: cn, dns: dns, prof: prof, cfca: tmpPub != nil}); err != nil {
		return nil, err
	}
	rec := CertRecord{
		Serial: serialHex(pair.Sign.SerialNumber), EncSerial: serialHex(pair.Enc.SerialNumber), CommonName: cn, Profile: prof.Name,
		SKI: hex.EncodeToString(pair.Sign.SubjectKeyId), NotBefore: pair.Sign.NotBefore, NotAfter: pair.Sign.NotAfter,
		IssuedAt: s.cfg.Now().UTC(), Via: via, SignCert: pair.Sign.Raw, EncCert: pair.Enc.Raw,
	}
	if pair.EncKey != nil {
		if s.cfg.Escrow != nil {
			d := pair.EncKey.D.FillBytes(make([]byte, 32))
			err := s.cfg.Escrow.Put(rec.EncSerial, d)
			clear(d)
			if err != nil {
				return nil, fail(CodeUnavailable, fmt.Errorf("enroll: escrow: %w", err))
			}
			rec.Escrowed = true
		}
		if rec.Delivery, err = envelopeTo(signPub, pair.EncKey, pair.Sign, pair.Enc); err != nil {
			return nil, fail(CodeInternal, err)
		}
		if tmpPub != nil {
			if rec.Delivery.CFCAEncryptedKey, err = cfcaEnvelope(tmpPub, pair.EncKey); err != nil {
				return nil, fail(CodeInternal, err)
			}
		}
	} else if pair.Delivery != nil {
		rec.Delivery = *pair.Delivery
	} else {
		return nil, failf(CodeInternal, "issuer returned neither a key nor a delivery")
	}
	// From here on the token is spent: a failure to record the pair leaves it spent (the pair
	// is not delivered; the operator issues a new token).
	if err := s.spend(ctx, use, s.cfg.Now()); err != nil {
		return nil, err
	}
	spent = true
	if s.cfg.IdentityDir != "" {
		if err := writeAtomicMode(filepath.Join(s.cfg.IdentityDir, rec.Serial+".pem"), pki.EncodeCertificatesPEM(pair.Sign), 0o644); err != nil {
			return nil, fail(CodeUnavailable, fmt.Errorf("enroll: identity file: %w", err))
		}
	}
	if err := s.cfg.Store.PutCert(rec); err != nil {
		return nil, storeFail(fmt.Errorf("enroll: recording the pair: %w", err))
	}
	return s.response(rec), nil
}

func zeroKey(p *Pair) {
	if p.EncKey != nil && p.EncKey.D != nil {
		p.EncKey.D.SetInt64(0)
	}
}

// holder is an authenticated signed request.
type holder struct {
	rec       CertRecord
	admin     string              // administrator name for "admin:" key IDs
	adminCert *smx509.Certificate // the administrator's certificate
	tlcp      bool                // authenticated by TLCP client authentication
	ra        string              // registration authority name for "ra:" key IDs
}

// keyID is the holder's name in audit entries: the serial, "admin:<name>", "ra:<name>" or
// "tlcp:<serial>".
func (h *holder) keyID() string {
	switch {
	case h.admin != "":
		return "admin:" + h.admin
	case h.ra != "":
		return "ra:" + h.ra
	case h.tlcp:
		return "tlcp:" + h.rec.Serial
	}
	return h.rec.Serial
}

// authenticate checks a signed request (http-sig-sm2): the signature with the key its keyid
// names (a signing-certificate serial, "ski:<hex>", or "admin:<name>"), then freshness and
// the nonce, then the certificate's status. Nothing about the certificate is revealed before
// the signature verifies.
func (s *Server) authenticate(ctx context.Context, r *http.Request, body []byte) (*holder, error) {
	m := &signing.Message{Kind: signing.Request, Method: r.Method, Target: r.URL.RequestURI(), Authority: r.Host, Header: r.Header, Body: body}
	signed, err := s.scheme.Parse(m)
	if err != nil {
		return nil, fail(CodeAuthInvalid, err)
	}
	var cert *smx509.Certificate
	h := &holder{}
	keyID := signed.KeyID
	switch {
	case strings.HasPrefix(keyID, "admin:"):
		if s.cfg.Admin == nil {
			return nil, failf(CodeAuthInvalid, "no administrators configured")
		}
		c, aerr := s.cfg.Admin(strings.TrimPrefix(keyID, "admin:"))
		if aerr != nil || c == nil {
			return nil, fail(CodeAuthInvalid, fmt.Errorf("enroll: administrator: %w", aerr))
		}
		cert, h.admin, h.adminCert = c, strings.TrimPrefix(keyID, "admin:"), c
	case strings.HasPrefix(keyID, "ra:"):
		if s.cfg.RA == nil {
			return nil, failf(CodeAuthInvalid, "no registration authorities configured")
		}
		name := strings.TrimPrefix(keyID, "ra:")
		c, rerr := s.cfg.RA(name)
		if rerr != nil || c == nil {
			return nil, fail(CodeAuthInvalid, fmt.Errorf("enroll: registration authority: %w", rerr))
		}
		cert, h.ra = c, name
	case strings.HasPrefix(keyID, "ski:"):
		h.rec, err = s.cfg.Store.CertBySKI(strings.TrimPrefix(keyID, "ski:"))
	default:
		h.rec, err = s.cfg.Store.Cert(keyID)
	}
	switch {
	case errors.Is(err, ErrNotFound):
		return nil, failf(CodeAuthInvalid, "unknown key ID")
	case err != nil:
		return nil, storeFail(err)
	}
	if cert == nil {
		if cert, err = smx509.ParseCertificate(h.rec.SignCert); err != nil {
			return nil, fail(CodeInternal, err)
		}
	}
	pub, ok := signPublic(cert.PublicKey)
	if !ok {
		return nil, failf(CodeAuthInvalid, "key is not SM2")
	}
	if err := s.scheme.Verify(signed, pub); err != nil {
		return nil, fail(CodeAuthInvalid, err)
	}
	if err := s.ensureCRL(ctx); err != nil {
		return nil, fail(CodeUnavailable, err)
	}
	now := s.cfg.Now()
	if d := now.Sub(signed.Timestamp); signed.Timestamp.IsZero() || d > s.cfg.Window || d < -s.cfg.Window {
		return nil, failf(CodeReplay, "created outside the window")
	}
	if err := s.cfg.Nonces.CheckAndStore(ctx, "gmgate-enroll:"+keyID, signed.Nonce, 2*s.cfg.Window); err != nil {
		if errors.Is(err, ErrSeen) {
			return nil, fail(CodeReplay, err)
		}
		return nil, fail(CodeUnavailable, err)
	}
	if h.admin != "" || h.ra != "" {
		return h, nil
	}
	return h, s.checkHolder(h, cert)
}

// authenticatePeer authorises a request by the signing certificate of its TLCP client
// authentication (Config.PeerCertificate): the store's record of that serial must hold this
// very certificate, then the same status checks as a signed request's.
func (s *Server) authenticatePeer(ctx context.Context, cert *smx509.Certificate) (*holder, error) {
	if cert == nil || cert.SerialNumber == nil {
		return nil, failf(CodeAuthInvalid, "no TLCP client certificate")
	}
	rec, err := s.cfg.Store.Cert(serialHex(cert.SerialNumber))
	switch {
	case errors.Is(err, ErrNotFound):
		return nil, failf(CodeAuthInvalid, "TLCP client certificate not issued here")
	case err != nil:
		return nil, storeFail(err)
	}
	if !bytes.Equal(rec.SignCert, cert.Raw) {
		return nil, failf(CodeAuthInvalid, "TLCP client certificate is not the one issued under its serial")
	}
	if err := s.ensureCRL(ctx); err != nil {
		return nil, fail(CodeUnavailable, err)
	}
	h := &holder{rec: rec, tlcp: true}
	return h, s.checkHolder(h, cert)
}

// checkHolder checks a holder's signing certificate: not revoked (the record and the last
// signed CRL), chaining to this CA, within its validity, a signing certificate.
func (s *Server) checkHolder(h *holder, cert *smx509.Certificate) error {
	// The record's flag, and the CRL this server signed last: a pair's record put back from
	// before its revocation still carries a valid tag, the signed CRL does not forget.
	if h.rec.Revoked || s.revokedInCRL(h.rec.Serial) {
		return failf(CodeCertRevoked, "certificate revoked")
	}
	if _, err := s.verifier.Verify(cert, nil, pki.RoleSign); err != nil {
		switch {
		case errors.Is(err, pki.ErrExpired), errors.Is(err, pki.ErrNotYetValid):
			return fail(CodeCertExpired, err)
		case errors.Is(err, pki.ErrRevoked):
			return fail(CodeCertRevoked, err)
		default:
			return fail(CodeCertUntrusted, err)
		}
	}
	return nil
}
