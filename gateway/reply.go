package gateway

import (
	"crypto"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/signing"
)

// ReplySealer envelopes a reply body for the client's encryption certificate.
type ReplySealer func(plain []byte, clientEnc *smx509.Certificate) ([]byte, error)

// ReplySigner signs back-end replies with the platform signing key in the
// scheme the client used, optionally enveloping the body for the client
// first (sign over the ciphertext, as the client verifies before opening).
type ReplySigner struct {
	// Signer is the platform SM2 signing key (vault or HSM). Required.
	Signer crypto.Signer
	// Cert is the platform signing certificate. KeyID defaults to its serial
	// in upper-case hex.
	Cert *smx509.Certificate
	// KeyID overrides the key ID written in the reply (Wechatpay-Serial,
	// keyid, ...).
	KeyID string
	// Seal, when set, envelopes the reply body for the client's encryption
	// certificate whenever one is given to Sign.
	Seal ReplySealer
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// ErrReplySign is wrapped by every reply signing failure.
var ErrReplySign = errors.New("gateway: cannot sign reply")

// Sign signs a reply with status, headers h (modified in place: signature
// headers are added, Content-Length updated) and body, in scheme. It returns
// the body to send (enveloped, or rewritten by body-signing schemes).
// clientEnc, when not nil and Seal is set, is the client's encryption
// certificate the body is enveloped for.
func (s *ReplySigner) Sign(scheme signing.Scheme, status int, h http.Header, body []byte, clientEnc *smx509.Certificate) ([]byte, error) {
	if s == nil || s.Signer == nil || scheme == nil {
		return nil, fmt.Errorf("%w: no key or scheme", ErrReplySign)
	}
	if s.Seal != nil && clientEnc != nil {
		sealed, err := s.Seal(body, clientEnc)
		if err != nil {
			return nil, fmt.Errorf("%w: envelope: %w", ErrReplySign, err)
		}
		body = sealed
		h.Del("Content-Encoding")
	}
	keyID := s.KeyID
	if keyID == "" && s.Cert != nil {
		keyID = signing.SerialHex(s.Cert.SerialNumber)
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	if h == nil {
		h = http.Header{}
	}
	// Remove signature headers the back end may have set itself, of every scheme.
	for _, name := range signing.Names() {
		for _, n := range signing.SignatureHeaders(name) {
			h.Del(n)
		}
	}
	m := &signing.Message{Kind: signing.Response, Status: status, Header: h, Body: body}
	if err := scheme.Sign(m, signing.Key{Signer: s.Signer, KeyID: keyID, Cert: s.Cert}, now(), ""); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrReplySign, err)
	}
	return m.Body, nil
}
