// Package platform is the platform side of collaborative SM2 (package cosign) as an HTTP
// service: key generation (the platform's share d_2, sealed per terminal key in a sealstore),
// co-signing and co-decryption, each only for an authenticated terminal session, under a
// per-key rate limit and lockout counter, with a freshness guard on the terminal's ephemeral
// points, an optional binding of the digest to the payment instruction, an audit entry and a
// metric for every co-operation, and refusals through package refusal. Caddy's gm_cosign
// handler is a thin adapter over Service. See docs/cosign.md.
package platform

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/audit"
	"github.com/gmgate/gmgate/cosign"
	"github.com/gmgate/gmgate/internal/abuse"
	"github.com/gmgate/gmgate/refusal"
	"github.com/gmgate/gmgate/sealstore"
)

// ShareKind is the sealstore kind of the platform's shares: one record per terminal key ID,
// holding d_2 (32 bytes) followed by the joint public key P (65 bytes).
const ShareKind = "cosign-d2"

// MaxRequestSize bounds a co-operation request body (64 KiB: a bound payment instruction
// included).
const MaxRequestSize = 64 << 10

// Shares is where the platform's shares live: a *sealstore.Store.
// Every write is conditional on what the request read (Create, PutIf, DestroyVersionIf under
// the record's lock), so instances sharing the store cannot interleave a key generation, a
// rotation, a confirmation and a destruction into a state none of them meant.
type Shares interface {
	GetAll(kind string, id []byte) ([]sealstore.Version, error)
	Create(kind string, id []byte, secret []byte) error
	PutIf(kind string, id []byte, secret []byte, match func([]sealstore.Version) bool) (int, error)
	DestroyVersionIf(kind string, id []byte, n int, match func([]sealstore.Version) bool) error
	Destroy(kind string, id []byte) error
}

// Auth modes.
const (
	AuthToken       = "token"         // a session token (IssueToken) in Authorization: Bearer
	AuthCert        = "cert"          // the TLCP/TLS client certificate holds the joint key
	AuthCertOrToken = "cert_or_token" // either
)

// Config configures a Service. Zero values take the documented defaults.
type Config struct {
	// Shares stores d_2 per terminal key (required).
	Shares Shares
	// Audit receives one entry per co-operation (required).
	Audit audit.Sink
	// Auth is AuthToken (default), AuthCert or AuthCertOrToken. Key generation always needs a
	// token (no certificate of the joint key exists yet).
	Auth string
	// TokenMAC checks session tokens (required unless Auth is AuthCert).
	TokenMAC TokenMAC
	// PeerCertificate returns the client certificate of the TLCP/TLS session r came on, already
	// verified by the listener (chain, usage, revocation), or nil.
	PeerCertificate func(r *http.Request) *smx509.Certificate
	// MaxTokenLifetime refuses tokens valid for longer than this from now (default 10m).
	MaxTokenLifetime time.Duration
	// RatePerMinute and Burst limit co-operations per key (defaults 60 and 10).
	RatePerMinute, Burst int
	// MaxFailures consecutive failures (authentication, malformed or reused values, binding)
	// lock a key for Lockout (defaults 5 and 15m).
	MaxFailures int
	Lockout     time.Duration
	// FreshnessWindow and FreshnessMax size the guard against reused Q_1/T_1 (defaults 10m and
	// 100000 points).
	FreshnessWindow time.Duration
	FreshnessMax    int
	// MaxKeys bounds the keys tracked by the rate limiter and lockout (default 100000); a new
	// key evicts one that is not locked out, and is refused (cosign_unavailable) only when all
	// are locked out.
	MaxKeys int
	// BindInstruction requires every sign request to carry the payment instruction (the exact
	// bytes gm_verify will verify) and refuses a digest e that is not SM3(Z_A(P, BindUserID) ||
	// instruction).
	BindInstruction bool
	// BindUserID is the SM2 user ID of the binding (default 1234567812345678).
	BindUserID string
	// CertStatus, when set, is asked before every co-operation but keygen whether the joint
	// key may still be used: pub is the joint key, peer the session's client certificate when
	// the session is authenticated by it (nil for a token session). nil goes on; an error
	// wrapping ErrCertRevoked or ErrCertExpired refuses (cosign_cert_revoked,
	// cosign_cert_expired); any other error refuses with cosign_unavailable (fail closed). The
	// Caddy adapter checks the key's newest pair in gm_enroll's store and the session
	// certificate's validity (enroll_store).
	CertStatus func(pub *ecdsa.PublicKey, peer *smx509.Certificate) error
	// RotationTimeout is how long a started rotation may be confirmed (default 10m); until then
	// a second rotation of the key is refused, after it the pending share is discarded.
	RotationTimeout time.Duration
	// Shared, when set, keeps the rate limit, the lockout counter and the freshness guard in
	// Redis, shared by every instance (NewSharedState); RatePerMinute, Burst, MaxFailures,
	// Lockout and FreshnessWindow apply there, FreshnessMax and MaxKeys do not (Redis's memory
	// bounds it). Any Redis error refuses the request (cosign_unavailable: fail closed). Nil:
	// the state lives in this process.
	Shared *SharedState
	// OnStateError, when set, is told every failure of the shared state ("limits" or "points"):
	// the metric.
	OnStateError func(state string, err error)
	// Observe, when set, is told each co-operation's outcome (op, code, duration): the metric.
	Observe func(op string, code refusal.Code, d time.Duration)
	// RequestID returns the ID correlating the audit entry with access logs (optional).
	RequestID func(r *http.Request) string
	// Now and Rand default to time.Now and crypto/rand.Reader.
	Now  func() time.Time
	Rand io.Reader
}

