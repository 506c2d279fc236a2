// Package tlcp implements TLCP, the Chinese Transport Layer Cryptography
// Protocol of GB/T 38636-2020 (protocol version 0x0101), client and server.
//
// The package is shaped like crypto/tls. A server or client is configured
// with a Config holding two certificates, a signing certificate and an
// encryption certificate, each with its private key as a crypto.Signer /
// crypto.Decrypter so that keys held in a hardware module work unchanged.
//
// Supported suites: ECC_SM4_GCM_SM3 (0xE053), ECC_SM4_CBC_SM3 (0xE013),
// ECDHE_SM4_GCM_SM3 (0xE051), ECDHE_SM4_CBC_SM3 (0xE011). Resumption is by
// session ID only; session tickets, renegotiation and compression are not
// supported.
package tlcp

import (
	"crypto"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/emmansun/gmsm/ecdh"
	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
	"github.com/gmgate/gmgate/internal/peerverify"
	"github.com/gmgate/gmgate/pki"
)

// VersionTLCP is the TLCP protocol version (GB/T 38636-2020), used in
// hello messages and on every record.
const VersionTLCP uint16 = 0x0101

// Cipher suite identifiers (GB/T 38636-2020).
const (
	ECDHE_SM4_CBC_SM3 uint16 = 0xE011
	ECDHE_SM4_GCM_SM3 uint16 = 0xE051
	ECC_SM4_CBC_SM3   uint16 = 0xE013
	ECC_SM4_GCM_SM3   uint16 = 0xE053
)

const (
	maxPlaintext        = 16384        // 2^14
	maxCiphertext       = 16384 + 2048 // 2^14 + 2048
	recordHeaderLen     = 5
	defaultMaxHandshake = 65536
	maxUselessRecords   = 16
	sessionIDLen        = 32
	masterSecretLen     = 48
	finishedLen         = 12
	curveSM2            = 41
)

// ClientAuthType declares the server's policy for TLCP client authentication.
type ClientAuthType int

// Client authentication modes, with the same meaning as in crypto/tls.
const (
	// NoClientCert: no client certificate is requested (except for the ECDHE
	// suites, which always request one because the key exchange needs the
	// client's encryption key).
	NoClientCert ClientAuthType = iota
	// RequestClientCert: a certificate is requested but not required or verified.
	RequestClientCert
	// RequireAnyClientCert: a certificate is required but not verified.
	RequireAnyClientCert
	// VerifyClientCertIfGiven: a certificate is verified if one is sent.
	VerifyClientCertIfGiven
	// RequireAndVerifyClientCert: a certificate is required and verified.
	RequireAndVerifyClientCert
)

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

// SM2KeyAgreement is implemented by encryption keys that can take part in the SM2 key exchange
// (GB/T 32918.3) used by the ECDHE suites. *sm2.PrivateKey is supported directly.
type SM2KeyAgreement interface {
	SM2MQV(ephemeral *ecdh.PrivateKey, peerStatic, peerEphemeral *ecdh.PublicKey) (*ecdh.PublicKey, error)
}

// Certificate is one certificate chain with its private key.
type Certificate struct {
	// Certificate is the chain, leaf first, each entry DER.
	Certificate [][]byte
	// PrivateKey is the leaf's private key.
	//
	// For a signing certificate it must implement crypto.Signer. It is called
	// as Sign(rand, msg, sm2.DefaultSM2SignerOpts): msg is the raw message and
	// the signer computes e = SM3(Z_A || msg) with the default user ID
	// "1234567812345678", exactly as *sm2.PrivateKey does with those options.
	//
	// For an encryption certificate it must implement crypto.Decrypter. It is
	// called as Decrypt(rand, ciphertext, opts) with opts
	// sm2.ASN1DecrypterOpts for DER ciphertexts or
	// sm2.NewPlainDecrypterOpts(sm2.C1C3C2) for raw 04||x||y||C3||C2 ones.
	// For the ECDHE suites it must also implement SM2KeyAgreement, or be a
	// *sm2.PrivateKey.
	PrivateKey crypto.PrivateKey
	// Leaf is the parsed leaf; it is filled in once if nil.
	Leaf *smx509.Certificate
}

