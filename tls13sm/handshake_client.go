package tls13sm

import (
	"context"
	"crypto/hmac"
	"errors"
	"hash"
	"io"
	"net"
	"slices"
	"time"

	"github.com/emmansun/gmsm/ecdh"
)

type clientHandshakeState struct {
	c          *Conn
	ctx        context.Context
	hello      *clientHelloMsg
	priv       *ecdh.PrivateKey
	transcript hash.Hash
	session    *ClientSession
	cacheKey   string
	suite      uint16
	usingPSK   bool
	certReq    *certificateRequestMsg
}

// Client returns a client-side connection over conn. config must set
// ServerName or InsecureSkipVerify.
func Client(conn net.Conn, config *Config) *Conn {
	c := &Conn{conn: conn, config: config, isClient: true}
	c.handshakeFn = c.clientHandshake
	return c
}

func (c *Conn) clientCacheKey() string {
	if c.config.ServerName != "" {
		return c.config.ServerName
	}
	return c.conn.RemoteAddr().String()
}

// clientHandshake runs the client side of the handshake. c.in is held.
func (c *Conn) clientHandshake(ctx context.Context) error {
	if c.config.ServerName == "" && !c.config.InsecureSkipVerify {
		return errors.New("tls13sm: either ServerName or InsecureSkipVerify must be set")
	}
	hs := &clientHandshakeState{c: c, ctx: ctx, cacheKey: c.clientCacheKey()}
	priv, err := ecdh.P256().GenerateKey(c.config.rand())
	if err != nil {
		return err
	}
	hs.priv = priv
	hello := &clientHelloMsg{
		vers:                versionTLS12,
		random:              make([]byte, 32),
		sessionID:           make([]byte, 32), // middlebox compatibility mode (RFC 8446 D.4)
		cipherSuites:        c.config.suites(),
		compressionMethods:  []uint8{0},
		supportedVersions:   []uint16{VersionTLS13},
		supportedGroups:     []uint16{groupCurveSM2},
		signatureAlgorithms: []uint16{schemeSM2SM3},
		keyShares:           []keyShare{{group: groupCurveSM2, data: priv.PublicKey().Bytes()}},
		alpnProtocols:       c.config.NextProtos,
	}
	if net.ParseIP(c.config.ServerName) == nil {
		hello.serverName = c.config.ServerName
	}
	if _, err := io.ReadFull(c.config.rand(), hello.random); err != nil {
		return err
	}
	if _, err := io.ReadFull(c.config.rand(), hello.sessionID); err != nil {
		return err
	}
	hs.hello = hello
	hs.transcript = newHash()
	hs.offerSession()
	if hello.marshal() == nil {
		return errors.New("tls13sm: cannot marshal ClientHello")
	}
	hs.setBinders()
	if err := c.writeHandshake(hello.raw, nil); err != nil {
		return err
	}
	c.sentCH = true

	sh := new(serverHelloMsg)
	if err := c.readHandshake(typeServerHello, sh); err != nil {
		return err
	}
	if sh.isHRR() {
		if err := hs.processHelloRetryRequest(sh); err != nil {
			return err
		}
		sh = new(serverHelloMsg)
		if err := c.readHandshake(typeServerHello, sh); err != nil {
			return err
		}
		if sh.isHRR() {
			return newAlert(AlertUnexpectedMessage, "second HelloRetryRequest")
		}
	} else {
		hs.transcript.Write(hello.raw)
	}
	return hs.processServerHello(sh)
}

// offerSession adds a cached ticket as a PSK identity, when one is usable.
func (hs *clientHandshakeState) offerSession() {
	c := hs.c
	if c.config.SessionTicketsDisabled || c.config.ClientSessionCache == nil {
		return
	}
	hs.hello.pskModes = []uint8{pskModeDHE}
	s, ok := c.config.ClientSessionCache.Get(hs.cacheKey)
	if !ok || s == nil {
		return
	}
	// Tickets are used once (RFC 8446 C.4): the resumed connection brings a new one.
	c.config.ClientSessionCache.Put(hs.cacheKey, nil)
	now := c.config.now()
	if now.Before(s.receivedAt) || now.Sub(s.receivedAt) > s.lifetime || !slices.Contains(hs.hello.cipherSuites, s.suite) ||
		s.serverName != c.config.ServerName {
		return
	}
	// The server's certificate is checked again: time and revocation may have changed.
	if err := c.verifyPeer(s.peerCerts, true, !c.config.InsecureSkipVerify); err != nil {
		c.peerCertificates, c.verifiedChains = nil, nil
		return
	}
	age := uint32(now.Sub(s.receivedAt) / time.Millisecond)
	hs.session = s
	hs.hello.pskIdentities = []pskIdentity{{label: s.label, obfuscatedTicketAge: age + s.ageAdd}}
	hs.hello.pskBinders = [][]byte{make([]byte, hashLen)}
}

