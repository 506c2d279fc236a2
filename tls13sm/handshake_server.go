package tls13sm

import (
	"context"
	"crypto/hmac"
	"encoding/binary"
	"fmt"
	"hash"
	"io"
	"net"
	"slices"

	"github.com/emmansun/gmsm/ecdh"
)

type serverHandshakeState struct {
	c          *Conn
	ctx        context.Context
	hello      *clientHelloMsg
	suite      uint16
	cert       *preparedCert
	share      []byte // the client's curveSM2 share
	transcript hash.Hash
	sentHRR    bool
	session    *sessionState // accepted PSK session, or nil
	psk        []byte
	alpn       string
}

// serverHandshake runs the server side of the handshake. c.in is held.
func (c *Conn) serverHandshake(ctx context.Context) error {
	hs := &serverHandshakeState{c: c, ctx: ctx}
	hello := new(clientHelloMsg)
	if err := c.readHandshake(typeClientHello, hello); err != nil {
		return err
	}
	c.sentCH = true
	hs.hello = hello
	if err := hs.processClientHello(); err != nil {
		return err
	}
	// Nothing may follow the final ClientHello in its record: the next
	// records are under the handshake keys (RFC 8446 5.1).
	if err := c.keyChangeBoundary(); err != nil {
		return err
	}
	if err := hs.checkForResumption(); err != nil {
		return err
	}
	hs.transcript.Write(hs.hello.raw)
	return hs.finish()
}

// processClientHello applies the RFC 8998 profile to the first ClientHello
// and sends a HelloRetryRequest when the client offered no curveSM2 share.
func (hs *serverHandshakeState) processClientHello() error {
	c, hello := hs.c, hs.hello
	if err := checkHelloProfile(hello); err != nil {
		return err
	}
	for _, s := range c.config.suites() {
		if slices.Contains(hello.cipherSuites, s) {
			hs.suite = s
			break
		}
	}
	if hs.suite == 0 {
		return newAlert(AlertHandshakeFailure, "client offered no enabled RFC 8998 cipher suite")
	}
	if hello.earlyData {
		// Our tickets never allow early data, so a client that sends it breaks the protocol.
		return newAlert(AlertIllegalParameter, "early data offered but never allowed")
	}
	if err := hs.pickCertificate(); err != nil {
		return err
	}
	if err := hs.negotiateALPN(); err != nil {
		return err
	}
	hs.transcript = newHash()
	if hs.share = findShare(hello.keyShares); hs.share == nil {
		return hs.doHelloRetryRequest()
	}
	return nil
}

// checkHelloProfile refuses what the strict RFC 8998 profile does not allow.
func checkHelloProfile(hello *clientHelloMsg) error {
	if !slices.Contains(hello.supportedVersions, VersionTLS13) {
		return newAlert(AlertProtocolVersion, "client does not offer TLS 1.3")
	}
	if len(hello.compressionMethods) != 1 || hello.compressionMethods[0] != 0 {
		return newAlert(AlertIllegalParameter, "TLS 1.3 ClientHello with compression")
	}
	if hello.pskNotLast() {
		return newAlert(AlertIllegalParameter, "pre_shared_key is not the last extension")
	}
	if !hello.has(extSignatureAlgorithms) {
		return newAlert(AlertMissingExtension, "no signature_algorithms extension")
	}
	if !slices.Contains(hello.signatureAlgorithms, schemeSM2SM3) {
		return newAlert(AlertHandshakeFailure, "client does not offer sm2sig_sm3")
	}
	if hello.has(extSignatureAlgorithmsCert) && !slices.Contains(hello.signatureAlgorithmsCert, schemeSM2SM3) {
		return newAlert(AlertHandshakeFailure, "client does not accept SM2-signed certificates")
	}
	if !hello.has(extSupportedGroups) {
		return newAlert(AlertMissingExtension, "no supported_groups extension")
	}
	if !hello.has(extKeyShare) {
		return newAlert(AlertMissingExtension, "no key_share extension")
	}
	if !slices.Contains(hello.supportedGroups, groupCurveSM2) {
		return newAlert(AlertHandshakeFailure, "client does not offer curveSM2")
	}
	seen := make(map[uint16]bool)
	for _, ks := range hello.keyShares {
		if seen[ks.group] || !slices.Contains(hello.supportedGroups, ks.group) {
			return newAlert(AlertIllegalParameter, "key_share duplicates a group or names one not in supported_groups")
		}
		seen[ks.group] = true
	}
	if hello.has(extPreSharedKey) && !hello.has(extPSKModes) {
		return newAlert(AlertMissingExtension, "pre_shared_key without psk_key_exchange_modes")
	}
	return nil
}

