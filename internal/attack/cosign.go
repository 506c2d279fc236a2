package attack

import (
	"crypto/hmac"
	"errors"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm3"
)

// Attacker helpers for collaborative SM2 (gm_cosign): hostile points and a token minting key.

// SM2Generator is the SM2 base point G, uncompressed (65 bytes): a valid point whose discrete
// log everyone knows.
func SM2Generator() []byte {
	p := sm2.P256().Params()
	out := make([]byte, 65)
	out[0] = 4
	p.Gx.FillBytes(out[1:33])
	p.Gy.FillBytes(out[33:])
	return out
}

// SM2Identity is the point at infinity in the (0, 0) uncompressed encoding some libraries use.
func SM2Identity() []byte { return append([]byte{4}, make([]byte, 64)...) }

// SM2OffCurve flips a bit of p's y: a point on another curve (invalid-curve attacks).
func SM2OffCurve(p []byte) []byte {
	out := append([]byte(nil), p...)
	out[len(out)-1] ^= 1
	return out
}

// HMACSM3Key computes HMAC-SM3 tags under raw key bytes, as a vault SM4 key does: a stand-in
// for the operator's token issuer (or for an attacker who stole the token key).
type HMACSM3Key []byte

// HMACSM3 returns HMAC-SM3(k, data).
func (k HMACSM3Key) HMACSM3(data []byte) ([]byte, error) {
	m := hmac.New(sm3.New, k)
	m.Write(data)
	return m.Sum(nil), nil
}

// VerifyHMACSM3 checks a tag.
func (k HMACSM3Key) VerifyHMACSM3(data, tag []byte) error {
	want, _ := k.HMACSM3(data)
	if !hmac.Equal(want, tag) {
		return errors.New("attack: bad HMAC")
	}
	return nil
}
