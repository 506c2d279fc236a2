// Package tls13sm implements TLS 1.3 (RFC 8446) restricted to the ShangMi
// profile of RFC 8998, client and server: cipher suites TLS_SM4_GCM_SM3
// (0x00C6) and TLS_SM4_CCM_SM3 (0x00C7), key-share group curveSM2 (0x0029)
// and signature scheme sm2sig_sm3 (0x0708), nothing else.
//
// The package is shaped like crypto/tls and like this module's tlcp
// package: a Config with an SM2 certificate whose key is a crypto.Signer (so
// that keys held in the key vault or a hardware module work unchanged), a
// Conn implementing net.Conn, and Server, Client, Listen, Dial.
//
// Implemented: full handshake, HelloRetryRequest, client authentication,
// PSK resumption with session tickets (psk_dhe_ke only, ticket keys
// rotated), KeyUpdate, close_notify. Not implemented, by design: 0-RTT
// early data, other groups, suites or signature schemes, post-handshake
// client authentication.
package tls13sm

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
	"github.com/gmgate/gmgate/internal/peerverify"
	"github.com/gmgate/gmgate/pki"
)

// SM2SignatureID is the SM2 distinguishing identifier used in the
// sm2sig_sm3 CertificateVerify signatures, as RFC 8998 section 3.2.1 fixes it
// (and as Tongsuo, GmSSL and OpenSSL use it; see docs/tls13-sm.md for the
// interop measurement). Certificate chains are verified with the default
// identifier 1234567812345678 as usual.
const SM2SignatureID = "TLSv1.3+GM+Cipher+Suite"

const (
	maxPlaintext        = 16384       // 2^14
	maxCiphertext       = 16384 + 256 // 2^14 + 256 (RFC 8446 5.2)
	recordHeaderLen     = 5
	defaultMaxHandshake = 65536
	maxUselessRecords   = 16
	maxTicketsAccepted  = 8
	defaultTicketLife   = 2 * time.Hour
	maxTicketLife       = 7 * 24 * time.Hour // RFC 8446 4.6.1
)

var cryptoRandReader = rand.Reader

// ClientAuthType declares the server's policy for client authentication.
type ClientAuthType int

// Client authentication modes, with the same meaning as in crypto/tls.
const (
	NoClientCert ClientAuthType = iota
	RequestClientCert
	RequireAnyClientCert
	VerifyClientCertIfGiven
	RequireAndVerifyClientCert
)

// requiresCert reports whether the mode refuses a client without a certificate.
func (t ClientAuthType) requiresCert() bool {
	return t == RequireAnyClientCert || t == RequireAndVerifyClientCert
}

// verifiesCert reports whether the mode verifies a client certificate that is sent.
func (t ClientAuthType) verifiesCert() bool {
	return t == VerifyClientCertIfGiven || t == RequireAndVerifyClientCert
}

// String returns the name of the client authentication mode.
func (t ClientAuthType) String() string {
	switch t {
	case NoClientCert:
		return "NoClientCert"
	case RequestClientCert:
		return "RequestClientCert"
	case RequireAnyClientCert:
		return "RequireAnyClientCert"
	case VerifyClientCertIfGiven:
		return "VerifyClientCertIfGiven"
	case RequireAndVerifyClientCert:
		return "RequireAndVerifyClientCert"
	}
	return "ClientAuthType(unknown)"
}

// Certificate is one SM2 certificate chain with its private key.
type Certificate struct {
	// Certificate is the chain, leaf first, each entry DER. The leaf must
	// carry an SM2 public key and the keyUsage digitalSignature (pki.RoleSign).
	Certificate [][]byte
	// PrivateKey is the leaf's private key; it must implement crypto.Signer.
	// It is called as Sign(rand, msg, sm2.NewSM2SignerOption(true,
	// []byte(SM2SignatureID))): msg is the raw CertificateVerify content and
	// the signer computes e = SM3(Z_A || msg) with that identifier, exactly
	// as *sm2.PrivateKey and the key vault's SM2 keys do with those options.
	PrivateKey crypto.PrivateKey
	// Leaf is the parsed leaf; it is parsed once if nil.
	Leaf *smx509.Certificate

	once sync.Once
	prep *preparedCert
	err  error
}