func findShare(shares []keyShare) []byte {
	for _, ks := range shares {
		if ks.group == groupCurveSM2 {
			return ks.data
		}
	}
	return nil
}

func (hs *serverHandshakeState) pickCertificate() error {
	c := hs.c
	cert := c.config.Certificate
	if c.config.GetCertificate != nil {
		got, err := c.config.GetCertificate(&ClientHelloInfo{ServerName: hs.hello.serverName, CipherSuites: hs.hello.cipherSuites, Conn: c.conn})
		if err != nil {
			return wrapAlert(AlertInternalError, err)
		}
		if got != nil {
			cert = got
		}
	}
	if cert == nil {
		return wrapAlert(AlertInternalError, errNoCertificate)
	}
	p, err := cert.prepare()
	if err != nil {
		return wrapAlert(AlertInternalError, err)
	}
	hs.cert = p
	c.serverName = hs.hello.serverName
	return nil
}

func (hs *serverHandshakeState) negotiateALPN() error {
	protos := hs.c.config.NextProtos
	if len(protos) == 0 || len(hs.hello.alpnProtocols) == 0 {
		return nil
	}
	for _, p := range protos {
		if slices.Contains(hs.hello.alpnProtocols, p) {
			hs.alpn = p
			return nil
		}
	}
	return newAlert(AlertNoApplicationProtocol, "no ALPN protocol in common")
}

// doHelloRetryRequest asks for a curveSM2 share and reads the second
// ClientHello, which must differ from the first only as RFC 8446 4.1.2 allows.
func (hs *serverHandshakeState) doHelloRetryRequest() error {
	c := hs.c
	hs.transcript = messageHashTranscript(hs.hello.raw)
	hrr := &serverHelloMsg{
		vers:             versionTLS12,
		random:           helloRetryRequestRandom,
		sessionID:        hs.hello.sessionID,
		cipherSuite:      hs.suite,
		supportedVersion: VersionTLS13,
		selectedGroup:    groupCurveSM2,
	}
	c.startFlight()
	if err := c.writeHandshake(hrr.marshal(), hs.transcript); err != nil {
		return err
	}
	if len(hs.hello.sessionID) > 0 {
		if err := c.writeCCS(); err != nil {
			return err
		}
	}
	if err := c.flush(); err != nil {
		return err
	}
	hs.sentHRR = true
	c.didHRR = true

	first := hs.hello
	hello := new(clientHelloMsg)
	if err := c.readHandshake(typeClientHello, hello); err != nil {
		return err
	}
	if err := checkHelloProfile(hello); err != nil {
		return err
	}
	if len(hello.keyShares) != 1 || hello.keyShares[0].group != groupCurveSM2 {
		return newAlert(AlertIllegalParameter, "second ClientHello must carry exactly one curveSM2 share")
	}
	if !slices.Contains(hello.cipherSuites, hs.suite) || string(hello.sessionID) != string(first.sessionID) ||
		string(hello.random) != string(first.random) || hello.earlyData || hello.serverName != first.serverName ||
		!slices.Equal(hello.alpnProtocols, first.alpnProtocols) {
		return newAlert(AlertIllegalParameter, "second ClientHello changed more than the key share")
	}
	hs.hello = hello
	hs.share = hello.keyShares[0].data
	return nil
}

// checkForResumption accepts the first PSK identity when it is one of our
// tickets, still valid, for this server name, and its binder verifies.
// Anything else falls back to a full handshake, except a wrong binder
// (decrypt_error: the hello was tampered with or the client is broken).
func (hs *serverHandshakeState) checkForResumption() error {
	c, hello := hs.c, hs.hello
	if c.config.SessionTicketsDisabled || len(hello.pskIdentities) == 0 || !slices.Contains(hello.pskModes, pskModeDHE) {
		return nil
	}
	s := c.config.openTicket(hello.pskIdentities[0].label)
	if s == nil || !supportedSuite(s.suite) {
		return nil
	}
	now := c.config.now()
	created := int64(s.createdAt)
	if now.Unix() < created || now.Unix()-created > int64(s.lifetime) || s.lifetime == 0 {
		return nil
	}
	if s.serverName != hello.serverName || s.alpn != hs.alpn {
		return nil
	}
	if len(s.peerCerts) == 0 && c.config.ClientAuth.requiresCert() {
		return nil
	}
	if len(s.peerCerts) > 0 {
		// Time and revocation may have changed since the full handshake.
		if err := c.verifyPeer(s.peerCerts, false, c.config.ClientAuth.verifiesCert()); err != nil {
			c.peerCertificates, c.verifiedChains = nil, nil
			return nil
		}
	}
	want := pskBinder(s.psk, hs.transcript, hello.truncatedForBinders())
	if !hmac.Equal(want, hello.pskBinders[0]) {
		return newAlert(AlertDecryptError, "PSK binder does not verify")
	}
	hs.session, hs.psk = s, s.psk
	return nil
}

