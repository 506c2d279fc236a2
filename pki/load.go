package pki

import (
	"bytes"
	"crypto/ecdsa"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/emmansun/gmsm/pkcs"
	"github.com/emmansun/gmsm/pkcs8"
	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
)

// Size bounds for untrusted input.
const (
	// MaxPEMSize is the largest PEM input (certificates or key) accepted.
	MaxPEMSize = 1 << 20
	// MaxDERSize is the largest single DER certificate accepted.
	MaxDERSize = 64 << 10
	// MaxCertificatesPerPEM is the largest number of CERTIFICATE blocks accepted in one input.
	MaxCertificatesPerPEM = 256
)

// PEM block types.
const (
	pemTypeCertificate  = "CERTIFICATE"
	pemTypePrivateKey   = "PRIVATE KEY"
	pemTypeEncryptedKey = "ENCRYPTED PRIVATE KEY"
	pemTypeECKey        = "EC PRIVATE KEY"
	pemTypeSM2Key       = "SM2 PRIVATE KEY"
)

// ParseCertificatesPEM parses every CERTIFICATE block of data, in order.
// Blocks of other types are skipped. It fails with ErrMalformedPEM when there
// is no CERTIFICATE block, ErrInputTooLarge above MaxPEMSize or
// MaxCertificatesPerPEM, ErrMalformedCertificate when a block does not parse
// and ErrNotSM2 when a certificate is not an SM2 / SM2-with-SM3 certificate.
func ParseCertificatesPEM(data []byte) ([]*smx509.Certificate, error) {
	if len(data) > MaxPEMSize {
		return nil, fmt.Errorf("%w: PEM input is %d bytes, limit %d", ErrInputTooLarge, len(data), MaxPEMSize)
	}
	var certs []*smx509.Certificate
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != pemTypeCertificate {
			continue
		}
		if len(certs) >= MaxCertificatesPerPEM {
			return nil, fmt.Errorf("%w: more than %d certificates in PEM input", ErrInputTooLarge, MaxCertificatesPerPEM)
		}
		if len(block.Headers) != 0 {
			return nil, fmt.Errorf("%w: CERTIFICATE block #%d has PEM headers", ErrMalformedPEM, len(certs)+1)
		}
		c, err := ParseCertificateDER(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate #%d: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%w: no CERTIFICATE block found", ErrMalformedPEM)
	}
	return certs, nil
}

// ParseCertificateDER parses one DER certificate and checks that it is an
// SM2 certificate signed with SM2-with-SM3 (ErrNotSM2 otherwise).
func ParseCertificateDER(der []byte) (*smx509.Certificate, error) {
	if len(der) == 0 {
		return nil, fmt.Errorf("%w: empty input", ErrMalformedCertificate)
	}
	if len(der) > MaxDERSize {
		return nil, fmt.Errorf("%w: certificate is %d bytes, limit %d", ErrInputTooLarge, len(der), MaxDERSize)
	}
	c, err := smx509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformedCertificate, err)
	}
	if err := checkSM2Cert(c); err != nil {
		return nil, err
	}
	return c, nil
}

// checkSM2Cert returns a *VerifyError wrapping ErrNotSM2 unless c has an SM2
// public key and an SM2-with-SM3 signature.
func checkSM2Cert(c *smx509.Certificate) error {
	if !isSM2PublicKey(c.PublicKey) {
		return certError(ErrNotSM2, c, "public key is %v, not SM2", c.PublicKeyAlgorithm)
	}
	if c.SignatureAlgorithm != smx509.SM2WithSM3 {
		return certError(ErrNotSM2, c, "signature algorithm is %v, not SM2-SM3", c.SignatureAlgorithm)
	}
	return nil
}

func isSM2PublicKey(pub any) bool {
	k, ok := pub.(*ecdsa.PublicKey)
	return ok && k != nil && k.Curve == sm2.P256()
}

// LoadCertificatesFiles loads every certificate of every file in paths, in order (the trust
// anchors, intermediates or bank certificates of a configuration); an error names the file.
func LoadCertificatesFiles(paths ...string) ([]*smx509.Certificate, error) {
	var out []*smx509.Certificate
	for _, p := range paths {
		cs, err := LoadCertificatesFile(p)
		if err != nil {
			return nil, fmt.Errorf("loading %s: %w", p, err)
		}
		out = append(out, cs...)
	}
	return out, nil
}

