package channel

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/gmgate/gmgate/audit"
	"github.com/gmgate/gmgate/signing"
)

// Metrics observes each exchange: result is "ok" or the failure Code, d the total time.
type Metrics interface {
	ObserveChannel(bank, result string, d time.Duration)
}

// Defaults of TransportOptions.
const (
	DefaultMaxBody         = 1 << 20
	DefaultResponseTimeout = 30 * time.Second
	DefaultRetryBackoff    = 100 * time.Millisecond
	// MaxRetries bounds TransportOptions.Retries.
	MaxRetries = 5
)

// HeaderIdempotencyKey marks a request as safe to retry.
const HeaderIdempotencyKey = "Idempotency-Key"

// TransportOptions configures a Transport.
type TransportOptions struct {
	// Inner sends the signed request (Caddy's HTTP transport, or any *http.Transport made to speak TLCP with UseTLCP). Required.
	Inner http.RoundTripper
	// Audit receives a decision per exchange (optional but expected in production).
	Audit audit.Sink
	// Metrics observes each exchange (optional).
	Metrics Metrics
	// MaxBody bounds the back end's request body and the bank's reply body (default 1 MiB).
	MaxBody int
	// ResponseTimeout bounds one attempt, from sending to the end of the reply body
	// (default 30s; negative: none beyond the caller's context).
	ResponseTimeout time.Duration
	// Retries is the number of extra attempts after a transport failure (no reply), only for
	// idempotent methods or requests carrying Idempotency-Key; at most MaxRetries.
	Retries int
	// RetryBackoff is the pause before retry n (n × RetryBackoff; default 100ms).
	RetryBackoff time.Duration
	// OnError, if set, is told about every failure with its internal cause (for logs). The
	// cause holds no key material and no body.
	OnError func(bank string, code Code, err error)
	// TrustedLink says the link authenticates the bank (mutually authenticated TLCP): the bank's
	// HTTP status is then forwarded as sent. Otherwise the status is not covered by most reply
	// signatures and an attacker on the link could rewrite it: it is forwarded only when the
	// signature covers it or it agrees with the signed body (signing.CheckReplyStatus), and a
	// reply whose status contradicts its signed body is refused (bank_reply_malformed).
	TrustedLink bool
	// ReplyHeaders lists the bank reply headers forwarded to the back end besides Content-Type
	// and Content-Length (default DefaultReplyHeaders). Unsigned headers are the bank's word
	// only as far as the link is authenticated; everything else (Set-Cookie, Location, ...) is
	// dropped.
	ReplyHeaders []string
}

// DefaultReplyHeaders are the bank reply headers forwarded by default.
var DefaultReplyHeaders = []string{"Date", "Request-Id", "X-Request-Id", "Cache-Control"}

// Transport is the http.RoundTripper of a bank channel: on the way out it encrypts and signs
// the plain request of the back end; on the way back it verifies the bank's signature with the
// bank's certificate before decrypting or forwarding anything, then decrypts. Failures give a
// synthesized reply (ErrorResponse), an audit entry and a metric.
type Transport struct {
	ch   *BankChannel
	opts TransportOptions
}

// NewTransport returns the Transport of ch.
func NewTransport(ch *BankChannel, opts TransportOptions) (*Transport, error) {
	if ch == nil || opts.Inner == nil {
		return nil, errors.New("channel: NewTransport needs a channel and an inner transport")
	}
	if opts.MaxBody <= 0 {
		opts.MaxBody = DefaultMaxBody
	}
	if opts.ResponseTimeout == 0 {
		opts.ResponseTimeout = DefaultResponseTimeout
	}
	if opts.Retries < 0 || opts.Retries > MaxRetries {
		return nil, errors.New("channel: retries out of range")
	}
	if opts.RetryBackoff <= 0 {
		opts.RetryBackoff = DefaultRetryBackoff
	}
	return &Transport{ch: ch, opts: opts}, nil
}

// Channel returns the transport's bank channel.
func (t *Transport) Channel() *BankChannel { return t.ch }

