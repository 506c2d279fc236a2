package cosign

import (
	"crypto/rand"
	"math/big"
	"testing"

	"github.com/emmansun/gmsm/sm2"
)

// TestAttackPreScaledNonceVariant is why gmgate does not offer the "fast" protocol variant in
// which the terminal sends T = w_1 P_2 (= d_2^-1 Q_1) and the platform computes
// Q = w_2 G + T with a fixed-base multiplication only (docs/cosign.md, "Cost"). There, the
// terminal chooses T freely: with T = w_1 P_2 + t G the nonce becomes k = w_2 + d_2^-1 w_1 + t,
// and from the platform's (r, s_1) for the digest e it presents, the terminal completes a valid
// signature on ANY digest e” = e - t of its choice: (r - t, d_1 (s_1 + w_1) - (r - t)). The
// platform signed, bound and audited e; the terminal walks away with a signature on e”. In the
// Tongsuo-compatible protocol the platform applies d_2^-1 to the terminal's point itself, so
// the same shift moves the nonce by d_2^-1 t (unknown to the terminal) and the forged value
// does not verify.
func TestAttackPreScaledNonceVariant(t *testing.T) {
	d1, _ := GenerateShare(rand.Reader)
	d2, _ := GenerateShare(rand.Reader)
	pub, err := d1.JointPublicKey(d2.PartialPublicKey())
	if err != nil {
		t.Fatal(err)
	}
	n := curve.Params().N
	e, _ := Digest(pub, nil, []byte("pay 1.00 CNY to merchant 1001")) // what the platform sees
	want, _ := Digest(pub, nil, []byte("pay 99999.00 CNY to account 6222-ATTACKER"))
	shift := new(big.Int).Mod(new(big.Int).Sub(new(big.Int).SetBytes(e), new(big.Int).SetBytes(want)), n)
	tb := shift.FillBytes(make([]byte, ScalarSize))

	w1, _ := randomScalar(rand.Reader)
	w1b := scalarBytes(w1)
	p2, _ := parsePoint(d2.PartialPublicKey())

	// forge derives (r'', s'') = (r - t, d_1 (s_1 + w_1) - (r - t)) from the platform's answer.
	forge := func(r, s1 []byte) (*big.Int, *big.Int) {
		rN, _ := parseScalar(r)
		s1N, _ := parseScalar(s1)
		sigma := mul(d1.d, add(s1N, w1))
		tN, _ := parseScalar(tb)
		r2 := sub(rN, tN)
		return new(big.Int).SetBytes(scalarBytes(r2)), new(big.Int).SetBytes(scalarBytes(sub(sigma, r2)))
	}

	// the variant's platform: Q = w_2 G + T for the terminal's T = w_1 P_2 + t G
	tx, ty := curve.ScalarMult(p2.x, p2.y, w1b)
	gx, gy := curve.ScalarBaseMult(tb)
	Tx, Ty := curve.Add(tx, ty, gx, gy)
	w2, _ := randomScalar(rand.Reader)
	qx, qy := curve.ScalarBaseMult(scalarBytes(w2))
	qx, _ = curve.Add(qx, qy, Tx, Ty)
	eN, _ := digestScalar(e)
	xN, _ := digestScalar(qx.FillBytes(make([]byte, ScalarSize)))
	rN := add(eN, xN)
	s1N := mul(d2.d, add(rN, w2))
	r2, s2 := forge(scalarBytes(rN), scalarBytes(s1N))
	if !sm2.Verify(pub, want, r2, s2) {
		t.Fatal("the variant's digest shift did not forge: the analysis in docs/cosign.md is wrong")
	}

	// the Tongsuo-compatible protocol: the same shift on Q_1 (= w_1 G + t G) gives nothing
	q1x, q1y := curve.ScalarBaseMult(w1b)
	q1x, q1y = curve.Add(q1x, q1y, gx, gy)
	r, s1, err := d2.CoSign(rand.Reader, e, point{q1x, q1y}.bytes())
	if err != nil {
		t.Fatal(err)
	}
	r2, s2 = forge(r, s1)
	if sm2.Verify(pub, want, r2, s2) {
		t.Fatal("the digest shift forged against CoSign")
	}
}
