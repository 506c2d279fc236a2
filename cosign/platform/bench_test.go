package platform

import (
	"bytes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm4"
	"golang.org/x/sys/unix"

	"github.com/gmgate/gmgate/audit"
	"github.com/gmgate/gmgate/cosign"
	"github.com/gmgate/gmgate/sealstore"
)

// gcmKey is a software SM4-GCM sealing key for the benchmark's real sealstore.
type gcmKey struct{ aead cipher.AEAD }

func (k gcmKey) Version() int { return 1 }
func (k gcmKey) SealGCM(pt, aad []byte) ([]byte, error) {
	n := make([]byte, k.aead.NonceSize())
	rand.Read(n)
	return k.aead.Seal(n, n, pt, aad), nil
}
func (k gcmKey) OpenGCM(ct, aad []byte) ([]byte, error) {
	if len(ct) < k.aead.NonceSize() {
		return nil, errors.New("short")
	}
	return k.aead.Open(nil, ct[:k.aead.NonceSize()], ct[k.aead.NonceSize():], aad)
}

type gcmKeys struct{ k gcmKey }

func (g gcmKeys) Name() string                    { return "bench-seal" }
func (g gcmKeys) Current() (sealstore.Key, error) { return g.k, nil }
func (g gcmKeys) At(int) (sealstore.Key, error)   { return g.k, nil }

// BenchmarkPlatformCPU compares the platform's whole co-signature (ServeHTTP: JSON, token,
// share opened from a real sealstore with SM4-GCM, freshness guard, CoSign, audit) with one
// plain SM2 signature and one SM2 verification; docs/cosign.md reports the ratios.
func BenchmarkPlatformCPU(b *testing.B) {
	block, _ := sm4.NewCipher(make([]byte, 16))
	aead, _ := cipher.NewGCM(block)
	store, err := sealstore.Open(b.TempDir(), gcmKeys{gcmKey{aead}})
	if err != nil {
		b.Fatal(err)
	}
	mac := hmacKey("bench")
	svc, err := New(Config{Shares: store, Audit: &nopAudit{}, TokenMAC: mac, RatePerMinute: 1 << 30, Burst: 1 << 30, FreshnessMax: 1 << 24})
	if err != nil {
		b.Fatal(err)
	}
	d1, _ := cosign.GenerateShare(rand.Reader)
	post := func(op string, req any) *httptest.ResponseRecorder {
		body, _ := json.Marshal(req)
		r := httptest.NewRequest(http.MethodPost, "/cosign/"+op, bytes.NewReader(body))
		tok, _ := IssueToken(mac, "bench-terminal", []string{op}, time.Now().Add(time.Minute))
		r.Header.Set("Authorization", "Bearer "+tok)
		w := httptest.NewRecorder()
		svc.ServeHTTP(w, r)
		return w
	}
	w := post(OpKeygen, Request{KeyID: "bench-terminal", P1: d1.PartialPublicKey()})
	var kr Response
	json.Unmarshal(w.Body.Bytes(), &kr)
	pub, _ := cosign.ParsePublicKey(kr.PublicKey)
	e, _ := cosign.Digest(pub, nil, []byte("pay"))
	priv, _ := sm2.GenerateKey(rand.Reader)
	sig, _ := sm2.SignASN1(rand.Reader, priv, e, nil)
	b.Run("plain-sm2-sign", func(b *testing.B) {
		cpuBench(b, func() { sm2.SignASN1(rand.Reader, priv, e, nil) })
	})
	b.Run("plain-sm2-verify", func(b *testing.B) {
		cpuBench(b, func() { sm2.VerifyASN1(&priv.PublicKey, e, sig) })
	})
	b.Run("gm_cosign-sign", func(b *testing.B) {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		var cpu time.Duration
		reqs := make([][]byte, 0, 1024)
		for b.Loop() {
			b.StopTimer()
			if len(reqs) == 0 {
				for range 1024 {
					sg, _ := cosign.StartSign(rand.Reader, pub, e)
					body, _ := json.Marshal(Request{KeyID: "bench-terminal", E: e, Q1: sg.Q1()})
					reqs = append(reqs, body)
				}
			}
			body := reqs[len(reqs)-1]
			reqs = reqs[:len(reqs)-1]
			r := httptest.NewRequest(http.MethodPost, "/cosign/sign", bytes.NewReader(body))
			tok, _ := IssueToken(mac, "bench-terminal", []string{OpSign}, time.Now().Add(time.Minute))
			r.Header.Set("Authorization", "Bearer "+tok)
			w := httptest.NewRecorder()
			b.StartTimer()
			c0 := threadCPU()
			svc.ServeHTTP(w, r)
			cpu += threadCPU() - c0
			if w.Code != http.StatusOK {
				b.Fatalf("%d %s", w.Code, w.Body)
			}
		}
		b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
	})
}

// threadCPU is the CPU time of the calling OS thread (CLOCK_THREAD_CPUTIME_ID): see package
// cosign's benchmark.
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

type nopAudit struct{}

func (*nopAudit) Append(audit.Record) error { return nil }