// setBinders computes the PSK binder over the current transcript and the
// truncated hello, and patches it into hello.raw.
func (hs *clientHandshakeState) setBinders() {
	if hs.session == nil {
		return
	}
	b := pskBinder(hs.session.psk, hs.transcript, hs.hello.truncatedForBinders())
	hs.hello.setBinders([][]byte{b})
}

// processHelloRetryRequest answers a HelloRetryRequest. We only ever offer
// curveSM2 and always send its share, so the only retry that can make sense
// is one carrying a cookie.
func (hs *clientHandshakeState) processHelloRetryRequest(hrr *serverHelloMsg) error {
	c := hs.c
	if hrr.supportedVersion != VersionTLS13 {
		return newAlert(AlertIllegalParameter, "HelloRetryRequest without TLS 1.3")
	}
	if !slices.Contains(hs.hello.cipherSuites, hrr.cipherSuite) {
		return newAlert(AlertIllegalParameter, "HelloRetryRequest selected a suite we did not offer")
	}
	if string(hrr.sessionID) != string(hs.hello.sessionID) || hrr.compressionMethod != 0 {
		return newAlert(AlertIllegalParameter, "HelloRetryRequest does not echo our session ID")
	}
	for _, e := range hrr.extensions {
		if e != extSupportedVersions && e != extKeyShare && e != extCookie {
			return newAlert(AlertUnsupportedExtension, "HelloRetryRequest with an extension we did not offer")
		}
	}
	if hrr.selectedGroup != 0 {
		// curveSM2 is our only group and its share was sent already (RFC 8446 4.1.4).
		return newAlert(AlertIllegalParameter, "HelloRetryRequest selects a group we cannot offer")
	}
	if len(hrr.cookie) == 0 {
		return newAlert(AlertIllegalParameter, "HelloRetryRequest would not change the ClientHello")
	}
	c.didHRR = true
	hs.suite = hrr.cipherSuite
	hs.transcript = messageHashTranscript(hs.hello.raw)
	hs.transcript.Write(hrr.raw)
	hs.hello.cookie = hrr.cookie
	if hs.session != nil && hs.session.suite != hrr.cipherSuite {
		hs.session = nil
		hs.hello.pskIdentities, hs.hello.pskBinders = nil, nil
	}
	if hs.hello.marshal() == nil {
		return errors.New("tls13sm: cannot marshal ClientHello")
	}
	hs.setBinders()
	if err := c.writeHandshake(hs.hello.raw, hs.transcript); err != nil {
		return err
	}
	return nil
}

