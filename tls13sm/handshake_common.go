package tls13sm

import (
	"crypto/ecdsa"
	"errors"
	"hash"
	"io"

	"github.com/emmansun/gmsm/sm2"
)

const (
	serverSignatureContext = "TLS 1.3, server CertificateVerify\x00"
	clientSignatureContext = "TLS 1.3, client CertificateVerify\x00"
)

// signedMessage is the content covered by a CertificateVerify (RFC 8446 4.4.3).
func signedMessage(context string, transcript hash.Hash) []byte {
	const pad = 64
	out := make([]byte, 0, pad+len(context)+hashLen)
	for i := 0; i < pad; i++ {
		out = append(out, 0x20)
	}
	out = append(out, context...)
	return transcript.Sum(out)
}

// sm2SignerOpts are the options our CertificateVerify signatures are made with.
var sm2SignerOpts = sm2.NewSM2SignerOption(true, []byte(SM2SignatureID))

// signCertificateVerify signs the transcript with the local key.
func signCertificateVerify(rand io.Reader, cert *preparedCert, context string, transcript hash.Hash) ([]byte, error) {
	msg := signedMessage(context, transcript)
	sig, err := cert.signer.Sign(rand, msg, sm2SignerOpts)
	if err != nil {
		return nil, keyAlert(AlertInternalError, err)
	}
	return sig, nil
}

// verifyCertificateVerify checks a peer's CertificateVerify: the scheme must
// be sm2sig_sm3 (illegal_parameter otherwise, as it was never offered) and
// the signature must verify (decrypt_error otherwise).
func verifyCertificateVerify(pub *ecdsa.PublicKey, m *certificateVerifyMsg, context string, transcript hash.Hash) error {
	if m.scheme != schemeSM2SM3 {
		return newAlert(AlertIllegalParameter, "CertificateVerify with a signature scheme that was not offered")
	}
	if len(m.signature) > 80 {
		return newAlert(AlertDecryptError, "CertificateVerify signature too long")
	}
	if !sm2.VerifyASN1WithSM2(pub, []byte(SM2SignatureID), signedMessage(context, transcript), m.signature) {
		return newAlert(AlertDecryptError, "invalid CertificateVerify signature")
	}
	return nil
}

// messageHashTranscript restarts the transcript after a HelloRetryRequest
// with message_hash(Hash(ClientHello1)) (RFC 8446 4.4.1).
func messageHashTranscript(ch1 []byte) hash.Hash {
	h := newHash()
	h.Write(ch1)
	sum := h.Sum(nil)
	t := newHash()
	t.Write([]byte{typeMessageHash, 0, 0, byte(len(sum))})
	t.Write(sum)
	return t
}

// cloneHash copies a running SM3 state.
func cloneHash(h hash.Hash) hash.Hash {
	if c, ok := h.(hash.Cloner); ok {
		if n, err := c.Clone(); err == nil {
			return n
		}
	}
	// Fallback through the binary marshaler that sm3 implements.
	type marshaler interface {
		MarshalBinary() ([]byte, error)
		UnmarshalBinary([]byte) error
	}
	m, ok := h.(marshaler)
	if !ok {
		panic("tls13sm: transcript hash cannot be cloned")
	}
	st, err := m.MarshalBinary()
	if err != nil {
		panic("tls13sm: transcript hash cannot be cloned")
	}
	n := newHash()
	if err := n.(marshaler).UnmarshalBinary(st); err != nil {
		panic("tls13sm: transcript hash cannot be cloned")
	}
	return n
}

// pskBinder computes the binder of a PSK over transcript || truncated hello.
func pskBinder(psk []byte, transcript hash.Hash, truncated []byte) []byte {
	early := earlySecret(psk)
	defer zero(early)
	binderKey := deriveSecret(early, labelResBinder, nil)
	defer zero(binderKey)
	t := cloneHash(transcript)
	t.Write(truncated)
	return finishedMAC(binderKey, t.Sum(nil))
}

var errNoCertificate = errors.New("tls13sm: no certificate configured")