// CloseIdleConnections closes idle connections of the inner transport when it can.
func (t *Transport) CloseIdleConnections() {
	if c, ok := t.opts.Inner.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// RoundTrip implements http.RoundTripper. It never returns an error for channel failures:
// they become synthesized replies; it returns an error only for a nil request.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req == nil || req.URL == nil {
		return nil, errors.New("channel: nil request")
	}
	start := time.Now()
	reqID := req.Header.Get("X-Request-Id")
	if !isSafeText(reqID) || reqID == "" {
		reqID = newRequestID()
	}
	resp, rec, err := t.exchange(req)
	if rec == nil {
		rec = &audit.Record{}
	}
	rec.Direction = audit.DirectionOutbound
	rec.Scheme = t.ch.schemeName
	rec.RequestID = reqID
	rec.Time = time.Now()
	code := CodeOf(err)
	if err != nil {
		rec.Verdict = audit.VerdictReject
		rec.Reason = string(code)
		if t.opts.OnError != nil {
			t.opts.OnError(t.ch.name, code, err)
		}
		resp = ErrorResponse(req, code)
	} else {
		rec.Verdict = audit.VerdictAccept
		rec.Reason = audit.ReasonOK
	}
	if t.opts.Audit != nil {
		if aerr := t.opts.Audit.Append(*rec); aerr != nil && err == nil {
			// No evidence, no forwarding: the accepted reply is withheld. The accept entry may be
			// in the file all the same (a failed fsync): a following entry records the outcome.
			resp.Body.Close()
			code = CodeInternal
			rec.Verdict, rec.Reason = audit.VerdictReject, string(code)
			_ = t.opts.Audit.Append(*rec)
			if t.opts.OnError != nil {
				t.opts.OnError(t.ch.name, code, aerr)
			}
			resp = ErrorResponse(req, code)
		}
	}
	if t.opts.Metrics != nil {
		t.opts.Metrics.ObserveChannel(t.ch.name, string(code), time.Since(start))
	}
	return resp, nil
}

// exchange does the work; the returned record carries the reply's evidence when there is one.
func (t *Transport) exchange(req *http.Request) (*http.Response, *audit.Record, error) {
	body, err := readBounded(req.Body, t.opts.MaxBody)
	if req.Body != nil {
		req.Body.Close()
	}
	if err != nil {
		if errors.Is(err, errTooLarge) {
			return nil, nil, fail(CodeRequestTooLarge, err)
		}
		return nil, nil, fail(CodeRequestSignFailed, err)
	}
	retryable := isIdempotent(req)
	attempts := 1
	if retryable {
		attempts += t.opts.Retries
	}
	var lastErr error
	for i := 0; i < attempts; i++ {
		if i > 0 {
			select {
			case <-req.Context().Done():
				return nil, nil, classifyNetErr(req.Context().Err())
			case <-time.After(time.Duration(i) * t.opts.RetryBackoff):
			}
		}
		resp, rec, err, sent := t.attempt(req, body)
		if err == nil || sent {
			return resp, rec, err
		}
		lastErr = err
		if c := CodeOf(err); c != CodeBankUnreachable && c != CodeBankTimeout {
			break
		}
	}
	return nil, nil, lastErr
}