func (hs *serverHandshakeState) finish() error {
	c := hs.c
	curve := ecdh.P256()
	peer, err := curve.NewPublicKey(hs.share)
	if err != nil {
		return newAlert(AlertIllegalParameter, "invalid curveSM2 key share")
	}
	priv, err := curve.GenerateKey(c.config.rand())
	if err != nil {
		return wrapAlert(AlertInternalError, err)
	}
	shared, err := priv.ECDH(peer)
	if err != nil {
		return newAlert(AlertIllegalParameter, "invalid curveSM2 key share")
	}
	defer zero(shared)

	sh := &serverHelloMsg{
		vers:             versionTLS12,
		random:           make([]byte, 32),
		sessionID:        hs.hello.sessionID,
		cipherSuite:      hs.suite,
		supportedVersion: VersionTLS13,
		serverShare:      keyShare{group: groupCurveSM2, data: priv.PublicKey().Bytes()},
	}
	if _, err := io.ReadFull(c.config.rand(), sh.random); err != nil {
		return wrapAlert(AlertInternalError, err)
	}
	if hs.session != nil {
		sh.hasPSK, sh.selectedIdentity = true, 0
	}
	c.startFlight()
	if err := c.writeHandshake(sh.marshal(), hs.transcript); err != nil {
		return err
	}
	if !hs.sentHRR && len(hs.hello.sessionID) > 0 {
		if err := c.writeCCS(); err != nil {
			return err
		}
	}

	early := earlySecret(hs.psk)
	defer zero(early)
	hsSecret := handshakeSecret(early, shared)
	defer zero(hsSecret)
	cHS := deriveSecret(hsSecret, labelClientHandshake, hs.transcript)
	defer zero(cHS)
	sHS := deriveSecret(hsSecret, labelServerHandshake, hs.transcript)
	defer zero(sHS)
	c.config.logKey("CLIENT_HANDSHAKE_TRAFFIC_SECRET", hs.hello.random, cHS)
	c.config.logKey("SERVER_HANDSHAKE_TRAFFIC_SECRET", hs.hello.random, sHS)
	if err := c.setWriteSecret(hs.suite, sHS); err != nil {
		return wrapAlert(AlertInternalError, err)
	}
	if err := c.setReadSecret(hs.suite, cHS); err != nil {
		return err
	}

	if err := c.writeHandshake((&encryptedExtensionsMsg{alpnProtocol: hs.alpn}).marshal(), hs.transcript); err != nil {
		return err
	}
	requestCert := hs.session == nil && c.config.ClientAuth >= RequestClientCert
	if hs.session == nil {
		if requestCert {
			req := &certificateRequestMsg{
				signatureAlgorithms:    []uint16{schemeSM2SM3},
				certificateAuthorities: c.config.clientCANames(),
			}
			if err := c.writeHandshake(req.marshal(), hs.transcript); err != nil {
				return err
			}
		}
		if err := c.writeHandshake((&certificateMsg{certificates: hs.cert.certMsg}).marshal(), hs.transcript); err != nil {
			return err
		}
		sig, err := signCertificateVerify(c.config.rand(), hs.cert, serverSignatureContext, hs.transcript)
		if err != nil {
			return err
		}
		if err := c.writeHandshake((&certificateVerifyMsg{scheme: schemeSM2SM3, signature: sig}).marshal(), hs.transcript); err != nil {
			return err
		}
	} else {
		// The session's peer certificates were re-verified by checkForResumption.
		c.didResume = true
	}
	fin := &finishedMsg{verifyData: finishedMAC(sHS, hs.transcript.Sum(nil))}
	if err := c.writeHandshake(fin.marshal(), hs.transcript); err != nil {
		return err
	}
	if err := c.flush(); err != nil {
		return err
	}

	master := masterSecret(hsSecret)
	defer zero(master)
	cAP := deriveSecret(master, labelClientApplication, hs.transcript)
	defer zero(cAP)
	sAP := deriveSecret(master, labelServerApplication, hs.transcript)
	defer zero(sAP)
	c.config.logKey("CLIENT_TRAFFIC_SECRET_0", hs.hello.random, cAP)
	c.config.logKey("SERVER_TRAFFIC_SECRET_0", hs.hello.random, sAP)
	if err := c.setWriteSecret(hs.suite, sAP); err != nil {
		return wrapAlert(AlertInternalError, err)
	}

	if requestCert {
		if err := hs.readClientCertificate(); err != nil {
			return err
		}
	}
	cfin := new(finishedMsg)
	if err := c.readHandshake(typeFinished, cfin); err != nil {
		return err
	}
	if !hmac.Equal(cfin.verifyData, finishedMAC(cHS, hs.transcript.Sum(nil))) {
		return newAlert(AlertDecryptError, "client Finished does not verify")
	}
	hs.transcript.Write(cfin.raw)
	c.peerFin = true
	if err := c.setReadSecret(hs.suite, cAP); err != nil {
		return err
	}
	c.cipherSuite = hs.suite
	c.alpn = hs.alpn
	if !c.config.SessionTicketsDisabled {
		resMaster := deriveSecret(master, labelResumption, hs.transcript)
		defer zero(resMaster)
		if err := hs.sendSessionTicket(resMaster); err != nil {
			return err
		}
	}
	return nil
}

