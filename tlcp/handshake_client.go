package tlcp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/emmansun/gmsm/ecdh"
)

type clientHandshake struct {
	handshakeState
	server   *serverHelloMsg
	cacheKey string
	certReq  *certificateRequestMsg
}

func (c *Conn) clientHandshake(ctx context.Context) error {
	hs := &clientHandshake{handshakeState: newHandshakeState(c, true)}
	err := hs.run()
	if err != nil {
		return c.fail(err)
	}
	return nil
}

func (hs *clientHandshake) clientSessionKey() string {
	c := hs.c
	if c.config.ServerName != "" {
		return c.config.ServerName
	}
	if a := c.conn.RemoteAddr(); a != nil {
		return a.String()
	}
	return ""
}

func (hs *clientHandshake) run() error {
	c := hs.c
	cfg := c.config
	if !cfg.InsecureSkipVerify && cfg.ServerName == "" {
		return errors.New("tlcp: either ServerName or InsecureSkipVerify must be set")
	}
	if cfg.hasLocalPair() {
		p, err := cfg.localPair().prepare()
		if err != nil {
			return err
		}
		hs.pair = p
	}
	hello := &clientHelloMsg{vers: VersionTLCP, random: make([]byte, 32), compressionMethods: []byte{0}}
	if _, err := io.ReadFull(cfg.rand(), hello.random); err != nil {
		return err
	}
	for _, id := range cfg.suites() {
		s := suiteByID(id)
		if s == nil {
			continue
		}
		if s.ecdhe && (hs.pair == nil || hs.pair.agreement == nil) {
			continue // ECDHE needs our enc key pair
		}
		hello.cipherSuites = append(hello.cipherSuites, id)
	}
	if len(hello.cipherSuites) == 0 {
		return errors.New("tlcp: no usable cipher suites configured")
	}
	if cfg.ServerName != "" && net.ParseIP(cfg.ServerName) == nil {
		hello.serverName = cfg.ServerName
	}
	if cfg.SessionCache != nil {
		hs.cacheKey = hs.clientSessionKey()
		if s, ok := cfg.SessionCache.Get(hs.cacheKey); ok && c.recheckSession(s) != nil {
			cfg.SessionCache.Put(hs.cacheKey, nil) // the server's certificate expired or was revoked
		} else if ok {
			for _, id := range hello.cipherSuites {
				if id == s.CipherSuite {
					hs.session = s
					hello.sessionID = s.SessionID
				}
			}
		}
	}
	hs.hello = hello
	c.vers = VersionTLCP
	raw := hello.marshal()
	hs.fh.Write(raw)
	c.out.Lock()
	_, err := c.writeRecordLocked(recordTypeHandshake, raw)
	c.out.Unlock()
	if err != nil {
		return err
	}

	sh := new(serverHelloMsg)
	if err := hs.readMsg(typeServerHello, sh, "ServerHello"); err != nil {
		return err
	}
	hs.server = sh
	hs.serverRandom = sh.random
	if sh.vers != VersionTLCP {
		return newAlert(AlertProtocolVersion, fmt.Sprintf("server version %#04x", sh.vers))
	}
	if sh.compressionMethod != 0 {
		return newAlert(AlertIllegalParameter, "server selected compression")
	}
	offered := false
	for _, id := range hello.cipherSuites {
		if id == sh.cipherSuite {
			offered = true
		}
	}
	if !offered {
		return newAlert(AlertIllegalParameter, "server selected a suite we did not offer")
	}
	hs.suite = suiteByID(sh.cipherSuite)
	c.cipherSuite = sh.cipherSuite
	c.serverName = cfg.ServerName

	if hs.session != nil && len(sh.sessionID) > 0 && bytes.Equal(sh.sessionID, hs.session.SessionID) {
		if sh.cipherSuite != hs.session.CipherSuite {
			return newAlert(AlertIllegalParameter, "resumed session with a different suite")
		}
		return hs.doResume()
	}
	if hs.session != nil && cfg.SessionCache != nil {
		cfg.SessionCache.Put(hs.cacheKey, nil)
		hs.session = nil
	}
	return hs.doFull()
}

func (hs *clientHandshake) doResume() error {
	c := hs.c
	c.didResume = true
	return hs.resume(false, hs.session.SessionID)
}

