package client

import (
	"crypto"
	"crypto/tls"
	"net/http"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/envelope"
	"github.com/gmgate/gmgate/signing"
	"github.com/gmgate/gmgate/tlcp"
)

// Defaults applied by New and NewTransport to zero Config fields.
const (
	// DefaultReplyWindow is the largest accepted distance between the reply's signed timestamp
	// and the local clock, in either direction.
	DefaultReplyWindow = 5 * time.Minute
	// DefaultTimeout bounds one whole exchange (dial, handshake, request, reply body).
	DefaultTimeout = 30 * time.Second
	// DefaultDialTimeout bounds the TCP connect plus the TLS / TLCP handshake.
	DefaultDialTimeout = 10 * time.Second
	// DefaultMaxRequestBody bounds the request body read for signing, in bytes.
	DefaultMaxRequestBody = 1 << 20
	// DefaultMaxReplyBody bounds the reply body read for verification, in bytes.
	DefaultMaxReplyBody = 4 << 20
	// DefaultMaxIdleConnsPerHost is the number of kept-alive connections to the gateway.
	DefaultMaxIdleConnsPerHost = 4
)

// Config configures a Client (New) or a bare Transport (NewTransport).
type Config struct {
	// BaseURL is the gateway's base URL, e.g. "https://pay.example.com:8443/api". Paths given
	// to Client.Post / Client.Get / Client.NewRequest are resolved against it (a leading "/"
	// replaces its path). Required by New; NewTransport ignores it.
	BaseURL string

	// TLCP, when non-nil, makes every https:// connection a TLCP (GB/T 38636-2020) connection
	// dialled with tlcp.Dialer. nil: https:// uses ordinary TLS (see TLS) and http:// is plain.
	TLCP *TLCPConfig

	// TLS is the TLS configuration for https:// when TLCP is nil (tests, non-GM gateways).
	// nil: Go's defaults with the system roots.
	TLS *tls.Config

	// Transport, when non-nil, carries the signed requests instead of the http.Transport that
	// New builds; TLCP, TLS, DialTimeout and MaxIdleConnsPerHost are then ignored. Use it for
	// httptest servers or a proxy. It must not transparently decompress replies (the reply
	// signature covers the bytes as sent); the Transport sends "Accept-Encoding: identity"
	// unless the request names an encoding itself.
	Transport http.RoundTripper

	// Scheme is the signing scheme name: "wechatpay-v3-sm2", "http-sig-sm2", "form-sm2" or
	// "unionpay-sm2" (signing.Names()). Required.
	Scheme string

	// SchemeOptions are the scheme settings (user ID, DER or raw r||s, Base64 or hex, field
	// names...), used both to sign requests and to verify replies. nil: the scheme's defaults.
	SchemeOptions []signing.Option

	// Key is the terminal's signing key. Key.Signer is required (a *sm2.PrivateKey or any
	// crypto.Signer holding an SM2 key, e.g. in an HSM). Key.KeyID names the terminal's
	// certificate to the gateway; when empty and Key.Cert is set it is derived: upper-case hex
	// serial for wechatpay-v3-sm2 and http-sig-sm2, decimal serial for unionpay-sm2 (form-sm2
	// then omits its key ID field). Key.MerchantID is the mchid / app_id / merId; required by
	// wechatpay-v3-sm2.
	Key signing.Key

	// PlatformCerts are the platform's signing certificates; a reply must be signed by one of
	// them. A reply names its key by ID and it is matched against each certificate's serial in
	// hex (any case) and decimal, and against PlatformKeyIDs. A reply naming no key ID is
	// accepted only when exactly one certificate is configured. Required (at least one).
	PlatformCerts []*smx509.Certificate

	// PlatformKeyIDs maps further key IDs (for instance an http-sig keyid that is not a serial)
	// to platform certificates. Optional.
	PlatformKeyIDs map[string]*smx509.Certificate

	// ReplyWindow is the largest accepted |now - signed reply timestamp|. A reply whose scheme
	// carries no timestamp fails with ErrReplyStale. Zero or negative: DefaultReplyWindow (5 min).
	ReplyWindow time.Duration

	// Now is the clock used to timestamp requests and check replies. nil: time.Now.
	Now func() time.Time

	// Nonce returns a fresh nonce for each request (schemes with a nonce). It must be
	// unpredictable and never repeat within the gateway's replay window. nil: signing.NewNonce
	// (128 random bits, hex).
	Nonce func() (string, error)

	// Timeout bounds one whole exchange: dial, handshake, sending, and reading the reply body.
	// Zero: DefaultTimeout (30 s). Negative: no overall timeout (the request's context still
	// applies).
	Timeout time.Duration

	// DialTimeout bounds the TCP connect and the TLS / TLCP handshake. Zero: DefaultDialTimeout
	// (10 s).
	DialTimeout time.Duration

	// MaxIdleConnsPerHost is the number of idle keep-alive connections kept to the gateway.
	// Zero: DefaultMaxIdleConnsPerHost (4).
	MaxIdleConnsPerHost int

	// MaxRequestBody bounds a request body, in bytes; larger requests fail with
	// ErrRequestTooLarge before anything is sent. Zero: DefaultMaxRequestBody (1 MiB).
	MaxRequestBody int64

	// MaxReplyBody bounds a reply body, in bytes; larger replies fail with ErrReplyTooLarge.
	// Zero: DefaultMaxReplyBody (4 MiB).
	MaxReplyBody int64

	// Envelope, when non-nil, seals request bodies as SM2 digital envelopes and/or opens
	// enveloped replies. nil: bodies travel in the clear (inside TLCP).
	Envelope *EnvelopeConfig
}

