package channel

import (
	"bytes"
	"crypto/rand"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/emmansun/gmsm/sm2"

	"github.com/gmgate/gmgate/integration/banksim"
	"github.com/gmgate/gmgate/signing"
)

// cannedReply runs one signed request through the simulator's handler and returns its reply.
func cannedReply(tb testing.TB, p *banksim.TestPKI, pr profile) (http.Header, []byte) {
	tb.Helper()
	sim, err := banksim.New(banksim.FromTestPKI(p, pr.sim))
	if err != nil {
		tb.Fatal(err)
	}
	ch, err := New(channelConfig(tb, p, pr))
	if err != nil {
		tb.Fatal(err)
	}
	return simReply(tb, sim, ch)
}

// simReply has the simulator answer one request sealed by ch.
func simReply(tb testing.TB, sim *banksim.Server, ch *BankChannel) (http.Header, []byte) {
	tb.Helper()
	m := &signing.Message{Kind: signing.Request, Method: "POST", Target: "/pay", Authority: "bank.test", Scheme: "http",
		Header: http.Header{"Content-Type": {"application/json"}}, Body: []byte(payJSON)}
	if err := ch.SealRequest(m); err != nil {
		tb.Fatal(err)
	}
	req := httptest.NewRequest("POST", "http://bank.test/pay", bytes.NewReader(m.Body))
	req.Header = m.Header
	rec := httptest.NewRecorder()
	sim.Handler().ServeHTTP(rec, req)
	if rec.Code != 200 || rec.Header().Get(banksim.HeaderVerified) != "ok" {
		tb.Fatalf("simulator: %d %s %s", rec.Code, rec.Header().Get(banksim.HeaderVerified), rec.Body.Bytes())
	}
	return rec.Header(), rec.Body.Bytes()
}

func fuzzProfiles() []profile {
	return []profile{
		{name: "unionpay", scheme: signing.Settings{Name: "unionpay-sm2"}, sim: banksim.Profile{Scheme: banksim.UnionPay, Target: "fields", Cipher: "sm4-gcm", Fields: sensitive(), SM4Key: testSM4Key},
			enc: func(*banksim.TestPKI) Encryption {
				return Encryption{Target: TargetFields, Fields: sensitive(), Key: mustKey()}
			}},
		{name: "http-sig", scheme: signing.Settings{Name: "http-sig-sm2"}, sim: banksim.Profile{Scheme: banksim.HTTPSig, Target: "body", Cipher: "sm4-cbc", SM4Key: testSM4Key},
			enc: func(*banksim.TestPKI) Encryption {
				return Encryption{Target: TargetBody, Cipher: CipherSM4CBC, Key: mustKey()}
			}},
		{name: "wechatpay", scheme: signing.Settings{Name: "wechatpay-v3-sm2"}, sim: banksim.Profile{Scheme: banksim.WechatPay, Target: "body", Cipher: "sm2-envelope"},
			enc: envelopeRule(TargetBody)},
	}
}

// FuzzOpenReply feeds arbitrary reply bodies and signature header values to every profile's
// reply path: it must never panic, must fail with a known code, and must never accept a reply
// whose body differs from the one the bank signed.
func FuzzOpenReply(f *testing.F) {
	p := getPKI(f)
	type fx struct {
		ch     *BankChannel
		header http.Header
		body   []byte
	}
	var fixtures []fx
	for _, pr := range fuzzProfiles() {
		h, b := cannedReply(f, p, pr)
		ch, err := New(channelConfig(f, p, pr))
		if err != nil {
			f.Fatal(err)
		}
		fixtures = append(fixtures, fx{ch, h, b})
		hv := h.Get("Signature-Input") + h.Get("Wechatpay-Signature")
		f.Add(uint8(len(fixtures)-1), b, hv, h.Get("Signature")+h.Get("Wechatpay-Serial"))
	}
	f.Add(uint8(0), []byte(`{"signature":"","certId":"1"}`), "", "")
	f.Add(uint8(2), []byte(`{"encAlg":"SM2-ENVELOPE","encData":"MAA="}`), "x", "y")
	known := map[Code]bool{}
	for _, c := range Codes() {
		known[c] = true
	}
	f.Fuzz(func(t *testing.T, which uint8, body []byte, h1, h2 string) {
		x := fixtures[int(which)%len(fixtures)]
		h := x.header.Clone()
		switch x.ch.SchemeName() {
		case "http-sig-sm2":
			h.Set("Signature-Input", h1)
			h.Set("Signature", h2)
		case "wechatpay-v3-sm2":
			h.Set("Wechatpay-Signature", h1)
			h.Set("Wechatpay-Serial", h2)
		}
		r, _, err := x.ch.OpenReply(&signing.Message{Status: 200, Header: h, Body: body}, "", DefaultMaxBody)
		if err != nil {
			if !known[CodeOf(err)] || CodeOf(err) == CodeInternal {
				t.Fatalf("unexpected error kind %v", err)
			}
			return
		}
		if !bytes.Equal(body, x.body) && x.ch.SchemeName() != "unionpay-sm2" {
			t.Fatalf("accepted a body the bank did not sign")
		}
		if r == nil {
			t.Fatal("nil reply without error")
		}
	})
}