// Service serves the platform side: POST .../keygen, .../sign, .../decrypt (JSON).
type Service struct {
	cfg    Config
	limits abuse.Limiter
	fresh  *cosign.FreshnessGuard // in-process freshness guard (no Shared)
	mu     sync.Mutex
	genMu  map[string]*sync.Mutex
}

// New checks cfg and returns the service.
func New(cfg Config) (*Service, error) {
	if cfg.Shares == nil || cfg.Audit == nil {
		return nil, errors.New("cosign: a share store and an audit sink are required")
	}
	switch cfg.Auth {
	case "":
		cfg.Auth = AuthToken
	case AuthToken, AuthCert, AuthCertOrToken:
	default:
		return nil, errors.New("cosign: auth must be token, cert or cert_or_token")
	}
	if cfg.Auth != AuthCert && cfg.TokenMAC == nil {
		return nil, errors.New("cosign: token authentication needs a token key")
	}
	if cfg.Auth != AuthToken && cfg.PeerCertificate == nil {
		return nil, errors.New("cosign: certificate authentication needs the session's peer certificate")
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defD := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&cfg.RatePerMinute, 60)
	def(&cfg.Burst, 10)
	def(&cfg.MaxFailures, 5)
	def(&cfg.FreshnessMax, 100000)
	def(&cfg.MaxKeys, 100000)
	defD(&cfg.MaxTokenLifetime, 10*time.Minute)
	defD(&cfg.Lockout, 15*time.Minute)
	defD(&cfg.FreshnessWindow, 10*time.Minute)
	defD(&cfg.RotationTimeout, 10*time.Minute)
	if cfg.BindUserID == "" {
		cfg.BindUserID = "1234567812345678"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	s := &Service{cfg: cfg}
	if cfg.Shared != nil {
		l, err := cfg.Shared.limits(&cfg)
		if err != nil {
			return nil, fmt.Errorf("cosign: %w", err)
		}
		s.limits = l
	} else {
		s.limits = abuse.NewGuard(abuse.Limits{RatePerMinute: cfg.RatePerMinute, Burst: cfg.Burst,
			MaxFailures: cfg.MaxFailures, Lockout: cfg.Lockout, MaxKeys: cfg.MaxKeys})
		s.fresh = cosign.NewFreshnessGuard(cfg.FreshnessWindow, cfg.FreshnessMax)
	}
	return s, nil
}

// Request is the JSON body of every operation (binary values in standard Base64).
type Request struct {
	KeyID string `json:"key_id"`
	// P1 is the terminal's partial public key (keygen).
	P1 []byte `json:"p1,omitempty"`
	// E and Q1 are the digest and the terminal's ephemeral point (sign).
	E  []byte `json:"e,omitempty"`
	Q1 []byte `json:"q1,omitempty"`
	// Instruction is the payment instruction e is the digest of (sign, with bind_instruction).
	Instruction []byte `json:"instruction,omitempty"`
	// T1 is the blinded C1 (decrypt).
	T1 []byte `json:"t1,omitempty"`
	// RotationID names a pending rotation (sign of the rotation challenge with the pending
	// share; confirm).
	RotationID []byte `json:"rotation_id,omitempty"`
	// Signature is the terminal's co-signature (DER) of the rotation challenge (confirm).
	Signature []byte `json:"signature,omitempty"`
}

// Response is the JSON reply of a successful operation.
type Response struct {
	// P2 and PublicKey are the platform's partial public key and the joint key (keygen).
	P2        []byte `json:"p2,omitempty"`
	PublicKey []byte `json:"public_key,omitempty"`
	// PartialSignature is (r, s_1) as DER, the form of Tongsuo's sm2_threshold -sign2 (sign).
	PartialSignature []byte `json:"partial_signature,omitempty"`
	// T2 is d_2^-1 T_1 (decrypt).
	T2 []byte `json:"t2,omitempty"`
	// Rho and RotationID are the refresh factor and the rotation's name (rotate; P2 is then the
	// pending partial key d_2'^-1 G and PublicKey the unchanged joint key).
	Rho        []byte `json:"rho,omitempty"`
	RotationID []byte `json:"rotation_id,omitempty"`
}

// opOf maps the request path's last segment to an operation.
func opOf(path string) string {
	switch {
	case strings.HasSuffix(path, "/keygen"):
		return OpKeygen
	case strings.HasSuffix(path, "/sign"):
		return OpSign
	case strings.HasSuffix(path, "/decrypt"):
		return OpDecrypt
	case strings.HasSuffix(path, "/rotate"):
		return OpRotate
	case strings.HasSuffix(path, "/confirm"):
		return OpConfirm
	}
	return ""
}

// ServeHTTP serves one co-operation. Every outcome, refusals included, is audited and observed;
// an audit failure withholds the result (fail closed).
func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := s.cfg.Now()
	op := opOf(r.URL.Path)
	var req Request
	resp, rec, err := s.serve(r, op, &req)
	code := Refusals.Of(err)
	rec.Time = start
	rec.Direction = audit.DirectionInbound
	rec.Scheme = "cosign-" + op
	if op == "" {
		rec.Scheme = "cosign"
	}
	rec.KeyID = req.KeyID
	rec.Reason = string(code)
	rec.Verdict = audit.VerdictAccept
	if err != nil {
		rec.Verdict = audit.VerdictReject
		rec.Signature = nil
	}
	if s.cfg.RequestID != nil {
		rec.RequestID = s.cfg.RequestID(r)
	}
	if aerr := s.cfg.Audit.Append(rec); aerr != nil && err == nil {
		err, code, resp = refuse(CodeUnavailable, aerr), CodeUnavailable, nil
	}
	if s.cfg.Observe != nil {
		s.cfg.Observe(op, code, s.cfg.Now().Sub(start))
	}
	if err != nil {
		Refusals.Write(w, code)
		return
	}
	body, _ := json.Marshal(resp)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	w.Write(body)
}

