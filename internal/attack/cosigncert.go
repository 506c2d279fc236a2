package attack

import (
	"crypto/cipher"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/binary"
	"errors"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/sm4"
)

// Attacker helpers for the certificate of a collaborative key (gm_enroll + gm_cosign): what a
// holder of one share can try to make a proof of possession with.

// ShareAsKey takes one share d_i of a collaborative key (32 bytes) as if it were a whole SM2
// private key: all a thief holding only that share can sign with.
func ShareAsKey(d []byte) (*sm2.PrivateKey, error) { return sm2.NewPrivateKey(d) }

type pkcs10 struct {
	Info      asn1.RawValue
	Algorithm pkix.AlgorithmIdentifier
	Signature asn1.BitString
}

// ResignCSR replaces the signature of a DER PKCS#10 request by key's SM2 signature (default
// user ID) over the same CertificationRequestInfo: a request that still names its public key
// but is signed by another key, such as one share of that collaborative key.
func ResignCSR(der []byte, key *sm2.PrivateKey) ([]byte, error) {
	var r pkcs10
	rest, err := asn1.Unmarshal(der, &r)
	if err != nil || len(rest) > 0 {
		return nil, errors.New("attack: not a PKCS#10 request")
	}
	sig, err := sm2.SignASN1(rand.Reader, key, r.Info.FullBytes, sm2.DefaultSM2SignerOpts)
	if err != nil {
		return nil, err
	}
	r.Signature = asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)}
	return asn1.Marshal(r)
}

// OpenCoSignerShare opens a terminal's PIN-sealed collaborative key file (client.CoSigner.Seal:
// "GMCOSIGN1" | count | salt | len | key ID | joint key | nonce | SM4-GCM(d_1)) with the PIN and
// returns d_1: what a thief of the phone who also has the PIN holds.
func OpenCoSignerShare(sealed, pin []byte) ([]byte, error) {
	const magic = "GMCOSIGN1"
	if len(sealed) < len(magic)+21 || string(sealed[:len(magic)]) != magic {
		return nil, errors.New("attack: not a sealed collaborative key")
	}
	p := sealed[len(magic):]
	count := int(binary.BigEndian.Uint32(p))
	salt, idLen := p[4:20], int(p[20])
	hdr := len(magic) + 21 + idLen + 65
	if count > 10_000_000 || len(sealed) < hdr+12+16 {
		return nil, errors.New("attack: malformed sealed key")
	}
	kek, err := pbkdf2.Key(sm3.New, string(pin), salt, count, 16)
	if err != nil {
		return nil, err
	}
	block, err := sm4.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return aead.Open(nil, sealed[hdr:hdr+12], sealed[hdr+12:], sealed[:hdr])
}
