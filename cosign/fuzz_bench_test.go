package cosign

import (
	"bytes"
	"crypto/rand"
	"errors"
	"math/big"
	"runtime"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"golang.org/x/sys/unix"
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

// threadCPU is the CPU time of the calling OS thread (CLOCK_THREAD_CPUTIME_ID). The benchmarks lock
// their goroutine to its thread and report cpu-ns/op: the CPU one operation costs, much steadier
// than ns/op (wall time) on a machine shared with other jobs.
func threadCPU() time.Duration {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
	return time.Duration(ts.Nano())
}

// cpuBench runs f b.N times on one locked thread and reports its CPU per op.
func cpuBench(b *testing.B, f func()) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	c0 := threadCPU()
	for b.Loop() {
		f()
	}
	b.ReportMetric(float64(threadCPU()-c0)/float64(b.N), "cpu-ns/op")
}

// BenchmarkPlatform compares the platform's CPU per co-signature (CoSign) with one plain SM2
// signature and one SM2 verification (also a fixed-base plus a variable-base multiplication)
// by gmsm over the same digest, and with CoSign's one curve operation alone; docs/cosign.md
// reports the ratios of cpu-ns/op.
func BenchmarkPlatform(b *testing.B) {
	d1, _ := GenerateShare(rand.Reader)
	d2, _ := GenerateShare(rand.Reader)
	pub, _ := d1.JointPublicKey(d2.PartialPublicKey())
	e, _ := Digest(pub, nil, []byte("pay 100.00 CNY"))
	sg, _ := StartSign(rand.Reader, pub, e)
	q1 := sg.Q1()
	priv, _ := sm2.GenerateKey(rand.Reader)
	sig, _ := sm2.SignASN1(rand.Reader, priv, e, nil)
	q, _ := parsePoint(q1)
	k := scalarBytes(d2.dInv)
	for _, bm := range []struct {
		name string
		f    func()
	}{
		{"plain-sm2-sign", func() { sm2.SignASN1(rand.Reader, priv, e, nil) }},
		{"plain-sm2-verify", func() {
			if !sm2.VerifyASN1(&priv.PublicKey, e, sig) {
				b.Fatal("verify")
			}
		}},
		{"combined-mult", func() { curve.CombinedMult(q.x, q.y, k, k) }}, // w_2 G + d_2^-1 Q_1 alone
		{"cosign-platform", func() {
			if _, _, err := d2.CoSign(rand.Reader, e, q1); err != nil {
				b.Fatal(err)
			}
		}},
		{"cosign-terminal", func() {
			sg, _ := StartSign(rand.Reader, pub, e)
			r, s1, _ := d2.CoSign(rand.Reader, e, sg.Q1())
			if _, err := sg.Finish(d1, r, s1); err != nil {
				b.Fatal(err)
			}
		}},
		{"codecrypt-platform", func() {
			if _, err := d2.CoDecrypt(q1); err != nil {
				b.Fatal(err)
			}
		}},
	} {
		b.Run(bm.name, func(b *testing.B) { cpuBench(b, bm.f) })
	}
}