// LoadCertificatesFile reads path and parses it as PEM (every CERTIFICATE
// block) or, when it holds no PEM block, as a single DER certificate.
func LoadCertificatesFile(path string) ([]*smx509.Certificate, error) {
	data, err := readBounded(path, MaxPEMSize)
	if err != nil {
		return nil, err
	}
	if !bytes.Contains(data, []byte("-----BEGIN")) {
		c, err := ParseCertificateDER(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return []*smx509.Certificate{c}, nil
	}
	certs, err := ParseCertificatesPEM(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return certs, nil
}

// readBounded reads at most limit bytes from path, failing with
// ErrInputTooLarge when the file is larger.
func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: %w: limit %d bytes", path, ErrInputTooLarge, limit)
	}
	return data, nil
}

// ParsePrivateKeyPEM parses the first private-key block of data. Accepted
// forms: PKCS#8 "PRIVATE KEY", password-encrypted PKCS#8 "ENCRYPTED PRIVATE
// KEY" (PBES2, via gmsm/pkcs8) and SEC1 "EC PRIVATE KEY" (or "SM2 PRIVATE
// KEY") on the SM2 curve. password is only used for encrypted keys; an
// encrypted key with a wrong or empty password fails with ErrBadPassword.
// Legacy OpenSSL PEM encryption (Proc-Type/DEK-Info headers) is rejected.
// A key on another curve / of another type fails with ErrNotSM2.
func ParsePrivateKeyPEM(data []byte, password []byte) (*sm2.PrivateKey, error) {
	if len(data) > MaxPEMSize {
		return nil, fmt.Errorf("%w: PEM input is %d bytes, limit %d", ErrInputTooLarge, len(data), MaxPEMSize)
	}
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, fmt.Errorf("%w: no private key block found", ErrMalformedPEM)
		}
		switch block.Type {
		case pemTypePrivateKey, pemTypeEncryptedKey, pemTypeECKey, pemTypeSM2Key:
			key, err := parseKeyBlock(block, password)
			zero(block.Bytes)
			return key, err
		case "RSA PRIVATE KEY", "DSA PRIVATE KEY", "OPENSSH PRIVATE KEY":
			zero(block.Bytes)
			return nil, fmt.Errorf("%w: PEM block type %q", ErrNotSM2, block.Type)
		}
	}
}

func parseKeyBlock(block *pem.Block, password []byte) (*sm2.PrivateKey, error) {
	if _, ok := block.Headers["Proc-Type"]; ok {
		return nil, fmt.Errorf("%w: legacy PEM encryption (Proc-Type header) is not supported; use PKCS#8 PBES2", ErrMalformedKey)
	}
	var (
		key any
		err error
	)
	switch block.Type {
	case pemTypePrivateKey:
		key, err = smx509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: PKCS#8: %v", ErrMalformedKey, err)
		}
	case pemTypeEncryptedKey:
		if len(password) == 0 {
			return nil, fmt.Errorf("%w: key is encrypted and no password was given", ErrBadPassword)
		}
		if err := checkPBES2Params(block.Bytes); err != nil {
			return nil, err
		}
		key, _, err = pkcs8.ParsePrivateKey(block.Bytes, password)
		if err != nil {
			// Decryption failure and a wrong password are indistinguishable;
			// do not echo gmsm's detail, it may hint at padding.
			return nil, ErrBadPassword
		}
	case pemTypeECKey, pemTypeSM2Key:
		key, err = smx509.ParseTypedECPrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: SEC1: %v", ErrMalformedKey, err)
		}
	}
	k, ok := key.(*sm2.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%w: private key type %T", ErrNotSM2, key)
	}
	return k, nil
}

