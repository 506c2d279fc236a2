package gateway

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/audit"
	"github.com/gmgate/gmgate/envelope"
	"github.com/gmgate/gmgate/signing"
)

// Verifier defaults.
const (
	// DefaultMaxBodySize bounds a request body read by the Verifier (1 MiB).
	DefaultMaxBodySize = 1 << 20
	// DefaultIdentityHeaderPrefix prefixes the identity headers the Verifier
	// strips from client requests and sets from the verified identity.
	DefaultIdentityHeaderPrefix = "X-Gm-"
)

// Identity header names, after the prefix.
const (
	HeaderSuffixClientSubject = "Client-Subject"
	HeaderSuffixClientSerial  = "Client-Serial"
	HeaderSuffixVerifyScheme  = "Verify-Scheme"
)

// BodyOpener opens an encrypted request body (an SM2 digital envelope or
// JSON with encrypted fields) after its signature has been verified.
// *envelope.Opener implements it. Errors should wrap ErrEnvelope.
type BodyOpener interface {
	Open(body []byte) ([]byte, error)
}

// BodyOpenerFunc adapts a function to BodyOpener.
type BodyOpenerFunc func(body []byte) ([]byte, error)

// Open calls f.
func (f BodyOpenerFunc) Open(body []byte) ([]byte, error) { return f(body) }

// VerifierOptions configures NewVerifier.
type VerifierOptions struct {
	// Scheme is the signature scheme. Required.
	Scheme signing.Scheme
	// Identities finds and verifies signing certificates. Required.
	Identities *IdentityStore
	// Replay checks the timestamp window and the nonce. Required (a request
	// cannot be accepted without freshness).
	Replay *ReplayGuard
	// MaxBodySize bounds the request body (default DefaultMaxBodySize).
	MaxBodySize int64
	// Opener, when set, opens every non-empty request body (see
	// envelope.Order); the opened body is what gets forwarded, with the
	// Content-Type named by Gm-Inner-Content-Type.
	Opener BodyOpener
	// envelope.Order says what the request signature covers when an Opener
	// is set: the envelope bytes (envelope.SealThenSign: verify, then open) or the
	// plaintext (envelope.SignThenSeal: open, then verify the opened body with the
	// inner Content-Type). envelope.OrderAuto: envelope.SealThenSign for header schemes,
	// envelope.SignThenSeal for body schemes, the client SDK's rule.
	EnvelopeOrder envelope.Order
	// AllowCBC, with envelope.SignThenSeal, accepts SM4-CBC envelopes. Without it an
	// *envelope.Opener refuses them before decrypting (RequireAEAD): CBC
	// decrypted before the signature is checked is a padding oracle. With it,
	// every failure from opening through signature verification answers the
	// same envelope_invalid after the same work (one SM2 verification), so
	// nothing the client sees depends on the unauthenticated plaintext.
	AllowCBC bool
	// Binding ties the signing certificate to the TLCP client certificate.
	Binding Binding
	// Audit, when set, records every decision. An accepted request whose
	// audit entry cannot be written is rejected (CodeInternal): no
	// forwarding without evidence.
	Audit audit.Sink
	// OnAuditError receives audit write failures (for logs and metrics).
	OnAuditError func(error)
	// HeaderPrefix prefixes the identity headers (default
	// DefaultIdentityHeaderPrefix). Every client header starting with it is
	// removed before the verified values are set.
	HeaderPrefix string
	// RequestIDHeader, when set, names the header copied into audit entries.
	RequestIDHeader string
	// Now is the clock (default time.Now).
	Now func() time.Time

	decoy *decoyVerify // set by NewVerifier for AllowCBC with envelope.SignThenSeal
}

// Verifier runs the whole inbound verification of a payment instruction:
// bounded body read, signature parsing, identity lookup and certificate
// verification, SM2 verification, timestamp window and nonce replay check,
// envelope opening and evidence. It is safe for concurrent use.
type Verifier struct {
	o VerifierOptions
}

