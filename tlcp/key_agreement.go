package tlcp

import (
	"crypto"
	"crypto/ecdsa"
	"errors"
	"io"

	"github.com/emmansun/gmsm/ecdh"
	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
)

// ecdhParamsPrefix is curve_type named_curve(3) || curve 0x0029 || point length 65.
var ecdhParamsPrefix = []byte{3, 0, curveSM2, 65}

// signMessage signs msg with an SM2 signer using Z_A with the default ID.
func signMessage(s crypto.Signer, rand io.Reader, msg []byte) ([]byte, error) {
	return s.Sign(rand, msg, sm2.DefaultSM2SignerOpts)
}

// sm2PublicKey returns the SM2 public key of a certificate.
func sm2PublicKey(cert *smx509.Certificate) (*ecdsa.PublicKey, error) {
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || !sm2.IsSM2PublicKey(pub) {
		return nil, errors.New("certificate key is not an SM2 key")
	}
	return pub, nil
}

func ecdhPublic(cert *smx509.Certificate) (*ecdh.PublicKey, error) {
	pub, err := sm2PublicKey(cert)
	if err != nil {
		return nil, err
	}
	return sm2.PublicKeyToECDH(pub)
}

// verifySignature verifies an SM2 signature (DER) over msg with the default ID.
func verifySignature(pub *ecdsa.PublicKey, msg, sig []byte) bool {
	return sm2.VerifyASN1WithSM2(pub, nil, msg, sig)
}

// eccSKEMessage builds client_random || server_random || uint24 len || encCert.
func eccSKEMessage(clientRandom, serverRandom, encSuffix []byte) []byte {
	m := make([]byte, 0, 64+len(encSuffix))
	m = append(m, clientRandom...)
	m = append(m, serverRandom...)
	return append(m, encSuffix...)
}

func encSuffixOf(encDER []byte) []byte {
	n := len(encDER)
	return append([]byte{byte(n >> 16), byte(n >> 8), byte(n)}, encDER...)
}

func ecdheSKEMessage(clientRandom, serverRandom, params []byte) []byte {
	m := make([]byte, 0, 64+len(params))
	m = append(m, clientRandom...)
	m = append(m, serverRandom...)
	return append(m, params...)
}

// decryptPreMaster decrypts an ECC pre-master secret (DER or raw C1C3C2).
func decryptPreMaster(dec crypto.Decrypter, rand io.Reader, ct []byte) ([]byte, error) {
	var opts crypto.DecrypterOpts = sm2.ASN1DecrypterOpts
	if ct[0] == 0x04 {
		opts = sm2.NewPlainDecrypterOpts(sm2.C1C3C2)
	}
	pms, err := dec.Decrypt(rand, ct, opts)
	if err != nil {
		return nil, err
	}
	if len(pms) != masterSecretLen {
		zeroize(pms)
		return nil, errors.New("pre-master secret is not 48 bytes")
	}
	return pms, nil
}

// encryptPreMaster encrypts pms to the server's enc key, DER or raw.
func encryptPreMaster(rand io.Reader, pub *ecdsa.PublicKey, pms []byte, raw bool) ([]byte, error) {
	if raw {
		return sm2.Encrypt(rand, pub, pms, sm2.NewPlainEncrypterOpts(sm2.MarshalUncompressed, sm2.C1C3C2))
	}
	return sm2.Encrypt(rand, pub, pms, sm2.ASN1EncrypterOpts)
}

// sm2KeyExchange computes the 48-byte ECDHE pre-master secret (GB/T 32918.3).
// The server is the initiator A, the client the responder B.
func sm2KeyExchange(agr SM2KeyAgreement, isClient bool, eph *ecdh.PrivateKey,
	ownStatic, peerStatic, peerEph *ecdh.PublicKey) ([]byte, error) {
	v, err := agr.SM2MQV(eph, peerStatic, peerEph)
	if err != nil {
		return nil, err
	}
	return v.SM2SharedKey(isClient, masterSecretLen, ownStatic, peerStatic, nil, nil)
}
