package enroll

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
	"golang.org/x/crypto/cryptobyte"
	cryptobyte_asn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/gmgate/gmgate/pki"
)

// Issuer is the one interface the Server issues, revokes and publishes revocations through.
// LocalCA is the CA whose key is in the vault (HSM); UpstreamIssuer is a registration
// authority (RA) in front of another gmgate's gm_enroll acting as the CA. A vendor adapter (a
// Chinese CA's REST API: CFCA, BJCA, ...) is a third implementation: see docs/enrolment.md,
// "Upstream CAs".
//
// The contract. The Server has already checked the terminal's request (proof of possession,
// names against the profile, usages, the token or the renewal right) before IssuePair, and it
// checks every Pair that comes back before storing or delivering it, whatever the Issuer
// (checkIssued): both certificates issued by Chain()[0] and chaining to Chain()'s root, the
// signing certificate for exactly the request's public key and approved subject (common name,
// DNS names, the profile's organization), the sign/enc key usages and extended key usage
// clientAuth only, no CA, both with the same subject, new serials, and a key delivery that
// matches the encryption certificate (the SM2EnvelopedKey's and the CSRResponse's public key
// and certificates). What an adapter must do itself:
//   - authenticate to the CA as the RA (its key from the vault) and authenticate the CA (TLS/TLCP
//     server authentication, or signed answers), bound every answer's size and honour ctx;
//   - send the request's public key and approved subject (PairRequest), never names of its own,
//     and forward the raw CSR (PairRequest.CSR) so that the CA checks the proof of possession
//     itself and, for a CFCA "double" request, sees the temporary key;
//   - never generate or see the encryption private key when the CA's key management centre
//     generates it: return Pair.Delivery as the CA produced it (EnvelopedKey, CSRResponse,
//     CFCAEncryptedKey) and leave Pair.EncKey nil;
//   - report a refusal by the CA as an error wrapping ErrUpstreamRefused (the terminal gets
//     enroll_upstream_refused) and anything else (network, timeouts) as another error
//     (enroll_unavailable).
type Issuer interface {
	// Chain returns the issuing CA's chain, issuing CA first, root last.
	Chain() []*smx509.Certificate
	// IssuePair issues the pair of a checked request.
	IssuePair(ctx context.Context, req *PairRequest) (*Pair, error)
	// RevokePair makes the issuing CA revoke a pair (both certificates) the Server revoked
	// (by = "holder", "admin:<name>", ...). It returns nil only once the CA accepted the
	// revocation; revoking twice is not an error. LocalCA has nothing to do (the Server signs
	// the CRL itself); an upstream Issuer forwards it. On an error the Server keeps the pair
	// revoked in its store and forwards it again at every CRL check until the CA's CRL lists it.
	RevokePair(ctx context.Context, rec CertRecord, by string) error
}

// CRLSigner is an Issuer holding the CA key (LocalCA): the Server builds the CRL from its
// store's revocations and has it signed.
type CRLSigner interface {
	// SignCRL signs a CRL of the issuing CA.
	SignCRL(ctx context.Context, revoked []smx509.RevocationListEntry, number *big.Int, thisUpdate, nextUpdate time.Time) ([]byte, error)
}

// CRLSource is an Issuer in front of a CA that publishes its own CRL (UpstreamIssuer, a vendor
// adapter): the Server re-publishes that CRL at its crl endpoint and in CRLFile.
type CRLSource interface {
	// UpstreamCRL fetches the CA's current CRL. The Server verifies it against Chain()[0] and
	// refuses one older than the CRL it serves (no rollback); an implementation should keep the
	// same rules (UpstreamIssuer uses pki.CRLStore).
	UpstreamCRL(ctx context.Context) (*smx509.RevocationList, error)
}

// ErrUpstreamRefused is wrapped by an upstream Issuer's error when the CA refused a request
// (as opposed to being unreachable).
var ErrUpstreamRefused = errors.New("enroll: the upstream CA refused the request")

// issuerError maps an Issuer's error to the refusal of the terminal.
func issuerError(err error) error {
	switch {
	case errors.Is(err, ErrUpstreamRefused):
		return fail(CodeUpstreamRefused, err)
	case errors.Is(err, errUpstreamAnswer):
		return fail(CodeUpstreamInvalid, err)
	}
	return fail(CodeUnavailable, err)
}

