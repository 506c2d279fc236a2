// Package signing implements the SM2 payment signature schemes that gmgate speaks in both
// directions (sign and verify, requests and replies):
//
//   - "wechatpay-v3-sm2": WeChat Pay API v3, Authorization WECHATPAY2-SM2-WITH-SM3;
//   - "http-sig-sm2": an RFC 9421 HTTP Message Signatures profile with algorithm sm2-sm3;
//   - "form-sm2": signed form or flat JSON parameters (sorted k=v&..., field sign), Alipay style;
//   - "unionpay-sm2": UnionPay signMethod=21 form fields.
//
// The package is pure: it does no replay checks, no identity or certificate lookup and no I/O.
// Parse extracts everything a caller needs to find the key and check replay (Signed), and Verify
// does the SM2 check with the scheme's user ID and signature encoding. The wire formats are
// specified in docs/signing.md.
package signing

import (
	"crypto"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/emmansun/gmsm/smx509"
)

// Limits applied by every parser.
const (
	// MaxHeaderLen bounds any single signature-related header value.
	MaxHeaderLen = 8 << 10
	// MaxParams bounds the number of parameters of a form or JSON body, and of header parameters.
	MaxParams = 512
	// MaxUserIDLen bounds an SM2 user ID (GB/T 32918 allows 8191 bytes; no real ID comes close).
	MaxUserIDLen = 1024
)

// Kind tells whether a Message is a request or a response.
type Kind int

const (
	// Request is an HTTP request.
	Request Kind = iota
	// Response is an HTTP response.
	Response
)

// String returns "request" or "response".
func (k Kind) String() string {
	if k == Response {
		return "response"
	}
	return "request"
}

// Message is an HTTP request or reply as the schemes see it.
type Message struct {
	Kind      Kind        // Request or Response
	Method    string      // requests
	Target    string      // request path with query, exactly as sent (e.g. "/v3/pay?x=1")
	Authority string      // host, for @authority / @target-uri
	Scheme    string      // "https"/"http" for @target-uri
	Status    int         // responses
	Header    http.Header // may be nil for Parse; Sign creates it when nil
	Body      []byte      // exact raw body
}

// Key signs. Signer is any crypto.Signer holding an SM2 key (a gmsm *sm2.PrivateKey or an
// HSM-backed key). It is called as Sign(rand, msg, sm2.NewSM2SignerOption(true, uid)): msg is the
// raw message, the signer computes SM3 with Z_A of uid and returns a DER signature.
type Key struct {
	Signer     crypto.Signer
	KeyID      string              // serial_no, keyid, certId... per scheme (see each scheme)
	UserID     []byte              // nil = the scheme's setting
	Cert       *smx509.Certificate // optional; unionpay-sm2 may embed it, and KeyID may derive from it
	MerchantID string              // mchid, app_id, merId... per scheme
}

// Signed is what Parse extracts, before any cryptography: enough to find the key, check replay
// and verify. A caller may adjust UserID (for instance once the certificate is known) before Verify.
type Signed struct {
	Scheme      string
	KeyID       string
	MerchantID  string
	Timestamp   time.Time // zero when the scheme's message carries none
	Expires     time.Time // http-sig-sm2 "expires"; zero when absent
	Nonce       string
	SignedBytes []byte      // exact bytes the signature covers
	Signature   []byte      // decoded signature, in Encoding
	Encoding    SigEncoding // DER or Raw
	UserID      []byte      // nil = default user ID 1234567812345678
	Params      map[string]string

	// DeclaredDigest and ComputedDigest are set by http-sig-sm2 when content-digest is covered:
	// the SM3 digest the message declares and the SM3 of its body. Verify requires them equal.
	DeclaredDigest []byte
	ComputedDigest []byte
}

// Scheme is one SM2 payment signature scheme.
type Scheme interface {
	// Name is the registry name, e.g. "wechatpay-v3-sm2".
	Name() string
	// Sign adds the signature headers to m or rewrites its body in place. nonce may be empty for
	// schemes without one; now is the signing time.
	Sign(m *Message, k Key, now time.Time, nonce string) error
	// Parse extracts the signature and the signed bytes. It is pure, bounded and never panics.
	Parse(m *Message) (*Signed, error)
	// Verify checks s with pub (SM2 with the right user ID and encoding).
	Verify(s *Signed, pub *ecdsa.PublicKey) error
}

// Typed errors. Each maps to a distinct client-facing code; errors returned by this package wrap
// exactly one of them (test with errors.Is).
var (
	// ErrMissingSignature: the message carries no signature at all.
	ErrMissingSignature = errors.New("signing: missing signature")
	// ErrMalformedHeader: a signature header cannot be parsed.
	ErrMalformedHeader = errors.New("signing: malformed signature header")
	// ErrMalformedBody: a signed form or JSON body cannot be parsed.
	ErrMalformedBody = errors.New("signing: malformed signed body")
	// ErrUnsupportedAlgorithm: the message names an algorithm or sign method other than SM2.
	ErrUnsupportedAlgorithm = errors.New("signing: unsupported algorithm")
	// ErrBadSignature: the signature does not verify.
	ErrBadSignature = errors.New("signing: bad signature")
	// ErrDigestMismatch: the declared body digest does not match the body.
	ErrDigestMismatch = errors.New("signing: content digest mismatch")
	// ErrMissingComponent: a required covered component or field is absent.
	ErrMissingComponent = errors.New("signing: missing covered component")
	// ErrAmbiguousParams wraps ErrMalformedBody: a parameter of a `k=v&k=v` scheme (form-sm2,
	// unionpay-sm2) has a name containing '=' or '&', or a value containing '&', so its signed
	// string splits back into another set of parameters. The same signed bytes could then be
	// presented as several different requests (a replay under a fresh nonce, fields moved into
	// another's value); such messages are neither signed nor accepted.
	ErrAmbiguousParams = fmt.Errorf("%w: parameters do not split back from their signed string", ErrMalformedBody)
)

func errf(base error, format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{base}, args...)...)
}
