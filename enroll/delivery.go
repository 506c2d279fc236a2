package enroll

import (
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
)

// envelopeTo builds the standard delivery of encKey to the terminal's signing public key: the
// GB/T 35276 SM2EnvelopedKey and the GM/T 0092-2020 CSRResponse carrying it with both chains.
func envelopeTo(signPub *ecdsa.PublicKey, encKey *sm2.PrivateKey, sign, enc *smx509.Certificate) (Delivery, error) {
	env, err := sm2.MarshalEnvelopedPrivateKey(rand.Reader, signPub, encKey)
	if err != nil {
		return Delivery{}, fmt.Errorf("enroll: enveloping the encryption key: %w", err)
	}
	// The CSRResponse carries the leaves only: signCerts is a DER SET OF, whose encoding sorts
	// its elements, so a chain in it would not keep the leaf first (GM/T 0092 readers, gmsm's
	// included, take the first element as the signing certificate). The chain travels beside it.
	resp, err := smx509.MarshalCSRResponse([]*smx509.Certificate{sign}, encKey, []*smx509.Certificate{enc})
	if err != nil {
		return Delivery{}, fmt.Errorf("enroll: CSRResponse: %w", err)
	}
	return Delivery{EnvelopedKey: env, CSRResponse: resp}, nil
}

// cfcaEncryptedKey is CFCA's escrow-key structure (what cfca.ParseEscrowPrivateKey reads):
// SEQUENCE { version INTEGER (1), encryptedKey OCTET STRING } where encryptedKey is the SM2
// ciphertext (C1||C3||C2, C1 without its 0x04 prefix) of X||Y||D of the key.
type cfcaEncryptedKey struct {
	Version      int
	EncryptedKey []byte
}

// cfcaEnvelope encrypts encKey to a CFCA request's temporary public key, base64 encoded.
func cfcaEnvelope(tmpPub *ecdsa.PublicKey, encKey *sm2.PrivateKey) (string, error) {
	if !sm2.IsSM2PublicKey(tmpPub) {
		return "", errors.New("enroll: temporary public key is not SM2")
	}
	pt := make([]byte, 96)
	defer clear(pt)
	encKey.PublicKey.X.FillBytes(pt[:32])
	encKey.PublicKey.Y.FillBytes(pt[32:64])
	encKey.D.FillBytes(pt[64:])
	ct, err := sm2.Encrypt(rand.Reader, tmpPub, pt, sm2.NewPlainEncrypterOpts(sm2.MarshalUncompressed, sm2.C1C3C2))
	if err != nil {
		return "", fmt.Errorf("enroll: encrypting to the temporary key: %w", err)
	}
	if len(ct) == 0 || ct[0] != 0x04 {
		return "", errors.New("enroll: unexpected SM2 ciphertext form")
	}
	der, err := asn1.Marshal(cfcaEncryptedKey{Version: 1, EncryptedKey: ct[1:]})
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(der), nil
}
