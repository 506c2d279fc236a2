package tlcp

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/emmansun/gmsm/ecdh"
)

type serverHandshake struct {
	handshakeState
	ecdheKey    *ecdh.PrivateKey
	clientCerts [][]byte
}

func (c *Conn) serverHandshake(ctx context.Context) error {
	hs := &serverHandshake{handshakeState: newHandshakeState(c, false)}
	err := hs.run()
	if hs.ms != nil && hs.session == nil {
		zeroize(hs.ms)
	}
	if err != nil {
		return c.fail(err)
	}
	return nil
}

func (hs *serverHandshake) run() error {
	c := hs.c
	hello := new(clientHelloMsg)
	if err := hs.readMsg(typeClientHello, hello, "ClientHello"); err != nil {
		return err
	}
	hs.hello = hello
	c.vers = VersionTLCP
	if hello.vers != VersionTLCP {
		return newAlert(AlertProtocolVersion, fmt.Sprintf("client version %#04x is not TLCP", hello.vers))
	}
	hasNull := false
	for _, m := range hello.compressionMethods {
		if m == 0 {
			hasNull = true
		}
	}
	if !hasNull {
		return newAlert(AlertDecodeError, "ClientHello lacks null compression")
	}
	c.serverName = hello.serverName

	pair, err := hs.certificatePair()
	if err != nil {
		return err
	}
	hs.pair = pair

	if hs.checkResume() {
		return hs.doResume()
	}
	if hs.suite = hs.pickSuite(); hs.suite == nil {
		return newAlert(AlertHandshakeFailure, "no cipher suite in common")
	}
	return hs.doFull()
}

func (hs *serverHandshake) certificatePair() (*preparedPair, error) {
	c := hs.c
	var p *CertificatePair
	if c.config.GetCertificate != nil {
		cp, err := c.config.GetCertificate(&ClientHelloInfo{ServerName: hs.hello.serverName,
			CipherSuites: hs.hello.cipherSuites, Conn: c.conn})
		if err != nil {
			return nil, wrapAlert(AlertHandshakeFailure, err)
		}
		p = cp
	}
	if p == nil {
		if !c.config.hasLocalPair() {
			return nil, newAlert(AlertInternalError, "no server certificate configured")
		}
		p = c.config.localPair()
	}
	prep, err := p.prepare()
	if err != nil {
		return nil, wrapAlert(AlertInternalError, err)
	}
	return prep, nil
}

func (hs *serverHandshake) offered(id uint16) bool {
	for _, s := range hs.hello.cipherSuites {
		if s == id {
			return true
		}
	}
	return false
}

func (hs *serverHandshake) pickSuite() *cipherSuite {
	ours := hs.c.config.suites()
	usable := func(id uint16) *cipherSuite {
		s := suiteByID(id)
		if s == nil {
			return nil
		}
		if s.ecdhe && hs.pair.agreement == nil {
			return nil
		}
		return s
	}
	if hs.c.config.PreferClientCipherSuites {
		for _, id := range hs.hello.cipherSuites {
			for _, o := range ours {
				if o == id {
					if s := usable(id); s != nil {
						return s
					}
				}
			}
		}
		return nil
	}
	for _, o := range ours {
		if hs.offered(o) {
			if s := usable(o); s != nil {
				return s
			}
		}
	}
	return nil
}

func (hs *serverHandshake) checkResume() bool {
	c := hs.c
	if c.config.SessionCache == nil || len(hs.hello.sessionID) == 0 {
		return false
	}
	s, ok := c.config.SessionCache.Get(string(hs.hello.sessionID))
	if !ok || !hs.offered(s.CipherSuite) {
		return false
	}
	suiteOK := false
	for _, id := range c.config.suites() {
		if id == s.CipherSuite {
			suiteOK = true
		}
	}
	if !suiteOK || suiteByID(s.CipherSuite) == nil || s.ServerName != hs.hello.serverName {
		return false
	}
	if len(s.PeerCertificates) == 0 && (c.config.ClientAuth == RequireAnyClientCert || c.config.ClientAuth == RequireAndVerifyClientCert) {
		return false
	}
	if (c.config.ClientAuth == VerifyClientCertIfGiven || c.config.ClientAuth == RequireAndVerifyClientCert) &&
		len(s.PeerCertificates) > 0 && len(s.VerifiedChains) == 0 {
		return false // made under a mode that did not verify: no identity to resume
	}
	if err := c.recheckSession(s); err != nil {
		c.config.SessionCache.Put(string(hs.hello.sessionID), nil)
		return false
	}
	hs.session = s
	hs.suite = suiteByID(s.CipherSuite)
	return true
}

