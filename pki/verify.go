package pki

import (
	"errors"
	"time"

	"github.com/emmansun/gmsm/smx509"
)

// MaxPeerIntermediates bounds the extra intermediates a peer may send.
const MaxPeerIntermediates = 16

// VerifierOptions configures a Verifier.
type VerifierOptions struct {
	// Roots are the trusted GM root CAs (required, each an SM2 CA certificate).
	Roots []*smx509.Certificate
	// Intermediates are trusted-for-path-building intermediate CAs.
	Intermediates []*smx509.Certificate
	// CRLs, when set, is checked for every non-root certificate of a chain.
	CRLs *CRLStore
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// ExtKeyUsages lists acceptable extended key usages (any one suffices);
	// empty means any, because GM certificates often lack EKU.
	ExtKeyUsages []smx509.ExtKeyUsage
}

// Verifier verifies GM certificate chains. It is safe for concurrent use.
type Verifier struct {
	roots         *smx509.CertPool
	rootCerts     []*smx509.Certificate
	intermediates []*smx509.Certificate
	crls          *CRLStore
	now           func() time.Time
	ekus          []smx509.ExtKeyUsage
}

// NewVerifier checks the options (every root and intermediate must be an SM2
// CA certificate) and returns a Verifier.
func NewVerifier(opts VerifierOptions) (*Verifier, error) {
	if len(opts.Roots) == 0 {
		return nil, errors.New("pki: NewVerifier: at least one root is required")
	}
	v := &Verifier{roots: smx509.NewCertPool(), crls: opts.CRLs, now: opts.Now}
	if v.now == nil {
		v.now = time.Now
	}
	for _, set := range [][]*smx509.Certificate{opts.Roots, opts.Intermediates} {
		for _, c := range set {
			if c == nil {
				return nil, errors.New("pki: NewVerifier: nil certificate")
			}
			if err := checkSM2Cert(c); err != nil {
				return nil, err
			}
			if err := CheckUsage(c, RoleCA); err != nil {
				return nil, err
			}
		}
	}
	for _, c := range opts.Roots {
		v.roots.AddCert(c)
	}
	v.rootCerts = append([]*smx509.Certificate(nil), opts.Roots...)
	v.intermediates = append([]*smx509.Certificate(nil), opts.Intermediates...)
	if len(opts.ExtKeyUsages) == 0 {
		v.ekus = []smx509.ExtKeyUsage{smx509.ExtKeyUsageAny}
	} else {
		v.ekus = append([]smx509.ExtKeyUsage(nil), opts.ExtKeyUsages...)
	}
	return v, nil
}

// Roots returns a copy of the trusted root pool.
func (v *Verifier) Roots() *smx509.CertPool { return v.roots.Clone() }

// RootCertificates returns the trusted roots, in configuration order.
func (v *Verifier) RootCertificates() []*smx509.Certificate {
	return append([]*smx509.Certificate(nil), v.rootCerts...)
}

// Verify checks that leaf (with optional extra intermediates sent by the
// peer) chains to a trusted root, that every certificate of the chain is
// within its validity period (ErrExpired / ErrNotYetValid, for the leaf and
// for CAs), that the leaf's key usage fits role (ErrWrongUsage), and that no
// non-root certificate of the chain is revoked by a CRL of its issuer
// (ErrRevoked; ErrCRLStale / ErrCRLBadSignature when the CRL cannot be
// trusted). It returns the verified chains, leaf first and root last.
// Errors are *VerifyError values wrapping the sentinels.
func (v *Verifier) Verify(leaf *smx509.Certificate, intermediates []*smx509.Certificate, role Role) ([][]*smx509.Certificate, error) {
	if leaf == nil {
		return nil, &VerifyError{Err: ErrMalformedCertificate, Detail: "nil leaf certificate"}
	}
	if len(intermediates) > MaxPeerIntermediates {
		return nil, certError(ErrInvalidChain, leaf, "%d intermediates given, limit %d", len(intermediates), MaxPeerIntermediates)
	}
	now := v.now()
	if err := checkSM2Cert(leaf); err != nil {
		return nil, err
	}
	if err := checkValidity(leaf, now); err != nil {
		return nil, err
	}
	if err := CheckUsage(leaf, role); err != nil {
		return nil, err
	}
	pool := smx509.NewCertPool()
	all := make([]*smx509.Certificate, 0, len(v.intermediates)+len(intermediates))
	all = append(all, v.intermediates...)
	for _, c := range intermediates {
		if c == nil {
			continue
		}
		if err := checkSM2Cert(c); err != nil {
			return nil, err
		}
		all = append(all, c)
	}
	for _, c := range all {
		pool.AddCert(c)
	}
	chains, err := leaf.Verify(smx509.VerifyOptions{
		Roots:         v.roots,
		Intermediates: pool,
		CurrentTime:   now,
		KeyUsages:     v.ekus,
	})
	if err != nil {
		return nil, mapChainError(err, leaf, now)
	}
	var firstErr error
	good := chains[:0:0]
	for _, chain := range chains {
		if err := v.checkChain(chain, now); err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		good = append(good, chain)
	}
	if len(good) == 0 {
		return nil, firstErr
	}
	return good, nil
}

// checkChain re-checks SM2-ness and validity of every certificate and the
// revocation status of every non-root certificate.
func (v *Verifier) checkChain(chain []*smx509.Certificate, now time.Time) error {
	for _, c := range chain {
		if err := checkSM2Cert(c); err != nil {
			return err
		}
		if err := checkValidity(c, now); err != nil {
			return err
		}
	}
	if v.crls == nil {
		return nil
	}
	for i := 0; i+1 < len(chain); i++ {
		revoked, err := v.crls.IsRevoked(chain[i], chain[i+1])
		if err != nil {
			return err
		}
		if revoked {
			return certError(ErrRevoked, chain[i], "listed in a CRL of %q", chain[i+1].Subject.String())
		}
	}
	return nil
}

// checkValidity returns ErrNotYetValid / ErrExpired (in a *VerifyError) when
// now is outside c's validity period.
func checkValidity(c *smx509.Certificate, now time.Time) error {
	if now.Before(c.NotBefore) {
		return certError(ErrNotYetValid, c, "valid from %s, now %s", c.NotBefore.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if now.After(c.NotAfter) {
		return certError(ErrExpired, c, "expired at %s, now %s", c.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return nil
}

// mapChainError turns an smx509 verification error into a *VerifyError.
func mapChainError(err error, leaf *smx509.Certificate, now time.Time) error {
	// smx509 reports a candidate issuer outside its validity period as a
	// CertificateInvalidError{Reason: Expired} naming that issuer.
	var cie smx509.CertificateInvalidError
	if errors.As(err, &cie) {
		c := cie.Cert
		if c == nil {
			c = leaf
		}
		switch cie.Reason {
		case smx509.Expired:
			if e := checkValidity(c, now); e != nil {
				return e
			}
			return certError(ErrExpired, c, "%v", err)
		case smx509.NotAuthorizedToSign, smx509.IncompatibleUsage, smx509.CANotAuthorizedForExtKeyUsage:
			return certError(ErrWrongUsage, c, "%v", err)
		default:
			return certError(ErrInvalidChain, c, "%v", err)
		}
	}
	var uae smx509.UnknownAuthorityError
	if errors.As(err, &uae) {
		return certError(ErrUnknownIssuer, leaf, "no chain to a trusted root (issuer %q): %v", leaf.Issuer.String(), err)
	}
	return certError(ErrInvalidChain, leaf, "%v", err)
}