// CertificatePair is a signing certificate and an encryption certificate
// used together. A pair returned by GetCertificate should be returned as the
// same pointer every time: the derived state is computed once per pair.
type CertificatePair struct {
	Sign Certificate
	Enc  Certificate

	once sync.Once
	prep *preparedPair
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

// ConnectionState describes an established TLCP connection.
type ConnectionState struct {
	Version           uint16
	HandshakeComplete bool
	DidResume         bool
	CipherSuite       uint16
	ServerName        string
	SessionID         []byte
	// PeerCertificates is the peer's chain as sent: [0] sign, [1] enc, then CAs.
	// Unless VerifiedChains is non-empty it is unauthenticated (client_auth
	// request/require, or ECDHE's mandatory client pair): never an identity.
	PeerCertificates []*smx509.Certificate
	// PeerSignCertificate and PeerEncCertificate are the peer's two leaves
	// when, and only when, their chains were verified (VerifiedChains is
	// non-empty); nil otherwise. They are what may identify the peer.
	PeerSignCertificate *smx509.Certificate
	PeerEncCertificate  *smx509.Certificate
	// VerifiedChains holds the verified chains of the peer's signing certificate.
	VerifiedChains [][]*smx509.Certificate
}

// Config configures a TLCP client or server. A Config may be reused for many
// connections and must not be modified or copied after first use.
type Config struct {
	// Rand is the entropy source; crypto/rand.Reader if nil.
	Rand io.Reader
	// Time returns the current time; time.Now if nil.
	Time func() time.Time

	// SignCertificate and EncCertificate are the local certificate pair: for
	// a server always needed (unless GetCertificate is set), for a client
	// only for client authentication and the ECDHE suites.
	SignCertificate Certificate
	EncCertificate  Certificate
	// GetCertificate, if set on a server, picks the pair by ClientHello
	// (typically by SNI). Returning nil falls back to the configured pair.
	GetCertificate func(*ClientHelloInfo) (*CertificatePair, error)

	// RootCAs verifies servers (client side). ClientCAs verifies clients
	// (server side). Nil pools make every peer chain unknown.
	RootCAs   *smx509.CertPool
	ClientCAs *smx509.CertPool
	// ClientAuth is the server's client authentication policy.
	ClientAuth ClientAuthType
	// VerifyPeerCertificate, if set, is called after normal verification
	// (or instead of it when verification is skipped) with the raw peer
	// certificates and the verified chains of the signing certificate,
	// followed by those of the encryption certificate (a revocation check
	// must cover both keys), on full handshakes and before resumption. A
	// non-nil error aborts the handshake with a bad_certificate alert, or
	// certificate_revoked if the error wraps ErrCertificateRevoked.
	VerifyPeerCertificate func(rawCerts [][]byte, verifiedChains [][]*smx509.Certificate) error
	// ServerName is, for a client, the host name checked against the
	// server's signing certificate and sent as SNI (when it is not an IP).
	ServerName string
	// InsecureSkipVerify disables chain and host name verification on the
	// client. Key usage is still checked.
	InsecureSkipVerify bool

	// CipherSuites lists enabled suites in preference order; nil means the
	// default order ECC_SM4_GCM_SM3, ECC_SM4_CBC_SM3, ECDHE_SM4_GCM_SM3,
	// ECDHE_SM4_CBC_SM3.
	CipherSuites []uint16
	// PreferClientCipherSuites makes the server follow the client's order.
	PreferClientCipherSuites bool

	// SessionCache enables session-ID resumption. Servers key it by session
	// ID, clients by server name or address. Nil disables resumption.
	SessionCache SessionCache
	// HandshakeTimeout bounds the handshake when non-zero.
	HandshakeTimeout time.Duration
	// MaxHandshakeMessageSize bounds one handshake message; default 64 KiB.
	MaxHandshakeMessageSize int

	// ECDHEParamsAsVector makes the client send the ECDHE ClientKeyExchange
	// with a 2-byte length prefix (71 bytes). The default is the 69-byte
	// form that Tongsuo and gotlcp send. Servers accept both.
	ECDHEParamsAsVector bool
	// ECCCiphertextRaw makes the client send the ECC pre-master secret as a
	// raw 04||x||y||C3||C2 SM2 ciphertext (needed by tjfoc gmtls servers)
	// instead of DER. Servers accept both.
	ECCCiphertextRaw bool

	mu         sync.Mutex
	pair       *CertificatePair
	clientCAsN [][]byte
	caNamesSet bool

	verifyCache peerverify.Cache
}

// ErrCertificateRevoked may be wrapped by VerifyPeerCertificate errors to
// send a certificate_revoked alert.
var ErrCertificateRevoked = errors.New("tlcp: certificate revoked")

var defaultSuites = []uint16{ECC_SM4_GCM_SM3, ECC_SM4_CBC_SM3, ECDHE_SM4_GCM_SM3, ECDHE_SM4_CBC_SM3}

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

// localPair returns the Config's own certificate pair (prepared lazily).
func (c *Config) localPair() *CertificatePair {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pair == nil {
		c.pair = &CertificatePair{Sign: c.SignCertificate, Enc: c.EncCertificate}
	}
	return c.pair
}

func (c *Config) hasLocalPair() bool {
	return len(c.SignCertificate.Certificate) > 0
}

// clientCANames returns the DER subjects of ClientCAs, computed once.
func (c *Config) clientCANames() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.caNamesSet {
		c.caNamesSet = true
		if c.ClientCAs != nil {
			//lint:ignore SA1019 Subjects is fine for pools built from certificates.
			c.clientCAsN = c.ClientCAs.Subjects()
		}
	}
	return c.clientCAsN
}

