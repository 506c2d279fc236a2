package pki

import (
	"crypto"
	"crypto/rand"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/smx509"
)

// Default validity periods.
const (
	// DefaultCAValidity is the validity of a CA certificate when IssueOptions.Validity is zero.
	DefaultCAValidity = 10 * 365 * 24 * time.Hour
	// DefaultLeafValidity is the validity of a leaf certificate when IssueOptions.Validity is zero.
	DefaultLeafValidity = 365 * 24 * time.Hour
	// DefaultCRLValidity is the NextUpdate distance used when CreateCRL is given zero.
	DefaultCRLValidity = 7 * 24 * time.Hour
	// backdate is how far NotBefore is set in the past by default (clock skew).
	backdate = 5 * time.Minute
)

// CA is a certificate authority able to issue certificates and CRLs. Key
// signs like *sm2.PrivateKey (SM2 with SM3 and the default user ID when given
// sm2.DefaultSM2SignerOpts); it may live elsewhere (key vault, HSM).
type CA struct {
	Cert *smx509.Certificate
	Key  crypto.Signer
}

// Issued is a certificate with its private key. Key is nil when the
// certificate was issued for an external public key.
type Issued struct {
	Cert *smx509.Certificate
	Key  *sm2.PrivateKey
}

// Pair is a GM dual certificate: a signature certificate and an encryption
// certificate for the same subject.
type Pair struct {
	Sign, Enc *Issued
}

// IssueOptions describes a certificate to issue.
type IssueOptions struct {
	CommonName         string
	Organization       []string
	OrganizationalUnit []string
	DNSNames           []string
	IPAddresses        []net.IP
	EmailAddresses     []string
	// NotBefore zero means now - 5 minutes.
	NotBefore time.Time
	// Validity zero means the role default (CA 10 years, leaf 1 year). A
	// leaf's NotAfter is clamped to its issuer's NotAfter.
	Validity time.Duration
	// SerialNumber nil means a random 128-bit serial.
	SerialNumber *big.Int
	// ExtKeyUsage overrides the extended key usages set by the Issue* helper
	// (nil keeps the helper's default; IssueFor and SignCSR default to none).
	ExtKeyUsage []smx509.ExtKeyUsage
	// MaxPathLen is the path length constraint of an intermediate CA
	// (0 = none set; use -1 for "no further CAs", i.e. MaxPathLenZero).
	MaxPathLen int
	// CRLDistributionPoints are the URLs where the issuer publishes its CRL
	// (the cRLDistributionPoints extension); none by default.
	CRLDistributionPoints []string
}

// NewCA returns a CA for cert whose key is signer, which may live in a key
// vault or an HSM (a crypto.Signer signing like *sm2.PrivateKey). It checks
// that cert is an SM2 CA certificate (keyCertSign) and that signer holds the
// key of cert, so a CA is never assembled from a certificate and a stranger's
// key (certificates signed by it would not verify).
func NewCA(cert *smx509.Certificate, signer crypto.Signer) (*CA, error) {
	ca := &CA{Cert: cert, Key: signer}
	if err := ca.check(); err != nil {
		return nil, err
	}
	type equaler interface{ Equal(crypto.PublicKey) bool }
	pub, ok := signer.Public().(equaler)
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, certError(ErrWrongUsage, cert, "the CA key is not the key of this CA certificate")
	}
	if cert.KeyUsage&smx509.KeyUsageCRLSign == 0 {
		return nil, certError(ErrWrongUsage, cert, "CA certificate without cRLSign cannot sign CRLs")
	}
	return ca, nil
}

// keyUsageCA is the key usage of issued CA certificates (sign and enc
// leaves get signUsages / encUsages from usage.go).
const keyUsageCA = smx509.KeyUsageCertSign | smx509.KeyUsageCRLSign

// NewRootCA creates a self-signed SM2 root CA (keyCertSign, cRLSign).
func NewRootCA(opts IssueOptions) (*CA, *sm2.PrivateKey, error) {
	key, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: generate root key: %w", err)
	}
	tmpl, err := template(opts, RoleCA, nil)
	if err != nil {
		return nil, nil, err
	}
	cert, err := create(tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	return &CA{Cert: cert, Key: key}, key, nil
}

// IssueIntermediateCA issues a subordinate CA with a fresh SM2 key.
func (ca *CA) IssueIntermediateCA(opts IssueOptions) (*CA, *sm2.PrivateKey, error) {
	iss, err := ca.issueWithKey(opts, RoleCA, nil)
	if err != nil {
		return nil, nil, err
	}
	return &CA{Cert: iss.Cert, Key: iss.Key}, iss.Key, nil
}

// IssueServerPair issues a server dual certificate with two fresh SM2 keys.
// Sign: digitalSignature|nonRepudiation; enc: keyEncipherment|dataEncipherment|
// keyAgreement; both with EKU serverAuth+clientAuth and the same subject and SANs.
func (ca *CA) IssueServerPair(opts IssueOptions) (*Pair, error) {
	return ca.issuePair(opts, []smx509.ExtKeyUsage{smx509.ExtKeyUsageServerAuth, smx509.ExtKeyUsageClientAuth})
}