func (s *Service) serve(r *http.Request, op string, req *Request) (*Response, audit.Record, error) {
	var rec audit.Record
	if op == "" || r.Method != http.MethodPost {
		return nil, rec, refuse(CodeMalformedRequest, errors.New("not a POST to keygen, sign, decrypt, rotate or confirm"))
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxRequestSize+1))
	if err != nil || len(body) > MaxRequestSize {
		return nil, rec, refuse(CodeMalformedRequest, errors.New("body unreadable or too large"))
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(req); err != nil || dec.More() || !validKeyID(req.KeyID) {
		req.KeyID = ""
		return nil, rec, refuse(CodeMalformedRequest, errors.New("malformed JSON or key ID"))
	}
	now := s.cfg.Now()
	ctx := r.Context()
	v, err := s.limits.Admit(ctx, req.KeyID, now)
	if err != nil {
		s.stateError("limits", err)
		return nil, rec, refuse(CodeUnavailable, err)
	}
	switch v {
	case abuse.Locked:
		return nil, rec, refuse(CodeLocked, errors.New("locked"))
	case abuse.RateLimited:
		return nil, rec, refuse(CodeRateLimited, errors.New("rate limited"))
	case abuse.Full:
		return nil, rec, refuse(CodeUnavailable, errors.New("too many keys tracked"))
	}
	resp, rec, err := s.do(r, op, req, now)
	if err != nil {
		switch Refusals.Of(err) {
		case CodeUnavailable, CodeInternal, CodeUnknownKey, CodeKeyExists, CodeRotationPending, CodeCertRevoked, CodeCertExpired:
			// not the terminal's fault (or not a guessing attempt): no lockout count
		default:
			if _, ferr := s.limits.Fail(ctx, req.KeyID, now); ferr != nil {
				s.stateError("limits", ferr) // the request is refused anyway
			}
		}
		return nil, rec, err
	}
	if serr := s.limits.Succeed(ctx, req.KeyID); serr != nil {
		// the operation is done; a failure count left standing only errs towards a lockout
		s.stateError("limits", serr)
	}
	return resp, rec, nil
}

