package tlcp

import (
	"crypto/hmac"
	"hash"

	"github.com/emmansun/gmsm/sm3"
)

var (
	labelMaster    = []byte("master secret")
	labelKeyExpand = []byte("key expansion")
	labelClientFin = []byte("client finished")
	labelServerFin = []byte("server finished")
)

// prf is the TLS 1.2 PRF with HMAC-SM3 (P_SM3): it fills out.
func prf(out, secret, label, seed []byte) {
	h := hmac.New(sm3.New, secret)
	labelSeed := make([]byte, 0, len(label)+len(seed))
	labelSeed = append(labelSeed, label...)
	labelSeed = append(labelSeed, seed...)
	pHash(out, h, labelSeed)
}

func pHash(out []byte, h hash.Hash, seed []byte) {
	h.Write(seed)
	a := h.Sum(nil)
	var b []byte
	for j := 0; j < len(out); {
		h.Reset()
		h.Write(a)
		h.Write(seed)
		b = h.Sum(b[:0])
		j += copy(out[j:], b)
		h.Reset()
		h.Write(a)
		a = h.Sum(a[:0])
	}
}

// masterFromPreMaster derives the 48-byte master secret.
func masterFromPreMaster(pms, clientRandom, serverRandom []byte) []byte {
	seed := make([]byte, 0, 64)
	seed = append(seed, clientRandom...)
	seed = append(seed, serverRandom...)
	ms := make([]byte, masterSecretLen)
	prf(ms, pms, labelMaster, seed)
	return ms
}

// keyBlock derives the key block for a suite.
func keyBlock(ms, clientRandom, serverRandom []byte, s *cipherSuite) (cMAC, sMAC, cKey, sKey, cIV, sIV []byte) {
	seed := make([]byte, 0, 64)
	seed = append(seed, serverRandom...)
	seed = append(seed, clientRandom...)
	n := 2*s.macLen + 2*s.keyLen + 2*s.ivLen
	kb := make([]byte, n)
	prf(kb, ms, labelKeyExpand, seed)
	cMAC, kb = kb[:s.macLen], kb[s.macLen:]
	sMAC, kb = kb[:s.macLen], kb[s.macLen:]
	cKey, kb = kb[:s.keyLen], kb[s.keyLen:]
	sKey, kb = kb[:s.keyLen], kb[s.keyLen:]
	cIV, kb = kb[:s.ivLen], kb[s.ivLen:]
	sIV = kb[:s.ivLen]
	return
}

// finishedHash accumulates the handshake transcript with SM3.
type finishedHash struct {
	h hash.Hash
}

func newFinishedHash() finishedHash { return finishedHash{h: sm3.New()} }

func (f *finishedHash) Write(b []byte) { f.h.Write(b) }

// Sum returns SM3 of the transcript so far (without altering it).
func (f *finishedHash) Sum() []byte { return f.h.Sum(nil) }

func verifyData(ms []byte, label []byte, transcriptHash []byte) []byte {
	out := make([]byte, finishedLen)
	prf(out, ms, label, transcriptHash)
	return out
}

func zeroize(b []byte) {
	for i := range b {
		b[i] = 0
	}
}