// IssueClientPair issues a client dual certificate (same usages as the
// server pair, EKU clientAuth).
func (ca *CA) IssueClientPair(opts IssueOptions) (*Pair, error) {
	return ca.issuePair(opts, []smx509.ExtKeyUsage{smx509.ExtKeyUsageClientAuth})
}

// IssuePlatform issues a platform signing certificate
// (digitalSignature|nonRepudiation, no EKU) with a fresh SM2 key.
func (ca *CA) IssuePlatform(opts IssueOptions) (*Issued, error) {
	return ca.issueWithKey(opts, RoleSign, nil)
}

// IssueFor issues a certificate of role for a public key held elsewhere
// (vault, HSM). pub must be an SM2 public key.
func (ca *CA) IssueFor(pub crypto.PublicKey, role Role, opts IssueOptions) (*smx509.Certificate, error) {
	if !isSM2PublicKey(pub) {
		return nil, fmt.Errorf("%w: public key %T", ErrNotSM2, pub)
	}
	if err := ca.check(); err != nil {
		return nil, err
	}
	tmpl, err := template(opts, role, ca.Cert)
	if err != nil {
		return nil, err
	}
	return create(tmpl, ca.Cert, pub, ca.Key)
}

// SignCSR issues a certificate of role for a PKCS#10 request after checking
// its signature and that its key is SM2. The subject comes from opts when
// opts.CommonName is set, else from the request; the SANs come from opts when
// any is set, else from the request. Key usage always follows role; the
// request's extensions are ignored.
func (ca *CA) SignCSR(csr *smx509.CertificateRequest, role Role, opts IssueOptions) (*smx509.Certificate, error) {
	if csr == nil {
		return nil, errors.New("pki: SignCSR: nil request")
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("pki: SignCSR: request signature: %w", err)
	}
	if !isSM2PublicKey(csr.PublicKey) {
		return nil, fmt.Errorf("%w: request public key %T", ErrNotSM2, csr.PublicKey)
	}
	if err := ca.check(); err != nil {
		return nil, err
	}
	fromCSR := opts.CommonName == ""
	if fromCSR {
		opts.CommonName = csr.Subject.CommonName
	}
	tmpl, err := template(opts, role, ca.Cert)
	if err != nil {
		return nil, err
	}
	if fromCSR {
		tmpl.Subject = csr.Subject
		tmpl.Subject.ExtraNames = nil
	}
	if len(opts.DNSNames)+len(opts.IPAddresses)+len(opts.EmailAddresses) == 0 {
		tmpl.DNSNames, tmpl.IPAddresses, tmpl.EmailAddresses = csr.DNSNames, csr.IPAddresses, csr.EmailAddresses
	}
	return create(tmpl, ca.Cert, csr.PublicKey, ca.Key)
}

// CreateCRL creates a DER CRL signed by the CA, valid from now for
// nextUpdate (zero = DefaultCRLValidity). number nil means the current Unix time.
func (ca *CA) CreateCRL(revoked []smx509.RevocationListEntry, number *big.Int, nextUpdate time.Duration) ([]byte, error) {
	if nextUpdate <= 0 {
		nextUpdate = DefaultCRLValidity
	}
	now := time.Now()
	return ca.CreateCRLAt(revoked, number, now, now.Add(nextUpdate))
}

// CreateCRLAt is CreateCRL with explicit thisUpdate / nextUpdate times.
func (ca *CA) CreateCRLAt(revoked []smx509.RevocationListEntry, number *big.Int, thisUpdate, nextUpdate time.Time) ([]byte, error) {
	if err := ca.check(); err != nil {
		return nil, err
	}
	if number == nil {
		number = big.NewInt(thisUpdate.Unix())
	}
	entries := make([]smx509.RevocationListEntry, len(revoked))
	for i, e := range revoked {
		if e.SerialNumber == nil {
			return nil, fmt.Errorf("pki: CreateCRL: entry %d has no serial number", i)
		}
		if e.RevocationTime.IsZero() {
			e.RevocationTime = thisUpdate
		}
		entries[i] = e
	}
	der, err := smx509.CreateRevocationList(rand.Reader, &smx509.RevocationList{
		Number: number, ThisUpdate: thisUpdate, NextUpdate: nextUpdate, RevokedCertificateEntries: entries,
	}, ca.Cert, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("pki: create CRL: %w", err)
	}
	return der, nil
}

func (ca *CA) check() error {
	if ca == nil || ca.Cert == nil || ca.Key == nil {
		return errors.New("pki: CA needs Cert and Key")
	}
	if err := checkSM2Cert(ca.Cert); err != nil {
		return err
	}
	if err := CheckUsage(ca.Cert, RoleCA); err != nil {
		return err
	}
	if !isSM2PublicKey(ca.Key.Public()) {
		return fmt.Errorf("%w: CA key %T", ErrNotSM2, ca.Key.Public())
	}
	return nil
}

