package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/refusal"
	"github.com/gmgate/gmgate/signing"
	"github.com/gmgate/gmgate/tlcp"
)

// Reply is the verified identity of a reply and the evidence of its verification.
type Reply struct {
	// Scheme is the signing scheme name.
	Scheme string
	// KeyID is the key ID the reply named (may be empty for body schemes without one).
	KeyID string
	// Certificate is the platform certificate whose key verified the reply.
	Certificate *smx509.Certificate
	// Subject is Certificate's subject, e.g. "CN=gmgate platform,O=...".
	Subject string
	// Serial is Certificate's serial number in upper-case hex.
	Serial string
	// Timestamp is the signed reply time; Nonce the signed reply nonce.
	Timestamp time.Time
	Nonce     string
	// SignedSM3 is the SM3 digest of the exact signed bytes; Signature the signature as sent
	// (decoded from its text encoding). Keep both as evidence.
	SignedSM3 []byte
	Signature []byte
	// Enveloped reports whether the reply body arrived as an SM2 digital envelope.
	Enveloped bool
	// RequestTime and RequestNonce are the timestamp and nonce this client signed the request
	// with (RequestNonce empty for schemes that keep the caller's own nonce field).
	RequestTime  time.Time
	RequestNonce string
}

type replyKey struct{}

// WithReply returns a context under which the Transport stores the verified Reply of the
// request into *r. Use one Reply per request; Client.Do does this for you.
func WithReply(ctx context.Context, r *Reply) context.Context {
	return context.WithValue(ctx, replyKey{}, r)
}

// Transport is an http.RoundTripper that signs each request with the configured scheme, sends
// it through Base, and returns the reply only if its signature verifies with a platform
// certificate and its timestamp is fresh. Replies that fail come back as a *ReplyError.
// A Transport is safe for concurrent use.
type Transport struct {
	// Base carries the signed requests.
	Base http.RoundTripper

	scheme      signing.Scheme
	headerBased bool
	key         signing.Key
	platform    []*smx509.Certificate
	keyIDs      map[string]*smx509.Certificate
	window      time.Duration
	now         func() time.Time
	nonce       func() (string, error)
	maxReq      int64
	maxReply    int64
	env         *EnvelopeConfig
	order       EnvelopeOrder
}

// NewTransport builds the signing Transport for cfg (BaseURL and Timeout are not used). When
// cfg.Transport is nil it builds an http.Transport dialling TLCP (cfg.TLCP) or TLS.
func NewTransport(cfg Config) (*Transport, error) {
	sch, err := signing.New(cfg.Scheme, cfg.SchemeOptions...)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	if cfg.Key.Signer == nil {
		return nil, errors.New("client: Config.Key.Signer is required")
	}
	if len(cfg.PlatformCerts) == 0 {
		return nil, errors.New("client: Config.PlatformCerts is required to verify replies")
	}
	for i, c := range cfg.PlatformCerts {
		if c == nil || c.SerialNumber == nil {
			return nil, fmt.Errorf("client: PlatformCerts[%d] is nil", i)
		}
	}
	for id, c := range cfg.PlatformKeyIDs {
		if c == nil || id == "" {
			return nil, errors.New("client: PlatformKeyIDs has an empty ID or nil certificate")
		}
	}
	t := &Transport{
		scheme:      sch,
		headerBased: signing.SignsInHeader(cfg.Scheme),
		key:         cfg.Key,
		platform:    append([]*smx509.Certificate(nil), cfg.PlatformCerts...),
		keyIDs:      make(map[string]*smx509.Certificate, len(cfg.PlatformKeyIDs)),
		window:      cfg.ReplyWindow,
		now:         cfg.Now,
		nonce:       cfg.Nonce,
		maxReq:      cfg.MaxRequestBody,
		maxReply:    cfg.MaxReplyBody,
		env:         cfg.Envelope,
	}
	for id, c := range cfg.PlatformKeyIDs {
		t.keyIDs[id] = c
	}
	if t.key.KeyID == "" && t.key.Cert != nil && cfg.Scheme == signing.HTTPSigName {
		t.key.KeyID = signing.SerialHex(t.key.Cert.SerialNumber)
	}
	if t.window <= 0 {
		t.window = DefaultReplyWindow
	}
	if t.now == nil {
		t.now = time.Now
	}
	if t.nonce == nil {
		t.nonce = signing.NewNonce
	}
	if t.maxReq <= 0 {
		t.maxReq = DefaultMaxRequestBody
	}
	if t.maxReply <= 0 {
		t.maxReply = DefaultMaxReplyBody
	}
	if t.env != nil {
		t.order = t.env.Order
		if t.order == OrderAuto {
			t.order = SignThenSeal
			if t.headerBased {
				t.order = SealThenSign
			}
		}
		if !t.headerBased && t.order == SealThenSign {
			return nil, errors.New("client: SealThenSign needs a header scheme (the body schemes sign body fields)")
		}
		if (t.env.Cert == nil) != (t.env.Key == nil) {
			return nil, errors.New("client: Envelope.Cert and Envelope.Key go together")
		}
	}
	if cfg.Transport != nil {
		t.Base = cfg.Transport
		return t, nil
	}
	base, err := newHTTPTransport(cfg)
	if err != nil {
		return nil, err
	}
	t.Base = base
	return t, nil
}

