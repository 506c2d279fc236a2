package cosign

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/asn1"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
)

var n = curve.Params().N

func mustShare(t testing.TB) *Share {
	t.Helper()
	s, err := GenerateShare(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func joint(t testing.TB, d1, d2 *Share) *ecdsa.PublicKey {
	t.Helper()
	p1, err := d1.JointPublicKey(d2.PartialPublicKey())
	if err != nil {
		t.Fatal(err)
	}
	p2, err := d2.JointPublicKey(d1.PartialPublicKey())
	if err != nil {
		t.Fatal(err)
	}
	if p1.X.Cmp(p2.X) != 0 || p1.Y.Cmp(p2.Y) != 0 {
		t.Fatal("the two parties derive different joint keys")
	}
	return p1
}

func cosign(t testing.TB, d1, d2 *Share, pub *ecdsa.PublicKey, msg []byte) ([]byte, error) {
	t.Helper()
	e, err := Digest(pub, nil, msg)
	if err != nil {
		t.Fatal(err)
	}
	sg, err := StartSign(rand.Reader, pub, e)
	if err != nil {
		t.Fatal(err)
	}
	r, s1, err := d2.CoSign(rand.Reader, e, sg.Q1())
	if err != nil {
		t.Fatal(err)
	}
	return sg.Finish(d1, r, s1)
}

// The joint key is the public key of d = (d_1 d_2)^-1 - 1, computed here independently with
// math/big and gmsm's ordinary key code.
func TestJointKeyIsOrdinarySM2Key(t *testing.T) {
	for range 8 {
		d1, d2 := mustShare(t), mustShare(t)
		pub := joint(t, d1, d2)
		a, b := new(big.Int).SetBytes(d1.Bytes()), new(big.Int).SetBytes(d2.Bytes())
		d := new(big.Int).Mul(a, b)
		d.ModInverse(d.Mod(d, n), n)
		d.Sub(d, big.NewInt(1))
		priv, err := sm2.NewPrivateKeyFromInt(d)
		if err != nil {
			t.Fatal(err)
		}
		if priv.X.Cmp(pub.X) != 0 || priv.Y.Cmp(pub.Y) != 0 {
			t.Fatal("joint key is not (d_1 d_2)^-1 - 1 times G")
		}
		// A signature of the whole key verifies under it, and the co-signature verifies with gmsm.
		msg := []byte("pay 100.00 CNY to 6222020200001234567")
		sig, err := cosign(t, d1, d2, pub, msg)
		if err != nil {
			t.Fatal(err)
		}
		if !sm2.VerifyASN1WithSM2(pub, nil, msg, sig) {
			t.Fatal("co-signature does not verify with gmsm")
		}
		if sm2.VerifyASN1WithSM2(pub, nil, append(msg, '0'), sig) {
			t.Fatal("co-signature verifies for another message")
		}
	}
}

func TestShareEncoding(t *testing.T) {
	s := mustShare(t)
	b := s.Bytes()
	s2, err := ParseShare(b)
	if err != nil || !bytes.Equal(s2.PartialPublicKey(), s.PartialPublicKey()) {
		t.Fatalf("round trip: %v", err)
	}
	s.Destroy()
	if s.Bytes() != nil {
		t.Fatal("destroyed share still has bytes")
	}
	if _, err := s.JointPublicKey(s2.PartialPublicKey()); !errors.Is(err, ErrUsed) {
		t.Fatalf("destroyed share derived: %v", err)
	}
	if _, _, err := s.CoSign(rand.Reader, make([]byte, 32), s2.PartialPublicKey()); !errors.Is(err, ErrUsed) {
		t.Fatalf("destroyed share co-signed: %v", err)
	}
	if _, err := s.CoDecrypt(s2.PartialPublicKey()); !errors.Is(err, ErrUsed) {
		t.Fatalf("destroyed share co-decrypted: %v", err)
	}
}

func scalar(v *big.Int) []byte {
	out := make([]byte, 32)
	return v.FillBytes(out)
}

func badScalars() map[string][]byte {
	return map[string][]byte{
		"zero":    make([]byte, 32),
		"n":       scalar(n),
		"n+1":     scalar(new(big.Int).Add(n, big.NewInt(1))),
		"2^256-1": bytes.Repeat([]byte{0xff}, 32),
		"short":   {1, 2, 3},
		"long":    append([]byte{0}, scalar(big.NewInt(5))...),
		"empty":   nil,
	}
}

func badPoints(t testing.TB) map[string][]byte {
	g := point{curve.Params().Gx, curve.Params().Gy}.bytes()
	offCurve := append([]byte(nil), g...)
	offCurve[64] ^= 1
	bigX := append([]byte{4}, scalar(curve.Params().P)...)
	bigX = append(bigX, g[33:]...)
	compressed := append([]byte{2 + g[64]&1}, g[1:33]...)
	return map[string][]byte{
		"identity (0x00)":       {0},
		"identity (0,0)":        append([]byte{4}, make([]byte, 64)...),
		"off curve":             offCurve,
		"x = p":                 bigX,
		"compressed":            compressed,
		"hybrid prefix":         append([]byte{6}, g[1:]...),
		"truncated":             g[:64],
		"trailing byte":         append(append([]byte(nil), g...), 0),
		"empty":                 nil,
		"uncompressed prefix 5": append([]byte{5}, g[1:]...),
	}
}

func TestRefusesInvalidPoints(t *testing.T) {
	d1, d2 := mustShare(t), mustShare(t)
	e := make([]byte, 32)
	for name, p := range badPoints(t) {
		t.Run(name, func(t *testing.T) {
			if _, err := d1.JointPublicKey(p); !errors.Is(err, ErrInvalidPoint) {
				t.Errorf("JointPublicKey: %v", err)
			}
			if _, _, err := d2.CoSign(rand.Reader, e, p); !errors.Is(err, ErrInvalidPoint) {
				t.Errorf("CoSign: %v", err)
			}
			if _, err := d2.CoDecrypt(p); !errors.Is(err, ErrInvalidPoint) {
				t.Errorf("CoDecrypt: %v", err)
			}
			if _, err := ParsePublicKey(p); !errors.Is(err, ErrInvalidPoint) {
				t.Errorf("ParsePublicKey: %v", err)
			}
		})
	}
}

func TestRefusesMalformedScalars(t *testing.T) {
	d1, d2 := mustShare(t), mustShare(t)
	pub := joint(t, d1, d2)
	e, _ := Digest(pub, nil, []byte("m"))
	for name, s := range badScalars() {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseShare(s); !errors.Is(err, ErrInvalidScalar) {
				t.Errorf("ParseShare: %v", err)
			}
			good := scalar(big.NewInt(7))
			for i, pair := range [][2][]byte{{s, good}, {good, s}} {
				sg, err := StartSign(rand.Reader, pub, e)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := sg.Finish(d1, pair[0], pair[1]); !errors.Is(err, ErrInvalidScalar) {
					t.Errorf("Finish operand %d: %v", i, err)
				}
				if _, err := MarshalPartialSignature(pair[0], pair[1]); !errors.Is(err, ErrInvalidScalar) {
					t.Errorf("MarshalPartialSignature operand %d: %v", i, err)
				}
			}
		})
	}
	// e is any 32 bytes (reduced mod n as in SM2) but must be 32 bytes.
	for _, bad := range [][]byte{nil, make([]byte, 31), make([]byte, 33)} {
		if _, _, err := d2.CoSign(rand.Reader, bad, d1.PartialPublicKey()); !errors.Is(err, ErrInvalidScalar) {
			t.Errorf("CoSign with %d-byte e: %v", len(bad), err)
		}
		if _, err := StartSign(rand.Reader, pub, bad); !errors.Is(err, ErrInvalidScalar) {
			t.Errorf("StartSign with %d-byte e: %v", len(bad), err)
		}
	}
	if _, _, err := d2.CoSign(rand.Reader, bytes.Repeat([]byte{0xff}, 32), d1.PartialPublicKey()); err != nil {
		t.Errorf("CoSign refused e >= n: %v", err)
	}
}