// issuedCheck is what checkIssued compares a Pair against.
type issuedCheck struct {
	signPub *ecdsa.PublicKey
	cn      string
	dns     []string
	prof    *Profile
	cfca    bool // a CFCA double request: the delivery carries CFCAEncryptedKey
}

// checkIssued verifies an Issuer's answer before anything is stored or delivered (the contract
// of Issuer): an upstream CA is not trusted blindly.
func (s *Server) checkIssued(pair *Pair, want issuedCheck) error {
	bad := func(format string, args ...any) error {
		return fail(CodeUpstreamInvalid, fmt.Errorf("enroll: issued pair: "+format, args...))
	}
	if pair == nil || pair.Sign == nil || pair.Enc == nil {
		return bad("certificates missing")
	}
	chain := s.cfg.Issuer.Chain()
	ca := chain[0]
	for _, c := range []struct {
		cert *smx509.Certificate
		role pki.Role
		name string
	}{{pair.Sign, pki.RoleSign, "signing"}, {pair.Enc, pki.RoleEnc, "encryption"}} {
		if !bytes.Equal(c.cert.RawIssuer, ca.RawSubject) || c.cert.CheckSignatureFrom(ca) != nil {
			return bad("%s certificate not issued by the configured issuing CA", c.name)
		}
		if _, err := s.verifier.Verify(c.cert, nil, c.role); err != nil {
			return bad("%s certificate: %v", c.name, err)
		}
		if c.cert.IsCA {
			return bad("%s certificate is a CA", c.name)
		}
		allowed := smx509.KeyUsageDigitalSignature | smx509.KeyUsageContentCommitment
		if c.role == pki.RoleEnc {
			allowed = smx509.KeyUsageKeyEncipherment | smx509.KeyUsageDataEncipherment | smx509.KeyUsageKeyAgreement
		}
		if c.cert.KeyUsage&^allowed != 0 {
			return bad("%s certificate has key usages beyond its role", c.name)
		}
		if len(c.cert.UnknownExtKeyUsage) > 0 || slices.ContainsFunc(c.cert.ExtKeyUsage, func(u smx509.ExtKeyUsage) bool { return u != smx509.ExtKeyUsageClientAuth }) {
			return bad("%s certificate has an extended key usage other than clientAuth", c.name)
		}
		if len(c.cert.IPAddresses)+len(c.cert.EmailAddresses)+len(c.cert.URIs) > 0 {
			return bad("%s certificate carries names other than DNS", c.name)
		}
		if _, err := s.cfg.Store.Cert(serialHex(c.cert.SerialNumber)); !errors.Is(err, ErrNotFound) {
			return bad("%s certificate serial %s already in the store", c.name, serialHex(c.cert.SerialNumber))
		}
	}
	if !want.signPub.Equal(pair.Sign.PublicKey) {
		return bad("signing certificate is not for the request's key")
	}
	if want.signPub.Equal(pair.Enc.PublicKey) {
		return bad("encryption certificate is for the signing key")
	}
	if serialHex(pair.Sign.SerialNumber) == serialHex(pair.Enc.SerialNumber) {
		return bad("both certificates have the same serial")
	}
	if !bytes.Equal(pair.Sign.RawSubject, pair.Enc.RawSubject) {
		return bad("the two certificates name different subjects")
	}
	subj := pair.Sign.Subject
	if subj.CommonName != want.cn {
		return bad("subject common name %q, approved %q", subj.CommonName, want.cn)
	}
	if p := want.prof; p != nil {
		if len(p.Organization) > 0 && !slices.Equal(subj.Organization, p.Organization) {
			return bad("subject organization differs from the profile")
		}
		if len(p.OrganizationalUnit) > 0 && !slices.Equal(subj.OrganizationalUnit, p.OrganizationalUnit) {
			return bad("subject organizational unit differs from the profile")
		}
	}
	for _, c := range []*smx509.Certificate{pair.Sign, pair.Enc} {
		got, exp := slices.Clone(c.DNSNames), slices.Clone(want.dns)
		slices.Sort(got)
		slices.Sort(exp)
		if !slices.Equal(got, exp) {
			return bad("DNS names differ from the approved ones")
		}
	}
	switch {
	case pair.EncKey != nil:
		if !pair.EncKey.PublicKey.Equal(pair.Enc.PublicKey) {
			return bad("encryption key does not match the encryption certificate")
		}
	case pair.Delivery != nil:
		return checkDelivery(pair, want.cfca, bad)
	default:
		return bad("neither a key nor a delivery")
	}
	return nil
}

