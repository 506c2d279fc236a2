package pki

import (
	"fmt"
	"strings"

	"github.com/emmansun/gmsm/smx509"
)

// Role of a certificate in the dual-certificate (sign + enc) system.
type Role int

// Roles.
const (
	// RoleSign is a signature certificate: digitalSignature (nonRepudiation allowed).
	RoleSign Role = iota + 1
	// RoleEnc is an encryption certificate: keyEncipherment, dataEncipherment or keyAgreement.
	RoleEnc
	// RoleCA is a certificate authority: IsCA and keyCertSign.
	RoleCA
)

// String returns "sign", "enc", "ca" or "Role(n)".
func (r Role) String() string {
	switch r {
	case RoleSign:
		return "sign"
	case RoleEnc:
		return "enc"
	case RoleCA:
		return "ca"
	}
	return fmt.Sprintf("Role(%d)", int(r))
}

const (
	signUsages = smx509.KeyUsageDigitalSignature | smx509.KeyUsageContentCommitment
	encUsages  = smx509.KeyUsageKeyEncipherment | smx509.KeyUsageDataEncipherment | smx509.KeyUsageKeyAgreement
)

// ClassifyRole tells which role c can play, from its basic constraints and
// key-usage bits:
//
//   - CA: IsCA (with valid basic constraints) and keyCertSign;
//   - sign: digitalSignature set, no encipherment/agreement bit;
//   - enc: keyEncipherment, dataEncipherment or keyAgreement set, no
//     digitalSignature/nonRepudiation bit.
//
// The policy is strict, by design (key separation of the GM dual-certificate
// system): a leaf without a keyUsage extension, a leaf mixing signature and
// encipherment bits, and a CA without keyCertSign all fail with ErrWrongUsage.
func ClassifyRole(c *smx509.Certificate) (Role, error) {
	if c == nil {
		return 0, &VerifyError{Err: ErrWrongUsage, Detail: "nil certificate"}
	}
	if c.BasicConstraintsValid && c.IsCA {
		if c.KeyUsage&smx509.KeyUsageCertSign == 0 {
			return 0, certError(ErrWrongUsage, c, "CA certificate without keyCertSign (key usage: %s)", keyUsageString(c.KeyUsage))
		}
		return RoleCA, nil
	}
	ku := c.KeyUsage
	if ku == 0 {
		return 0, certError(ErrWrongUsage, c, "leaf certificate has no keyUsage extension (strict policy: cannot tell sign from enc)")
	}
	if ku&smx509.KeyUsageCertSign != 0 {
		return 0, certError(ErrWrongUsage, c, "keyCertSign set on a non-CA certificate")
	}
	hasSign := ku&signUsages != 0
	hasEnc := ku&encUsages != 0
	switch {
	case hasSign && hasEnc:
		return 0, certError(ErrWrongUsage, c, "key usage mixes signature and encipherment (%s); GM dual certificates keep them apart", keyUsageString(ku))
	case ku&smx509.KeyUsageDigitalSignature != 0:
		return RoleSign, nil
	case hasEnc:
		return RoleEnc, nil
	}
	return 0, certError(ErrWrongUsage, c, "key usage %s fits no role", keyUsageString(ku))
}

// CheckUsage returns nil when c can play role, else a *VerifyError wrapping
// ErrWrongUsage (see ClassifyRole for the strict policy).
func CheckUsage(c *smx509.Certificate, role Role) error {
	switch role {
	case RoleSign, RoleEnc, RoleCA:
	default:
		return certError(ErrWrongUsage, c, "unknown role %v", role)
	}
	got, err := ClassifyRole(c)
	if err != nil {
		return err
	}
	if got != role {
		return certError(ErrWrongUsage, c, "certificate is a %s certificate (key usage: %s), used as %s", got, keyUsageString(c.KeyUsage), role)
	}
	return nil
}

var keyUsageNames = []struct {
	bit  smx509.KeyUsage
	name string
}{
	{smx509.KeyUsageDigitalSignature, "digitalSignature"},
	{smx509.KeyUsageContentCommitment, "nonRepudiation"},
	{smx509.KeyUsageKeyEncipherment, "keyEncipherment"},
	{smx509.KeyUsageDataEncipherment, "dataEncipherment"},
	{smx509.KeyUsageKeyAgreement, "keyAgreement"},
	{smx509.KeyUsageCertSign, "keyCertSign"},
	{smx509.KeyUsageCRLSign, "cRLSign"},
	{smx509.KeyUsageEncipherOnly, "encipherOnly"},
	{smx509.KeyUsageDecipherOnly, "decipherOnly"},
}

// keyUsageString lists the key-usage bits by their RFC 5280 names.
func keyUsageString(ku smx509.KeyUsage) string {
	if ku == 0 {
		return "none"
	}
	var names []string
	for _, n := range keyUsageNames {
		if ku&n.bit != 0 {
			names = append(names, n.name)
		}
	}
	return strings.Join(names, ", ")
}
