package signing

import (
	"net/http"
	"sort"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
)

// BenchmarkVerify compares Parse+Verify of each scheme with one bare gmsm
// sm2.VerifyASN1WithSM2 of the same signed bytes (the floor every scheme pays).
func BenchmarkVerify(b *testing.B) {
	priv := newKey(b)
	body := []byte(`{"mchid":"1900000001","out_trade_no":"GM20261125000001","amount":{"total":100,"currency":"CNY"},"description":"gmgate benchmark order"}`)
	form := []byte("app_id=2021000000000001&method=alipay.trade.pay&charset=utf-8&biz_content=%7B%22out_trade_no%22%3A%221%22%7D&version=1.0")
	cases := []struct {
		s   Scheme
		msg func() *Message
		key Key
	}{
		{NewWechatPay(), func() *Message {
			return &Message{Method: "POST", Target: "/v3/pay/transactions/native", Header: http.Header{}, Body: body}
		}, Key{Signer: priv, KeyID: "SERIAL", MerchantID: "1900000001"}},
		{NewHTTPSig(), func() *Message {
			return &Message{Method: "POST", Target: "/v3/pay", Authority: "pay.example.com", Header: http.Header{}, Body: body}
		}, Key{Signer: priv, KeyID: "k1"}},
		{NewForm(), func() *Message { return &Message{Header: http.Header{}, Body: form} }, Key{Signer: priv, MerchantID: "m"}},
		{NewUnionPay(), func() *Message { return &Message{Header: http.Header{}, Body: form} }, Key{Signer: priv, KeyID: "69042905377"}},
	}
	for _, c := range cases {
		m := c.msg()
		if err := c.s.Sign(m, c.key, testNow, "N"); err != nil {
			b.Fatal(err)
		}
		sd, err := c.s.Parse(m)
		if err != nil {
			b.Fatal(err)
		}
		der := sd.Signature
		if sd.Encoding == Raw {
			der, _ = rawToDER(sd.Signature)
		}
		signed, uid := sd.SignedBytes, sd.UserID
		// Interleaved: both measured in the same loop, so load from other processes hits both
		// alike; reports the ratio (parse+verify) / bare.
		b.Run(c.s.Name()+"/ratio", func(b *testing.B) {
			bare := make([]time.Duration, 0, b.N)
			full := make([]time.Duration, 0, b.N)
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				if !sm2.VerifyASN1WithSM2(&priv.PublicKey, uid, signed, der) {
					b.Fatal("verify")
				}
				t1 := time.Now()
				sd, err := c.s.Parse(m)
				if err != nil {
					b.Fatal(err)
				}
				if err := c.s.Verify(sd, &priv.PublicKey); err != nil {
					b.Fatal(err)
				}
				full = append(full, time.Since(t1))
				bare = append(bare, t1.Sub(t0))
			}
			// Medians resist preemption by other processes on a shared machine.
			mb, mf := median(bare), median(full)
			b.ReportMetric(float64(mb), "bare-median-ns")
			b.ReportMetric(float64(mf), "scheme-median-ns")
			b.ReportMetric(float64(mf)/float64(mb), "ratio")
		})
		b.Run(c.s.Name()+"/bare-sm2", func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if !sm2.VerifyASN1WithSM2(&priv.PublicKey, uid, signed, der) {
					b.Fatal("verify")
				}
			}
		})
		b.Run(c.s.Name()+"/parse+verify", func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				sd, err := c.s.Parse(m)
				if err != nil {
					b.Fatal(err)
				}
				if err := c.s.Verify(sd, &priv.PublicKey); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSign measures Sign per scheme against a bare gmsm sign.
func BenchmarkSign(b *testing.B) {
	priv := newKey(b)
	body := []byte(`{"amount":100}`)
	b.Run("bare-sm2", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := SignSM2(priv, body, nil, DER); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, s := range []Scheme{NewWechatPay(), NewHTTPSig(), NewForm(), NewUnionPay()} {
		b.Run(s.Name(), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				m := &Message{Method: "POST", Target: "/p", Authority: "h", Header: http.Header{}, Body: []byte("a=1&b=2")}
				if err := s.Sign(m, Key{Signer: priv, KeyID: "1", MerchantID: "1"}, testNow, "n"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[len(d)/2]
}
