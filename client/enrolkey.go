package client

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/asn1"
	"errors"
	"fmt"

	"github.com/emmansun/gmsm/cipher"
	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm4"
	"github.com/emmansun/gmsm/smx509"
	"golang.org/x/crypto/cryptobyte"
	cryptobyte_asn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// The terminal's signing key during enrolment is any crypto.Signer with an SM2 public key that
// is also a crypto.Decrypter for the same key: a *sm2.PrivateKey, a *CoSigner (the CSR is then
// co-signed through gm_cosign, and the enveloped encryption key opened by collaborative
// decryption), or a vault key. gmsm's smx509.ParseCSRResponse and sm2.ParseEnvelopedPrivateKey
// need a *sm2.PrivateKey; the two functions below are the same parse over the interface, so
// every key kind takes one code path.

// enrolKey checks that key can enrol: an SM2 public key, and a crypto.Decrypter for it.
func enrolKey(key crypto.Signer) (*ecdsa.PublicKey, crypto.Decrypter, error) {
	if key == nil {
		return nil, nil, errors.New("client: no signing key")
	}
	pub, ok := key.Public().(*ecdsa.PublicKey)
	if !ok || !sm2.IsSM2PublicKey(pub) {
		return nil, nil, errors.New("client: the signing key is not an SM2 key")
	}
	dec, ok := key.(crypto.Decrypter)
	if !ok {
		return nil, nil, errors.New("client: the signing key cannot decrypt: it cannot open the enveloped encryption key")
	}
	return pub, dec, nil
}

// csrResponse is GM/T 0092-2020's CSRResponse as gmsm encodes it (smx509.MarshalCSRResponse):
//
//	CSRResponse ::= SEQUENCE {
//	  signCertificates         SET OF Certificate,
//	  encryptedPrivateKey  [0] SM2EnvelopedKey OPTIONAL,   -- explicit tagging
//	  encryptCertificates  [1] IMPLICIT SET OF Certificate OPTIONAL }   -- the certificates' DER concatenated
type csrResponse struct {
	SignCerts           []asn1.RawValue `asn1:"set"`
	EncryptedPrivateKey asn1.RawValue   `asn1:"optional,tag:0"`
	EncryptCerts        asn1.RawValue   `asn1:"optional,tag:1"`
}

// parsedCSRResponse is a CSRResponse before its key is opened.
type parsedCSRResponse struct {
	sign, enc *smx509.Certificate
	envelope  []byte // the SM2EnvelopedKey DER
}

// maxEnrolCerts bounds the certificates read from one CSRResponse field.
const maxEnrolCerts = 8

// parseCSRResponse reads the first signing and encryption certificates and the enveloped key
// (all required) of a DER CSRResponse; it opens nothing.
func parseCSRResponse(der []byte) (*parsedCSRResponse, error) {
	var r csrResponse
	rest, err := asn1.Unmarshal(der, &r)
	if err != nil || len(rest) > 0 {
		return nil, errors.New("malformed CSRResponse")
	}
	if len(r.SignCerts) == 0 || len(r.SignCerts) > maxEnrolCerts || len(r.EncryptedPrivateKey.Bytes) == 0 || len(r.EncryptCerts.Bytes) == 0 {
		return nil, errors.New("incomplete CSRResponse")
	}
	if r.EncryptedPrivateKey.Class != asn1.ClassContextSpecific || !r.EncryptedPrivateKey.IsCompound ||
		r.EncryptCerts.Class != asn1.ClassContextSpecific || !r.EncryptCerts.IsCompound {
		return nil, errors.New("malformed CSRResponse")
	}
	out := &parsedCSRResponse{envelope: r.EncryptedPrivateKey.Bytes}
	if out.sign, err = smx509.ParseCertificate(r.SignCerts[0].FullBytes); err != nil {
		return nil, fmt.Errorf("signing certificate: %w", err)
	}
	certs, err := smx509.ParseCertificates(r.EncryptCerts.Bytes)
	if err != nil || len(certs) == 0 || len(certs) > maxEnrolCerts {
		return nil, errors.New("malformed encryptCertificates")
	}
	out.enc = certs[0]
	return out, nil
}