// checkDelivery checks what an RA can check of a key delivery it cannot open: the
// SM2EnvelopedKey's (and the CSRResponse's) public key is the encryption certificate's, and the
// CSRResponse carries exactly the two issued certificates. That the symmetric key is encrypted to
// the terminal's signing key, the terminal checks when it opens it (client.Enroller).
func checkDelivery(pair *Pair, cfca bool, bad func(string, ...any) error) error {
	d := pair.Delivery
	if len(d.EnvelopedKey) == 0 || len(d.CSRResponse) == 0 {
		return bad("delivery incomplete")
	}
	if cfca != (d.CFCAEncryptedKey != "") {
		return bad("CFCA encrypted key present for a standard request or missing for a CFCA one")
	}
	if len(d.EnvelopedKey) > maxDeliveryField || len(d.CSRResponse) > maxDeliveryField || len(d.CFCAEncryptedKey) > maxDeliveryField {
		return bad("delivery too large")
	}
	pub, err := envelopedPublicKey(d.EnvelopedKey)
	if err != nil || !pub.Equal(pair.Enc.PublicKey) {
		return bad("enveloped key is not the encryption certificate's key")
	}
	var resp struct {
		SignCerts    []asn1.RawValue `asn1:"set"`
		EncryptedKey asn1.RawValue   `asn1:"optional,tag:0"`
		EncryptCerts asn1.RawValue   `asn1:"optional,tag:1"`
	}
	if rest, err := asn1.Unmarshal(d.CSRResponse, &resp); err != nil || len(rest) > 0 {
		return bad("CSRResponse malformed")
	}
	if len(resp.SignCerts) != 1 || !bytes.Equal(resp.SignCerts[0].FullBytes, pair.Sign.Raw) {
		return bad("CSRResponse signing certificate differs")
	}
	// GM/T 0092: encryptedPrivateKey [0] SM2EnvelopedKey, encryptCerts [1] (the certificates'
	// DER, concatenated): exactly the issued encryption certificate.
	if k := resp.EncryptedKey; k.Class != asn1.ClassContextSpecific || k.Tag != 0 {
		return bad("CSRResponse without its enveloped key")
	}
	pub, err = envelopedPublicKey(resp.EncryptedKey.Bytes)
	if err != nil || !pub.Equal(pair.Enc.PublicKey) {
		return bad("CSRResponse enveloped key is not the encryption certificate's key")
	}
	if c := resp.EncryptCerts; c.Class != asn1.ClassContextSpecific || c.Tag != 1 || !bytes.Equal(c.Bytes, pair.Enc.Raw) {
		return bad("CSRResponse encryption certificate differs")
	}
	return nil
}

// maxDeliveryField bounds one field of an upstream delivery.
const maxDeliveryField = 16 << 10

// envelopedPublicKey reads the sm2PublicKey field of a GB/T 35276 SM2EnvelopedKey.
func envelopedPublicKey(env []byte) (*ecdsa.PublicKey, error) {
	var (
		inner, alg, symKey cryptobyte.String
		pub, encKey        asn1.BitString
	)
	in := cryptobyte.String(env)
	if !in.ReadASN1(&inner, cryptobyte_asn1.SEQUENCE) || !in.Empty() ||
		!inner.ReadASN1Element(&alg, cryptobyte_asn1.SEQUENCE) ||
		!inner.ReadASN1Element(&symKey, cryptobyte_asn1.SEQUENCE) ||
		!inner.ReadASN1BitString(&pub) || !inner.ReadASN1BitString(&encKey) || !inner.Empty() {
		return nil, errors.New("enroll: malformed SM2EnvelopedKey")
	}
	return sm2.NewPublicKey(pub.RightAlign())
}