// LoadPrivateKeyFile reads path and parses it with ParsePrivateKeyPEM.
func LoadPrivateKeyFile(path string, password []byte) (*sm2.PrivateKey, error) {
	data, err := readBounded(path, MaxPEMSize)
	if err != nil {
		return nil, err
	}
	defer zero(data)
	k, err := ParsePrivateKeyPEM(data, password)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// MarshalPrivateKeyPEM encodes key as PEM PKCS#8. With a nil (or empty)
// password the result is a plain "PRIVATE KEY"; otherwise it is an
// "ENCRYPTED PRIVATE KEY" using PBES2 (PBKDF2-HMAC-SM3 and SM4-CBC).
func MarshalPrivateKeyPEM(key *sm2.PrivateKey, password []byte) ([]byte, error) {
	if key == nil {
		return nil, errors.New("pki: nil private key")
	}
	var (
		der []byte
		err error
		typ = pemTypePrivateKey
	)
	if len(password) == 0 {
		der, err = smx509.MarshalPKCS8PrivateKey(key)
	} else {
		typ = pemTypeEncryptedKey
		der, err = pkcs8.MarshalPrivateKey(key, password, pbes2Opts)
	}
	if err != nil {
		return nil, fmt.Errorf("pki: encode private key: %w", err)
	}
	out := pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
	zero(der)
	return out, nil
}

// EncodeCertificatesPEM encodes certs as consecutive CERTIFICATE blocks.
func EncodeCertificatesPEM(certs ...*smx509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range certs {
		if c == nil {
			continue
		}
		_ = pem.Encode(&b, &pem.Block{Type: pemTypeCertificate, Bytes: c.Raw})
	}
	return b.Bytes()
}

// zero overwrites b (key material we own).
func zero(b []byte) {
	clear(b)
}

// PBES2 parameters for keys written by MarshalPrivateKeyPEM: PBKDF2 with
// HMAC-SM3 and SM4-CBC under the standard PBES2 OID (readable by Tongsuo).
const pbkdf2Iterations = 100000

var pbes2Opts = pkcs.NewPBESEncrypter(pkcs.SM4CBC, pkcs.NewPBKDF2Opts(pkcs.SM3, 16, pbkdf2Iterations))

// maxPBKDF2Iterations bounds the work an encrypted key file can demand.
const maxPBKDF2Iterations = 2_000_000

var (
	oidPBES2   = []byte{0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x05, 0x0d}       // 1.2.840.113549.1.5.13
	oidSMPBES  = []byte{0x2a, 0x81, 0x1c, 0xcf, 0x55, 0x06, 0x04, 0x01, 0x05, 0x02} // 1.2.156.10197.6.4.1.5.2
	oidPBKDF2  = []byte{0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x05, 0x0c}       // 1.2.840.113549.1.5.12
	oidSMPBKDF = []byte{0x2a, 0x81, 0x1c, 0xcf, 0x55, 0x06, 0x04, 0x01, 0x05, 0x01} // 1.2.156.10197.6.4.1.5.1
)

// checkPBES2Params accepts only PBES2 with PBKDF2 and a bounded iteration
// count, before any key derivation runs (PBES1 and scrypt are rejected).
func checkPBES2Params(der []byte) error {
	bad := func(what string) error {
		return fmt.Errorf("%w: encrypted key: %s", ErrMalformedKey, what)
	}
	in := cryptobyte.String(der)
	var epki, alg, params, kdf, kdfParams cryptobyte.String
	var algOID, kdfOID []byte
	if !in.ReadASN1(&epki, cbasn1.SEQUENCE) || !in.Empty() {
		return bad("not an EncryptedPrivateKeyInfo")
	}
	if !epki.ReadASN1(&alg, cbasn1.SEQUENCE) || !alg.ReadASN1Bytes(&algOID, cbasn1.OBJECT_IDENTIFIER) {
		return bad("bad encryption algorithm")
	}
	if !bytes.Equal(algOID, oidPBES2) && !bytes.Equal(algOID, oidSMPBES) {
		return bad("only PBES2 is supported")
	}
	if !alg.ReadASN1(&params, cbasn1.SEQUENCE) || !params.ReadASN1(&kdf, cbasn1.SEQUENCE) ||
		!kdf.ReadASN1Bytes(&kdfOID, cbasn1.OBJECT_IDENTIFIER) {
		return bad("bad PBES2 parameters")
	}
	if !bytes.Equal(kdfOID, oidPBKDF2) && !bytes.Equal(kdfOID, oidSMPBKDF) {
		return bad("only PBKDF2 is supported")
	}
	var salt []byte
	var iter int64
	if !kdf.ReadASN1(&kdfParams, cbasn1.SEQUENCE) || !kdfParams.ReadASN1Bytes(&salt, cbasn1.OCTET_STRING) ||
		!kdfParams.ReadASN1Integer(&iter) {
		return bad("bad PBKDF2 parameters")
	}
	if iter < 1 || iter > maxPBKDF2Iterations {
		return bad(fmt.Sprintf("PBKDF2 iteration count %d outside 1..%d", iter, maxPBKDF2Iterations))
	}
	return nil
}