func (hs *clientHandshakeState) processServerHello(sh *serverHelloMsg) error {
	c := hs.c
	if sh.supportedVersion == 0 {
		return newAlert(AlertProtocolVersion, "server does not speak TLS 1.3")
	}
	if sh.supportedVersion != VersionTLS13 || sh.vers != versionTLS12 {
		return newAlert(AlertIllegalParameter, "server selected a version we did not offer")
	}
	if sh.compressionMethod != 0 || string(sh.sessionID) != string(hs.hello.sessionID) {
		return newAlert(AlertIllegalParameter, "ServerHello does not echo our session ID or uses compression")
	}
	if !slices.Contains(hs.hello.cipherSuites, sh.cipherSuite) || (hs.suite != 0 && hs.suite != sh.cipherSuite) {
		return newAlert(AlertIllegalParameter, "server selected a suite we did not offer")
	}
	for _, e := range sh.extensions {
		if e != extSupportedVersions && e != extKeyShare && e != extPreSharedKey {
			return newAlert(AlertUnsupportedExtension, "ServerHello with an extension we did not offer")
		}
	}
	if sh.serverShare.group != groupCurveSM2 {
		return newAlert(AlertIllegalParameter, "server key share is not curveSM2")
	}
	if sh.hasPSK {
		if hs.session == nil || sh.selectedIdentity != 0 || hs.session.suite != sh.cipherSuite {
			return newAlert(AlertIllegalParameter, "server selected a PSK we did not offer")
		}
		hs.usingPSK = true
	}
	hs.suite = sh.cipherSuite
	peer, err := ecdh.P256().NewPublicKey(sh.serverShare.data)
	if err != nil {
		return newAlert(AlertIllegalParameter, "invalid curveSM2 key share")
	}
	shared, err := hs.priv.ECDH(peer)
	if err != nil {
		return newAlert(AlertIllegalParameter, "invalid curveSM2 key share")
	}
	defer zero(shared)
	hs.transcript.Write(sh.raw)

	var psk []byte
	if hs.usingPSK {
		psk = hs.session.psk
	} else {
		c.peerCertificates, c.verifiedChains = nil, nil
	}
	early := earlySecret(psk)
	defer zero(early)
	hsSecret := handshakeSecret(early, shared)
	defer zero(hsSecret)
	cHS := deriveSecret(hsSecret, labelClientHandshake, hs.transcript)
	defer zero(cHS)
	sHS := deriveSecret(hsSecret, labelServerHandshake, hs.transcript)
	defer zero(sHS)
	c.config.logKey("CLIENT_HANDSHAKE_TRAFFIC_SECRET", hs.hello.random, cHS)
	c.config.logKey("SERVER_HANDSHAKE_TRAFFIC_SECRET", hs.hello.random, sHS)
	if err := c.setReadSecret(hs.suite, sHS); err != nil {
		return err
	}
	if err := c.setWriteSecret(hs.suite, cHS); err != nil {
		return wrapAlert(AlertInternalError, err)
	}

	ee := new(encryptedExtensionsMsg)
	if err := c.readHandshake(typeEncryptedExtensions, ee); err != nil {
		return err
	}
	for _, e := range ee.extensions {
		switch e {
		case extServerName, extSupportedGroups:
		case extALPN:
			if !slices.Contains(c.config.NextProtos, ee.alpnProtocol) {
				return newAlert(AlertUnsupportedExtension, "server selected an ALPN protocol we did not offer")
			}
		case extEarlyData:
			return newAlert(AlertUnsupportedExtension, "server accepted early data we did not send")
		default:
			return newAlert(AlertUnsupportedExtension, "EncryptedExtensions with an extension we did not offer")
		}
	}
	hs.transcript.Write(ee.raw)
	c.alpn = ee.alpnProtocol

	if !hs.usingPSK {
		if err := hs.readServerCertificate(); err != nil {
			return err
		}
	} else {
		c.didResume = true
	}
	fin := new(finishedMsg)
	if err := c.readHandshake(typeFinished, fin); err != nil {
		return err
	}
	if !hmac.Equal(fin.verifyData, finishedMAC(sHS, hs.transcript.Sum(nil))) {
		return newAlert(AlertDecryptError, "server Finished does not verify")
	}
	hs.transcript.Write(fin.raw)
	c.peerFin = true

	master := masterSecret(hsSecret)
	defer zero(master)
	cAP := deriveSecret(master, labelClientApplication, hs.transcript)
	defer zero(cAP)
	sAP := deriveSecret(master, labelServerApplication, hs.transcript)
	defer zero(sAP)

	c.config.logKey("CLIENT_TRAFFIC_SECRET_0", hs.hello.random, cAP)
	c.config.logKey("SERVER_TRAFFIC_SECRET_0", hs.hello.random, sAP)
	c.startFlight()
	if err := c.writeCCS(); err != nil {
		return err
	}
	if hs.certReq != nil {
		if err := hs.sendClientCertificate(); err != nil {
			return err
		}
	}
	cfin := &finishedMsg{verifyData: finishedMAC(cHS, hs.transcript.Sum(nil))}
	if err := c.writeHandshake(cfin.marshal(), hs.transcript); err != nil {
		return err
	}
	if err := c.flush(); err != nil {
		return err
	}
	if err := c.setWriteSecret(hs.suite, cAP); err != nil {
		return wrapAlert(AlertInternalError, err)
	}
	if err := c.setReadSecret(hs.suite, sAP); err != nil {
		return err
	}
	c.cipherSuite = hs.suite
	if !c.config.SessionTicketsDisabled && c.config.ClientSessionCache != nil {
		c.resumptionSecret = deriveSecret(master, labelResumption, hs.transcript)
	}
	return nil
}

