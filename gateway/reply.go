package gateway

import (
	"crypto"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/envelope"
	"github.com/gmgate/gmgate/signing"
)

// ReplySealer envelopes a reply body for the client's encryption certificate.
type ReplySealer func(plain []byte, clientEnc *smx509.Certificate) ([]byte, error)

// ReplySigner signs back-end replies with the platform signing key in the
// scheme the client used, optionally enveloping the body for the client
// (before signing for header schemes, after signing for body schemes; see
// Order).
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
	// Order is the envelope order of sealed replies: envelope.SealThenSign signs the
	// envelope bytes, envelope.SignThenSeal seals the signed body. envelope.OrderAuto: by
	// scheme, as ResolveEnvelopeOrder (the client SDK opens or verifies
	// first by the same rule).
	Order envelope.Order
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
	if h == nil {
		h = http.Header{}
	}
	sealing := s.Seal != nil && clientEnc != nil
	order := envelope.OrderAuto
	if sealing {
		var err error
		if order, err = envelope.Resolve(s.Order, signing.SignsInHeader(scheme.Name())); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrReplySign, err)
		}
	}
	if sealing && order == envelope.SealThenSign {
		sealed, err := s.seal(h, body, clientEnc)
		if err != nil {
			return nil, err
		}
		body = sealed
	}
	keyID := s.KeyID
	if keyID == "" && s.Cert != nil {
		keyID = signing.SerialHex(s.Cert.SerialNumber)
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
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
	if sealing && order == envelope.SignThenSeal {
		return s.seal(h, m.Body, clientEnc)
	}
	return m.Body, nil
}

// seal envelopes body and marks h: Content-Type names the envelope and
// Gm-Inner-Content-Type the original type.
func (s *ReplySigner) seal(h http.Header, body []byte, clientEnc *smx509.Certificate) ([]byte, error) {
	sealed, err := s.Seal(body, clientEnc)
	if err != nil {
		return nil, fmt.Errorf("%w: envelope: %w", ErrReplySign, err)
	}
	if ct := h.Get("Content-Type"); ct != "" {
		h.Set(envelope.HeaderInnerContentType, ct)
	} else {
		h.Del(envelope.HeaderInnerContentType)
	}
	h.Set("Content-Type", envelope.ContentType)
	h.Del("Content-Encoding")
	return sealed, nil
}