func newHTTPTransport(cfg Config) (*http.Transport, error) {
	dialTimeout := cfg.DialTimeout
	if dialTimeout <= 0 {
		dialTimeout = DefaultDialTimeout
	}
	idle := cfg.MaxIdleConnsPerHost
	if idle <= 0 {
		idle = DefaultMaxIdleConnsPerHost
	}
	nd := &net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy:                 nil, // a payment terminal talks to its gateway directly
		DialContext:           nd.DialContext,
		TLSClientConfig:       cfg.TLS,
		TLSHandshakeTimeout:   dialTimeout,
		DisableCompression:    true, // reply signatures cover the bytes as sent
		MaxIdleConnsPerHost:   idle,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	if c := cfg.TLCP; c != nil {
		d, err := c.dialer(nd, dialTimeout, c.Sign, c.Enc)
		if err != nil {
			return nil, err
		}
		tr.DialTLSContext = d.DialContext
	}
	return tr, nil
}

// dialer returns a TLCP dialer for c presenting sign and enc as the client certificates (both
// nil: none).
func (c *TLCPConfig) dialer(nd *net.Dialer, timeout time.Duration, sign, enc *Identity) (*tlcp.Dialer, error) {
	if c.RootCAs == nil {
		return nil, errors.New("client: TLCP.RootCAs is required")
	}
	if (sign == nil) != (enc == nil) {
		return nil, errors.New("client: TLCP.Sign and TLCP.Enc go together")
	}
	tc := &tlcp.Config{
		RootCAs:          c.RootCAs,
		ServerName:       c.ServerName,
		CipherSuites:     append([]uint16(nil), c.CipherSuites...),
		SessionCache:     c.SessionCache,
		HandshakeTimeout: timeout,
	}
	if sign != nil {
		tc.SignCertificate = sign.TLCPCertificate()
		tc.EncCertificate = enc.TLCPCertificate()
	}
	return &tlcp.Dialer{NetDialer: nd, Config: tc}, nil
}

// RoundTrip signs req, sends it, and verifies the reply. It never modifies req. The returned
// reply's Body holds the verified (and, if enveloped, opened) bytes.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	out, sent, err := t.signRequest(req)
	if err != nil {
		return nil, err
	}
	resp, err := t.Base.RoundTrip(out)
	if err != nil {
		return nil, err
	}
	reply, err := t.verifyResponse(resp)
	if err != nil {
		return nil, err
	}
	reply.RequestTime, reply.RequestNonce = sent.time, sent.nonce
	if r, ok := req.Context().Value(replyKey{}).(*Reply); ok && r != nil {
		*r = *reply
	}
	resp.Request = req
	return resp, nil
}