// preparedPair is everything about a local pair that is computed once.
type preparedPair struct {
	signLeaf, encLeaf *smx509.Certificate
	signer            crypto.Signer
	decrypter         crypto.Decrypter
	agreement         SM2KeyAgreement // nil if ECDHE is not possible
	encPubECDH        *ecdh.PublicKey // the enc certificate's key for SM2 key exchange
	certMsg           []byte          // marshalled Certificate handshake message
	eccSKESuffix      []byte          // uint24(len(encDER)) || encDER
	rawCerts          [][]byte        // what we send
}

// prepare parses and checks a local pair once.
func (p *CertificatePair) prepare() (*preparedPair, error) {
	p.once.Do(func() { p.prep, p.err = preparePair(&p.Sign, &p.Enc) })
	return p.prep, p.err
}

func leafOf(c *Certificate) (*smx509.Certificate, error) {
	if c.Leaf != nil {
		return c.Leaf, nil
	}
	if len(c.Certificate) == 0 {
		return nil, errors.New("tlcp: certificate has no chain")
	}
	return smx509.ParseCertificate(c.Certificate[0])
}

func preparePair(sign, enc *Certificate) (*preparedPair, error) {
	if len(sign.Certificate) == 0 || len(enc.Certificate) == 0 {
		return nil, errors.New("tlcp: both a signing and an encryption certificate are required")
	}
	sl, err := leafOf(sign)
	if err != nil {
		return nil, errors.New("tlcp: cannot parse signing certificate: " + err.Error())
	}
	el, err := leafOf(enc)
	if err != nil {
		return nil, errors.New("tlcp: cannot parse encryption certificate: " + err.Error())
	}
	if err := pki.CheckUsage(sl, pki.RoleSign); err != nil {
		return nil, fmt.Errorf("tlcp: signing certificate: %w", err)
	}
	if err := pki.CheckUsage(el, pki.RoleEnc); err != nil {
		return nil, fmt.Errorf("tlcp: encryption certificate: %w", err)
	}
	signer, ok := sign.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, errors.New("tlcp: signing key does not implement crypto.Signer")
	}
	dec, ok := enc.PrivateKey.(crypto.Decrypter)
	if !ok {
		return nil, errors.New("tlcp: encryption key does not implement crypto.Decrypter")
	}
	spub, ok := sl.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !spub.Equal(signer.Public()) {
		return nil, errors.New("tlcp: signing key does not match the signing certificate")
	}
	epub, ok := el.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !epub.Equal(dec.Public()) {
		return nil, errors.New("tlcp: encryption key does not match the encryption certificate")
	}
	p := &preparedPair{signLeaf: sl, encLeaf: el, signer: signer, decrypter: dec}
	p.agreement = keyAgreementOf(enc.PrivateKey)
	if pub, err := ecdhPublic(el); err == nil {
		p.encPubECDH = pub
	} else {
		p.agreement = nil
	}
	// Certificate message: sign, enc, then the signing chain (or the enc chain).
	certs := [][]byte{sign.Certificate[0], enc.Certificate[0]}
	if len(sign.Certificate) > 1 {
		certs = append(certs, sign.Certificate[1:]...)
	} else if len(enc.Certificate) > 1 {
		certs = append(certs, enc.Certificate[1:]...)
	}
	p.rawCerts = certs
	p.certMsg = (&certificateMsg{certificates: certs}).marshal()
	ed := enc.Certificate[0]
	p.eccSKESuffix = append([]byte{byte(len(ed) >> 16), byte(len(ed) >> 8), byte(len(ed))}, ed...)
	return p, nil
}

// keyAgreementOf returns the SM2 key agreement capability of an enc key.
func keyAgreementOf(k crypto.PrivateKey) SM2KeyAgreement {
	switch v := k.(type) {
	case SM2KeyAgreement:
		return v
	case *sm2.PrivateKey:
		e, err := v.ECDH()
		if err != nil {
			return nil
		}
		return sm2Agreement{e}
	}
	return nil
}

type sm2Agreement struct{ k *ecdh.PrivateKey }

func (a sm2Agreement) SM2MQV(eph *ecdh.PrivateKey, peerStatic, peerEph *ecdh.PublicKey) (*ecdh.PublicKey, error) {
	return a.k.SM2MQV(eph, peerStatic, peerEph)
}