func (s *Service) do(r *http.Request, op string, req *Request, now time.Time) (*Response, audit.Record, error) {
	var rec audit.Record
	if op == OpKeygen {
		if err := s.authToken(r, op, req.KeyID, now); err != nil {
			return nil, rec, err
		}
		resp, err := s.keygen(req)
		return resp, rec, err
	}
	// A token is checked before the share is looked up, so that an unauthenticated caller
	// cannot tell known key IDs from unknown ones.
	byToken := false
	if s.cfg.Auth != AuthCert && r.Header.Get("Authorization") != "" || s.cfg.Auth == AuthToken {
		tokenOp := op
		if op == OpConfirm {
			tokenOp = OpRotate
		}
		if err := s.authToken(r, tokenOp, req.KeyID, now); err != nil {
			return nil, rec, err
		}
		byToken = true
	}
	st, err := s.loadState(req.KeyID)
	if err != nil {
		if !byToken && Refusals.Of(err) == CodeUnknownKey {
			return nil, rec, refuse(CodeUnauthenticated, err)
		}
		return nil, rec, err
	}
	defer st.destroy()
	share, pub := st.share, st.pub
	if !byToken {
		if err := s.authCert(r, pub); err != nil {
			return nil, rec, err
		}
	}
	if s.cfg.CertStatus != nil {
		// a revoked or expired terminal gets no co-operation, whatever its session
		var peer *smx509.Certificate
		if !byToken {
			peer = s.cfg.PeerCertificate(r)
		}
		if err := s.cfg.CertStatus(pub, peer); err != nil {
			return nil, rec, certRefusal(err)
		}
	}
	if op != OpSign && op != OpConfirm && req.RotationID != nil {
		return nil, rec, refuse(CodeMalformedRequest, errors.New("rotation_id on another operation"))
	}
	switch op {
	case OpRotate:
		resp, err := s.rotate(st, req.KeyID, now)
		if err != nil {
			return nil, rec, err
		}
		return resp, rec, nil
	case OpConfirm:
		e, err := s.confirm(st, req, now)
		rec.SignedSM3 = e
		if err != nil {
			return nil, rec, err
		}
		rec.Signature = append([]byte(nil), req.Signature...)
		return &Response{RotationID: req.RotationID}, rec, nil
	case OpSign:
		if len(req.E) != cosign.ScalarSize {
			return nil, rec, refuse(CodeInvalidScalar, errors.New("e is not 32 bytes"))
		}
		rec.SignedSM3 = append([]byte(nil), req.E...)
		if st.pending.live(now, s.cfg.RotationTimeout) || req.RotationID != nil {
			challenge, err := RotationChallengeDigest(pub, req.KeyID, nil)
			if st.pending != nil {
				challenge, err = RotationChallengeDigest(pub, req.KeyID, st.pending.id)
			}
			if err != nil {
				return nil, rec, refuse(CodeInternal, err)
			}
			isChallenge := ctEqual(challenge, req.E)
			if req.RotationID != nil {
				// the pending share signs the rotation challenge and nothing else
				p, err := s.pendingFor(st, req.RotationID, now)
				if err != nil {
					return nil, rec, err
				}
				if !isChallenge {
					return nil, rec, refuse(CodeRotationMismatch, errors.New("pending share asked to sign something else"))
				}
				share = p.share
			} else if isChallenge {
				// the current pair must not confirm a rotation the terminal did not apply
				return nil, rec, refuse(CodeRotationMismatch, errors.New("rotation challenge with the current share"))
			}
		}
		if s.cfg.BindInstruction && req.RotationID == nil {
			if len(req.Instruction) == 0 {
				return nil, rec, refuse(CodeBindingMismatch, errors.New("no instruction"))
			}
			h := sm3.Sum(req.Instruction)
			rec.SignedSM3 = h[:] // the digest gm_verify records for the same instruction
			e, err := cosign.Digest(pub, []byte(s.cfg.BindUserID), req.Instruction)
			if err != nil || len(req.E) != len(e) || !bytes.Equal(e, req.E) {
				return nil, rec, refuse(CodeBindingMismatch, errors.New("e is not the instruction's digest"))
			}
		}
		if err := s.checkPoint(r.Context(), req.KeyID, req.Q1, now); err != nil {
			return nil, rec, err
		}
		rr, s1, err := share.CoSign(s.cfg.Rand, req.E, req.Q1)
		if err != nil {
			return nil, rec, mapErr(err)
		}
		der, err := cosign.MarshalPartialSignature(rr, s1)
		if err != nil {
			return nil, rec, refuse(CodeInternal, err)
		}
		rec.Signature = der
		return &Response{PartialSignature: der}, rec, nil
	case OpDecrypt:
		if err := s.checkPoint(r.Context(), req.KeyID, req.T1, now); err != nil {
			return nil, rec, err
		}
		t2, err := share.CoDecrypt(req.T1)
		if err != nil {
			return nil, rec, mapErr(err)
		}
		return &Response{T2: t2}, rec, nil
	}
	return nil, rec, refuse(CodeMalformedRequest, errors.New("unknown operation"))
}