// TLCPConfig is the TLCP side of a Config.
type TLCPConfig struct {
	// Sign and Enc are the terminal's TLCP client certificates (signing and encryption), sent
	// when the gateway asks for client authentication. Sign.Key must be a crypto.Signer and
	// Enc.Key a crypto.Decrypter (for ECDHE suites also tlcp.SM2KeyAgreement, which a gmsm
	// *sm2.PrivateKey is). Both nil: no client certificate.
	Sign, Enc *Identity

	// RootCAs are the roots that the gateway's TLCP certificates must chain to. Required.
	RootCAs *smx509.CertPool

	// ServerName is checked against the gateway's certificate. Empty: the host of BaseURL.
	ServerName string

	// CipherSuites lists the TLCP suites offered, in preference order (tlcp.ECC_SM4_GCM_SM3...).
	// nil: the tlcp package's default list.
	CipherSuites []uint16

	// SessionCache enables session-ID resumption. nil: no resumption.
	SessionCache tlcp.SessionCache
}

// EnvelopeConfig configures SM2 digital envelopes (PKCS#7 / GM/T 0010 EnvelopedData with an
// SM4-CBC content key, made and opened with github.com/emmansun/gmsm/pkcs7).
type EnvelopeConfig struct {
	// PlatformEncCert is the platform's encryption certificate. When set, every request with a
	// body is sealed to it (Content-Type becomes EnvelopeContentType). nil: requests are not
	// sealed.
	PlatformEncCert *smx509.Certificate

	// Cert and Key are the terminal's encryption certificate and private key, used to open
	// replies whose Content-Type is EnvelopeContentType. Key is any crypto.Decrypter (a gmsm
	// *sm2.PrivateKey, an HSM key). Both nil: an enveloped reply fails with ErrReplyEnvelope.
	Cert *smx509.Certificate
	Key  crypto.Decrypter

	// RequireSealedReply makes a reply that is not enveloped fail with ErrReplyEnvelope.
	RequireSealedReply bool

	// Order says whether the signature covers the envelope or the plaintext. Zero (OrderAuto):
	// SealThenSign for header schemes (wechatpay-v3-sm2, http-sig-sm2: the signature covers the
	// bytes on the wire), SignThenSeal for body schemes (form-sm2, unionpay-sm2: the signature
	// is a body field, so the signed body is sealed). Replies are checked in the mirror order.
	// The gateway follows the same rule (envelope.Resolve, gm_verify's
	// `envelope { order auto|seal_then_sign|sign_then_seal }`); a non-default order must be
	// configured on both sides. See docs/signing.md.
	Order EnvelopeOrder

	// AllowCBC opens SM4-CBC replies in sign-then-seal order, where the reply is decrypted before
	// its signature can be checked. Off (default): only SM4-GCM is opened there (the gateway seals
	// such replies with GCM), so a man in the middle cannot use the terminal as a padding oracle.
	AllowCBC bool
}

// EnvelopeOrder is the order of signing and sealing: envelope.Order, the one contract of the
// gateway and the SDK.
type EnvelopeOrder = envelope.Order

// The orders (see envelope.Order).
const (
	OrderAuto    = envelope.OrderAuto
	SealThenSign = envelope.SealThenSign
	SignThenSeal = envelope.SignThenSeal
)