func (hs *serverHandshake) serverHello(sessionID []byte) ([]byte, error) {
	c := hs.c
	hs.serverRandom = make([]byte, 32)
	if _, err := io.ReadFull(c.config.rand(), hs.serverRandom); err != nil {
		return nil, wrapAlert(AlertInternalError, err)
	}
	sh := &serverHelloMsg{vers: VersionTLCP, random: hs.serverRandom, sessionID: sessionID,
		cipherSuite: hs.suite.id}
	return sh.marshal(), nil
}

func (hs *serverHandshake) doResume() error {
	c := hs.c
	c.didResume = true
	c.cipherSuite = hs.suite.id
	sh, err := hs.serverHello(hs.hello.sessionID)
	if err != nil {
		return err
	}
	c.buffering = true
	if err := c.writeHandshake(sh, &hs.fh); err != nil {
		return err
	}
	return hs.resume(true, hs.hello.sessionID)
}

func (hs *serverHandshake) doFull() error {
	c := hs.c
	c.cipherSuite = hs.suite.id
	var sid []byte
	if c.config.SessionCache != nil {
		sid = make([]byte, sessionIDLen)
		if _, err := io.ReadFull(c.config.rand(), sid); err != nil {
			return wrapAlert(AlertInternalError, err)
		}
	}
	sh, err := hs.serverHello(sid)
	if err != nil {
		return err
	}
	c.buffering = true
	if err := c.writeHandshake(sh, &hs.fh); err != nil {
		return err
	}
	if err := c.writeHandshake(hs.pair.certMsg, &hs.fh); err != nil {
		return err
	}
	ske, err := hs.serverKeyExchange()
	if err != nil {
		return err
	}
	if err := c.writeHandshake(ske, &hs.fh); err != nil {
		return err
	}
	auth := c.config.ClientAuth
	wantCert := auth != NoClientCert || hs.suite.ecdhe
	if wantCert {
		cr := &certificateRequestMsg{certificateTypes: []byte{1, 64}, certificateAuthorities: c.config.clientCANames()}
		if err := c.writeHandshake(cr.marshal(), &hs.fh); err != nil {
			return err
		}
	}
	if err := c.writeHandshake((&serverHelloDoneMsg{}).marshal(), &hs.fh); err != nil {
		return err
	}
	if err := c.flush(); err != nil {
		return err
	}

	if wantCert {
		var cm certificateMsg
		if err := hs.readMsg(typeCertificate, &cm, "client Certificate"); err != nil {
			return err
		}
		if err := hs.processClientCerts(cm.certificates); err != nil {
			return err
		}
	}
	var cke clientKeyExchangeMsg
	if err := hs.readMsg(typeClientKeyExchange, &cke, "ClientKeyExchange"); err != nil {
		return err
	}
	pms, err := hs.preMaster(&cke)
	if err != nil {
		return err
	}
	hs.ms = masterFromPreMaster(pms, hs.hello.random, hs.serverRandom)
	zeroize(pms)

	if len(hs.clientCerts) > 0 {
		sum := hs.fh.Sum()
		var cv certificateVerifyMsg
		raw, err := hs.readMsgUnrecorded(typeCertificateVerify, &cv, "CertificateVerify")
		if err != nil {
			return err
		}
		pub, err := sm2PublicKey(c.peerCertificates[0])
		if err != nil {
			return wrapAlert(AlertUnsupportedCertificate, err)
		}
		if !verifySignature(pub, sum, cv.signature) {
			return newAlert(AlertDecryptError, "client CertificateVerify signature is invalid")
		}
		hs.fh.Write(raw)
	}
	if err := hs.finish(false); err != nil {
		return err
	}
	c.sessionID = sid
	if sid != nil {
		c.config.SessionCache.Put(string(sid), hs.newSession(sid, c.serverName))
		hs.session = &SessionState{}
	}
	return nil
}