// NewVerifier checks opts and returns a Verifier.
func NewVerifier(opts VerifierOptions) (*Verifier, error) {
	if opts.Scheme == nil {
		return nil, errors.New("gateway: verifier needs a scheme")
	}
	if opts.Identities == nil {
		return nil, errors.New("gateway: verifier needs identities")
	}
	if opts.Replay == nil {
		return nil, errors.New("gateway: verifier needs a replay guard")
	}
	if opts.MaxBodySize <= 0 {
		opts.MaxBodySize = DefaultMaxBodySize
	}
	if opts.HeaderPrefix == "" {
		opts.HeaderPrefix = DefaultIdentityHeaderPrefix
	}
	opts.HeaderPrefix = http.CanonicalHeaderKey(opts.HeaderPrefix)
	if opts.Opener != nil {
		o, err := envelope.Resolve(opts.EnvelopeOrder, signing.SignsInHeader(opts.Scheme.Name()))
		if err != nil {
			return nil, err
		}
		opts.EnvelopeOrder = o
		if eo, ok := opts.Opener.(*envelope.Opener); ok && o == envelope.SignThenSeal && !opts.AllowCBC && !eo.RequireAEAD {
			strict := *eo
			strict.RequireAEAD = true
			opts.Opener = &strict
		}
	}
	if opts.AllowCBC && opts.Opener != nil && opts.EnvelopeOrder == envelope.SignThenSeal {
		d, err := newDecoyVerify()
		if err != nil {
			return nil, err
		}
		opts.decoy = d
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Verifier{o: opts}, nil
}

// Scheme returns the verifier's signature scheme.
func (v *Verifier) Scheme() signing.Scheme { return v.o.Scheme }

// EnvelopeOrder returns the resolved envelope order (envelope.OrderAuto when no
// Opener is configured).
func (v *Verifier) EnvelopeOrder() envelope.Order { return v.o.EnvelopeOrder }

// HeaderPrefix returns the canonical identity header prefix.
func (v *Verifier) HeaderPrefix() string { return v.o.HeaderPrefix }

// Result describes an accepted request.
type Result struct {
	// Identity is the verified signing identity.
	Identity *Identity
	// Scheme is the scheme name.
	Scheme string
	// KeyID is the key ID the request named.
	KeyID string
	// Serial is the signing certificate serial, upper-case hex.
	Serial string
	// Subject is the signing certificate subject.
	Subject string
	// Signed is the parsed signature.
	Signed *signing.Signed
	// Body is the body forwarded to the back end (opened when an opener is
	// configured); it is also installed as the request body.
	Body []byte
	// Opened tells whether Body was opened from an envelope.
	Opened bool
}

// Verify verifies r. It reads r.Body (bounded), and on success replaces it
// with the plain body, strips client-sent identity headers and sets them
// from the verified identity. tlcpPeer is the TLCP client's signing
// certificate, or nil. Errors carry a Code (CodeOf); their text is for logs.
func (v *Verifier) Verify(ctx context.Context, r *http.Request, tlcpPeer *smx509.Certificate) (*Result, error) {
	body, err := v.readBody(r)
	if err != nil {
		v.audit(r, nil, nil, CodeOf(err))
		return nil, err
	}
	res, err := v.VerifyMessage(ctx, requestMessage(ctx, r, body), r, tlcpPeer)
	if err != nil {
		// Keep the raw body readable for callers that log; never forwarded.
		r.Body = io.NopCloser(bytes.NewReader(body))
		return nil, err
	}
	v.install(r, res)
	return res, nil
}

func (v *Verifier) readBody(r *http.Request) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	max := v.o.MaxBodySize
	if r.ContentLength > max {
		return nil, WithCode(CodeBodyTooLarge, ErrBodyTooLarge)
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, max+1))
	_ = r.Body.Close()
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, WithCode(CodeBodyTooLarge, ErrBodyTooLarge)
		}
		return nil, WithCode(CodeMalformedHeader, fmt.Errorf("gateway: reading body: %w", err))
	}
	if int64(len(b)) > max {
		return nil, WithCode(CodeBodyTooLarge, ErrBodyTooLarge)
	}
	return b, nil
}

// receivedKey is the context key of AsReceived.
type receivedKey struct{}

