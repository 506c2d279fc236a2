package enroll

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
)

// Profile is a certificate template for terminals: the names a request may carry and what the
// issued pair looks like. Key usage is not configurable: the signing certificate gets
// digitalSignature|nonRepudiation, the encryption certificate keyEncipherment|dataEncipherment|
// keyAgreement (pki's roles), both with extended key usage clientAuth.
type Profile struct {
	// Name identifies the profile in tokens and records. Required.
	Name string `json:"name"`
	// CommonName is a regular expression (anchored at both ends) the subject common name must
	// match when the token does not fix one. Default: [A-Za-z0-9][A-Za-z0-9._-]{0,63}.
	CommonName string `json:"common_name,omitempty"`
	// Organization and OrganizationalUnit are written by the CA into both certificates; the
	// request's own values are ignored.
	Organization       []string `json:"organization,omitempty"`
	OrganizationalUnit []string `json:"organizational_unit,omitempty"`
	// DNSNames lists the DNS names a request may ask for: exact names or "*.suffix" (one or
	// more labels under suffix). Empty: a request with any subject alternative name is refused.
	DNSNames []string `json:"dns_names,omitempty"`
	// Validity of both certificates. Default 365 days; clamped to the CA's NotAfter.
	Validity time.Duration `json:"validity,omitempty"`

	cn *regexp.Regexp
}

// DefaultValidity is Profile.Validity when zero.
const DefaultValidity = 365 * 24 * time.Hour

const defaultCNPattern = `[A-Za-z0-9][A-Za-z0-9._-]{0,63}`

// maxCNLen bounds a common name (RFC 5280 ub-common-name).
const maxCNLen = 64

// compile checks the profile and compiles its pattern.
func (p *Profile) compile() error {
	if p.Name == "" || len(p.Name) > 64 || strings.ContainsAny(p.Name, " \t\r\n/\\") {
		return fmt.Errorf("enroll: profile name %q: 1-64 characters, no spaces or slashes", p.Name)
	}
	pat := p.CommonName
	if pat == "" {
		pat = defaultCNPattern
	}
	re, err := compileNameRules(pat, p.DNSNames)
	if err != nil {
		return fmt.Errorf("enroll: profile %s: %w", p.Name, err)
	}
	p.cn = re
	if p.Validity < 0 {
		return fmt.Errorf("enroll: profile %s: negative validity", p.Name)
	}
	if p.Validity == 0 {
		p.Validity = DefaultValidity
	}
	return nil
}

func (p *Profile) dnsAllowed(name string) bool { return dnsMatch(p.DNSNames, name) }

// compileNameRules checks a name rule (a profile's, an RA scope's): the common-name regular
// expression, compiled anchored at both ends, and the DNS name patterns (exact names or
// "*.suffix"). The rules are matched by the regexp and dnsMatch: one matcher for both.
func compileNameRules(cnPattern string, dnsPatterns []string) (*regexp.Regexp, error) {
	re, err := regexp.Compile(`^(?:` + cnPattern + `)$`)
	if err != nil {
		return nil, fmt.Errorf("common_name: %w", err)
	}
	for _, d := range dnsPatterns {
		if d == "" || d == "*." || strings.Count(d, "*") > 1 || (strings.Contains(d, "*") && !strings.HasPrefix(d, "*.")) {
			return nil, fmt.Errorf("dns name pattern %q", d)
		}
	}
	return re, nil
}

// dnsMatch reports whether name matches one of patterns (exact, case-insensitive, or
// "*.suffix": one or more labels under suffix).
func dnsMatch(patterns []string, name string) bool {
	name = strings.ToLower(name)
	for _, pat := range patterns {
		pat = strings.ToLower(pat)
		if suffix, ok := strings.CutPrefix(pat, "*"); ok {
			if strings.HasSuffix(name, suffix) && len(name) > len(suffix) && !strings.HasPrefix(name, ".") {
				return true
			}
			continue
		}
		if name == pat {
			return true
		}
	}
	return false
}

// Extension OIDs a request may carry (checked) or must not carry.
var (
	oidExtKeyUsage         = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidExtBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}
	oidExtExtKeyUsage      = asn1.ObjectIdentifier{2, 5, 29, 37}
	oidExtSubjectAltName   = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidEKUClientAuth       = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 2}
)

