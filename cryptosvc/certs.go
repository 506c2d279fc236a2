package cryptosvc

import (
	"crypto"
	"crypto/ecdsa"
	"encoding/base64"
	"errors"
	"io"
	"strings"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/signing"
)

// certInfo describes c for a result.
func certInfo(c *smx509.Certificate) *CertInfo {
	ci := &CertInfo{Subject: c.Subject.String(), Issuer: c.Issuer.String(), Serial: signing.SerialHex(c.SerialNumber),
		NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC(), SM3: pki.FingerprintSM3(c)}
	if r, err := pki.ClassifyRole(c); err == nil {
		ci.Role = r.String()
	}
	return ci
}

// parseCert reads a certificate given as PEM (exactly one CERTIFICATE block) or standard Base64
// of its DER, through pki's loaders (SM2 only, strict).
func parseCert(s string) (*smx509.Certificate, error) {
	var certs []*smx509.Certificate
	var err error
	if strings.HasPrefix(strings.TrimSpace(s), "-----BEGIN") {
		certs, err = pki.ParseCertificatesPEM([]byte(s))
		if err == nil && len(certs) != 1 {
			err = errors.New("want exactly one certificate")
		}
	} else {
		var der []byte
		if der, err = base64.StdEncoding.DecodeString(s); err == nil {
			var c *smx509.Certificate
			if c, err = pki.ParseCertificateDER(der); err == nil {
				certs = []*smx509.Certificate{c}
			}
		}
	}
	if err != nil {
		if errors.Is(err, pki.ErrNotSM2) {
			return nil, fail(CodeCertUntrusted, err)
		}
		return nil, fail(CodeMalformed, err)
	}
	return certs[0], nil
}

func parseChain(chain []string) ([]*smx509.Certificate, error) {
	out := make([]*smx509.Certificate, 0, len(chain))
	for _, s := range chain {
		c, err := parseCert(s)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// certCode maps a pki verification error to a refusal code.
func certCode(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, pki.ErrExpired), errors.Is(err, pki.ErrNotYetValid):
		return fail(CodeCertExpired, err)
	case errors.Is(err, pki.ErrRevoked):
		return fail(CodeCertRevoked, err)
	case errors.Is(err, pki.ErrCRLStale), errors.Is(err, pki.ErrCRLBadSignature), errors.Is(err, pki.ErrMalformedCRL):
		return fail(CodeRevocationUnavailable, err)
	case errors.Is(err, pki.ErrInputTooLarge):
		return fail(CodeTooLarge, err)
	case errors.Is(err, pki.ErrMalformedCertificate), errors.Is(err, pki.ErrMalformedPEM):
		return fail(CodeMalformed, err)
	}
	return fail(CodeCertUntrusted, err)
}

// checkCert verifies c (with extra intermediates) through pki for role: chain to a configured
// root, validity of every certificate, key usage, CRL of every issuer. Without a verifier
// nothing is trusted.
func (s *Service) checkCert(c *smx509.Certificate, chain []*smx509.Certificate, role pki.Role) error {
	if s.o.Certificates == nil {
		return fail(CodeCertUntrusted, errors.New("no trusted roots configured"))
	}
	_, err := s.o.Certificates.Verify(c, chain, role)
	return certCode(err)
}

// certItem parses and verifies the item's certificate and chain for role.
func (s *Service) certItem(it *Item, role pki.Role) (*smx509.Certificate, error) {
	if it.Certificate == "" {
		return nil, fail(CodeMalformed, errors.New("certificate is required"))
	}
	c, err := parseCert(it.Certificate)
	if err != nil {
		return nil, err
	}
	chain, err := parseChain(it.Chain)
	if err != nil {
		return nil, err
	}
	return c, s.checkCert(c, chain, role)
}

// validateCert verifies a certificate for its own role (sign or enc, from its key usage)
// through pki (GM/T 0029 ValidateCert at its highest level: chain, validity, CRL) and returns its
// parsed identity.
func (s *Service) validateCert(it *Item, res *Result) itemOutcome {
	if it.Certificate == "" {
		return itemOutcome{err: fail(CodeMalformed, errors.New("certificate is required"))}
	}
	c, err := parseCert(it.Certificate)
	if err != nil {
		return itemOutcome{err: err}
	}
	d := sum(c.Raw)
	chain, err := parseChain(it.Chain)
	if err != nil {
		return itemOutcome{digest: d, err: err}
	}
	role, err := pki.ClassifyRole(c)
	if err == nil && role == pki.RoleCA {
		err = errors.New("a CA certificate: validate end-entity certificates")
	}
	if err != nil {
		return itemOutcome{digest: d, err: fail(CodeCertUntrusted, err)}
	}
	if err := s.checkCert(c, chain, role); err != nil {
		return itemOutcome{digest: d, err: err}
	}
	res.Valid, res.Certificate = true, certInfo(c)
	return itemOutcome{digest: d}
}

func (s *Service) parseCertificate(it *Item, res *Result) itemOutcome {
	if it.Certificate == "" {
		return itemOutcome{err: fail(CodeMalformed, errors.New("certificate is required"))}
	}
	c, err := parseCert(it.Certificate)
	if err != nil {
		return itemOutcome{err: err}
	}
	res.Certificate = certInfo(c)
	return itemOutcome{digest: sum(c.Raw)}
}

// verifyData verifies an SM2 signature with a certificate the caller supplies (GM/T 0029
// VerifySignedData by certificate): the certificate must pass pki as a signing certificate
// (chain, validity, usage, CRL) before its key is used.
func (s *Service) verifyData(it *Item, res *Result) itemOutcome {
	d, err := signInput(it)
	if err != nil {
		return itemOutcome{err: err}
	}
	if it.Signature == nil {
		return itemOutcome{digest: d, err: fail(CodeMalformed, errors.New("signature is required"))}
	}
	c, err := s.certItem(it, pki.RoleSign)
	if err != nil {
		return itemOutcome{digest: d, err: err}
	}
	pub, ok := c.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return itemOutcome{digest: d, err: fail(CodeCertUntrusted, errors.New("not an SM2 key"))}
	}
	var good bool
	if it.Digest != nil {
		good = sm2.VerifyASN1(pub, it.Digest, it.Signature)
	} else {
		uid := []byte(pki.DefaultUserID)
		if it.UserID != nil {
			uid = []byte(*it.UserID)
		}
		good = sm2.VerifyASN1WithSM2(pub, uid, it.Data, it.Signature)
	}
	if !good {
		return itemOutcome{digest: d, err: fail(CodeBadSignature, nil)}
	}
	res.Valid, res.Signer = true, certInfo(c)
	return itemOutcome{digest: d}
}

// defaultUIDSigner signs with the SM2 default user ID whatever the key's configured one: the
// user ID of CMS signatures (GB/T 35275) and of certificates.
type defaultUIDSigner struct{ crypto.Signer }

func (s defaultUIDSigner) Sign(r io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	if o, ok := opts.(*sm2.SM2SignerOption); ok && o == sm2.DefaultSM2SignerOpts {
		opts = sm2.NewSM2SignerOption(true, []byte(pki.DefaultUserID))
	}
	return s.Signer.Sign(r, msg, opts)
}
