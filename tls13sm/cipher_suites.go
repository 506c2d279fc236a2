package tls13sm

import (
	"crypto/cipher"
	"encoding/binary"
	"errors"

	smcipher "github.com/emmansun/gmsm/cipher"
	"github.com/emmansun/gmsm/sm4"
)

// Cipher suites of RFC 8998. Both use SM3 as the hash of the key schedule.
const (
	TLS_SM4_GCM_SM3 uint16 = 0x00C6
	TLS_SM4_CCM_SM3 uint16 = 0x00C7
)

const (
	aeadKeyLen   = 16 // SM4
	aeadNonceLen = 12 // RFC 8446 5.3: max(8, N_MIN) = 12 for both suites
	aeadTagLen   = 16
)

// CipherSuiteName returns the RFC 8998 name of a suite, or "" if it is not one.
func CipherSuiteName(id uint16) string {
	switch id {
	case TLS_SM4_GCM_SM3:
		return "TLS_SM4_GCM_SM3"
	case TLS_SM4_CCM_SM3:
		return "TLS_SM4_CCM_SM3"
	}
	return ""
}

func supportedSuite(id uint16) bool { return CipherSuiteName(id) != "" }

// newAEAD returns SM4-GCM or SM4-CCM (12-byte nonce, 16-byte tag) under key.
func newAEAD(suite uint16, key []byte) (cipher.AEAD, error) {
	if len(key) != aeadKeyLen {
		return nil, errors.New("tls13sm: bad traffic key length")
	}
	block, err := sm4.NewCipher(key)
	if err != nil {
		return nil, err
	}
	switch suite {
	case TLS_SM4_GCM_SM3:
		return cipher.NewGCM(block)
	case TLS_SM4_CCM_SM3:
		return smcipher.NewCCM(block)
	}
	return nil, errors.New("tls13sm: unsupported cipher suite")
}

// recordProtection is one direction's AEAD with its static IV (RFC 8446 5.3).
type recordProtection struct {
	aead cipher.AEAD
	iv   [aeadNonceLen]byte
}

func newRecordProtection(suite uint16, key, iv []byte) (*recordProtection, error) {
	a, err := newAEAD(suite, key)
	if err != nil {
		return nil, err
	}
	if len(iv) != aeadNonceLen {
		return nil, errors.New("tls13sm: bad traffic IV length")
	}
	p := &recordProtection{aead: a}
	copy(p.iv[:], iv)
	return p, nil
}

// nonce is the per-record nonce: the 64-bit sequence number, left-padded to
// the IV length, XORed with the static IV.
func (p *recordProtection) nonce(seq uint64) [aeadNonceLen]byte {
	n := p.iv
	var s [8]byte
	binary.BigEndian.PutUint64(s[:], seq)
	for i := 0; i < 8; i++ {
		n[aeadNonceLen-8+i] ^= s[i]
	}
	return n
}
