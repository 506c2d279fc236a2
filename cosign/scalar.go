package cosign

import (
	"crypto/elliptic"
	"crypto/subtle"
	"errors"
	"io"
	"math/big"

	"filippo.io/bigmod"
	"github.com/emmansun/gmsm/sm2/sm2ec"
)

// ScalarSize is the size of an encoded scalar (d_i, r, s_1, e): 32 bytes, big-endian.
const ScalarSize = 32

// PointSize is the size of an encoded point (P_i, Q_1, T_1, T_2): 65 bytes, 0x04 || X || Y.
const PointSize = 1 + 2*ScalarSize

var (
	// ErrInvalidPoint: a point is not an uncompressed point of the SM2 curve, or is the identity.
	ErrInvalidPoint = errors.New("cosign: invalid point")
	// ErrInvalidScalar: a scalar is not 32 bytes or is outside [1, n-1].
	ErrInvalidScalar = errors.New("cosign: invalid scalar")
	// ErrDegenerate: a computation hit a refused value (r = 0, s_1 = 0, s = 0, r + k = n, a joint
	// key or point at infinity). Retrying with fresh randomness is the cure.
	ErrDegenerate = errors.New("cosign: degenerate value refused")
	// ErrVerify: the assembled signature does not verify under the joint public key (a wrong or
	// lying peer, a wrong share); nothing is released.
	ErrVerify = errors.New("cosign: joint signature does not verify")
	// ErrDecrypt: the ciphertext is malformed or its C3 check failed.
	ErrDecrypt = errors.New("cosign: decryption failed")
	// ErrUsed: a one-shot session (Signing, Decryption) or a destroyed Share was used again.
	ErrUsed = errors.New("cosign: session already used")
)

// gmsmCurve is what gmsm's sm2ec.P256() offers beyond elliptic.Curve: point decoding with
// validation, [s1]G + [s2]P in one call, and constant-time inversion modulo n.
type gmsmCurve interface {
	elliptic.Curve
	Unmarshal(data []byte) (x, y *big.Int)
	CombinedMult(px, py *big.Int, s1, s2 []byte) (x, y *big.Int)
	Inverse(k *big.Int) *big.Int
}

var (
	curve    = sm2ec.P256().(gmsmCurve)
	inverter = curve
	order    *bigmod.Modulus
	nMinus1  []byte // n - 1: scalar multiplication by it negates a point
)

func init() {
	var err error
	order, err = bigmod.NewModulus(curve.Params().N.Bytes())
	if err != nil {
		panic("cosign: SM2 order: " + err.Error())
	}
	nMinus1 = new(big.Int).Sub(curve.Params().N, big.NewInt(1)).FillBytes(make([]byte, ScalarSize))
}

// parseScalar reads a 32-byte scalar in [1, n-1].
func parseScalar(b []byte) (*bigmod.Nat, error) {
	if len(b) != ScalarSize {
		return nil, ErrInvalidScalar
	}
	x, err := bigmod.NewNat().SetBytes(b, order)
	if err != nil || x.IsZero() == 1 {
		return nil, ErrInvalidScalar
	}
	return x, nil
}

// digestScalar reads e (32 bytes, any value) reduced modulo n, as SM2 does.
func digestScalar(e []byte) (*bigmod.Nat, error) {
	if len(e) != ScalarSize {
		return nil, ErrInvalidScalar
	}
	x, err := bigmod.NewNat().SetOverflowingBytes(e, order)
	if err != nil {
		return nil, ErrInvalidScalar
	}
	return x, nil
}

// randomScalar draws a uniform scalar in [1, n-1] by rejection sampling.
func randomScalar(rand io.Reader) (*bigmod.Nat, error) {
	var buf [ScalarSize]byte
	defer clear(buf[:])
	for range 64 {
		if _, err := io.ReadFull(rand, buf[:]); err != nil {
			return nil, err
		}
		if x, err := parseScalar(buf[:]); err == nil {
			return x, nil
		}
	}
	return nil, errors.New("cosign: random source keeps producing out-of-range scalars")
}

// invert returns x^-1 mod n (x must be non-zero), constant time in gmsm.
func invert(x *bigmod.Nat) *bigmod.Nat {
	b := x.Bytes(order)
	inv := inverter.Inverse(new(big.Int).SetBytes(b))
	clear(b)
	out := inv.FillBytes(make([]byte, ScalarSize))
	n, err := bigmod.NewNat().SetBytes(out, order)
	clear(out)
	if err != nil {
		panic("cosign: inverse out of range") // gmsm returns a value below n
	}
	return n
}

// mul, add and sub return a new x*y, x+y, x-y mod n (operands reduced, left untouched).
func mul(x, y *bigmod.Nat) *bigmod.Nat { return bigmod.NewNat().Mod(x, order).Mul(y, order) }
func add(x, y *bigmod.Nat) *bigmod.Nat { return bigmod.NewNat().Mod(x, order).Add(y, order) }
func sub(x, y *bigmod.Nat) *bigmod.Nat { return bigmod.NewNat().Mod(x, order).Sub(y, order) }

// wipe overwrites a scalar's limbs.
func wipe(xs ...*bigmod.Nat) {
	for _, x := range xs {
		if x != nil {
			clear(x.Bits())
		}
	}
}

func isZero(x *bigmod.Nat) bool { return x.IsZero() == 1 }

func equal(x, y *bigmod.Nat) bool { return x.Equal(y) == 1 }

// point is an affine point known to be on the curve and not the identity.
type point struct{ x, y *big.Int }

// parsePoint reads an uncompressed point and validates it (on the curve, not the identity).
func parsePoint(b []byte) (point, error) {
	if len(b) != PointSize || b[0] != 4 {
		return point{}, ErrInvalidPoint
	}
	x, y := curve.Unmarshal(b) // gmsm's SetBytes: checks the curve equation and coordinate range
	if x == nil || (x.Sign() == 0 && y.Sign() == 0) {
		return point{}, ErrInvalidPoint
	}
	return point{x, y}, nil
}

func (p point) bytes() []byte {
	out := make([]byte, PointSize)
	out[0] = 4
	p.x.FillBytes(out[1 : 1+ScalarSize])
	p.y.FillBytes(out[1+ScalarSize:])
	return out
}

// checked wraps a curve result, refusing the identity (gmsm encodes it as (0, 0)).
func checked(x, y *big.Int) (point, error) {
	if x.Sign() == 0 && y.Sign() == 0 {
		return point{}, ErrDegenerate
	}
	return point{x, y}, nil
}

func scalarBytes(x *bigmod.Nat) []byte { return x.Bytes(order) }

// ctEqualBytes compares two encodings in constant time.
func ctEqualBytes(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }
