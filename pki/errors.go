// Package pki handles GM (SM2/SM3) certificates for gmgate: loading and
// encoding certificates and keys, classifying the dual-certificate roles
// (sign / enc / CA), verifying chains with revocation, issuing certificates
// and CRLs, and a self-managed development PKI.
//
// All certificates handled here are SM2 keys signed with SM2-with-SM3 and are
// represented as *smx509.Certificate from github.com/emmansun/gmsm/smx509.
package pki

import (
	"errors"
	"fmt"
	"strings"

	"github.com/emmansun/gmsm/smx509"
)

// Sentinel errors. They are distinct values matched with errors.Is; most are
// returned wrapped in a *VerifyError that names the certificate involved.
var (
	// ErrMalformedPEM reports PEM input that holds no usable block of the expected type.
	ErrMalformedPEM = errors.New("pki: malformed PEM")
	// ErrMalformedCertificate reports a certificate whose DER does not parse.
	ErrMalformedCertificate = errors.New("pki: malformed certificate")
	// ErrMalformedKey reports a private key that does not parse.
	ErrMalformedKey = errors.New("pki: malformed private key")
	// ErrNotSM2 reports a key or certificate that is not SM2 (or not signed with SM2-with-SM3).
	ErrNotSM2 = errors.New("pki: not an SM2 key or certificate")
	// ErrExpired reports a certificate (leaf or CA) whose NotAfter is in the past.
	ErrExpired = errors.New("pki: certificate expired")
	// ErrNotYetValid reports a certificate (leaf or CA) whose NotBefore is in the future.
	ErrNotYetValid = errors.New("pki: certificate not yet valid")
	// ErrWrongUsage reports a certificate whose key usage does not fit the requested role.
	ErrWrongUsage = errors.New("pki: certificate key usage does not match role")
	// ErrUnknownIssuer reports a certificate that does not chain to a trusted root.
	ErrUnknownIssuer = errors.New("pki: certificate signed by unknown issuer")
	// ErrRevoked reports a certificate listed in a CRL of its issuer.
	ErrRevoked = errors.New("pki: certificate revoked")
	// ErrBadPassword reports an encrypted private key that could not be decrypted
	// with the given password (wrong or missing password, or corrupt ciphertext).
	ErrBadPassword = errors.New("pki: wrong or missing password for encrypted private key")

	// ErrCRLStale reports a CRL whose NextUpdate has passed (fail-closed by default).
	ErrCRLStale = errors.New("pki: CRL is stale (past its NextUpdate)")
	// ErrCRLBadSignature reports a CRL whose signature does not verify against its issuer.
	ErrCRLBadSignature = errors.New("pki: CRL signature does not verify against its issuer")
	// ErrCRLRollback reports a fetched CRL older than the one already held for its issuer.
	ErrCRLRollback = errors.New("pki: CRL older than the one held (rollback refused)")
	// ErrMalformedCRL reports a CRL that does not parse.
	ErrMalformedCRL = errors.New("pki: malformed CRL")
	// ErrInputTooLarge reports input (PEM, DER, CRL) above the package's size bounds.
	ErrInputTooLarge = errors.New("pki: input too large")
	// ErrInvalidChain reports other chain-building failures (name constraints,
	// path length, unhandled critical extensions).
	ErrInvalidChain = errors.New("pki: invalid certificate chain")
)

// VerifyError wraps one of the sentinel errors with the certificate it is
// about. It never contains key material.
type VerifyError struct {
	// Err is the sentinel (ErrExpired, ErrWrongUsage, ...); Unwrap returns it.
	Err error
	// Subject is the certificate subject DN (may be empty when unknown).
	Subject string
	// Serial is the certificate serial number in lower-case hex (may be empty).
	Serial string
	// Detail is a human-readable explanation.
	Detail string
}

// Error implements error.
func (e *VerifyError) Error() string {
	var b strings.Builder
	if e.Err != nil {
		b.WriteString(e.Err.Error())
	} else {
		b.WriteString("pki: verification error")
	}
	if e.Subject != "" || e.Serial != "" {
		fmt.Fprintf(&b, " (certificate subject=%q serial=%s)", e.Subject, e.Serial)
	}
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(e.Detail)
	}
	return b.String()
}

// Unwrap returns the sentinel error.
func (e *VerifyError) Unwrap() error { return e.Err }

// certError builds a *VerifyError about c (c may be nil).
func certError(sentinel error, c *smx509.Certificate, format string, args ...any) *VerifyError {
	ve := &VerifyError{Err: sentinel}
	if len(args) > 0 {
		ve.Detail = fmt.Sprintf(format, args...)
	} else {
		ve.Detail = format
	}
	if c != nil {
		ve.Subject = c.Subject.String()
		ve.Serial = serialHex(c)
	}
	return ve
}

func serialHex(c *smx509.Certificate) string {
	if c == nil || c.SerialNumber == nil {
		return ""
	}
	return fmt.Sprintf("%x", c.SerialNumber)
}