// signKeyUsageBits are the RFC 5280 bit positions a signing-key request may ask for:
// digitalSignature (0) and nonRepudiation (1).
const signKeyUsageMask = 0b11

// checkRequest checks a parsed request against the profile and, when fixedCN is not empty,
// the common name the token fixes. It returns the common name and DNS names to certify.
func (p *Profile) checkRequest(csr *smx509.CertificateRequest, fixedCN string) (string, []string, error) {
	if csr.SignatureAlgorithm != smx509.SM2WithSM3 {
		return "", nil, failf(CodeCSRInvalid, "request is not signed with SM2-with-SM3")
	}
	if err := csr.CheckSignature(); err != nil {
		return "", nil, fail(CodeCSRInvalid, fmt.Errorf("enroll: request signature: %w", err))
	}
	if !isSM2Public(csr.PublicKey) {
		return "", nil, failf(CodeCSRInvalid, "request key is not SM2")
	}
	cn := csr.Subject.CommonName
	switch {
	case cn == "" || len(cn) > maxCNLen:
		return "", nil, failf(CodeNameForbidden, "common name empty or too long")
	case fixedCN != "" && cn != fixedCN:
		return "", nil, failf(CodeNameForbidden, "common name differs from the one the token was issued for")
	case fixedCN == "" && !p.cn.MatchString(cn):
		return "", nil, failf(CodeNameForbidden, "common name does not match the profile")
	}
	if len(csr.IPAddresses)+len(csr.EmailAddresses)+len(csr.URIs) > 0 {
		return "", nil, failf(CodeNameForbidden, "only DNS names may be requested")
	}
	if len(csr.DNSNames) > 16 {
		return "", nil, failf(CodeNameForbidden, "too many DNS names")
	}
	for _, d := range csr.DNSNames {
		if !p.dnsAllowed(d) {
			return "", nil, failf(CodeNameForbidden, "DNS name not allowed by the profile")
		}
	}
	if err := checkRequestedUsage(csr.Extensions); err != nil {
		return "", nil, err
	}
	return cn, append([]string(nil), csr.DNSNames...), nil
}

// checkRequestedUsage refuses a request that asks for more than a terminal's signing
// certificate may have: a CA, key usages other than digitalSignature/nonRepudiation, an
// extended key usage other than clientAuth, or any other critical extension.
func checkRequestedUsage(exts []pkix.Extension) error {
	for _, e := range exts {
		switch {
		case e.Id.Equal(oidExtKeyUsage):
			var bits asn1.BitString
			if rest, err := asn1.Unmarshal(e.Value, &bits); err != nil || len(rest) > 0 {
				return failf(CodeCSRInvalid, "malformed keyUsage request")
			}
			for i := 0; i < bits.BitLength; i++ {
				if bits.At(i) == 1 && (1<<i)&signKeyUsageMask == 0 {
					return failf(CodeUsageForbidden, fmt.Sprintf("key usage bit %d requested for a signing key", i))
				}
			}
		case e.Id.Equal(oidExtBasicConstraints):
			var bc struct {
				IsCA       bool `asn1:"optional"`
				MaxPathLen int  `asn1:"optional,default:-1"`
			}
			if rest, err := asn1.Unmarshal(e.Value, &bc); err != nil || len(rest) > 0 {
				return failf(CodeCSRInvalid, "malformed basicConstraints request")
			}
			if bc.IsCA {
				return failf(CodeUsageForbidden, "CA certificate requested")
			}
		case e.Id.Equal(oidExtExtKeyUsage):
			var ekus []asn1.ObjectIdentifier
			if rest, err := asn1.Unmarshal(e.Value, &ekus); err != nil || len(rest) > 0 {
				return failf(CodeCSRInvalid, "malformed extKeyUsage request")
			}
			for _, o := range ekus {
				if !o.Equal(oidEKUClientAuth) {
					return failf(CodeUsageForbidden, "extended key usage other than clientAuth requested")
				}
			}
		case e.Id.Equal(oidExtSubjectAltName):
			// parsed by smx509 into DNSNames etc., checked above
		case e.Critical:
			return failf(CodeUsageForbidden, "unknown critical extension requested")
		}
	}
	return nil
}

func isSM2Public(pub any) bool { return sm2.IsSM2PublicKey(pub) }