// checkPoint validates an ephemeral point and refuses one seen for the key within the window
// (by this instance, or with Shared by any).
func (s *Service) checkPoint(ctx context.Context, keyID string, p []byte, now time.Time) error {
	if _, err := cosign.ParsePublicKey(p); err != nil {
		return refuse(CodeInvalidPoint, err)
	}
	var err error
	if s.cfg.Shared != nil {
		err = s.cfg.Shared.points.CheckAndStore(ctx, keyID, hex.EncodeToString(p), s.cfg.FreshnessWindow)
		if err != nil && !errors.Is(err, cosign.ErrReused) {
			s.stateError("points", err)
		}
	} else {
		err = s.fresh.Check(keyID, p, now)
	}
	switch {
	case errors.Is(err, cosign.ErrReused):
		return refuse(CodeReusedPoint, err)
	case err != nil:
		return refuse(CodeUnavailable, err)
	}
	return nil
}

func (s *Service) stateError(state string, err error) {
	if s.cfg.OnStateError != nil {
		s.cfg.OnStateError(state, err)
	}
}

func mapErr(err error) error {
	switch {
	case errors.Is(err, cosign.ErrInvalidPoint):
		return refuse(CodeInvalidPoint, err)
	case errors.Is(err, cosign.ErrInvalidScalar):
		return refuse(CodeInvalidScalar, err)
	}
	return refuse(CodeInternal, err)
}

