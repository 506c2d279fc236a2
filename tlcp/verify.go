package tlcp

import (
	"errors"

	"github.com/emmansun/gmsm/smx509"
	"github.com/gmgate/gmgate/internal/peerverify"
	"github.com/gmgate/gmgate/pki"
)

// ErrWrongKeyUsage is wrapped by errors for certificates whose key usage
// does not fit their position (sign or enc). It is pki.ErrWrongUsage: the
// key-usage policy is pki.CheckUsage (strict: the keyUsage extension must be
// present and must not mix signature and encipherment bits).
var ErrWrongKeyUsage = pki.ErrWrongUsage

// verifyPeer parses and verifies a peer's [sign, enc, chain...] list.
// For servers (isServerCert) both leaves must be present; serverName is
// checked against the signing certificate only. verify=false skips the chain
// check (InsecureSkipVerify / RequireAnyClientCert) but not key usage.
//
// It returns the verified chains of the encryption certificate (nil without
// one or without verification). VerifyPeerCertificate sees them after the
// signing certificate's: the ECC suites encrypt the pre-master secret to the
// encryption key and seal_reply seals replies to it, so a revoked encryption
// certificate (a compromised encryption key) must end the handshake as a
// revoked signing certificate does.
func (c *Conn) verifyPeer(raw [][]byte, isServerCert, verify bool) (encChains [][]*smx509.Certificate, err error) {
	certs := make([]*smx509.Certificate, 0, len(raw))
	for _, der := range raw {
		cert, err := smx509.ParseCertificate(der)
		if err != nil {
			return nil, newAlert(AlertBadCertificate, "cannot parse peer certificate")
		}
		certs = append(certs, cert)
	}
	if isServerCert {
		certs, raw = fixServerOrder(certs, raw)
	}
	if len(certs) == 0 {
		return nil, newAlert(AlertBadCertificate, "empty certificate list")
	}
	if _, err := sm2PublicKey(certs[0]); err != nil {
		return nil, wrapAlert(AlertUnsupportedCertificate, err)
	}
	if err := pki.CheckUsage(certs[0], pki.RoleSign); err != nil {
		return nil, wrapAlert(AlertUnsupportedCertificate, err)
	}
	hasEnc := len(certs) > 1 && !certs[1].IsCA
	if isServerCert && !hasEnc {
		return nil, newAlert(AlertBadCertificate, "server sent no encryption certificate")
	}
	if hasEnc {
		if _, err := sm2PublicKey(certs[1]); err != nil {
			return nil, wrapAlert(AlertUnsupportedCertificate, err)
		}
		if err := pki.CheckUsage(certs[1], pki.RoleEnc); err != nil {
			return nil, wrapAlert(AlertUnsupportedCertificate, err)
		}
	}
	var chains [][]*smx509.Certificate
	if verify {
		first := 1
		var enc *smx509.Certificate
		if hasEnc {
			first, enc = 2, certs[1]
		}
		p := peerverify.Peer{
			Raw: raw, Sign: certs[0], Enc: enc, Intermediates: certs[first:], Certs: certs,
			Roots: c.config.ClientCAs, Server: isServerCert, ServerName: c.config.ServerName,
			Now: c.config.now(),
		}
		if isServerCert {
			p.Roots = c.config.RootCAs
		}
		var err error
		if chains, encChains, err = c.config.verifyCache.VerifyPair(p); err != nil {
			return nil, certAlert(err)
		}
	}
	if c.config.VerifyPeerCertificate != nil {
		if err := c.config.VerifyPeerCertificate(raw, peerChains(chains, encChains)); err != nil {
			if errors.Is(err, ErrCertificateRevoked) {
				return nil, wrapAlert(AlertCertificateRevoked, err)
			}
			return nil, wrapAlert(AlertBadCertificate, err)
		}
	}
	c.peerCertificates = certs
	c.verifiedChains = chains
	return encChains, nil
}

// peerChains is what VerifyPeerCertificate is given: the signing
// certificate's verified chains, then the encryption certificate's.
func peerChains(sign, enc [][]*smx509.Certificate) [][]*smx509.Certificate {
	if len(enc) == 0 {
		return sign
	}
	return append(append(make([][]*smx509.Certificate, 0, len(sign)+len(enc)), sign...), enc...)
}

// certAlert maps a chain verification error to its TLCP alert.
func certAlert(err error) error {
	switch peerverify.Classify(err) {
	case peerverify.Expired:
		return wrapAlert(AlertCertificateExpired, err)
	case peerverify.UnsupportedCertificate:
		return wrapAlert(AlertUnsupportedCertificate, err)
	case peerverify.UnknownCA:
		return wrapAlert(AlertUnknownCA, err)
	}
	return wrapAlert(AlertBadCertificate, err)
}

// fixServerOrder handles tjfoc's [sign, sign-chain..., enc, enc-chain...]
// order: if [1] is a CA and a later certificate is a non-CA leaf with the
// same subject as [0], move that leaf to position 1.
func fixServerOrder(certs []*smx509.Certificate, raw [][]byte) ([]*smx509.Certificate, [][]byte) {
	if len(certs) < 3 || !certs[1].IsCA {
		return certs, raw
	}
	for i := 2; i < len(certs); i++ {
		if !certs[i].IsCA && string(certs[i].RawSubject) == string(certs[0].RawSubject) {
			nc := make([]*smx509.Certificate, 0, len(certs))
			nr := make([][]byte, 0, len(raw))
			nc = append(nc, certs[0], certs[i])
			nr = append(nr, raw[0], raw[i])
			for j := 1; j < len(certs); j++ {
				if j != i {
					nc = append(nc, certs[j])
					nr = append(nr, raw[j])
				}
			}
			return nc, nr
		}
	}
	return certs, raw
}

// recheckSession re-applies to a cached session's peer what time and
// revocation may have changed since its full handshake: every certificate of
// its verified chains (and the enc leaf) must be within its validity period
// now, and VerifyPeerCertificate (the CRL check) must still pass. A session
// that fails is not resumed: the peer goes through a full handshake, which
// refuses it with the proper alert.
func (c *Conn) recheckSession(s *SessionState) error {
	if len(s.PeerCertificates) == 0 {
		return nil
	}
	now := c.config.now()
	valid := func(cert *smx509.Certificate) error {
		if now.Before(cert.NotBefore) || now.After(cert.NotAfter) {
			return newAlert(AlertCertificateExpired, "session peer certificate outside its validity period")
		}
		return nil
	}
	if len(s.VerifiedChains) > 0 {
		for _, chain := range s.VerifiedChains {
			for _, cert := range chain {
				if err := valid(cert); err != nil {
					return err
				}
			}
		}
		if len(s.PeerCertificates) > 1 && !s.PeerCertificates[1].IsCA {
			if err := valid(s.PeerCertificates[1]); err != nil {
				return err
			}
		}
		for _, chain := range s.encChains {
			for _, cert := range chain {
				if err := valid(cert); err != nil {
					return err
				}
			}
		}
	}
	if c.config.VerifyPeerCertificate != nil {
		raw := make([][]byte, len(s.PeerCertificates))
		for i, cert := range s.PeerCertificates {
			raw[i] = cert.Raw
		}
		if err := c.config.VerifyPeerCertificate(raw, peerChains(s.VerifiedChains, s.encChains)); err != nil {
			return wrapAlert(AlertCertificateRevoked, err)
		}
	}
	return nil
}