// readClientCertificate reads the client's Certificate and CertificateVerify.
func (hs *serverHandshakeState) readClientCertificate() error {
	c := hs.c
	cm := new(certificateMsg)
	if err := c.readHandshake(typeCertificate, cm); err != nil {
		return err
	}
	if len(cm.context) != 0 {
		return newAlert(AlertIllegalParameter, "client Certificate with a request context")
	}
	hs.transcript.Write(cm.raw)
	if len(cm.certificates) == 0 {
		if c.config.ClientAuth.requiresCert() {
			return newAlert(AlertCertificateRequired, "client sent no certificate")
		}
		return nil
	}
	if err := c.verifyPeer(cm.certificates, false, c.config.ClientAuth.verifiesCert()); err != nil {
		return err
	}
	cv := new(certificateVerifyMsg)
	if err := c.readHandshake(typeCertificateVerify, cv); err != nil {
		return err
	}
	pub, err := sm2PublicKey(c.peerCertificates[0])
	if err != nil {
		return wrapAlert(AlertUnsupportedCertificate, err)
	}
	if err := verifyCertificateVerify(pub, cv, clientSignatureContext, hs.transcript); err != nil {
		return err
	}
	hs.transcript.Write(cv.raw)
	return nil
}

func (hs *serverHandshakeState) sendSessionTicket(resMaster []byte) error {
	c := hs.c
	var nonce [8]byte // one ticket per connection: a fixed nonce is unique per resumption secret
	var r [4]byte
	if _, err := io.ReadFull(c.config.rand(), r[:]); err != nil {
		return wrapAlert(AlertInternalError, err)
	}
	life := c.config.ticketLifetime()
	s := &sessionState{
		suite:      hs.suite,
		createdAt:  uint64(c.config.now().Unix()),
		lifetime:   uint32(life.Seconds()),
		ageAdd:     binary.BigEndian.Uint32(r[:]),
		psk:        resumptionPSK(resMaster, nonce[:]),
		serverName: hs.hello.serverName,
		alpn:       hs.alpn,
	}
	defer zero(s.psk)
	for _, cert := range c.peerCertificates {
		s.peerCerts = append(s.peerCerts, cert.Raw)
	}
	label, err := c.config.sealTicket(s)
	if err != nil {
		return wrapAlert(AlertInternalError, fmt.Errorf("sealing session ticket: %w", err))
	}
	m := &newSessionTicketMsg{lifetime: s.lifetime, ageAdd: s.ageAdd, nonce: nonce[:], label: label}
	return c.writeHandshake(m.marshal(), nil)
}

// Server returns a server-side connection over conn.
func Server(conn net.Conn, config *Config) *Conn {
	c := &Conn{conn: conn, config: config}
	c.handshakeFn = c.serverHandshake
	return c
}