func (hs *clientHandshake) doFull() error {
	c := hs.c
	cfg := c.config
	// Certificate
	var cm certificateMsg
	if err := hs.readMsg(typeCertificate, &cm, "server Certificate"); err != nil {
		return err
	}
	encChains, err := c.verifyPeer(cm.certificates, true, !cfg.InsecureSkipVerify)
	if err != nil {
		return err
	}
	hs.encChains = encChains
	signPub, _ := sm2PublicKey(c.peerCertificates[0])
	encCert := c.peerCertificates[1]

	// ServerKeyExchange
	var ske serverKeyExchangeMsg
	parseSKE := parseFunc(func(raw []byte) bool { return ske.unmarshalSuite(raw, hs.suite.ecdhe) })
	if err := hs.readMsg(typeServerKeyExchange, parseSKE, "ServerKeyExchange"); err != nil {
		return err
	}
	var signed []byte
	if hs.suite.ecdhe {
		signed = ecdheSKEMessage(hs.hello.random, hs.serverRandom, ske.params)
	} else {
		signed = eccSKEMessage(hs.hello.random, hs.serverRandom, encSuffixOf(encCert.Raw))
	}
	if !verifySignature(signPub, signed, ske.signature) {
		return newAlert(AlertDecryptError, "ServerKeyExchange signature is invalid")
	}

	// CertificateRequest?, ServerHelloDone
	raw, err := c.readHandshake()
	if err != nil {
		return err
	}
	if raw[0] == typeCertificateRequest {
		cr := new(certificateRequestMsg)
		if !cr.unmarshal(raw) {
			return newAlert(AlertDecodeError, "malformed CertificateRequest")
		}
		hs.fh.Write(raw)
		hs.certReq = cr
		if raw, err = c.readHandshake(); err != nil {
			return err
		}
	}
	var done serverHelloDoneMsg
	if err := expectMsg(raw, typeServerHelloDone, &done, "ServerHelloDone"); err != nil {
		return err
	}
	hs.fh.Write(raw)
	if hs.suite.ecdhe && hs.certReq == nil {
		return newAlert(AlertUnexpectedMessage, "ECDHE server did not request client certificates")
	}

	c.buffering = true
	sentCert := false
	if hs.certReq != nil {
		var certs [][]byte
		if hs.pair != nil {
			certs = hs.pair.rawCerts
			sentCert = true
		}
		if err := c.writeHandshake((&certificateMsg{certificates: certs}).marshal(), &hs.fh); err != nil {
			return err
		}
	}

	// ClientKeyExchange
	var pms, ckeBody []byte
	if hs.suite.ecdhe {
		eph, err := ecdh.P256().GenerateKey(cfg.rand())
		if err != nil {
			return err
		}
		peerEph, err := ecdh.P256().NewPublicKey(ske.params[4:])
		if err != nil {
			return newAlert(AlertIllegalParameter, "invalid server ECDHE point")
		}
		peerStatic, err := ecdhPublic(encCert)
		if err != nil {
			return wrapAlert(AlertUnsupportedCertificate, err)
		}
		pms, err = sm2KeyExchange(hs.pair.agreement, true, eph, hs.pair.encPubECDH, peerStatic, peerEph)
		if err != nil {
			return wrapAlert(AlertHandshakeFailure, err)
		}
		if cfg.ECDHEParamsAsVector {
			ckeBody = []byte{0, 69}
		}
		ckeBody = append(ckeBody, ecdhParamsPrefix...)
		ckeBody = append(ckeBody, eph.PublicKey().Bytes()...)
	} else {
		pms = make([]byte, masterSecretLen)
		pms[0], pms[1] = 0x01, 0x01
		if _, err := io.ReadFull(cfg.rand(), pms[2:]); err != nil {
			return err
		}
		encPub, err := sm2PublicKey(encCert)
		if err != nil {
			return wrapAlert(AlertUnsupportedCertificate, err)
		}
		ct, err := encryptPreMaster(cfg.rand(), encPub, pms, cfg.ECCCiphertextRaw)
		if err != nil {
			return wrapAlert(AlertInternalError, err)
		}
		ckeBody = append([]byte{byte(len(ct) >> 8), byte(len(ct))}, ct...)
	}
	if err := c.writeHandshake((&clientKeyExchangeMsg{body: ckeBody}).marshal(), &hs.fh); err != nil {
		return err
	}
	hs.ms = masterFromPreMaster(pms, hs.hello.random, hs.serverRandom)
	zeroize(pms)

	if sentCert {
		sig, err := signMessage(hs.pair.signer, cfg.rand(), hs.fh.Sum())
		if err != nil {
			return wrapAlert(AlertInternalError, errors.New("signing CertificateVerify: "+err.Error()))
		}
		if err := c.writeHandshake((&certificateVerifyMsg{signature: sig}).marshal(), &hs.fh); err != nil {
			return err
		}
	}
	if err := hs.finish(true); err != nil {
		return err
	}
	c.sessionID = hs.server.sessionID
	if cfg.SessionCache != nil && len(hs.server.sessionID) > 0 {
		cfg.SessionCache.Put(hs.cacheKey, hs.newSession(hs.server.sessionID, cfg.ServerName))
	} else {
		zeroize(hs.ms)
	}
	return nil
}