// FuzzDecryptReply feeds arbitrary (already verified) bodies to the decryption of each rule.
func FuzzDecryptReply(f *testing.F) {
	p := getPKI(f)
	rules := []Encryption{
		{Target: TargetBody, Cipher: CipherSM4GCM, Key: mustKey()},
		{Target: TargetBody, Cipher: CipherSM4CBC, Key: mustKey()},
		{Target: TargetFields, Cipher: CipherSM4GCM, Fields: sensitive(), Key: mustKey()},
		envelopeRule(TargetBody)(p),
		envelopeRule(TargetFields)(p),
	}
	for i := range rules {
		if err := rules[i].check(); err != nil {
			f.Fatal(err)
		}
		b, _, err := rules[i].encryptRequest([]byte(payJSON), "application/json")
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint8(i), b, "application/json")
	}
	f.Add(uint8(3), []byte(`{"encAlg":"SM2-ENVELOPE","encData":"MIIBAAYKKoEcz1UGAQQCAw=="}`), "")
	f.Add(uint8(4), []byte("accNo=%zz&phone=AAAA"), "application/x-www-form-urlencoded")
	f.Fuzz(func(t *testing.T, which uint8, body []byte, ct string) {
		e := &rules[int(which)%len(rules)]
		out, _, err := e.decryptReply(body, ct, DefaultMaxBody)
		if err != nil {
			if c := CodeOf(err); c != CodeBankDecryptFailed && c != CodeBankReplyMalformed {
				t.Fatalf("code %s: %v", c, err)
			}
			return
		}
		if len(out) > 2*len(body)+1024 {
			t.Fatalf("output larger than possible")
		}
	})
}

// benchFixture is a transport whose inner round tripper answers with a canned signed reply, so
// that the benchmark measures only the channel's own per-request work.
type canned struct {
	h    []http.Header
	body [][]byte
	next int
}

// RoundTrip answers with the next reply, in turn (distinct replies: a reply with its own signed
// nonce is accepted once).
func (c *canned) RoundTrip(r *http.Request) (*http.Response, error) {
	io.Copy(io.Discard, r.Body)
	r.Body.Close()
	i := c.next % len(c.h)
	c.next++
	return &http.Response{StatusCode: 200, Header: c.h[i].Clone(), Body: io.NopCloser(bytes.NewReader(c.body[i])), Request: r}, nil
}

// BenchmarkChannelRoundTrip: the whole per-request cost (encrypt, sign, verify, decrypt, audit
// record, metric) for each profile, network excluded.
func BenchmarkChannelRoundTrip(b *testing.B) {
	p := getPKI(b)
	all := append([]profile{
		{name: "unionpay-plain", scheme: signing.Settings{Name: "unionpay-sm2"}, sim: banksim.Profile{Scheme: banksim.UnionPay}},
		{name: "http-sig-plain", scheme: signing.Settings{Name: "http-sig-sm2"}, sim: banksim.Profile{Scheme: banksim.HTTPSig}},
	}, fuzzProfiles()...)
	for _, pr := range all {
		b.Run(pr.name, func(b *testing.B) {
			// One distinct reply per iteration, made before the timer starts.
			sim, err := banksim.New(banksim.FromTestPKI(p, pr.sim))
			if err != nil {
				b.Fatal(err)
			}
			ch, err := New(channelConfig(b, p, pr))
			if err != nil {
				b.Fatal(err)
			}
			c := &canned{}
			for range b.N {
				h, body := simReply(b, sim, ch)
				c.h, c.body = append(c.h, h), append(c.body, body)
			}
			tr, _, _ := newTransport(b, channelConfig(b, p, pr), c, nil)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				req, _ := http.NewRequest("POST", "http://bank.test/pay", strings.NewReader(payJSON))
				req.Header.Set("Content-Type", "application/json")
				resp, err := tr.RoundTrip(req)
				if err != nil || resp.StatusCode != 200 {
					b.Fatalf("%v %d", err, resp.StatusCode)
				}
				resp.Body.Close()
			}
		})
	}
}

// BenchmarkBareSM2SignVerify is the floor: one SM2 sign (request) plus one SM2 verify (reply)
// over a message of the same size, with gmsm directly.
func BenchmarkBareSM2SignVerify(b *testing.B) {
	p := getPKI(b)
	priv := p.PlatformSign.Key
	pub := &p.BankSign.Key.PublicKey
	msg := []byte(payJSON)
	sig, err := p.BankSign.Key.SignWithSM2(rand.Reader, nil, msg)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := priv.SignWithSM2(rand.Reader, nil, msg); err != nil {
			b.Fatal(err)
		}
		if !sm2.VerifyASN1WithSM2(pub, nil, msg, sig) {
			b.Fatal("verify")
		}
	}
}
