package signing

import (
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
)

// Reply verification errors (ReplyCheck.Verify wraps exactly one, with errors.Is). Each side
// (the client SDK, the bank channel) maps them to its own codes.
var (
	// ErrReplyUnknownKey: the reply names a key that no configured certificate has.
	ErrReplyUnknownKey = errors.New("signing: reply signed by an unknown key")
	// ErrReplyCertificate: the certificate of the key is outside its validity period or not SM2.
	ErrReplyCertificate = errors.New("signing: reply certificate is not usable now")
	// ErrReplyStale: the reply's signed time is missing (where required) or outside the window.
	ErrReplyStale = errors.New("signing: reply timestamp is outside the window")
	// ErrReplyUnbound: the reply does not echo the request it answers (where the scheme echoes).
	ErrReplyUnbound = errors.New("signing: reply does not answer this request")
)

// ReplyCheck is the one verification of a signed reply, shared by the terminal SDK (replies of
// the gateway) and the bank channel (replies of a bank): parse in the scheme, find the signer's
// certificate by key ID, check its validity period and key type, verify the SM2 signature, then
// the signed time against a window and, where the scheme echoes it, the request's nonce.
type ReplyCheck struct {
	// Scheme parses and verifies. Required.
	Scheme Scheme
	// Lookup returns the certificate for a key ID (nil: unknown). Required.
	Lookup func(keyID string) *smx509.Certificate
	// CheckCert, when set, re-checks the certificate Lookup found before its signature is
	// used (its chain, usage and revocation, which change after it was configured); an error
	// fails the reply with ErrReplyCertificate.
	CheckCert func(*smx509.Certificate) error
	// Window is the largest accepted |now - signed time|; zero: the time is not checked.
	Window time.Duration
	// RequireTimestamp refuses a reply without a signed time (ErrReplyStale).
	RequireTimestamp bool
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Verify checks m (Kind Response). On failure it returns the parsed signature when there was one
// (for the audit entry) and an error wrapping ErrMissingSignature, a parse error of the scheme,
// ErrReplyUnknownKey, ErrReplyCertificate, ErrBadSignature (or another verify error), ErrReplyStale
// or ErrReplyUnbound. requestNonce, when not empty, is the nonce of the request this reply
// answers: a scheme whose replies echo it (Echoes(name)) must carry the same value.
func (c *ReplyCheck) Verify(m *Message, requestNonce string) (*Signed, *smx509.Certificate, error) {
	m.Kind = Response
	s, err := c.Scheme.Parse(m)
	if err != nil {
		return nil, nil, err
	}
	cert := c.Lookup(s.KeyID)
	if cert == nil {
		return s, nil, ErrReplyUnknownKey
	}
	now := time.Now()
	if c.Now != nil {
		now = c.Now()
	}
	if now.Before(cert.NotBefore) || now.After(cert.NotAfter) {
		return s, cert, fmt.Errorf("%w: outside its validity period", ErrReplyCertificate)
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != sm2.P256() {
		return s, cert, fmt.Errorf("%w: key is not SM2", ErrReplyCertificate)
	}
	if c.CheckCert != nil {
		if err := c.CheckCert(cert); err != nil {
			return s, cert, fmt.Errorf("%w: %w", ErrReplyCertificate, err)
		}
	}
	if err := c.Scheme.Verify(s, pub); err != nil {
		return s, cert, err
	}
	// Only authenticated values below.
	if s.Timestamp.IsZero() {
		if c.RequireTimestamp {
			return s, cert, fmt.Errorf("%w: no signed timestamp", ErrReplyStale)
		}
	} else if c.Window > 0 {
		if d := now.Sub(s.Timestamp); d > c.Window || d < -c.Window {
			return s, cert, ErrReplyStale
		}
	}
	if !s.Expires.IsZero() && now.After(s.Expires.Add(replyClockSkew)) {
		return s, cert, fmt.Errorf("%w: signature expired", ErrReplyStale)
	}
	if requestNonce != "" && ReplyEchoesNonce(c.Scheme.Name()) && s.Nonce != requestNonce {
		return s, cert, ErrReplyUnbound
	}
	return s, cert, nil
}

// replyClockSkew tolerates clock differences when a reply states its own expiry.
const replyClockSkew = 30 * time.Second

// ReplyEchoesNonce reports whether the scheme's replies carry the request's nonce field back
// (unionpay-sm2: orderId), which binds a reply to its request.
// It reads the scheme-facts table.
func ReplyEchoesNonce(name string) bool {
	f, ok := SchemeFacts(name)
	return ok && f.ReplyEchoesNonce
}

// ErrReplyStatus: the reply's HTTP status is not covered by its signature and contradicts what
// the signed body says (a success status on a signed error, an error status on a signed result).
var ErrReplyStatus = errors.New("signing: reply status contradicts the signed reply")

// CheckReplyStatus tells whether the HTTP status of a verified reply may be believed. The status
// is signed only by http-sig-sm2 covering "@status"; for the other schemes an attacker on the
// link can rewrite it, so it must agree with the signed body: unionpay-sm2 and form-sm2 answer
// 200 and carry the outcome in signed fields; wechatpay-v3-sm2 answers 2xx with a result, or 4xx/5xx
// with a signed {"code","message"} error object. Returns nil or ErrReplyStatus.
func CheckReplyStatus(s *Signed, status int, body []byte) error {
	switch s.Scheme {
	case HTTPSigName:
		if hasComponent(s.Params["components"], "@status") || status == 200 {
			return nil
		}
	case WechatPayName:
		isErr := isErrorObject(body)
		if status >= 200 && status < 300 && !isErr || status >= 400 && status < 600 && isErr {
			return nil
		}
	default:
		if status == 200 {
			return nil
		}
	}
	return fmt.Errorf("%w: status %d", ErrReplyStatus, status)
}

// ReplyStatusSigned reports whether the signature of a verified reply covers its HTTP status.
func ReplyStatusSigned(s *Signed) bool {
	return s.Scheme == HTTPSigName && hasComponent(s.Params["components"], "@status")
}

func hasComponent(components, name string) bool {
	for _, c := range strings.Fields(components) {
		if strings.Trim(c, `"`) == name {
			return true
		}
	}
	return false
}

// isErrorObject reports whether body is a JSON object with string members code and message (a
// WeChat Pay API error).
func isErrorObject(body []byte) bool {
	var e struct {
		Code    *string `json:"code"`
		Message *string `json:"message"`
	}
	return json.Unmarshal(body, &e) == nil && e.Code != nil && e.Message != nil
}