// CloseIdleConnections closes idle connections of Base when it supports it.
func (t *Transport) CloseIdleConnections() {
	if c, ok := t.Base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

type sentInfo struct {
	time  time.Time
	nonce string
}

func (t *Transport) signRequest(req *http.Request) (*http.Request, sentInfo, error) {
	var info sentInfo
	body, err := readAllBounded(req.Body, t.maxReq)
	if req.Body != nil {
		req.Body.Close()
	}
	if err != nil {
		if errors.Is(err, errTooLarge) {
			return nil, info, ErrRequestTooLarge
		}
		return nil, info, fmt.Errorf("client: read request body: %w", err)
	}
	out := req.Clone(req.Context())
	if out.Header == nil {
		out.Header = make(http.Header)
	}
	if out.Header.Get("Accept-Encoding") == "" {
		out.Header.Set("Accept-Encoding", "identity")
	}
	authority := req.Host
	if authority == "" {
		authority = req.URL.Host
	}
	m := &signing.Message{
		Kind:      signing.Request,
		Method:    req.Method,
		Target:    req.URL.RequestURI(),
		Authority: authority,
		Scheme:    req.URL.Scheme,
		Header:    out.Header,
		Body:      body,
	}
	seal := t.env != nil && t.env.PlatformEncCert != nil && len(body) > 0
	if seal && t.order == SealThenSign {
		if err := t.sealInto(m); err != nil {
			return nil, info, err
		}
	}
	nonce, err := t.nonce()
	if err != nil {
		return nil, info, fmt.Errorf("%w: nonce: %v", ErrRequestSigning, err)
	}
	now := t.now()
	if err := t.scheme.Sign(m, t.key, now, nonce); err != nil {
		return nil, info, fmt.Errorf("%w: %v", ErrRequestSigning, err)
	}
	info.time, info.nonce = now, nonce
	if !t.headerBased {
		// A body scheme keeps the caller's own nonce field (e.g. UnionPay orderId) when set.
		if s, perr := t.scheme.Parse(&signing.Message{Kind: signing.Request, Header: m.Header, Body: m.Body}); perr == nil {
			info.nonce = s.Nonce
		}
	}
	if seal && t.order == SignThenSeal {
		if err := t.sealInto(m); err != nil {
			return nil, info, err
		}
	}
	final := m.Body
	out.Body = io.NopCloser(bytes.NewReader(final))
	out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(final)), nil }
	out.ContentLength = int64(len(final))
	if len(final) == 0 && (req.Body == nil || req.Body == http.NoBody) {
		out.Body, out.GetBody = nil, nil
	}
	out.Header.Del("Content-Length")
	if out.Header.Get("Idempotency-Key") == "" && out.Header.Get("X-Idempotency-Key") == "" && info.nonce != "" {
		// A signed request is safe to send twice: the gateway accepts its nonce once and refuses
		// the second copy as a replay. With the key set, net/http resends a POST whose kept-alive
		// connection the server closed before answering (a gateway reload) instead of failing.
		out.Header.Set("Idempotency-Key", info.nonce)
	}
	return out, info, nil
}

func (t *Transport) sealInto(m *signing.Message) error {
	seal := Seal
	if t.order == SignThenSeal {
		seal = SealGCM
	}
	sealed, err := seal(m.Body, t.env.PlatformEncCert)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrRequestSigning, err)
	}
	if ct := m.Header.Get("Content-Type"); ct != "" {
		m.Header.Set(HeaderInnerContentType, ct)
	}
	m.Header.Set("Content-Type", EnvelopeContentType)
	m.Body = sealed
	return nil
}

// verifyResponse reads the reply body (bounded), verifies it and replaces resp.Body with the
// verified plaintext. On failure it closes the body and returns a *ReplyError.
func (t *Transport) verifyResponse(resp *http.Response) (*Reply, error) {
	body, err := readAllBounded(resp.Body, t.maxReply)
	resp.Body.Close()
	if err != nil {
		if errors.Is(err, errTooLarge) {
			return nil, &ReplyError{Err: ErrReplyTooLarge, StatusCode: resp.StatusCode, Scheme: t.scheme.Name()}
		}
		return nil, fmt.Errorf("client: read reply body: %w", err)
	}
	reply, plain, rerr := t.verifyReply(resp.StatusCode, resp.Header, body)
	if rerr != nil {
		return nil, rerr
	}
	resp.Body = io.NopCloser(bytes.NewReader(plain))
	resp.ContentLength = int64(len(plain))
	resp.Header.Del("Content-Length")
	if reply.Enveloped {
		if inner := resp.Header.Get(HeaderInnerContentType); inner != "" {
			resp.Header.Set("Content-Type", inner)
		}
	}
	return reply, nil
}

