package tls13sm

import (
	"errors"
	"sync"
	"time"

	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/smx509"
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
		opts := smx509.VerifyOptions{
			CurrentTime:   c.config.now(),
			Intermediates: smx509.NewCertPool(),
		}
		for _, ic := range certs[1:] {
			opts.Intermediates.AddCert(ic)
		}
		if isServerCert {
			opts.Roots = c.config.RootCAs
			opts.KeyUsages = []smx509.ExtKeyUsage{smx509.ExtKeyUsageServerAuth}
			opts.DNSName = c.config.ServerName
		} else {
			opts.Roots = c.config.ClientCAs
			opts.KeyUsages = []smx509.ExtKeyUsage{smx509.ExtKeyUsageClientAuth}
		}
		if opts.Roots == nil {
			opts.Roots = smx509.NewCertPool()
		}
		key := verifyCacheKey(raw, isServerCert, opts.DNSName)
		if cached, ok := c.config.verifyCache.get(key, opts.CurrentTime); ok {
			chains = cached
		} else {
			var err error
			chains, err = certs[0].Verify(opts)
			if err != nil {
				return certAlert(err)
			}
			c.config.verifyCache.put(key, chains, certs, opts.CurrentTime)
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

// certAlert maps a verification error to its alert.
func certAlert(err error) error {
	var inv smx509.CertificateInvalidError
	var unk smx509.UnknownAuthorityError
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
	}
	return wrapAlert(AlertBadCertificate, err)
}

// verifyCache remembers successful chain verifications for a short time, so
// that peers reconnecting with the same chain do not cost SM2 verifications
// each time. Key usage, validity and VerifyPeerCertificate are checked every time.
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
		for key := range v.m {
			delete(v.m, key)
			break
		}
	}
	v.m[k] = e
}