var (
	oidSM4    = asn1.ObjectIdentifier{1, 2, 156, 10197, 1, 104}
	oidSM4ECB = asn1.ObjectIdentifier{1, 2, 156, 10197, 1, 104, 1}
)

// maxEnvelopedKey bounds an SM2EnvelopedKey (about 250 bytes for a 16-byte SM4 key).
const maxEnvelopedKey = 1024

// openEnvelopedKey opens a GB/T 35276 SM2EnvelopedKey with dec:
//
//	SM2EnvelopedKey ::= SEQUENCE {
//	  symAlgID               AlgorithmIdentifier,  -- SM4 or SM4-ECB
//	  symEncryptedKey        SM2Cipher,            -- ASN.1 (GM/T 0009) SM2 ciphertext of the SM4 key
//	  sm2PublicKey           BIT STRING,           -- 04 || X || Y
//	  sm2EncryptedPrivateKey BIT STRING }          -- SM4-ECB(d), 32 bytes
//
// Everything is checked before dec is called (for a CoSigner a round trip to gm_cosign); the
// SM2Cipher is handed to dec as it is (ASN.1, which both gmsm's PrivateKey.Decrypt and
// CoSigner.Decrypt take). The key must be 16 bytes and the opened d must give sm2PublicKey.
func openEnvelopedKey(dec crypto.Decrypter, env []byte) (*sm2.PrivateKey, error) {
	var (
		inner, algBytes, symKey cryptobyte.String
		pubBits, encD           asn1.BitString
		alg                     struct {
			Algorithm  asn1.ObjectIdentifier
			Parameters asn1.RawValue `asn1:"optional"`
		}
	)
	in := cryptobyte.String(env)
	if len(env) > maxEnvelopedKey ||
		!in.ReadASN1(&inner, cryptobyte_asn1.SEQUENCE) || !in.Empty() ||
		!inner.ReadASN1Element(&algBytes, cryptobyte_asn1.SEQUENCE) ||
		!inner.ReadASN1Element(&symKey, cryptobyte_asn1.SEQUENCE) ||
		!inner.ReadASN1BitString(&pubBits) ||
		!inner.ReadASN1BitString(&encD) ||
		!inner.Empty() {
		return nil, errors.New("malformed SM2EnvelopedKey")
	}
	if rest, err := asn1.Unmarshal(algBytes, &alg); err != nil || len(rest) > 0 || !(alg.Algorithm.Equal(oidSM4ECB) || alg.Algorithm.Equal(oidSM4)) {
		return nil, errors.New("SM2EnvelopedKey: not SM4")
	}
	if pubBits.BitLength != 8*65 || encD.BitLength != 8*32 {
		return nil, errors.New("SM2EnvelopedKey: wrong public or private key size")
	}
	pub, err := sm2.NewPublicKey(pubBits.Bytes)
	if err != nil {
		return nil, fmt.Errorf("SM2EnvelopedKey: public key: %w", err)
	}
	key, err := dec.Decrypt(rand.Reader, symKey, nil)
	if err != nil {
		return nil, fmt.Errorf("SM2EnvelopedKey: the symmetric key does not open: %w", err)
	}
	defer clear(key)
	if len(key) != sm4.BlockSize {
		return nil, errors.New("SM2EnvelopedKey: symmetric key is not 16 bytes")
	}
	block, err := sm4.NewCipher(key)
	if err != nil {
		return nil, err
	}
	d := make([]byte, len(encD.Bytes))
	defer clear(d)
	cipher.NewECBDecrypter(block).CryptBlocks(d, encD.Bytes)
	priv, err := sm2.NewPrivateKey(d)
	if err != nil {
		return nil, errors.New("SM2EnvelopedKey: the opened private key is invalid")
	}
	if !priv.PublicKey.Equal(pub) {
		priv.D.SetInt64(0)
		return nil, errors.New("SM2EnvelopedKey: the opened private key does not match its public key")
	}
	return priv, nil
}