func TestParsePartialSignature(t *testing.T) {
	r, s1 := scalar(big.NewInt(0x1234)), scalar(new(big.Int).Sub(n, big.NewInt(1)))
	der, err := MarshalPartialSignature(r, s1)
	if err != nil {
		t.Fatal(err)
	}
	r2, s2, err := ParsePartialSignature(der)
	if err != nil || !bytes.Equal(r, r2) || !bytes.Equal(s1, s2) {
		t.Fatalf("round trip: %v", err)
	}
	bad := map[string][]byte{
		"trailing":       append(append([]byte(nil), der...), 0),
		"empty":          nil,
		"r zero":         {0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x01},
		"negative":       {0x30, 0x06, 0x02, 0x01, 0xff, 0x02, 0x01, 0x01},
		"non-minimal":    {0x30, 0x07, 0x02, 0x02, 0x00, 0x01, 0x02, 0x01, 0x01},
		"s = n":          mustDER(t, big.NewInt(1), n),
		"r too long":     mustDER(t, new(big.Int).Lsh(big.NewInt(1), 300), big.NewInt(1)),
		"one integer":    {0x30, 0x03, 0x02, 0x01, 0x01},
		"three integers": {0x30, 0x09, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01},
		"not sequence":   {0x31, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01},
	}
	for name, b := range bad {
		if _, _, err := ParsePartialSignature(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func mustDER(t testing.TB, r, s *big.Int) []byte {
	b, err := asn1.Marshal(ecSignature{r, s})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fixedRand yields the given scalars in order, then fails.
func fixedRand(scalars ...*big.Int) *bytes.Reader {
	var b []byte
	for _, s := range scalars {
		b = append(b, scalar(s)...)
	}
	return bytes.NewReader(b)
}

func TestTerminalRefusesDegenerateResults(t *testing.T) {
	d1, d2 := mustShare(t), mustShare(t)
	pub := joint(t, d1, d2)
	e, _ := Digest(pub, nil, []byte("m"))
	w1 := big.NewInt(0x5eed)
	a := new(big.Int).SetBytes(d1.Bytes())
	r := big.NewInt(12345)
	cases := map[string]*big.Int{
		// s = d_1 (s_1 + w_1) - r = n - r, i.e. r + k = n: s_1 = -w_1.
		"r + s = n": new(big.Int).Sub(n, w1),
		// s = 0: s_1 = r d_1^-1 - w_1.
		"s = 0": new(big.Int).Mod(new(big.Int).Sub(new(big.Int).Mul(r, new(big.Int).ModInverse(a, n)), w1), n),
	}
	for name, s1 := range cases {
		sg, err := StartSign(fixedRand(w1), pub, e)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sg.Finish(d1, scalar(r), scalar(s1)); !errors.Is(err, ErrDegenerate) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// The platform retries with a fresh w_2 when r = e + x_Q is 0.
func TestPlatformRetriesOnZeroR(t *testing.T) {
	d1, d2 := mustShare(t), mustShare(t)
	w1, w2a, w2b := big.NewInt(77), big.NewInt(1001), big.NewInt(2002)
	sg, err := StartSign(fixedRand(w1), joint(t, d1, d2), make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	q1 := sg.Q1()
	b := new(big.Int).SetBytes(d2.Bytes())
	bInv := new(big.Int).ModInverse(b, n)
	xQ := func(w2 *big.Int) *big.Int {
		// Q = w_2 G + d_2^-1 w_1 G = (w_2 + d_2^-1 w_1) G
		k := new(big.Int).Add(w2, new(big.Int).Mul(bInv, w1))
		x, _ := curve.ScalarBaseMult(scalar(k.Mod(k, n)))
		return x
	}
	e := new(big.Int).Sub(n, new(big.Int).Mod(xQ(w2a), n)) // r = 0 with w2a
	r, s1, err := d2.CoSign(fixedRand(w2a, w2b), scalar(e), q1)
	if err != nil {
		t.Fatal(err)
	}
	want := new(big.Int).Add(e, xQ(w2b))
	if !bytes.Equal(r, scalar(want.Mod(want, n))) {
		t.Fatal("r is not from the second w_2")
	}
	wantS1 := new(big.Int).Mul(b, new(big.Int).Add(want, w2b))
	if !bytes.Equal(s1, scalar(wantS1.Mod(wantS1, n))) {
		t.Fatal("s_1 is not d_2 (r + w_2)")
	}
}

// Neither share alone, nor a share with a stranger's, nor a lying platform yields a signature.
func TestLostShareCannotSign(t *testing.T) {
	d1, d2 := mustShare(t), mustShare(t)
	pub := joint(t, d1, d2)
	msg := []byte("m")
	e, _ := Digest(pub, nil, msg)
	cases := map[string]func() error{
		"thief with d_1, own d_2'": func() error {
			_, err := cosign(t, d1, mustShare(t), pub, msg)
			return err
		},
		"thief with d_2, own d_1'": func() error {
			_, err := cosign(t, mustShare(t), d2, pub, msg)
			return err
		},
		"platform returns s_1 + 1": func() error {
			sg, _ := StartSign(rand.Reader, pub, e)
			r, s1, err := d2.CoSign(rand.Reader, e, sg.Q1())
			if err != nil {
				return err
			}
			s := new(big.Int).SetBytes(s1)
			s.Add(s, big.NewInt(1)).Mod(s, n)
			_, err = sg.Finish(d1, r, scalar(s))
			return err
		},
		"platform signs another digest": func() error {
			sg, _ := StartSign(rand.Reader, pub, e)
			other, _ := Digest(pub, nil, []byte("other"))
			r, s1, err := d2.CoSign(rand.Reader, other, sg.Q1())
			if err != nil {
				return err
			}
			_, err = sg.Finish(d1, r, s1)
			return err
		},
	}
	for name, f := range cases {
		if err := f(); !errors.Is(err, ErrVerify) {
			t.Errorf("%s: %v, want ErrVerify", name, err)
		}
	}
}

func TestSessionsAreOneShot(t *testing.T) {
	d1, d2 := mustShare(t), mustShare(t)
	pub := joint(t, d1, d2)
	e, _ := Digest(pub, nil, []byte("m"))
	sg, _ := StartSign(rand.Reader, pub, e)
	r, s1, err := d2.CoSign(rand.Reader, e, sg.Q1())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sg.Finish(d1, r, s1); err != nil {
		t.Fatal(err)
	}
	if _, err := sg.Finish(d1, r, s1); !errors.Is(err, ErrUsed) {
		t.Fatalf("second Finish: %v", err)
	}
	ct, _ := sm2.EncryptASN1(rand.Reader, pub, []byte("x"))
	dc, err := StartDecrypt(rand.Reader, ct)
	if err != nil {
		t.Fatal(err)
	}
	t2, _ := d2.CoDecrypt(dc.T1())
	if _, err := dc.Finish(d1, t2); err != nil {
		t.Fatal(err)
	}
	if _, err := dc.Finish(d1, t2); !errors.Is(err, ErrUsed) {
		t.Fatalf("second decrypt Finish: %v", err)
	}
}

func TestDecrypt(t *testing.T) {
	d1, d2 := mustShare(t), mustShare(t)
	pub := joint(t, d1, d2)
	msg := []byte("card PIN block 0412AC89FFFFFFFF")
	asn1CT, err := sm2.EncryptASN1(rand.Reader, pub, msg)
	if err != nil {
		t.Fatal(err)
	}
	plainCT, err := sm2.Encrypt(rand.Reader, pub, msg, nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, ct := range map[string][]byte{"asn1": asn1CT, "c1c3c2": plainCT} {
		dc, err := StartDecrypt(rand.Reader, ct)
		if err != nil {
			t.Fatal(name, err)
		}
		if bytes.Equal(dc.T1(), ct[:PointSize]) {
			t.Fatal("T_1 is C1: no blinding")
		}
		t2, err := d2.CoDecrypt(dc.T1())
		if err != nil {
			t.Fatal(name, err)
		}
		got, err := dc.Finish(d1, t2)
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("%s: %q %v", name, got, err)
		}
	}
	// A wrong share, a tampered C2 and a wrong T_2 all fail the C3 check.
	tampered := append([]byte(nil), plainCT...)
	tampered[len(tampered)-1] ^= 1
	cases := map[string]func() ([]byte, error){
		"stranger's d_2": func() ([]byte, error) {
			dc, _ := StartDecrypt(rand.Reader, plainCT)
			t2, _ := mustShare(t).CoDecrypt(dc.T1())
			return dc.Finish(d1, t2)
		},
		"stranger's d_1": func() ([]byte, error) {
			dc, _ := StartDecrypt(rand.Reader, plainCT)
			t2, _ := d2.CoDecrypt(dc.T1())
			return dc.Finish(mustShare(t), t2)
		},
		"tampered C2": func() ([]byte, error) {
			dc, _ := StartDecrypt(rand.Reader, tampered)
			t2, _ := d2.CoDecrypt(dc.T1())
			return dc.Finish(d1, t2)
		},
	}
	for name, f := range cases {
		if got, err := f(); !errors.Is(err, ErrDecrypt) || got != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	// Malformed ciphertexts.
	badC1 := append([]byte(nil), plainCT...)
	badC1[64] ^= 1
	for name, ct := range map[string][]byte{
		"empty": nil, "short": plainCT[:PointSize+32], "off-curve C1": badC1,
		"bad asn1": append([]byte{0x30, 0x82}, plainCT...), "too long": make([]byte, MaxCiphertext+1),
	} {
		if _, err := StartDecrypt(rand.Reader, ct); !errors.Is(err, ErrDecrypt) {
			t.Errorf("%s: %v", name, err)
		}
	}
	for name, p := range badPoints(t) {
		dc, _ := StartDecrypt(rand.Reader, plainCT)
		if _, err := dc.Finish(d1, p); !errors.Is(err, ErrInvalidPoint) {
			t.Errorf("T_2 %s: %v", name, err)
		}
	}
}

func TestFreshnessGuard(t *testing.T) {
	g := NewFreshnessGuard(time.Minute, 3)
	now := time.Unix(1_700_000_000, 0)
	q := []byte("Q1")
	if err := g.Check("k1", q, now); err != nil {
		t.Fatal(err)
	}
	if err := g.Check("k1", q, now.Add(59*time.Second)); !errors.Is(err, ErrReused) {
		t.Fatalf("reuse within window: %v", err)
	}
	if err := g.Check("k2", q, now); err != nil {
		t.Fatalf("same point, other key: %v", err)
	}
	if err := g.Check("k1", []byte("Q1'"), now); err != nil {
		t.Fatal(err)
	}
	if err := g.Check("k3", q, now); !errors.Is(err, ErrGuardFull) {
		t.Fatalf("full guard: %v", err)
	}
	if err := g.Check("k1", q, now.Add(time.Minute)); err != nil {
		t.Fatalf("after the window: %v", err)
	}
	if g.Len() != 1 {
		t.Fatalf("expired entries kept: %d", g.Len())
	}
}

// Refresh keeps the joint key, signatures of the refreshed pair verify under it, and the old
// terminal share with the new platform share (or the reverse) cannot produce a signature.
func TestShareRefresh(t *testing.T) {
	d1, _ := GenerateShare(rand.Reader)
	d2, _ := GenerateShare(rand.Reader)
	pub, err := d1.JointPublicKey(d2.PartialPublicKey())
	if err != nil {
		t.Fatal(err)
	}
	rho, err := GenerateRefresh(rand.Reader)
	if err != nil || len(rho) != ScalarSize {
		t.Fatal(len(rho), err)
	}
	n1, err := d1.Refreshed(rho)
	if err != nil {
		t.Fatal(err)
	}
	n2, err := d2.RefreshedInverse(rho)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(n1.Bytes(), d1.Bytes()) || bytes.Equal(n2.Bytes(), d2.Bytes()) {
		t.Fatal("refresh left a share unchanged")
	}
	for _, pair := range []struct{ a, b *Share }{{n1, n2}, {n2, n1}} {
		p, err := pair.a.JointPublicKey(pair.b.PartialPublicKey())
		if err != nil || p.X.Cmp(pub.X) != 0 || p.Y.Cmp(pub.Y) != 0 {
			t.Fatalf("refreshed pair gives another joint key: %v", err)
		}
	}
	sign := func(t1, p2 *Share) error {
		e, _ := Digest(pub, []byte("1234567812345678"), []byte("payment 42"))
		sg, err := StartSign(rand.Reader, pub, e)
		if err != nil {
			return err
		}
		r, s1, err := p2.CoSign(rand.Reader, e, sg.Q1())
		if err != nil {
			return err
		}
		sig, err := sg.Finish(t1, r, s1)
		if err != nil {
			return err
		}
		if !sm2.VerifyASN1(pub, e, sig) {
			return errors.New("released signature does not verify")
		}
		return nil
	}
	if err := sign(n1, n2); err != nil {
		t.Fatalf("refreshed pair: %v", err)
	}
	if err := sign(d1, n2); !errors.Is(err, ErrVerify) {
		t.Fatalf("old d_1 with new d_2: %v", err)
	}
	if err := sign(n1, d2); !errors.Is(err, ErrVerify) {
		t.Fatalf("new d_1 with old d_2: %v", err)
	}
	for _, bad := range [][]byte{make([]byte, ScalarSize), rho[:31], bytes.Repeat([]byte{0xff}, ScalarSize)} {
		if _, err := d1.Refreshed(bad); !errors.Is(err, ErrInvalidScalar) {
			t.Fatalf("bad rho %x: %v", bad, err)
		}
	}
	d1.Destroy()
	if _, err := d1.Refreshed(rho); !errors.Is(err, ErrUsed) {
		t.Fatalf("destroyed share: %v", err)
	}
}