func (hs *clientHandshakeState) readServerCertificate() error {
	c := hs.c
	data, err := c.readHandshakeBytes()
	if err != nil {
		return err
	}
	if data[0] == typeCertificateRequest {
		req := new(certificateRequestMsg)
		if !req.unmarshal(data) {
			return newAlert(AlertDecodeError, "malformed CertificateRequest")
		}
		if len(req.context) != 0 {
			return newAlert(AlertIllegalParameter, "CertificateRequest with a context in the main handshake")
		}
		hs.transcript.Write(req.raw)
		hs.certReq = req
		if data, err = c.readHandshakeBytes(); err != nil {
			return err
		}
	}
	if data[0] != typeCertificate {
		return newAlert(AlertUnexpectedMessage, "expected the server Certificate")
	}
	cm := new(certificateMsg)
	if !cm.unmarshal(data) {
		return newAlert(AlertDecodeError, "malformed Certificate")
	}
	if len(cm.context) != 0 {
		return newAlert(AlertIllegalParameter, "server Certificate with a request context")
	}
	if len(cm.certificates) == 0 {
		return newAlert(AlertDecodeError, "server sent no certificate")
	}
	if err := c.verifyPeer(cm.certificates, true, !c.config.InsecureSkipVerify); err != nil {
		return err
	}
	hs.transcript.Write(cm.raw)
	cv := new(certificateVerifyMsg)
	if err := c.readHandshake(typeCertificateVerify, cv); err != nil {
		return err
	}
	pub, err := sm2PublicKey(c.peerCertificates[0])
	if err != nil {
		return wrapAlert(AlertUnsupportedCertificate, err)
	}
	if err := verifyCertificateVerify(pub, cv, serverSignatureContext, hs.transcript); err != nil {
		return err
	}
	hs.transcript.Write(cv.raw)
	return nil
}

// sendClientCertificate answers a CertificateRequest: our certificate when
// we have one and the server accepts sm2sig_sm3, an empty list otherwise.
func (hs *clientHandshakeState) sendClientCertificate() error {
	c := hs.c
	var cert *preparedCert
	if c.config.Certificate != nil && slices.Contains(hs.certReq.signatureAlgorithms, schemeSM2SM3) {
		p, err := c.config.Certificate.prepare()
		if err != nil {
			return wrapAlert(AlertInternalError, err)
		}
		cert = p
	}
	cm := &certificateMsg{}
	if cert != nil {
		cm.certificates = cert.certMsg
	}
	if err := c.writeHandshake(cm.marshal(), hs.transcript); err != nil {
		return err
	}
	if cert == nil {
		return nil
	}
	sig, err := signCertificateVerify(c.config.rand(), cert, clientSignatureContext, hs.transcript)
	if err != nil {
		return err
	}
	return c.writeHandshake((&certificateVerifyMsg{scheme: schemeSM2SM3, signature: sig}).marshal(), hs.transcript)
}

// handleNewSessionTicket turns a ticket into a cached session. c.in is held.
func (c *Conn) handleNewSessionTicket(m *newSessionTicketMsg) error {
	if m.lifetime > uint32(maxTicketLife/time.Second) {
		return c.inErr(c.fatal(AlertIllegalParameter, errors.New("ticket lifetime over 7 days")))
	}
	if c.resumptionSecret == nil || m.lifetime == 0 || c.config.ClientSessionCache == nil {
		return nil
	}
	c.ticketsSeen++
	if c.ticketsSeen > maxTicketsAccepted {
		return nil
	}
	s := &ClientSession{
		suite:      c.cipherSuite,
		psk:        resumptionPSK(c.resumptionSecret, m.nonce),
		label:      append([]byte(nil), m.label...),
		ageAdd:     m.ageAdd,
		lifetime:   time.Duration(m.lifetime) * time.Second,
		receivedAt: c.config.now(),
		serverName: c.config.ServerName,
		alpn:       c.alpn,
	}
	for _, cert := range c.peerCertificates {
		s.peerCerts = append(s.peerCerts, cert.Raw)
	}
	c.config.ClientSessionCache.Put(c.clientCacheKey(), s)
	return nil
}
