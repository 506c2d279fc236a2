package tlcp

import (
	"errors"
	"sync"
	"time"

	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/smx509"
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
func (c *Conn) verifyPeer(raw [][]byte, isServerCert, verify bool) error {
	certs := make([]*smx509.Certificate, 0, len(raw))
	for _, der := range raw {
		cert, err := smx509.ParseCertificate(der)
		if err != nil {
			return newAlert(AlertBadCertificate, "cannot parse peer certificate")
		}
		certs = append(certs, cert)
	}
	if isServerCert {
		certs, raw = fixServerOrder(certs, raw)
	}
	if len(certs) == 0 {
		return newAlert(AlertBadCertificate, "empty certificate list")
	}
	if _, err := sm2PublicKey(certs[0]); err != nil {
		return wrapAlert(AlertUnsupportedCertificate, err)
	}
	if err := pki.CheckUsage(certs[0], pki.RoleSign); err != nil {
		return wrapAlert(AlertUnsupportedCertificate, err)
	}
	hasEnc := len(certs) > 1 && !certs[1].IsCA
	if isServerCert && !hasEnc {
		return newAlert(AlertBadCertificate, "server sent no encryption certificate")
	}
	if hasEnc {
		if _, err := sm2PublicKey(certs[1]); err != nil {
			return wrapAlert(AlertUnsupportedCertificate, err)
		}
		if err := pki.CheckUsage(certs[1], pki.RoleEnc); err != nil {
			return wrapAlert(AlertUnsupportedCertificate, err)
		}
	}
	var chains [][]*smx509.Certificate
	if verify {
		opts := smx509.VerifyOptions{
			CurrentTime:   c.config.now(),
			Intermediates: smx509.NewCertPool(),
		}
		first := 1
		if hasEnc {
			first = 2
		}
		for _, ic := range certs[first:] {
			opts.Intermediates.AddCert(ic)
		}
		if isServerCert {
			opts.Roots = c.config.RootCAs
			opts.KeyUsages = []smx509.ExtKeyUsage{smx509.ExtKeyUsageServerAuth}
		} else {
			opts.Roots = c.config.ClientCAs
			opts.KeyUsages = []smx509.ExtKeyUsage{smx509.ExtKeyUsageClientAuth}
		}
		if opts.Roots == nil {
			opts.Roots = smx509.NewCertPool()
		}
		signOpts := opts
		if isServerCert {
			signOpts.DNSName = c.config.ServerName
		}
		key := verifyCacheKey(raw, isServerCert, signOpts.DNSName)
		if cached, ok := c.config.verifyCache.get(key, opts.CurrentTime); ok {
			chains = cached
		} else {
			var err error
			chains, err = certs[0].Verify(signOpts)
			if err != nil {
				return certAlert(err)
			}
			if hasEnc {
				if _, err := certs[1].Verify(opts); err != nil {
					return certAlert(err)
				}
			}
			c.config.verifyCache.put(key, chains, certs, opts.CurrentTime)
		}
	}
	if c.config.VerifyPeerCertificate != nil {
		if err := c.config.VerifyPeerCertificate(raw, chains); err != nil {
			if errors.Is(err, ErrCertificateRevoked) {
				return wrapAlert(AlertCertificateRevoked, err)
			}
			return wrapAlert(AlertBadCertificate, err)
		}
	}
	c.peerCertificates = certs
	c.verifiedChains = chains
	return nil
}

// certAlert maps a verification error to its alert.
func certAlert(err error) error {
	var inv smx509.CertificateInvalidError
	var unk smx509.UnknownAuthorityError
	var host smx509.HostnameError
	switch {
	case errors.As(err, &inv):
		switch inv.Reason {
		case smx509.Expired:
			return wrapAlert(AlertCertificateExpired, err)
		case smx509.IncompatibleUsage:
			return wrapAlert(AlertUnsupportedCertificate, err)
		}
		return wrapAlert(AlertBadCertificate, err)
	case errors.As(err, &unk):
		return wrapAlert(AlertUnknownCA, err)
	case errors.As(err, &host):
		return wrapAlert(AlertBadCertificate, err)
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

// verifyCache remembers successful chain verifications of peer certificate
// lists for a short time, so that clients reconnecting with the same
// certificates do not cost two SM2 verifications per handshake. Key usage,
// validity period and VerifyPeerCertificate are still checked every time.
type verifyCache struct {
	mu sync.Mutex
	m  map[[32]byte]verifyEntry
}

type verifyEntry struct {
	chains           [][]*smx509.Certificate
	notBefore, until time.Time
}

const (
	verifyCacheMax = 1024
	verifyCacheTTL = 5 * time.Minute
)

func verifyCacheKey(raw [][]byte, isServer bool, name string) [32]byte {
	h := sm3.New()
	if isServer {
		h.Write([]byte{1})
	} else {
		h.Write([]byte{0})
	}
	h.Write([]byte(name))
	h.Write([]byte{0})
	for _, r := range raw {
		h.Write([]byte{byte(len(r) >> 16), byte(len(r) >> 8), byte(len(r))})
		h.Write(r)
	}
	var k [32]byte
	h.Sum(k[:0])
	return k
}

func (v *verifyCache) get(k [32]byte, now time.Time) ([][]*smx509.Certificate, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	e, ok := v.m[k]
	if !ok {
		return nil, false
	}
	if now.Before(e.notBefore) || now.After(e.until) {
		delete(v.m, k)
		return nil, false
	}
	return e.chains, true
}

func (v *verifyCache) put(k [32]byte, chains [][]*smx509.Certificate, certs []*smx509.Certificate, now time.Time) {
	e := verifyEntry{chains: chains, until: now.Add(verifyCacheTTL)}
	// The entry is only valid while every certificate involved is valid.
	consider := func(c *smx509.Certificate) {
		if c.NotAfter.Before(e.until) {
			e.until = c.NotAfter
		}
		if c.NotBefore.After(e.notBefore) {
			e.notBefore = c.NotBefore
		}
	}
	for _, c := range certs {
		consider(c)
	}
	for _, ch := range chains {
		for _, c := range ch {
			consider(c)
		}
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.m == nil {
		v.m = make(map[[32]byte]verifyEntry)
	}
	if len(v.m) >= verifyCacheMax {
		for key := range v.m { // drop an arbitrary entry
			delete(v.m, key)
			break
		}
	}
	v.m[k] = e
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
	}
	if c.config.VerifyPeerCertificate != nil {
		raw := make([][]byte, len(s.PeerCertificates))
		for i, cert := range s.PeerCertificates {
			raw[i] = cert.Raw
		}
		if err := c.config.VerifyPeerCertificate(raw, s.VerifiedChains); err != nil {
			return wrapAlert(AlertCertificateRevoked, err)
		}
	}
	return nil
}
