package cosign

import (
	"crypto/ecdsa"
	"encoding/asn1"
	"io"
	"math/big"
	"sync"

	"filippo.io/bigmod"
	"github.com/emmansun/gmsm/sm2"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// maxAttempts bounds the retries on a degenerate value (probability about 2^-256 each).
const maxAttempts = 8

// Digest is the value both parties sign: e = SM3(Z_A(P, uid) || msg) for the joint public key P
// (uid nil or empty: the default user ID 1234567812345678, as gmsm and Tongsuo).
func Digest(pub *ecdsa.PublicKey, uid, msg []byte) ([]byte, error) {
	return sm2.CalculateSM2Hash(pub, msg, uid)
}

// CoSign is the platform's step (Tongsuo's sign2): for the digest e (32 bytes) and the
// terminal's ephemeral point Q_1 (65 bytes, validated), it draws w_2, computes
// Q = w_2 G + d_2^-1 Q_1, r = (e + x_Q) mod n, s_1 = d_2 (r + w_2) mod n and returns r and s_1
// (32 bytes each). It never returns r = 0 or s_1 = 0.
func (s *Share) CoSign(rand io.Reader, e, q1 []byte) (r, s1 []byte, err error) {
	eN, err := digestScalar(e)
	if err != nil {
		return nil, nil, err
	}
	q, err := parsePoint(q1)
	if err != nil {
		return nil, nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.d == nil {
		return nil, nil, ErrUsed
	}
	dInv := scalarBytes(s.dInv)
	defer clear(dInv)
	for range maxAttempts {
		w2, err := randomScalar(rand)
		if err != nil {
			return nil, nil, err
		}
		w2b := scalarBytes(w2)
		// Q = w_2 G + d_2^-1 Q_1 in one gmsm call.
		qx, qy := curve.CombinedMult(q.x, q.y, w2b, dInv)
		clear(w2b)
		if _, err := checked(qx, qy); err != nil {
			wipe(w2)
			continue
		}
		xN, err := bigmod.NewNat().SetOverflowingBytes(qx.FillBytes(make([]byte, ScalarSize)), order)
		if err != nil {
			wipe(w2)
			return nil, nil, ErrDegenerate
		}
		rN := add(eN, xN)
		sum := add(rN, w2)
		wipe(w2)
		if isZero(rN) || isZero(sum) {
			continue
		}
		s1N := mul(s.d, sum)
		wipe(sum)
		return scalarBytes(rN), scalarBytes(s1N), nil
	}
	return nil, nil, ErrDegenerate
}

// Signing is the terminal's side of one signature: the digest, the ephemeral w_1 (secret) and
// Q_1 = w_1 G. It is one-shot: Finish wipes w_1.
type Signing struct {
	mu  sync.Mutex
	pub *ecdsa.PublicKey
	e   []byte
	w1  *bigmod.Nat
	q1  []byte
}

// StartSign is the terminal's first step (Tongsuo's sign1 after the digest): it draws w_1 and
// computes Q_1 = w_1 G for the digest e (32 bytes) under the joint public key pub.
func StartSign(rand io.Reader, pub *ecdsa.PublicKey, e []byte) (*Signing, error) {
	if pub == nil || pub.Curve != curve {
		return nil, ErrInvalidPoint
	}
	if _, err := parsePoint(MarshalPublicKey(pub)); err != nil {
		return nil, err
	}
	if len(e) != ScalarSize {
		return nil, ErrInvalidScalar
	}
	w1, err := randomScalar(rand)
	if err != nil {
		return nil, err
	}
	k := scalarBytes(w1)
	x, y := curve.ScalarBaseMult(k)
	clear(k)
	return &Signing{pub: pub, e: append([]byte(nil), e...), w1: w1, q1: point{x, y}.bytes()}, nil
}

// Digest returns e (32 bytes).
func (sg *Signing) Digest() []byte { return append([]byte(nil), sg.e...) }

// Q1 returns the ephemeral point Q_1 = w_1 G (65 bytes) to send with e.
func (sg *Signing) Q1() []byte { return append([]byte(nil), sg.q1...) }

// Finish is the terminal's last step (Tongsuo's sign3): from the platform's r and s_1 (32 bytes
// each, in [1, n-1]) and the terminal's share d_1 it computes s = d_1 (s_1 + w_1) - r mod n,
// refuses s = 0 and r + s = n (which is r + k = n), verifies (r, s) under the joint public key
// and only then returns it, DER encoded. The session is spent whatever the outcome.
func (sg *Signing) Finish(d1 *Share, r, s1 []byte) ([]byte, error) {
	sg.mu.Lock()
	defer sg.mu.Unlock()
	if sg.w1 == nil {
		return nil, ErrUsed
	}
	w1 := sg.w1
	sg.w1 = nil
	defer wipe(w1)
	rN, err := parseScalar(r)
	if err != nil {
		return nil, err
	}
	s1N, err := parseScalar(s1)
	if err != nil {
		return nil, err
	}
	d1.mu.RLock()
	if d1.d == nil {
		d1.mu.RUnlock()
		return nil, ErrUsed
	}
	t := add(s1N, w1)
	sN := mul(d1.d, t).Sub(rN, order)
	d1.mu.RUnlock()
	wipe(t)
	if isZero(sN) || isZero(add(sN, rN)) {
		return nil, ErrDegenerate
	}
	rb, sb := new(big.Int).SetBytes(r), new(big.Int).SetBytes(scalarBytes(sN))
	if !sm2.Verify(sg.pub, sg.e, rb, sb) {
		return nil, ErrVerify
	}
	return asn1.Marshal(ecSignature{rb, sb})
}

type ecSignature struct{ R, S *big.Int }

// MarshalPartialSignature encodes the platform's (r, s_1) as Tongsuo's sign2 does: a DER
// SEQUENCE of two INTEGERs, the shape of an ECDSA/SM2 signature.
func MarshalPartialSignature(r, s1 []byte) ([]byte, error) {
	if _, err := parseScalar(r); err != nil {
		return nil, err
	}
	if _, err := parseScalar(s1); err != nil {
		return nil, err
	}
	return asn1.Marshal(ecSignature{new(big.Int).SetBytes(r), new(big.Int).SetBytes(s1)})
}

// ParsePartialSignature reads a DER (r, s_1) strictly (one SEQUENCE of exactly two minimal
// INTEGERs, no trailing bytes, both in [1, n-1]) and returns them as 32 bytes each.
func ParsePartialSignature(der []byte) (r, s1 []byte, err error) {
	if len(der) > 2+2*(2+1+ScalarSize) {
		return nil, nil, ErrInvalidScalar
	}
	rb, sb := new(big.Int), new(big.Int)
	var inner cryptobyte.String
	in := cryptobyte.String(der)
	if !in.ReadASN1(&inner, cbasn1.SEQUENCE) || !in.Empty() ||
		!inner.ReadASN1Integer(rb) || !inner.ReadASN1Integer(sb) || !inner.Empty() ||
		rb.Sign() <= 0 || sb.Sign() <= 0 || rb.BitLen() > 8*ScalarSize || sb.BitLen() > 8*ScalarSize {
		return nil, nil, ErrInvalidScalar
	}
	r, s1 = rb.FillBytes(make([]byte, ScalarSize)), sb.FillBytes(make([]byte, ScalarSize))
	if _, err := parseScalar(r); err != nil {
		return nil, nil, err
	}
	if _, err := parseScalar(s1); err != nil {
		return nil, nil, err
	}
	return r, s1, nil
}