type receivedLine struct{ method, target string }

// AsReceived returns ctx carrying the request line as the client sent it. A front end that
// rewrites the request before verification (Caddy's uri, rewrite, handle_path, method) passes
// it so that Verify checks the signature over what the client signed, not over the rewrite.
func AsReceived(ctx context.Context, method, target string) context.Context {
	return context.WithValue(ctx, receivedKey{}, receivedLine{method, target})
}

// requestMessage builds the signing view of r with body: the request line as received (see
// AsReceived), else r's own.
func requestMessage(ctx context.Context, r *http.Request, body []byte) *signing.Message {
	method, target := r.Method, r.RequestURI
	if target == "" && r.URL != nil {
		target = r.URL.RequestURI()
	}
	if rl, ok := ctx.Value(receivedKey{}).(receivedLine); ok && rl.target != "" {
		method, target = rl.method, rl.target
	}
	sch := "http"
	if r.TLS != nil {
		sch = "https"
	}
	return &signing.Message{Kind: signing.Request, Method: method, Target: target,
		Authority: r.Host, Scheme: sch, Header: r.Header, Body: body}
}

// VerifyMessage runs the pipeline on an already read message (m.Body is the
// exact raw body). r, when not nil, only supplies the request ID for the
// audit entry. It does not modify r.
//
// With an Opener and envelope.SignThenSeal, the body is opened first (an envelope that
// cannot be opened is envelope_invalid before any signature check) and the
// signature is verified over the plaintext with the inner Content-Type.
func (v *Verifier) VerifyMessage(ctx context.Context, m *signing.Message, r *http.Request, tlcpPeer *smx509.Certificate) (*Result, error) {
	if v.o.decoy != nil && len(m.Body) > 0 {
		return v.verifyUniform(ctx, m, r, tlcpPeer)
	}
	return v.verifyMessage(ctx, m, r, tlcpPeer, nil)
}

// verifyUniform runs the pipeline for CBC envelopes opened before their
// signature is checked (AllowCBC): a failure to open, parse, find the key,
// bind or verify is one envelope_invalid, and a path that failed before the
// SM2 verification runs one on a decoy, so that neither the code, the status,
// the body nor the timing class tells a padding error from a signature error.
// The gateway's own key failing (key_unavailable) and an oversized body stay
// distinct: neither depends on the plaintext.
func (v *Verifier) verifyUniform(ctx context.Context, m *signing.Message, r *http.Request, tlcpPeer *smx509.Certificate) (*Result, error) {
	var st verifyState
	res, err := v.verifyMessage(ctx, m, r, tlcpPeer, &st)
	if err == nil || st.verified {
		return res, err // authenticated: replay, window and audit codes say nothing of the plaintext
	}
	switch CodeOf(err) {
	case CodeKeyUnavailable, CodeBodyTooLarge, CodeInternal:
		return nil, err
	}
	if !st.attempted {
		v.o.decoy.run()
	}
	return nil, WithCode(CodeEnvelopeInvalid, errUniformEnvelope)
}

// errUniformEnvelope is the one refusal of AllowCBC sign-then-seal requests
// that did not authenticate; the audit entry keeps the real reason.
var errUniformEnvelope = fmt.Errorf("%w: envelope or its signature invalid", ErrEnvelope)

// verifyState tells verifyUniform how far verifyMessage got.
type verifyState struct {
	attempted bool // the SM2 verification of the request ran
	verified  bool // and succeeded
}