// verifyReply checks one reply (status, headers, raw body) and returns its Reply and the
// plaintext body. Errors are *ReplyError.
func (t *Transport) verifyReply(status int, header http.Header, body []byte) (*Reply, []byte, error) {
	fail := func(sentinel, cause error, keyID string) (*Reply, []byte, error) {
		e := &ReplyError{Err: sentinel, Cause: cause, StatusCode: status, Scheme: t.scheme.Name(), KeyID: keyID}
		if sentinel == ErrReplyUnsigned && status >= 400 {
			e.GatewayCode, e.GatewayMessage = gatewayError(body)
		}
		return nil, nil, e
	}
	if header == nil {
		header = http.Header{}
	}
	enveloped := isEnvelope(header.Get("Content-Type"))
	plain := body
	signedBody := body
	if enveloped {
		if t.env == nil {
			return fail(ErrReplyEnvelope, errors.New("no envelope key configured"), "")
		}
		if t.order == SignThenSeal {
			// Opened before its signature is checked: authenticated encryption only (AllowCBC).
			p, err := open(body, t.env.Cert, t.env.Key, t.maxReply+maxEnvelopeOverhead, !t.env.AllowCBC)
			if err != nil {
				return fail(ErrReplyEnvelope, err, "")
			}
			plain, signedBody = p, p
		}
	}
	h := header.Clone()
	if enveloped && t.order == SignThenSeal {
		// The body scheme reads the plaintext's own content type.
		if inner := header.Get(HeaderInnerContentType); inner != "" {
			h.Set("Content-Type", inner)
		} else {
			h.Del("Content-Type")
		}
	}
	m := &signing.Message{Kind: signing.Response, Status: status, Header: h, Body: signedBody}
	check := signing.ReplyCheck{Scheme: t.scheme, Lookup: t.lookup, Window: t.window, RequireTimestamp: true, Now: t.now}
	s, cert, err := check.Verify(m, "")
	if err != nil {
		keyID := ""
		if s != nil {
			keyID = s.KeyID
		}
		switch {
		case s == nil && errors.Is(err, signing.ErrMissingSignature):
			return fail(ErrReplyUnsigned, nil, "")
		case errors.Is(err, signing.ErrReplyUnknownKey):
			return fail(ErrReplyUnknownKey, nil, keyID)
		case errors.Is(err, signing.ErrReplyCertificate):
			return fail(ErrReplyUnknownKey, err, keyID)
		case errors.Is(err, signing.ErrReplyStale):
			return fail(ErrReplyStale, nil, keyID)
		}
		return fail(ErrReplySignatureInvalid, err, keyID)
	}
	if t.env != nil && t.env.RequireSealedReply && !enveloped {
		return fail(ErrReplyEnvelope, errors.New("reply is not sealed"), s.KeyID)
	}
	if enveloped && t.order == SealThenSign {
		p, err := Open(body, t.env.Cert, t.env.Key, t.maxReply+maxEnvelopeOverhead)
		if err != nil {
			return fail(ErrReplyEnvelope, err, s.KeyID)
		}
		plain = p
	}
	return &Reply{
		Scheme:      t.scheme.Name(),
		KeyID:       s.KeyID,
		Certificate: cert,
		Subject:     cert.Subject.String(),
		Serial:      signing.SerialHex(cert.SerialNumber),
		Timestamp:   s.Timestamp,
		Nonce:       s.Nonce,
		SignedSM3:   signing.SM3(s.SignedBytes),
		Signature:   append([]byte(nil), s.Signature...),
		Enveloped:   enveloped,
	}, plain, nil
}

// lookup finds the platform certificate for a reply key ID.
func (t *Transport) lookup(keyID string) *smx509.Certificate {
	if keyID == "" {
		if len(t.platform) == 1 && len(t.keyIDs) == 0 {
			return t.platform[0]
		}
		return nil
	}
	if c, ok := t.keyIDs[keyID]; ok {
		return c
	}
	for _, c := range t.platform {
		if strings.EqualFold(keyID, signing.SerialHex(c.SerialNumber)) {
			return c
		}
	}
	for _, c := range t.platform {
		if keyID == signing.SerialDecimal(c.SerialNumber) {
			return c
		}
	}
	return nil
}

var errTooLarge = errors.New("too large")

// readAllBounded reads r to EOF, failing with errTooLarge past limit bytes. A nil r reads as empty.
func readAllBounded(r io.Reader, limit int64) ([]byte, error) {
	if r == nil || r == http.NoBody {
		return nil, nil
	}
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, errTooLarge
	}
	return b, nil
}

// gatewayError extracts code and message from a gateway refusal body {"code":..,"message":..}
// (refusal.ParseBody: short printable ASCII only).
func gatewayError(body []byte) (code, msg string) {
	code, msg, _ = refusal.ParseBody(body)
	return code, msg
}