// attempt signs and sends once. sent reports whether a reply was received (no retry then).
func (t *Transport) attempt(req *http.Request, plain []byte) (resp *http.Response, rec *audit.Record, err error, sent bool) {
	m := &signing.Message{Kind: signing.Request, Method: req.Method, Target: req.URL.RequestURI(),
		Authority: req.Host, Scheme: req.URL.Scheme, Header: req.Header.Clone(), Body: append([]byte(nil), plain...)}
	if m.Authority == "" {
		m.Authority = req.URL.Host
	}
	if m.Header == nil {
		m.Header = http.Header{}
	}
	if err := t.ch.SealRequest(m); err != nil {
		return nil, nil, err, false
	}
	ctx := req.Context()
	cancel := context.CancelFunc(func() {})
	if t.opts.ResponseTimeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, t.opts.ResponseTimeout)
	}
	defer cancel()
	out := req.Clone(ctx)
	out.Header = m.Header
	out.Header.Del("Content-Length")
	out.Body = io.NopCloser(bytes.NewReader(m.Body))
	out.ContentLength = int64(len(m.Body))
	out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(m.Body)), nil }
	out.TransferEncoding = nil
	bankResp, err := t.opts.Inner.RoundTrip(out)
	if err != nil {
		return nil, nil, classifyNetErr(err), false
	}
	replyBody, err := readBounded(bankResp.Body, t.opts.MaxBody)
	bankResp.Body.Close()
	if err != nil {
		if errors.Is(err, errTooLarge) {
			return nil, nil, fail(CodeBankReplyTooLarge, err), true
		}
		return nil, nil, classifyNetErr(err), true
	}
	rm := &signing.Message{Kind: signing.Response, Status: bankResp.StatusCode, Header: bankResp.Header.Clone(), Body: replyBody}
	if rm.Header == nil {
		rm.Header = http.Header{}
	}
	reply, s, err := t.ch.OpenReply(rm, t.ch.RequestNonce(m, plain), t.opts.MaxBody)
	rec = &audit.Record{}
	if s != nil {
		rec.KeyID = s.KeyID
		rec.SignedSM3 = signing.SM3(s.SignedBytes)
		rec.Signature = s.Signature
	}
	if err != nil {
		return nil, rec, err, true
	}
	rec.CertSerial = signing.SerialHex(reply.Cert.SerialNumber) // upper-case hex, as inbound entries
	if !t.opts.TrustedLink {
		if err := signing.CheckReplyStatus(s, bankResp.StatusCode, replyBody); err != nil {
			return nil, rec, fail(CodeBankReplyMalformed, err), true
		}
	}
	allowed := t.opts.ReplyHeaders
	if allowed == nil {
		allowed = DefaultReplyHeaders
	}
	h := http.Header{}
	for _, name := range allowed {
		if v := bankResp.Header.Values(name); len(v) > 0 {
			h[http.CanonicalHeaderKey(name)] = append([]string(nil), v...)
		}
	}
	for _, name := range signing.SignatureHeaders(t.ch.schemeName) {
		h.Del(name)
	}
	h.Set("Content-Length", strconv.Itoa(len(reply.Body)))
	if reply.ContentType != "" {
		h.Set("Content-Type", reply.ContentType)
	}
	return &http.Response{
		Status:        bankResp.Status,
		StatusCode:    bankResp.StatusCode,
		Proto:         bankResp.Proto,
		ProtoMajor:    bankResp.ProtoMajor,
		ProtoMinor:    bankResp.ProtoMinor,
		Header:        h,
		Body:          newBytesBody(reply.Body),
		ContentLength: int64(len(reply.Body)),
		Request:       req,
		TLS:           bankResp.TLS,
	}, rec, nil, true
}

// isIdempotent reports whether req may be retried.
func isIdempotent(req *http.Request) bool {
	if req.Header.Get(HeaderIdempotencyKey) != "" {
		return true
	}
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodPut, http.MethodDelete, http.MethodTrace:
		return true
	}
	return false
}

// classifyNetErr maps a transport error to bank_timeout or bank_unreachable.
func classifyNetErr(err error) *Error {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout()) {
		return fail(CodeBankTimeout, err)
	}
	return fail(CodeBankUnreachable, err)
}

var errTooLarge = errors.New("body exceeds the limit")

// readBounded reads at most limit bytes of r (nil: empty).
func readBounded(r io.Reader, limit int) ([]byte, error) {
	if r == nil || r == http.NoBody {
		return nil, nil
	}
	b, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return nil, err
	}
	if len(b) > limit {
		return nil, errTooLarge
	}
	return b, nil
}

func newBytesBody(b []byte) io.ReadCloser { return io.NopCloser(bytes.NewReader(b)) }

func newRequestID() string {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "unknown"
	}
	return hex.EncodeToString(b[:])
}
