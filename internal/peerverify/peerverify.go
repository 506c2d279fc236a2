// Package peerverify is the one peer-certificate chain check of gmgate's
// protocol packages (tlcp and tls13sm): it verifies a peer's signing leaf
// (and, for TLCP, its encryption leaf) up to the configured roots with the
// extended key usage of the peer's role, and remembers successful
// verifications in a small cache bounded by the validity of every
// certificate involved. Key usage by role is pki.CheckUsage; the mapping of
// a failure to a protocol alert stays in each protocol package (Classify
// gives the reason it maps).
package peerverify

import (
	"errors"
	"sync"
	"time"

	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/smx509"
)

// Peer is one chain check.
type Peer struct {
	// Raw is the certificate list as received (the cache key covers it).
	Raw [][]byte
	// Sign is the peer's signing leaf: its chains are returned.
	Sign *smx509.Certificate
	// Enc, when set, is a second leaf (TLCP's encryption certificate) that
	// must chain to the same roots with the same extended key usage.
	Enc *smx509.Certificate
	// Intermediates are the other certificates the peer sent.
	Intermediates []*smx509.Certificate
	// Certs are all certificates received (they bound the cache entry's
	// validity together with the verified chains).
	Certs []*smx509.Certificate
	// Roots are the trust anchors; nil trusts nothing.
	Roots *smx509.CertPool
	// Server is true when the peer is a server: extended key usage
	// serverAuth and ServerName checked on Sign; else clientAuth.
	Server bool
	// ServerName is checked against Sign when Server is set and it is not empty.
	ServerName string
	// Now is the verification time.
	Now time.Time
}

// Verify checks p's chains, using and filling cache (nil: no cache). It
// returns the verified chains of p.Sign, or the smx509 error (see Classify).
func (cache *Cache) Verify(p Peer) ([][]*smx509.Certificate, error) {
	sign, _, err := cache.VerifyPair(p)
	return sign, err
}

// VerifyPair is Verify that also returns the verified chains of p.Enc (nil
// without one): a revocation check must look at the encryption leaf's chain
// too, since TLCP encrypts the pre-master secret to that key.
func (cache *Cache) VerifyPair(p Peer) (sign, enc [][]*smx509.Certificate, err error) {
	opts := smx509.VerifyOptions{
		CurrentTime:   p.Now,
		Intermediates: smx509.NewCertPool(),
		Roots:         p.Roots,
	}
	for _, ic := range p.Intermediates {
		opts.Intermediates.AddCert(ic)
	}
	if p.Server {
		opts.KeyUsages = []smx509.ExtKeyUsage{smx509.ExtKeyUsageServerAuth}
	} else {
		opts.KeyUsages = []smx509.ExtKeyUsage{smx509.ExtKeyUsageClientAuth}
	}
	if opts.Roots == nil {
		opts.Roots = smx509.NewCertPool()
	}
	signOpts := opts
	if p.Server {
		signOpts.DNSName = p.ServerName
	}
	key := cacheKey(p.Raw, p.Server, signOpts.DNSName)
	if e, ok := cache.get(key, p.Now); ok {
		return e.chains, e.encChains, nil
	}
	if sign, err = p.Sign.Verify(signOpts); err != nil {
		return nil, nil, err
	}
	if p.Enc != nil {
		if enc, err = p.Enc.Verify(opts); err != nil {
			return nil, nil, err
		}
	}
	cache.put(key, sign, enc, p.Certs, p.Now)
	return sign, enc, nil
}

// Reason is the kind of a chain verification failure, which each protocol
// maps to its alert.
type Reason int

const (
	// BadCertificate: any other failure (bad signature, name mismatch, ...).
	BadCertificate Reason = iota
	// Expired: a certificate is outside its validity period.
	Expired
	// UnsupportedCertificate: an extended key usage does not fit the role.
	UnsupportedCertificate
	// UnknownCA: the chain does not reach a trusted root.
	UnknownCA
)

// Classify returns the Reason of a Verify error.
func Classify(err error) Reason {
	var inv smx509.CertificateInvalidError
	var unk smx509.UnknownAuthorityError
	switch {
	case errors.As(err, &inv):
		switch inv.Reason {
		case smx509.Expired:
			return Expired
		case smx509.IncompatibleUsage:
			return UnsupportedCertificate
		}
		return BadCertificate
	case errors.As(err, &unk):
		return UnknownCA
	}
	return BadCertificate
}

// Cache remembers successful chain verifications of peer certificate lists
// for a short time, so that peers reconnecting with the same certificates do
// not cost SM2 verifications per handshake. An entry is used only while every
// certificate involved is within its validity period and for at most
// CacheTTL; key usage and the revocation callback are the caller's to check
// every time. The zero value is ready to use; it is safe for concurrent use.
type Cache struct {
	mu sync.Mutex
	m  map[[32]byte]entry
}

type entry struct {
	chains, encChains [][]*smx509.Certificate
	notBefore, until  time.Time
}

const (
	// CacheMax bounds the number of entries of a Cache.
	CacheMax = 1024
	// CacheTTL bounds the life of an entry.
	CacheTTL = 5 * time.Minute
)

// Len returns the number of entries (for tests).
func (v *Cache) Len() int {
	if v == nil {
		return 0
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.m)
}

func cacheKey(raw [][]byte, isServer bool, name string) [32]byte {
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

func (v *Cache) get(k [32]byte, now time.Time) (entry, bool) {
	if v == nil {
		return entry{}, false
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	e, ok := v.m[k]
	if !ok {
		return entry{}, false
	}
	if now.Before(e.notBefore) || now.After(e.until) {
		delete(v.m, k)
		return entry{}, false
	}
	return e, true
}

func (v *Cache) put(k [32]byte, chains, encChains [][]*smx509.Certificate, certs []*smx509.Certificate, now time.Time) {
	if v == nil {
		return
	}
	e := entry{chains: chains, encChains: encChains, until: now.Add(CacheTTL)}
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
	for _, set := range [][][]*smx509.Certificate{chains, encChains} {
		for _, ch := range set {
			for _, c := range ch {
				consider(c)
			}
		}
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.m == nil {
		v.m = make(map[[32]byte]entry)
	}
	if len(v.m) >= CacheMax {
		for key := range v.m { // drop an arbitrary entry
			delete(v.m, key)
			break
		}
	}
	v.m[k] = e
}
