package gateway

import (
	"context"
	"crypto/ecdsa"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"

	"github.com/gmgate/gmgate/signing"
)

// benchBody is a typical payment instruction.
var benchBody = []byte(`{"mchid":"1900000001","appid":"wxd678efh567hg6787","out_trade_no":"GM20251125000001",` +
	`"description":"Image形象店-深圳腾大-QQ公仔","notify_url":"https://www.example.com/notify","amount":{"total":100,"currency":"CNY"}}`)

// benchRequests pre-signs n requests with distinct nonces (the replay store must accept each).
func benchRequests(b *testing.B, p *testPKI, n int) []*http.Request {
	b.Helper()
	reqs := make([]*http.Request, n)
	now := time.Now()
	for i := range reqs {
		reqs[i] = signWechat(b, p.good.Sign, http.MethodPost, "/v3/pay/transactions/native", benchBody, now, fmt.Sprintf("nonce-%d-%d", now.UnixNano(), i))
	}
	return reqs
}

// BenchmarkVerifier compares the whole inbound verification of one request (body read, parse,
// identity lookup with cached chain verification, SM2 verify, window and in-memory nonce check,
// identity headers) with one bare gmsm SM2 verification of the same signed bytes.
func BenchmarkVerifier(b *testing.B) {
	p := newTestPKI(b)
	v := newTestVerifier(b, p, nil)
	ctx := context.Background()
	b.Run("whole", func(b *testing.B) {
		reqs := benchRequests(b, p, b.N)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := v.Verify(ctx, reqs[i], nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("bare-sm2", func(b *testing.B) {
		r := signWechat(b, p.good.Sign, http.MethodPost, "/v3/pay/transactions/native", benchBody, time.Now(), "n")
		body, _ := io.ReadAll(r.Body)
		sd, err := signing.NewWechatPay().Parse(&signing.Message{Kind: signing.Request, Method: "POST", Target: "/v3/pay/transactions/native", Header: r.Header, Body: body})
		if err != nil {
			b.Fatal(err)
		}
		pub := p.good.Sign.Cert.PublicKey.(*ecdsa.PublicKey)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if !sm2.VerifyASN1WithSM2(pub, nil, sd.SignedBytes, sd.Signature) {
				b.Fatal("bad signature")
			}
		}
	})
}