// authCert admits a session whose TLCP/TLS client certificate holds the joint key itself.
func (s *Service) authCert(r *http.Request, pub *ecdsa.PublicKey) error {
	cert := s.cfg.PeerCertificate(r)
	if cert == nil {
		return refuse(CodeUnauthenticated, errors.New("no client certificate and no token"))
	}
	if cp, ok := cert.PublicKey.(*ecdsa.PublicKey); ok && cp.Curve == pub.Curve && cp.X.Cmp(pub.X) == 0 && cp.Y.Cmp(pub.Y) == 0 {
		return nil
	}
	return refuse(CodeWrongTerminal, errors.New("client certificate is not of this key"))
}

func (s *Service) authToken(r *http.Request, op, keyID string, now time.Time) error {
	if s.cfg.TokenMAC == nil {
		return refuse(CodeUnauthenticated, errors.New("token authentication is off"))
	}
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || tok == "" {
		return refuse(CodeUnauthenticated, errors.New("no bearer token"))
	}
	id, err := checkToken(s.cfg.TokenMAC, tok, op, now, s.cfg.MaxTokenLifetime)
	if err != nil {
		return refuse(CodeUnauthenticated, err)
	}
	if id != keyID {
		return refuse(CodeWrongTerminal, errors.New("token is for another key"))
	}
	return nil
}

// keygen draws d_2 for a new terminal key, derives the joint key from the terminal's P_1 and
// seals d_2 || P. An existing key is never replaced.
func (s *Service) keygen(req *Request) (*Response, error) {
	p1 := req.P1
	if _, err := cosign.ParsePublicKey(p1); err != nil {
		return nil, refuse(CodeInvalidPoint, err)
	}
	d2, err := cosign.GenerateShare(s.cfg.Rand)
	if err != nil {
		return nil, refuse(CodeInternal, err)
	}
	defer d2.Destroy()
	pub, err := d2.JointPublicKey(p1)
	if err != nil {
		return nil, mapErr(err)
	}
	pb := cosign.MarshalPublicKey(pub)
	secret := append(d2.Bytes(), pb...)
	defer clear(secret)
	// create-exclusive: of two instances generating the same key ID at once exactly one
	// stores its d_2; the other answers cosign_key_exists and its terminal gets no P_2
	switch err := s.cfg.Shares.Create(ShareKind, []byte(req.KeyID), secret); {
	case errors.Is(err, sealstore.ErrExists):
		return nil, refuse(CodeKeyExists, err)
	case err != nil:
		return nil, refuse(CodeUnavailable, err)
	}
	return &Response{P2: d2.PartialPublicKey(), PublicKey: pb}, nil
}

func ctEqual(a, b []byte) bool { return len(a) == len(b) && subtle.ConstantTimeCompare(a, b) == 1 }

// Destroy removes the platform's share of keyID: the joint key can never sign or decrypt again.
func (s *Service) Destroy(keyID string) error {
	if !validKeyID(keyID) {
		return errors.New("cosign: invalid key ID")
	}
	return s.cfg.Shares.Destroy(ShareKind, []byte(keyID))
}
