package tls13sm

import (
	"errors"

	"github.com/emmansun/gmsm/smx509"
	"github.com/gmgate/gmgate/internal/peerverify"
	"github.com/gmgate/gmgate/pki"
)

// ErrWrongKeyUsage is wrapped by errors for peer certificates whose key
// usage does not allow signing. It is pki.ErrWrongUsage: the key-usage
// policy is pki.CheckUsage (strict: keyUsage present, digitalSignature, no
// encipherment bit).
var ErrWrongKeyUsage = pki.ErrWrongUsage

// verifyPeer parses and verifies a peer's chain (leaf first). verify=false
// skips the chain check (InsecureSkipVerify / RequestClientCert /
// RequireAnyClientCert) but not the SM2 key type, the SM2-with-SM3
// certificate signatures or the key usage.
func (c *Conn) verifyPeer(raw [][]byte, isServerCert, verify bool) error {
	if len(raw) == 0 {
		return newAlert(AlertBadCertificate, "empty certificate list")
	}
	if len(raw) > pki.MaxPeerIntermediates+1 {
		return newAlert(AlertBadCertificate, "too many certificates")
	}
	certs := make([]*smx509.Certificate, 0, len(raw))
	for _, der := range raw {
		cert, err := smx509.ParseCertificate(der)
		if err != nil {
			return newAlert(AlertBadCertificate, "cannot parse peer certificate")
		}
		// Strict RFC 8998 profile: every certificate sent is signed with
		// SM2-with-SM3 (the only scheme of signature_algorithms_cert we offer).
		if cert.SignatureAlgorithm != smx509.SM2WithSM3 {
			return newAlert(AlertUnsupportedCertificate, "peer certificate is not signed with SM2-with-SM3")
		}
		certs = append(certs, cert)
	}
	if _, err := sm2PublicKey(certs[0]); err != nil {
		return wrapAlert(AlertUnsupportedCertificate, err)
	}
	if err := pki.CheckUsage(certs[0], pki.RoleSign); err != nil {
		return wrapAlert(AlertUnsupportedCertificate, err)
	}
	var chains [][]*smx509.Certificate
	if verify {
		p := peerverify.Peer{
			Raw: raw, Sign: certs[0], Intermediates: certs[1:], Certs: certs,
			Roots: c.config.ClientCAs, Server: isServerCert, ServerName: c.config.ServerName,
			Now: c.config.now(),
		}
		if isServerCert {
			p.Roots = c.config.RootCAs
		}
		var err error
		if chains, err = c.config.verifyCache.Verify(p); err != nil {
			return certAlert(err)
		}
	}
	if c.config.VerifyPeerCertificate != nil {
		if err := c.config.VerifyPeerCertificate(raw, chains); err != nil {
			if errors.Is(err, ErrCertificateRevoked) || errors.Is(err, pki.ErrRevoked) {
				return wrapAlert(AlertCertificateRevoked, err)
			}
			return wrapAlert(AlertBadCertificate, err)
		}
	}
	c.peerCertificates = certs
	c.verifiedChains = chains
	return nil
}

// certAlert maps a chain verification error to its TLS alert.
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
