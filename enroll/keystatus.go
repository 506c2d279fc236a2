package enroll

import (
	"crypto/ecdsa"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/smx509"
)

// Key status: whether a signing key may still be used, from the pairs issued for it. gm_cosign
// asks it before every co-operation for a joint key (its enroll_store option), so a terminal
// whose certificate is revoked or expired gets no more co-signatures or co-decryptions.
var (
	// ErrKeyRevoked: the newest pair issued for the key is revoked.
	ErrKeyRevoked = errors.New("enroll: the key's certificate is revoked")
	// ErrKeyExpired: the newest pair issued for the key is expired or not yet valid.
	ErrKeyExpired = errors.New("enroll: the key's certificate is expired or not yet valid")
)

// KeySKI is the hex subject key identifier gmgate's CA writes for pub (RFC 7093 method 4 with
// SM3: the first 20 bytes of SM3 of the SubjectPublicKeyInfo), the index of Store.CertBySKI.
func KeySKI(pub *ecdsa.PublicKey) (string, error) {
	spki, err := smx509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", err
	}
	sum := sm3.Sum(spki)
	return hex.EncodeToString(sum[:20]), nil
}

// KeyStatus returns the newest pair st issued for the signing key pub and nil when it is
// valid at now; ErrNotFound when no pair was ever issued for the key (a key before its first
// enrolment); ErrKeyRevoked or ErrKeyExpired (with the record) when the newest pair is revoked,
// expired or not yet valid; any other error when the store cannot tell (fail closed). A pair
// renewed for the same key is superseded by its renewal: only the newest one counts.
func KeyStatus(st Store, pub *ecdsa.PublicKey, now time.Time) (CertRecord, error) {
	ski, err := KeySKI(pub)
	if err != nil {
		return CertRecord{}, err
	}
	rec, err := st.CertBySKI(ski)
	if err != nil {
		return CertRecord{}, err
	}
	cert, err := smx509.ParseCertificate(rec.SignCert)
	if err != nil {
		return rec, fmt.Errorf("enroll: record %s: %w", rec.Serial, err)
	}
	if !pub.Equal(cert.PublicKey) {
		return rec, fmt.Errorf("enroll: record %s is not of the key it is indexed under", rec.Serial)
	}
	switch {
	case rec.Revoked:
		return rec, ErrKeyRevoked
	case now.Before(cert.NotBefore) || now.After(cert.NotAfter):
		return rec, ErrKeyExpired
	}
	return rec, nil
}
