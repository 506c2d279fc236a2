package gateway

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emmansun/gmsm/pkcs"
	"github.com/emmansun/gmsm/pkcs7"
	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/envelope"
)

var benchSeq atomic.Int64

func BenchmarkReplayGuardMemory(b *testing.B) {
	// A short window keeps the store from filling over millions of iterations.
	st := NewMemoryReplayStore(MemoryReplayOptions{MaxEntries: 1 << 21})
	defer st.Close()
	g := &ReplayGuard{Store: st, Window: 500 * time.Millisecond}
	ctx := context.Background()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := g.Check(ctx, "mch-1", fmt.Sprint("n", benchSeq.Add(1)), time.Now()); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkReplayGuardRedis(b *testing.B) {
	addr := benchRedisAddr(b)
	g, _ := newRedisGuardTB(b, addr)
	ctx := context.Background()
	run := time.Now().UnixNano()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := g.Check(ctx, "mch-1", fmt.Sprint(run, "-", benchSeq.Add(1)), time.Now()); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkEnvelopeOpen(b *testing.B) {
	key, _ := sm2.GenerateKey(rand.Reader)
	cert := newEncCert(b, key)
	env, _ := pkcs7.EncryptSM(pkcs.SM4GCM, make([]byte, 1024), []*smx509.Certificate{cert})
	o := &envelope.Opener{Cert: cert, Key: key}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := o.Open(env); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSM2VerifyBaseline is the bare gmsm SM2 verification the issue
// compares the pipeline against.
func BenchmarkSM2VerifyBaseline(b *testing.B) {
	key, _ := sm2.GenerateKey(rand.Reader)
	msg := make([]byte, 512)
	sig, _ := key.Sign(rand.Reader, msg, sm2.DefaultSM2SignerOpts)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if !sm2.VerifyASN1WithSM2(&key.PublicKey, nil, msg, sig) {
			b.Fatal("verify")
		}
	}
}

func BenchmarkNonceDigest(b *testing.B) {
	for i := 0; i < b.N; i++ {
		_ = nonceDigest("mch-1900000001", "5K8264ILTKCH16CQ2502SI8ZNMTM67VS")
	}
	_ = sm3.Size
}