func (v *Verifier) verifyMessage(ctx context.Context, m *signing.Message, r *http.Request, tlcpPeer *smx509.Certificate, st *verifyState) (*Result, error) {
	openedFirst := false
	if v.o.Opener != nil && v.o.EnvelopeOrder == envelope.SignThenSeal && len(m.Body) > 0 {
		plain, err := v.open(m.Body)
		if err != nil {
			v.audit(r, nil, nil, CodeOf(err))
			return nil, err
		}
		h := m.Header.Clone()
		if h == nil {
			h = http.Header{}
		}
		envelope.RestoreContentType(h)
		opened := *m
		opened.Header, opened.Body = h, plain
		m, openedFirst = &opened, true
	}
	sd, err := v.o.Scheme.Parse(m)
	if err != nil {
		err = WithCode(parseCode(err), err)
		v.audit(r, sd, nil, CodeOf(err))
		return nil, err
	}
	id, err := v.o.Identities.Lookup(sd.KeyID)
	if err != nil {
		v.audit(r, sd, nil, CodeOf(err))
		return nil, err
	}
	if err := CheckBinding(v.o.Binding, id.Cert, tlcpPeer); err != nil {
		v.audit(r, sd, id, CodeOf(err))
		return nil, err
	}
	pub, err := publicKey(id.Cert)
	if err != nil {
		err = WithCode(CodeCertUntrusted, err)
		v.audit(r, sd, id, CodeOf(err))
		return nil, err
	}
	if st != nil {
		st.attempted = true
	}
	if err := v.o.Scheme.Verify(sd, pub); err != nil {
		err = WithCode(verifyCode(err), err)
		v.audit(r, sd, id, CodeOf(err))
		return nil, err
	}
	if st != nil {
		st.verified = true
	}
	// Only authentic requests consume a nonce. The nonce is bound to the
	// certificate (fingerprint), so hex and decimal spellings of one key ID
	// share it.
	if err := v.o.Replay.CheckExpiry(sd.Expires); err != nil {
		err = WithCode(CodeTimestampOutOfWindow, err)
		v.audit(r, sd, id, CodeOf(err))
		return nil, err
	}
	if err := v.o.Replay.Check(ctx, id.Fingerprint, sd.Nonce, sd.Timestamp); err != nil {
		err = WithCode(CodeOf(err), err)
		v.audit(r, sd, id, CodeOf(err))
		return nil, err
	}
	res := &Result{Identity: id, Scheme: v.o.Scheme.Name(), KeyID: sd.KeyID, Serial: id.SerialHex,
		Subject: id.Subject, Signed: sd, Body: m.Body, Opened: openedFirst}
	if v.o.Opener != nil && !openedFirst && len(m.Body) > 0 {
		plain, err := v.open(m.Body)
		if err != nil {
			v.audit(r, sd, id, CodeOf(err))
			return nil, err
		}
		res.Body, res.Opened = plain, true
	}
	if err := v.audit(r, sd, id, CodeOK); err != nil {
		// The accept entry may be in the file although the request is now refused (the write
		// succeeded, the fsync did not): a following entry records the refusal, so the log's
		// last word on the request is the outcome the client saw.
		_ = v.audit(r, sd, id, CodeInternal)
		return nil, WithCode(CodeInternal, err)
	}
	return res, nil
}

// open opens body with the Opener; errors carry envelope_invalid (or
// body_too_large, or key_unavailable when the gateway's key failed).
func (v *Verifier) open(body []byte) ([]byte, error) {
	plain, err := v.o.Opener.Open(body)
	if err != nil {
		c := CodeOf(err)
		if c != CodeBodyTooLarge && c != CodeKeyUnavailable {
			c = CodeEnvelopeInvalid
		}
		return nil, WithCode(c, err)
	}
	return plain, nil
}

// install replaces r's body with res.Body and sets the identity headers. The body is
// forwarded with its exact length and without the trailers that may have followed a chunked
// body: no scheme signs trailers, and a proxy forwards them (Caddy's reverse_proxy does), so
// they would reach the back end as unsigned fields of a verified request.
func (v *Verifier) install(r *http.Request, res *Result) {
	r.Body = io.NopCloser(bytes.NewReader(res.Body))
	r.ContentLength = int64(len(res.Body))
	r.TransferEncoding = nil
	r.Trailer = nil
	r.Header.Del("Trailer")
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(res.Body)), nil }
	if res.Opened {
		r.Header.Del("Content-Encoding")
		envelope.RestoreContentType(r.Header)
	}
	r.Header.Set("Content-Length", strconv.Itoa(len(res.Body)))
	StripIdentityHeaders(r.Header, v.o.HeaderPrefix)
	r.Header.Set(v.o.HeaderPrefix+HeaderSuffixClientSubject, HeaderSafe(res.Subject))
	r.Header.Set(v.o.HeaderPrefix+HeaderSuffixClientSerial, res.Serial)
	r.Header.Set(v.o.HeaderPrefix+HeaderSuffixVerifyScheme, res.Scheme)
}