// ClientHelloInfo carries the ClientHello fields that GetCertificate can use.
type ClientHelloInfo struct {
	// ServerName is the SNI host name, or empty.
	ServerName string
	// CipherSuites lists the suites offered by the client.
	CipherSuites []uint16
	// Conn is the underlying connection.
	Conn net.Conn
}

// ConnectionState describes an established connection.
type ConnectionState struct {
	Version            uint16
	HandshakeComplete  bool
	DidResume          bool
	CipherSuite        uint16
	ServerName         string
	NegotiatedProtocol string
	// PeerCertificates is the peer's chain as sent (or, on resumption, as
	// sent in the original handshake). Unless VerifiedChains is non-empty it
	// is unauthenticated: never an identity.
	PeerCertificates []*smx509.Certificate
	// VerifiedChains holds the verified chains of the peer's leaf.
	VerifiedChains [][]*smx509.Certificate
}

// ClientSessionCache stores sessions (tickets) for resumption on the client,
// keyed by server name or address. Implementations must be safe for
// concurrent use.
type ClientSessionCache interface {
	Get(key string) (*ClientSession, bool)
	Put(key string, s *ClientSession)
}

// Config configures a client or server. A Config may be reused for many
// connections and must not be modified after first use (except through
// SetSessionTicketKeys).
type Config struct {
	// Rand is the entropy source; crypto/rand.Reader if nil.
	Rand io.Reader
	// Time returns the current time; time.Now if nil.
	Time func() time.Time

	// Certificate is the local SM2 certificate: always needed on a server
	// (unless GetCertificate is set), on a client only for client
	// authentication.
	Certificate *Certificate
	// GetCertificate, if set on a server, picks the certificate by
	// ClientHello (typically by SNI). Returning nil falls back to Certificate.
	GetCertificate func(*ClientHelloInfo) (*Certificate, error)

	// RootCAs verifies servers (client side). ClientCAs verifies clients
	// (server side) and names the acceptable CAs in CertificateRequest. Nil
	// pools make every peer chain unknown.
	RootCAs   *smx509.CertPool
	ClientCAs *smx509.CertPool
	// ClientAuth is the server's client authentication policy.
	ClientAuth ClientAuthType
	// VerifyPeerCertificate, if set, is called after normal verification
	// (or instead of it when verification is skipped) with the raw peer
	// certificates and the verified chains; it is where the CRL check of
	// pki plugs in. A non-nil error aborts the handshake with bad_certificate,
	// or certificate_revoked if it wraps ErrCertificateRevoked. It is called
	// again when a session is resumed.
	VerifyPeerCertificate func(rawCerts [][]byte, verifiedChains [][]*smx509.Certificate) error
	// ServerName is, for a client, the host name checked against the
	// server's certificate and sent as SNI (when it is not an IP).
	ServerName string
	// InsecureSkipVerify disables chain and host name verification on the
	// client. Key usage and the SM2 key type are still checked.
	InsecureSkipVerify bool

	// CipherSuites lists the enabled suites in preference order; nil means
	// TLS_SM4_GCM_SM3, TLS_SM4_CCM_SM3. The server follows its own order.
	CipherSuites []uint16
	// NextProtos lists ALPN protocols in preference order (optional).
	NextProtos []string

	// SessionTicketsDisabled stops the server from issuing tickets and the
	// client from offering them.
	SessionTicketsDisabled bool
	// SessionTicketLifetime is how long an issued ticket may be used, as
	// announced in NewSessionTicket; default 2h, at most 7 days.
	SessionTicketLifetime time.Duration
	// ClientSessionCache, on a client, stores tickets for resumption; nil
	// disables client-side resumption.
	ClientSessionCache ClientSessionCache

	// HandshakeTimeout bounds the handshake when non-zero.
	HandshakeTimeout time.Duration
	// MaxHandshakeMessageSize bounds one handshake message; default 64 KiB.
	MaxHandshakeMessageSize int

	mu          sync.Mutex
	ticketKeys  []ticketKey // first seals; all open
	autoTickets bool        // keys are generated and rotated here
	keysSet     bool
	caNames     [][]byte
	caNamesSet  bool

	verifyCache peerverify.Cache

	// keyLog, set by tests only, receives each traffic secret with its NSS
	// key-log label and the client random, to compare with a peer's key log.
	keyLog func(label string, clientRandom, secret []byte)
}

