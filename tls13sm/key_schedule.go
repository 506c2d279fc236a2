package tls13sm

import (
	"crypto/hkdf"
	"crypto/hmac"
	"errors"
	"hash"

	"github.com/emmansun/gmsm/sm3"
	"golang.org/x/crypto/cryptobyte"
)

// The TLS 1.3 key schedule (RFC 8446 section 7.1) with SM3 as its hash, as
// both RFC 8998 suites require.

const hashLen = sm3.Size // 32

// Labels of RFC 8446 7.1 and 7.2.
const (
	labelDerived           = "derived"
	labelExtBinder         = "ext binder"
	labelResBinder         = "res binder"
	labelClientHandshake   = "c hs traffic"
	labelServerHandshake   = "s hs traffic"
	labelClientApplication = "c ap traffic"
	labelServerApplication = "s ap traffic"
	labelExporterMaster    = "exp master"
	labelResumption        = "res master"
	labelResumptionPSK     = "resumption"
	labelTrafficUpdate     = "traffic upd"
	labelKey               = "key"
	labelIV                = "iv"
	labelFinished          = "finished"
)

func newHash() hash.Hash { return sm3.New() }

// hkdfExtract is HKDF-Extract(salt, ikm) over SM3; a nil ikm is HashLen zeros.
func hkdfExtract(ikm, salt []byte) []byte {
	if ikm == nil {
		ikm = make([]byte, hashLen)
	}
	if salt == nil {
		salt = make([]byte, hashLen)
	}
	prk, err := hkdf.Extract(newHash, ikm, salt)
	if err != nil { // cannot happen for SM3
		panic("tls13sm: HKDF-Extract: " + err.Error())
	}
	return prk
}

// expandLabel is HKDF-Expand-Label(secret, label, context, length).
func expandLabel(secret []byte, label string, context []byte, length int) []byte {
	if len("tls13 ")+len(label) > 255 || len(context) > 255 || length > 255*hashLen {
		panic("tls13sm: expandLabel: invalid argument") // internal use only: fixed labels
	}
	var b cryptobyte.Builder
	b.AddUint16(uint16(length))
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) {
		b.AddBytes([]byte("tls13 "))
		b.AddBytes([]byte(label))
	})
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) {
		b.AddBytes(context)
	})
	info := b.BytesOrPanic()
	out, err := hkdf.Expand(newHash, secret, string(info), length)
	if err != nil {
		panic("tls13sm: HKDF-Expand: " + err.Error())
	}
	return out
}

// deriveSecret is Derive-Secret(secret, label, transcript) with the
// transcript given as a running hash.
func deriveSecret(secret []byte, label string, transcript hash.Hash) []byte {
	var th []byte
	if transcript == nil {
		th = emptyHash()
	} else {
		th = transcript.Sum(nil)
	}
	return expandLabel(secret, label, th, hashLen)
}

func emptyHash() []byte {
	h := newHash()
	return h.Sum(nil)
}

// earlySecret is HKDF-Extract(0, psk); a nil psk is the full-handshake case.
func earlySecret(psk []byte) []byte { return hkdfExtract(psk, nil) }

// handshakeSecret is HKDF-Extract(Derive-Secret(early, "derived", ""), ecdhe).
func handshakeSecret(early, ecdhe []byte) []byte {
	return hkdfExtract(ecdhe, deriveSecret(early, labelDerived, nil))
}

// masterSecret is HKDF-Extract(Derive-Secret(hs, "derived", ""), 0).
func masterSecret(hs []byte) []byte {
	return hkdfExtract(nil, deriveSecret(hs, labelDerived, nil))
}

// trafficKey returns the write key and IV of a traffic secret.
func trafficKey(secret []byte) (key, iv []byte) {
	return expandLabel(secret, labelKey, nil, aeadKeyLen), expandLabel(secret, labelIV, nil, aeadNonceLen)
}

// nextTrafficSecret is the KeyUpdate step (RFC 8446 7.2).
func nextTrafficSecret(secret []byte) []byte {
	return expandLabel(secret, labelTrafficUpdate, nil, hashLen)
}

// finishedMAC is HMAC(finished_key, transcript) (RFC 8446 4.4.4).
func finishedMAC(baseKey []byte, transcript []byte) []byte {
	fk := expandLabel(baseKey, labelFinished, nil, hashLen)
	m := hmac.New(newHash, fk)
	m.Write(transcript)
	zero(fk)
	return m.Sum(nil)
}

// resumptionPSK is the PSK of a ticket (RFC 8446 4.6.1).
func resumptionPSK(resMaster, nonce []byte) []byte {
	return expandLabel(resMaster, labelResumptionPSK, nonce, hashLen)
}

// newProtection derives a record protection from a traffic secret.
func newProtection(suite uint16, secret []byte) (*recordProtection, error) {
	if len(secret) != hashLen {
		return nil, errors.New("tls13sm: bad traffic secret length")
	}
	key, iv := trafficKey(secret)
	defer zero(key)
	return newRecordProtection(suite, key, iv)
}

// zero overwrites a key buffer we own.
func zero(b []byte) {
	for i := range b {
		b[i] = 0
	}
}
