package cryptosvc

import (
	"crypto"
	"crypto/ecdsa"
	"encoding/base64"
	"errors"
	"io"
	"math/big"
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
	_, err := s.checkCertLevel(c, chain, role, nil)
	return err
}

// verifyLevel is the GM/T 0029 verify level applied to a request asking for want (nil: 2): at
// least the configured minimum.
func (s *Service) verifyLevel(want *int) int {
	l := 2
	if want != nil {
		l = *want
	}
	return max(l, *s.o.MinVerifyLevel)
}

// checkCertLevel verifies c for role at the level applied to want and returns that level:
// 2 chain, validity, usage and CRL (Certificates); 1 the same without CRL (ChainCertificates);
// 0 the certificate's own validity, SM2 key and key usage, no trust decision.
func (s *Service) checkCertLevel(c *smx509.Certificate, chain []*smx509.Certificate, role pki.Role, want *int) (int, error) {
	level := s.verifyLevel(want)
	v := s.o.Certificates
	switch level {
	case 1:
		if s.o.ChainCertificates != nil {
			v = s.o.ChainCertificates
		}
	case 0:
		now := s.o.Now()
		if now.Before(c.NotBefore) || now.After(c.NotAfter) {
			return level, fail(CodeCertExpired, errors.New("outside its validity period"))
		}
		if pub, ok := c.PublicKey.(*ecdsa.PublicKey); !ok || !sm2.IsSM2PublicKey(pub) {
			return level, fail(CodeCertUntrusted, errors.New("not an SM2 certificate"))
		}
		return level, certCode(pki.CheckUsage(c, role))
	}
	if v == nil {
		return level, fail(CodeCertUntrusted, errors.New("no trusted roots configured"))
	}
	_, err := v.Verify(c, chain, role)
	return level, certCode(err)
}

// lookupCert finds the certificate of the configured set named by serial (hex) and/or subject
// DN. Several matches are refused (a serial is unique per issuer only): name it by both.
func (s *Service) lookupCert(serial, subject string) (*smx509.Certificate, error) {
	var want *big.Int
	if serial != "" {
		h := strings.TrimPrefix(strings.ReplaceAll(strings.ToLower(serial), ":", ""), "0x")
		n, ok := new(big.Int).SetString(h, 16)
		if !ok || n.Sign() < 0 {
			return nil, fail(CodeMalformed, errors.New("cert_serial: want hex"))
		}
		want = n
	}
	var found *smx509.Certificate
	for _, c := range s.o.CertificateSet {
		if want != nil && c.SerialNumber.Cmp(want) != 0 {
			continue
		}
		if subject != "" && c.Subject.String() != subject {
			continue
		}
		if found != nil {
			return nil, fail(CodeMalformed, errors.New("several certificates match: name it by serial and subject"))
		}
		found = c
	}
	if found == nil {
		return nil, fail(CodeCertUntrusted, errors.New("no configured certificate has that serial or subject"))
	}
	return found, nil
}

// itemCert returns the item's certificate and chain: given (certificate, chain) or named
// (cert_serial, cert_subject) from the configured set, never both.
func (s *Service) itemCert(it *Item) (*smx509.Certificate, []*smx509.Certificate, error) {
	named := it.CertSerial != "" || it.CertSubject != ""
	switch {
	case named && (it.Certificate != "" || it.Chain != nil):
		return nil, nil, fail(CodeMalformed, errors.New("a certificate given and named"))
	case named:
		c, err := s.lookupCert(it.CertSerial, it.CertSubject)
		return c, nil, err
	case it.Certificate == "":
		return nil, nil, fail(CodeMalformed, errors.New("certificate (or cert_serial/cert_subject) is required"))
	}
	c, err := parseCert(it.Certificate)
	if err != nil {
		return nil, nil, err
	}
	chain, err := parseChain(it.Chain)
	if err != nil {
		return nil, nil, err
	}
	return c, chain, nil
}

// certItem finds and verifies the item's certificate for role at the item's verify level.
func (s *Service) certItem(it *Item, role pki.Role, res *Result) (*smx509.Certificate, error) {
	c, chain, err := s.itemCert(it)
	if err != nil {
		return nil, err
	}
	level, err := s.checkCertLevel(c, chain, role, it.VerifyLevel)
	res.VerifyLevel = &level
	return c, err
}

// validateCert verifies a certificate for its own role (sign or enc, from its key usage)
// through pki (GM/T 0029 ValidateCert at its highest level: chain, validity, CRL) and returns its
// parsed identity.
func (s *Service) validateCert(it *Item, res *Result) itemOutcome {
	c, chain, err := s.itemCert(it)
	if err != nil {
		return itemOutcome{err: err}
	}
	d := sum(c.Raw)
	role, err := pki.ClassifyRole(c)
	if err == nil && role == pki.RoleCA {
		err = errors.New("a CA certificate: validate end-entity certificates")
	}
	if err != nil {
		return itemOutcome{digest: d, err: fail(CodeCertUntrusted, err)}
	}
	level, err := s.checkCertLevel(c, chain, role, it.VerifyLevel)
	if err != nil {
		return itemOutcome{digest: d, err: err}
	}
	res.Valid, res.Certificate, res.VerifyLevel = true, certInfo(c), &level
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

// verifyData verifies an SM2 signature with a certificate the caller supplies or names by
// serial/subject DN from the configured set (GM/T 0029 VerifySignedData by certificate, serial
// or DN): the certificate must pass pki as a signing certificate at the applied verify level
// (default: chain, validity, usage, CRL) before its key is used.
func (s *Service) verifyData(it *Item, res *Result) itemOutcome {
	d, err := signInput(it)
	if err != nil {
		return itemOutcome{err: err}
	}
	if it.Signature == nil {
		return itemOutcome{digest: d, err: fail(CodeMalformed, errors.New("signature is required"))}
	}
	c, err := s.certItem(it, pki.RoleSign, res)
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
