package cosign

import (
	"bytes"
	"crypto/rand"
	"errors"
	"math/big"
	"testing"

	"github.com/emmansun/gmsm/sm2"
)

func FuzzParsePartialSignature(f *testing.F) {
	der, _ := MarshalPartialSignature(scalar(new(big.Int).Sub(n, big.NewInt(1))), scalar(big.NewInt(1)))
	f.Add(der)
	f.Add([]byte{0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, s1, err := ParsePartialSignature(b)
		if err != nil {
			return
		}
		again, err := MarshalPartialSignature(r, s1)
		if err != nil {
			t.Fatalf("accepted but cannot re-encode: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("accepted a non-canonical encoding %x", b)
		}
	})
}

// FuzzPlatform feeds arbitrary e, Q_1 and T_1 to the platform side: no panic, and any accepted
// point is on the curve.
func FuzzPlatform(f *testing.F) {
	d2, _ := GenerateShare(rand.Reader)
	f.Add(make([]byte, 32), d2.PartialPublicKey())
	f.Add([]byte{1}, []byte{0})
	f.Fuzz(func(t *testing.T, e, p []byte) {
		_, _, err := d2.CoSign(rand.Reader, e, p)
		_, perr := ParsePublicKey(p)
		if err == nil && perr != nil {
			t.Fatal("CoSign accepted an invalid point")
		}
		t2, err := d2.CoDecrypt(p)
		if err == nil {
			if _, err := ParsePublicKey(t2); err != nil {
				t.Fatal("T_2 is not a valid point")
			}
		}
	})
}

func FuzzStartDecrypt(f *testing.F) {
	d1, _ := GenerateShare(rand.Reader)
	d2, _ := GenerateShare(rand.Reader)
	pub, _ := d1.JointPublicKey(d2.PartialPublicKey())
	ct, _ := sm2.EncryptASN1(rand.Reader, pub, []byte("seed"))
	f.Add(ct)
	ct2, _ := sm2.Encrypt(rand.Reader, pub, []byte("seed"), nil)
	f.Add(ct2)
	f.Fuzz(func(t *testing.T, b []byte) {
		dc, err := StartDecrypt(rand.Reader, b)
		if err != nil {
			return
		}
		t2, err := d2.CoDecrypt(dc.T1())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := dc.Finish(d1, t2); err != nil && !errors.Is(err, ErrDecrypt) {
			t.Fatal(err)
		}
	})
}

// BenchmarkPlatform compares the platform's CPU per co-signature (CoSign) with one plain SM2
// signature by gmsm over the same digest; docs/cosign.md reports the ratio.
func BenchmarkPlatform(b *testing.B) {
	d1, _ := GenerateShare(rand.Reader)
	d2, _ := GenerateShare(rand.Reader)
	pub, _ := d1.JointPublicKey(d2.PartialPublicKey())
	e, _ := Digest(pub, nil, []byte("pay 100.00 CNY"))
	sg, _ := StartSign(rand.Reader, pub, e)
	q1 := sg.Q1()
	b.Run("plain-sm2-sign", func(b *testing.B) {
		priv, _ := sm2.GenerateKey(rand.Reader)
		for b.Loop() {
			if _, err := sm2.SignASN1(rand.Reader, priv, e, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("plain-sm2-verify", func(b *testing.B) {
		// fixed-base plus variable-base multiplication: the natural reference for CoSign
		priv, _ := sm2.GenerateKey(rand.Reader)
		sig, _ := sm2.SignASN1(rand.Reader, priv, e, nil)
		for b.Loop() {
			if !sm2.VerifyASN1(&priv.PublicKey, e, sig) {
				b.Fatal("verify")
			}
		}
	})
	b.Run("combined-mult", func(b *testing.B) {
		// CoSign's one curve operation alone: w_2 G + d_2^-1 Q_1
		q, _ := parsePoint(q1)
		k := scalarBytes(d2.dInv)
		for b.Loop() {
			curve.CombinedMult(q.x, q.y, k, k)
		}
	})
	b.Run("cosign-platform", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := d2.CoSign(rand.Reader, e, q1); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cosign-terminal", func(b *testing.B) {
		for b.Loop() {
			sg, _ := StartSign(rand.Reader, pub, e)
			r, s1, _ := d2.CoSign(rand.Reader, e, sg.Q1())
			if _, err := sg.Finish(d1, r, s1); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("codecrypt-platform", func(b *testing.B) {
		for b.Loop() {
			if _, err := d2.CoDecrypt(q1); err != nil {
				b.Fatal(err)
			}
		}
	})
}
