package client

import (
	"crypto"
	"errors"
	"fmt"

	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/signing"
	"github.com/gmgate/gmgate/tlcp"
)

// Identity is one certificate of a terminal (or of the platform) with its private key.
type Identity struct {
	// Certificate is the leaf certificate.
	Certificate *smx509.Certificate
	// Chain holds the certificates after the leaf (intermediates), in order; may be empty.
	Chain []*smx509.Certificate
	// Key is the leaf's private key: a crypto.Signer for a signing certificate, a
	// crypto.Decrypter for an encryption certificate (a gmsm *sm2.PrivateKey is both; a key in
	// an HSM or the key vault works as long as it implements the interface).
	Key crypto.PrivateKey
}

// LoadIdentity reads a certificate file (PEM with the leaf first and optional intermediates, or
// a single DER certificate) with pki.LoadCertificatesFile and an SM2 private key file (PKCS#8,
// PBES2-encrypted PKCS#8 with password, or SEC1) with pki.LoadPrivateKeyFile, and checks that
// the key belongs to the certificate. password may be nil for an unencrypted key.
func LoadIdentity(certFile, keyFile string, password []byte) (*Identity, error) {
	certs, err := pki.LoadCertificatesFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("client: load certificate: %w", err)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("client: load certificate: %s holds no certificate", certFile)
	}
	key, err := pki.LoadPrivateKeyFile(keyFile, password)
	if err != nil {
		return nil, fmt.Errorf("client: load key: %w", err)
	}
	if !key.PublicKey.Equal(certs[0].PublicKey) {
		return nil, fmt.Errorf("client: key in %s does not match the certificate in %s", keyFile, certFile)
	}
	return &Identity{Certificate: certs[0], Chain: certs[1:], Key: key}, nil
}

// LoadTerminal loads a terminal's dual certificate: the signing identity (which also signs
// requests) and the encryption identity. encCert and encKey may both be empty when the terminal
// has no encryption certificate (then it cannot do TLCP client authentication nor open
// enveloped replies).
func LoadTerminal(signCert, signKey, encCert, encKey string, password []byte) (sign, enc *Identity, err error) {
	sign, err = LoadIdentity(signCert, signKey, password)
	if err != nil {
		return nil, nil, err
	}
	if encCert == "" && encKey == "" {
		return sign, nil, nil
	}
	enc, err = LoadIdentity(encCert, encKey, password)
	if err != nil {
		return nil, nil, err
	}
	return sign, enc, nil
}

// LoadCertificates reads platform certificates (to verify replies or seal envelopes) with
// pki.LoadCertificatesFile.
func LoadCertificates(file string) ([]*smx509.Certificate, error) {
	certs, err := pki.LoadCertificatesFile(file)
	if err != nil {
		return nil, fmt.Errorf("client: load certificates: %w", err)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("client: %s holds no certificate", file)
	}
	return certs, nil
}

// TLCPCertificate returns id as a tlcp.Certificate (leaf and chain DER, key).
func (id *Identity) TLCPCertificate() tlcp.Certificate {
	if id == nil || id.Certificate == nil {
		return tlcp.Certificate{}
	}
	chain := make([][]byte, 0, 1+len(id.Chain))
	chain = append(chain, id.Certificate.Raw)
	for _, c := range id.Chain {
		chain = append(chain, c.Raw)
	}
	return tlcp.Certificate{Certificate: chain, PrivateKey: id.Key, Leaf: id.Certificate}
}

// SigningKey returns id as a signing.Key for scheme-level signing, with keyID as the key ID
// (empty: the scheme derives it from the certificate where it knows how, see Config.Key) and
// merchantID as the merchant / app ID. It fails when the key is not a crypto.Signer.
func (id *Identity) SigningKey(keyID, merchantID string) (signing.Key, error) {
	if id == nil || id.Certificate == nil {
		return signing.Key{}, errors.New("client: nil identity")
	}
	s, ok := id.Key.(crypto.Signer)
	if !ok {
		return signing.Key{}, fmt.Errorf("client: key of %T is not a crypto.Signer", id.Key)
	}
	return signing.Key{Signer: s, KeyID: keyID, Cert: id.Certificate, MerchantID: merchantID}, nil
}