func (c *Config) logKey(label string, clientRandom, secret []byte) {
	if c.keyLog != nil {
		c.keyLog(label, clientRandom, secret)
	}
}

// ErrCertificateRevoked may be wrapped by VerifyPeerCertificate errors to
// send a certificate_revoked alert.
var ErrCertificateRevoked = errors.New("tls13sm: certificate revoked")

var defaultSuites = []uint16{TLS_SM4_GCM_SM3, TLS_SM4_CCM_SM3}

func (c *Config) rand() io.Reader {
	if c.Rand != nil {
		return c.Rand
	}
	return cryptoRandReader
}

func (c *Config) now() time.Time {
	if c.Time != nil {
		return c.Time()
	}
	return time.Now()
}

func (c *Config) suites() []uint16 {
	if len(c.CipherSuites) > 0 {
		return c.CipherSuites
	}
	return defaultSuites
}

func (c *Config) maxHandshake() int {
	if c.MaxHandshakeMessageSize > 0 {
		return c.MaxHandshakeMessageSize
	}
	return defaultMaxHandshake
}

func (c *Config) ticketLifetime() time.Duration {
	d := c.SessionTicketLifetime
	if d <= 0 {
		d = defaultTicketLife
	}
	if d > maxTicketLife {
		d = maxTicketLife
	}
	return d
}

// clientCANames returns the DER subjects of ClientCAs, computed once.
func (c *Config) clientCANames() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.caNamesSet {
		c.caNamesSet = true
		if c.ClientCAs != nil {
			//lint:ignore SA1019 Subjects is fine for pools built from certificates.
			c.caNames = c.ClientCAs.Subjects()
		}
	}
	return c.caNames
}

// validate checks the Config's settings once per use.
func (c *Config) validate() error {
	for _, s := range c.CipherSuites {
		if !supportedSuite(s) {
			return fmt.Errorf("tls13sm: cipher suite 0x%04X is not an RFC 8998 suite", s)
		}
	}
	for _, p := range c.NextProtos {
		if len(p) == 0 || len(p) > 255 {
			return errors.New("tls13sm: invalid ALPN protocol name")
		}
	}
	return nil
}

// preparedCert is everything about a local certificate that is computed once.
type preparedCert struct {
	leaf    *smx509.Certificate
	signer  crypto.Signer
	certMsg [][]byte
}

func (cert *Certificate) prepare() (*preparedCert, error) {
	cert.once.Do(func() { cert.prep, cert.err = prepareCert(cert) })
	return cert.prep, cert.err
}

func prepareCert(cert *Certificate) (*preparedCert, error) {
	if len(cert.Certificate) == 0 {
		return nil, errors.New("tls13sm: certificate has no chain")
	}
	leaf := cert.Leaf
	if leaf == nil {
		var err error
		if leaf, err = smx509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, errors.New("tls13sm: cannot parse certificate: " + err.Error())
		}
	}
	if _, err := sm2PublicKey(leaf); err != nil {
		return nil, err
	}
	if err := pki.CheckUsage(leaf, pki.RoleSign); err != nil {
		return nil, fmt.Errorf("tls13sm: certificate: %w", err)
	}
	signer, ok := cert.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, errors.New("tls13sm: private key does not implement crypto.Signer")
	}
	pub, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(signer.Public()) {
		return nil, errors.New("tls13sm: private key does not match the certificate")
	}
	return &preparedCert{leaf: leaf, signer: signer, certMsg: cert.Certificate}, nil
}

// sm2PublicKey returns the certificate's key if it is an SM2 key.
func sm2PublicKey(cert *smx509.Certificate) (*ecdsa.PublicKey, error) {
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != sm2.P256() {
		return nil, errors.New("tls13sm: certificate key is not an SM2 key")
	}
	return pub, nil
}