func (hs *serverHandshake) serverKeyExchange() ([]byte, error) {
	c := hs.c
	var msg, params []byte
	if hs.suite.ecdhe {
		k, err := ecdh.P256().GenerateKey(c.config.rand())
		if err != nil {
			return nil, wrapAlert(AlertInternalError, err)
		}
		hs.ecdheKey = k
		params = append(append([]byte{}, ecdhParamsPrefix...), k.PublicKey().Bytes()...)
		msg = ecdheSKEMessage(hs.hello.random, hs.serverRandom, params)
	} else {
		msg = eccSKEMessage(hs.hello.random, hs.serverRandom, hs.pair.eccSKESuffix)
	}
	sig, err := signMessage(hs.pair.signer, c.config.rand(), msg)
	if err != nil {
		return nil, wrapAlert(AlertInternalError, errors.New("signing ServerKeyExchange: "+err.Error()))
	}
	return (&serverKeyExchangeMsg{params: params, signature: sig}).marshal(), nil
}

func (hs *serverHandshake) processClientCerts(certs [][]byte) error {
	c := hs.c
	auth := c.config.ClientAuth
	if len(certs) == 0 {
		if hs.suite.ecdhe {
			return newAlert(AlertHandshakeFailure, "ECDHE requires client sign and enc certificates")
		}
		if auth == RequireAnyClientCert || auth == RequireAndVerifyClientCert {
			return newAlert(AlertHandshakeFailure, "client certificate required")
		}
		return nil
	}
	if hs.suite.ecdhe && len(certs) < 2 {
		return newAlert(AlertBadCertificate, "ECDHE requires client sign and enc certificates")
	}
	verify := auth == VerifyClientCertIfGiven || auth == RequireAndVerifyClientCert
	encChains, err := c.verifyPeer(certs, false, verify)
	if err != nil {
		return err
	}
	hs.encChains = encChains
	hs.clientCerts = certs
	return nil
}

func (hs *serverHandshake) preMaster(cke *clientKeyExchangeMsg) ([]byte, error) {
	c := hs.c
	if !hs.suite.ecdhe {
		ct, ok := cke.eccCiphertext()
		if !ok {
			return nil, newAlert(AlertDecodeError, "malformed ECC ClientKeyExchange")
		}
		pms, err := decryptPreMaster(hs.pair.decrypter, c.config.rand(), ct)
		if err != nil {
			return nil, keyAlert(AlertDecryptError, fmt.Errorf("cannot decrypt the pre-master secret: %w", err))
		}
		return pms, nil
	}
	pt, ok := cke.ecdhePoint()
	if !ok {
		return nil, newAlert(AlertDecodeError, "malformed ECDHE ClientKeyExchange")
	}
	peerEph, err := ecdh.P256().NewPublicKey(pt)
	if err != nil {
		return nil, newAlert(AlertIllegalParameter, "invalid ECDHE point")
	}
	if len(c.peerCertificates) < 2 || c.peerCertificates[1].IsCA {
		return nil, newAlert(AlertHandshakeFailure, "no client encryption certificate")
	}
	peerStatic, err := ecdhPublic(c.peerCertificates[1])
	if err != nil {
		return nil, wrapAlert(AlertUnsupportedCertificate, err)
	}
	pms, err := sm2KeyExchange(hs.pair.agreement, false, hs.ecdheKey, hs.pair.encPubECDH, peerStatic, peerEph)
	if err != nil {
		return nil, keyAlert(AlertHandshakeFailure, err)
	}
	return pms, nil
}