func (ca *CA) issuePair(opts IssueOptions, eku []smx509.ExtKeyUsage) (*Pair, error) {
	sign, err := ca.issueWithKey(opts, RoleSign, eku)
	if err != nil {
		return nil, err
	}
	encOpts := opts
	if opts.SerialNumber != nil {
		// Two certificates cannot share a serial: the enc one takes serial+1.
		encOpts.SerialNumber = new(big.Int).Add(opts.SerialNumber, big.NewInt(1))
	}
	enc, err := ca.issueWithKey(encOpts, RoleEnc, eku)
	if err != nil {
		return nil, err
	}
	return &Pair{Sign: sign, Enc: enc}, nil
}

func (ca *CA) issueWithKey(opts IssueOptions, role Role, eku []smx509.ExtKeyUsage) (*Issued, error) {
	if err := ca.check(); err != nil {
		return nil, err
	}
	key, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pki: generate key: %w", err)
	}
	if opts.ExtKeyUsage == nil {
		opts.ExtKeyUsage = eku
	}
	tmpl, err := template(opts, role, ca.Cert)
	if err != nil {
		return nil, err
	}
	cert, err := create(tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, err
	}
	return &Issued{Cert: cert, Key: key}, nil
}

// template builds the certificate template for role; issuer nil = self-signed.
func template(opts IssueOptions, role Role, issuer *smx509.Certificate) (*smx509.Certificate, error) {
	notBefore := opts.NotBefore
	if notBefore.IsZero() {
		notBefore = time.Now().Add(-backdate)
	}
	validity := opts.Validity
	if validity <= 0 {
		validity = DefaultLeafValidity
		if role == RoleCA {
			validity = DefaultCAValidity
		}
	}
	notAfter := notBefore.Add(validity)
	if issuer != nil && notAfter.After(issuer.NotAfter) {
		notAfter = issuer.NotAfter
	}
	if !notAfter.After(notBefore) {
		return nil, fmt.Errorf("pki: certificate would not be valid: NotBefore %s is not before NotAfter %s (clamped to the issuer's NotAfter)",
			notBefore.UTC().Format(time.RFC3339), notAfter.UTC().Format(time.RFC3339))
	}
	serial := opts.SerialNumber
	if serial == nil {
		var err error
		if serial, err = randomSerial(); err != nil {
			return nil, err
		}
	}
	if serial.Sign() <= 0 {
		return nil, errors.New("pki: serial number must be positive")
	}
	if opts.CommonName == "" {
		return nil, errors.New("pki: CommonName is required")
	}
	t := &smx509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName: opts.CommonName, Organization: opts.Organization, OrganizationalUnit: opts.OrganizationalUnit,
		},
		NotBefore:             notBefore.UTC(),
		NotAfter:              notAfter.UTC(),
		BasicConstraintsValid: true,
		DNSNames:              opts.DNSNames,
		IPAddresses:           opts.IPAddresses,
		EmailAddresses:        opts.EmailAddresses,
		ExtKeyUsage:           opts.ExtKeyUsage,
		CRLDistributionPoints: opts.CRLDistributionPoints,
	}
	switch role {
	case RoleSign:
		t.KeyUsage = signUsages
	case RoleEnc:
		t.KeyUsage = encUsages
	case RoleCA:
		t.KeyUsage = keyUsageCA
		t.IsCA = true
		switch {
		case opts.MaxPathLen > 0:
			t.MaxPathLen = opts.MaxPathLen
		case opts.MaxPathLen < 0:
			t.MaxPathLenZero = true
		default:
			t.MaxPathLen = -1
		}
	default:
		return nil, fmt.Errorf("pki: unknown role %v", role)
	}
	return t, nil
}

// create signs tmpl, fills the subject key identifier (SM3 of the
// SubjectPublicKeyInfo, first 20 bytes) and parses the result back.
func create(tmpl, parent *smx509.Certificate, pub crypto.PublicKey, signer crypto.Signer) (*smx509.Certificate, error) {
	if len(tmpl.SubjectKeyId) == 0 {
		// RFC 7093 method 4 with SM3: hash of the SubjectPublicKeyInfo DER.
		spki, err := smx509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return nil, fmt.Errorf("pki: encode public key: %w", err)
		}
		sum := sm3.Sum(spki)
		tmpl.SubjectKeyId = sum[:20]
	}
	der, err := smx509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		return nil, fmt.Errorf("pki: create certificate: %w", err)
	}
	return smx509.ParseCertificate(der)
}

// randomSerial returns a random positive 128-bit serial number.
func randomSerial() (*big.Int, error) {
	var b [16]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("pki: serial: %w", err)
		}
		b[0] &= 0x7f // positive in DER without a leading zero byte
		if s := new(big.Int).SetBytes(b[:]); s.Sign() > 0 {
			return s, nil
		}
	}
}
