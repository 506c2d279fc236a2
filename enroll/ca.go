package enroll

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/pki"
)

// PairRequest is a checked request for a terminal's dual certificate.
type PairRequest struct {
	// SignPublicKey is the terminal's signing public key (from its request).
	SignPublicKey crypto.PublicKey
	// CSR is the request as received (DER), for an Issuer that forwards it upstream.
	CSR        []byte
	CommonName string
	DNSNames   []string
	Profile    *Profile
}

// Pair is an issued dual certificate.
type Pair struct {
	Sign, Enc *smx509.Certificate
	// EncKey is the centrally generated encryption private key (nil when an upstream CA kept
	// it and delivered it itself in Delivery). The Server escrows it, envelopes it and zeroes
	// it.
	EncKey *sm2.PrivateKey
	// Delivery, set by an upstream Issuer, is the key delivery the upstream produced.
	Delivery *Delivery
}

// LocalCA issues with a CA whose key is a crypto.Signer (a vault key, in an HSM in
// production) through pki.
type LocalCA struct {
	ca    *pki.CA
	chain []*smx509.Certificate
	crlDP []string
	now   func() time.Time
}

// NewLocalCA builds the issuer from the CA certificate chain (issuing CA first) and the CA's
// key. crlURLs, when set, are written into every certificate as cRLDistributionPoints.
func NewLocalCA(chain []*smx509.Certificate, key crypto.Signer, crlURLs []string) (*LocalCA, error) {
	if len(chain) == 0 {
		return nil, errors.New("enroll: CA certificate required")
	}
	ca, err := pki.NewCA(chain[0], key)
	if err != nil {
		return nil, fmt.Errorf("enroll: CA: %w", err)
	}
	return &LocalCA{ca: ca, chain: append([]*smx509.Certificate(nil), chain...), crlDP: append([]string(nil), crlURLs...), now: time.Now}, nil
}

// Chain returns the CA chain, issuing CA first.
func (l *LocalCA) Chain() []*smx509.Certificate {
	return append([]*smx509.Certificate(nil), l.chain...)
}

// IssuePair generates the encryption key pair and issues both certificates.
func (l *LocalCA) IssuePair(_ context.Context, req *PairRequest) (*Pair, error) {
	if req == nil || req.Profile == nil {
		return nil, errors.New("enroll: IssuePair: incomplete request")
	}
	encKey, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("enroll: generating the encryption key: %w", err)
	}
	p := req.Profile
	opts := pki.IssueOptions{
		CommonName: req.CommonName, Organization: p.Organization, OrganizationalUnit: p.OrganizationalUnit,
		DNSNames: req.DNSNames, Validity: p.Validity, NotBefore: l.now().Add(-5 * time.Minute),
		ExtKeyUsage: []smx509.ExtKeyUsage{smx509.ExtKeyUsageClientAuth}, CRLDistributionPoints: l.crlDP,
	}
	sign, err := l.ca.IssueFor(req.SignPublicKey, pki.RoleSign, opts)
	if err != nil {
		return nil, fmt.Errorf("enroll: issuing the signing certificate: %w", err)
	}
	enc, err := l.ca.IssueFor(&encKey.PublicKey, pki.RoleEnc, opts)
	if err != nil {
		return nil, fmt.Errorf("enroll: issuing the encryption certificate: %w", err)
	}
	return &Pair{Sign: sign, Enc: enc, EncKey: encKey}, nil
}

// RevokePair does nothing: the Server's own CRL, signed with this CA's key, lists the pair.
func (l *LocalCA) RevokePair(context.Context, CertRecord, string) error { return nil }

// SignCRL signs a CRL with the CA key.
func (l *LocalCA) SignCRL(_ context.Context, revoked []smx509.RevocationListEntry, number *big.Int, thisUpdate, nextUpdate time.Time) ([]byte, error) {
	return l.ca.CreateCRLAt(revoked, number, thisUpdate, nextUpdate)
}

// signPublic returns the SM2 public key of a request.
func signPublic(pub crypto.PublicKey) (*ecdsa.PublicKey, bool) {
	k, ok := pub.(*ecdsa.PublicKey)
	return k, ok && sm2.IsSM2PublicKey(k)
}
