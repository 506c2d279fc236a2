package attack

import (
	"crypto/rand"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"

	"github.com/emmansun/gmsm/sm2"
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