// StripIdentityHeaders removes every header whose canonical name starts
// with prefix (and the default identity headers whatever the prefix).
// Names are compared with '_' and '.' read as '-', because CGI-style back
// ends (FastCGI, WSGI, Rack) map all three to the same variable: a client
// sending X_Gm_Client_Subject must not reach them as HTTP_X_GM_CLIENT_SUBJECT.
func StripIdentityHeaders(h http.Header, prefix string) {
	prefix = normalizeHeaderName(prefix)
	for name := range h {
		n := normalizeHeaderName(name)
		if prefix != "" && strings.HasPrefix(n, prefix) {
			delete(h, name)
			continue
		}
		for _, s := range []string{HeaderSuffixClientSubject, HeaderSuffixClientSerial, HeaderSuffixVerifyScheme} {
			if n == DefaultIdentityHeaderPrefix+s {
				delete(h, name)
			}
		}
	}
}

// normalizeHeaderName canonicalizes name with '_' and '.' replaced by '-'.
func normalizeHeaderName(name string) string {
	if strings.ContainsAny(name, "_.") {
		name = strings.NewReplacer("_", "-", ".", "-").Replace(name)
	}
	return http.CanonicalHeaderKey(name)
}

// HeaderSafe percent-encodes control characters and '%' so that a value
// (such as a certificate subject) can be sent as a header value.
func HeaderSafe(s string) string {
	need := false
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f || c == '%' {
			need = true
			break
		}
	}
	if !need {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == 0x7f || c == '%' {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// parseCode maps a signing parse error to a reason code.
func parseCode(err error) Code {
	switch {
	case errors.Is(err, signing.ErrMissingSignature):
		return CodeMissingSignature
	case errors.Is(err, signing.ErrBadSignature), errors.Is(err, signing.ErrDigestMismatch):
		return CodeBadSignature
	}
	return CodeMalformedHeader
}

// verifyCode maps a signing verification error to a reason code.
func verifyCode(err error) Code {
	switch {
	case errors.Is(err, signing.ErrMissingSignature):
		return CodeMissingSignature
	case errors.Is(err, signing.ErrMalformedHeader), errors.Is(err, signing.ErrMalformedBody),
		errors.Is(err, signing.ErrMissingComponent), errors.Is(err, signing.ErrUnsupportedAlgorithm):
		return CodeMalformedHeader
	}
	return CodeBadSignature
}

// audit appends the decision; it returns the write error, if any.
func (v *Verifier) audit(r *http.Request, sd *signing.Signed, id *Identity, c Code) error {
	if v.o.Audit == nil {
		return nil
	}
	rec := audit.Record{Time: v.o.Now(), Direction: audit.DirectionInbound, Scheme: v.o.Scheme.Name(), Reason: string(c),
		Verdict: audit.VerdictReject}
	if c == CodeOK {
		rec.Verdict = audit.VerdictAccept
	}
	if sd != nil {
		rec.KeyID = sd.KeyID
		rec.SignedSM3 = signing.SM3(sd.SignedBytes)
		rec.Signature = sd.Signature
	}
	if id != nil {
		rec.CertSerial = id.SerialHex
	}
	if r != nil && v.o.RequestIDHeader != "" {
		rec.RequestID = r.Header.Get(v.o.RequestIDHeader)
	}
	err := v.o.Audit.Append(rec)
	if err != nil && v.o.OnAuditError != nil {
		v.o.OnAuditError(err)
	}
	return err
}

// publicKey returns the SM2 public key of c.
func publicKey(c *smx509.Certificate) (*ecdsa.PublicKey, error) {
	pub, ok := c.PublicKey.(*ecdsa.PublicKey)
	if !ok || !sm2.IsSM2PublicKey(pub) {
		return nil, errors.New("gateway: signing certificate has no SM2 public key")
	}
	return pub, nil
}
