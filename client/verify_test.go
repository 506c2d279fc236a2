package client

import (
	"errors"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/signing"
)

func TestLookup(t *testing.T) {
	p := getPKI(t)
	plat, other := p.platformSign.Certificate, p.otherSign.Certificate
	one := &Transport{platform: []*smx509.Certificate{plat}, keyIDs: map[string]*smx509.Certificate{}}
	two := &Transport{platform: []*smx509.Certificate{plat, other}, keyIDs: map[string]*smx509.Certificate{"platform-2024": other}}
	cases := []struct {
		name string
		tr   *Transport
		id   string
		want *smx509.Certificate
	}{
		{"upper hex", one, signing.SerialHex(plat.SerialNumber), plat},
		{"lower hex", one, strings.ToLower(signing.SerialHex(plat.SerialNumber)), plat},
		{"decimal", one, signing.SerialDecimal(plat.SerialNumber), plat},
		{"empty with one", one, "", plat},
		{"empty with two", two, "", nil},
		{"mapped", two, "platform-2024", other},
		{"second by serial", two, signing.SerialHex(other.SerialNumber), other},
		{"unknown", one, "ABCDEF", nil},
		{"padded hex", one, "00" + signing.SerialHex(plat.SerialNumber), nil},
		{"decimal+1", one, new(big.Int).Add(plat.SerialNumber, big.NewInt(1)).String(), nil},
	}
	for _, tc := range cases {
		if got := tc.tr.lookup(tc.id); got != tc.want {
			t.Errorf("%s: lookup(%q) wrong certificate", tc.name, tc.id)
		}
	}
}

// The reply window is measured with the client's clock, both ways, default 5 minutes.
func TestReplyWindow(t *testing.T) {
	p := getPKI(t)
	base := time.Now()
	for _, tc := range []struct {
		window time.Duration
		skew   time.Duration // reply time - client time
		stale  bool
	}{
		{0, 4*time.Minute + 50*time.Second, false},
		{0, -4*time.Minute - 50*time.Second, false},
		{0, 5*time.Minute + 10*time.Second, true},
		{0, -5*time.Minute - 10*time.Second, true},
		{time.Minute, 90 * time.Second, true},
		{time.Hour, -50 * time.Minute, false},
	} {
		for _, scheme := range allSchemes {
			cfg := baseConfig(t, p, scheme)
			cfg.ReplyWindow = tc.window
			cfg.Now = func() time.Time { return base }
			tr, err := NewTransport(cfg)
			if err != nil {
				t.Fatal(err)
			}
			rm := signedReply(t, p, scheme, replyBody(scheme), base.Add(tc.skew))
			_, _, err = tr.verifyReply(200, rm.Header, rm.Body)
			if tc.stale != errors.Is(err, ErrReplyStale) || (!tc.stale && err != nil) {
				t.Errorf("%s window %v skew %v: %v", scheme, tc.window, tc.skew, err)
			}
		}
	}
}

func replyBody(scheme string) []byte {
	if scheme == signing.WechatPayName || scheme == signing.HTTPSigName {
		return []byte(`{"result":"SUCCESS"}`)
	}
	return []byte("result_code=SUCCESS")
}

// Malformed reply signatures are ErrReplySignatureInvalid (not a panic, not Unsigned).
func TestMalformedReplies(t *testing.T) {
	p := getPKI(t)
	now := time.Now()
	mk := func(scheme string) *Transport {
		tr, err := NewTransport(baseConfig(t, p, scheme))
		if err != nil {
			t.Fatal(err)
		}
		return tr
	}
	type tcase struct {
		name   string
		scheme string
		mod    func(h http.Header, body []byte) []byte
		want   error
	}
	cases := []tcase{
		{"wechat bad base64", signing.WechatPayName, func(h http.Header, b []byte) []byte { h.Set("Wechatpay-Signature", "!!!"); return b }, ErrReplySignatureInvalid},
		{"wechat no serial", signing.WechatPayName, func(h http.Header, b []byte) []byte { h.Del("Wechatpay-Serial"); return b }, ErrReplySignatureInvalid},
		{"wechat bad timestamp", signing.WechatPayName, func(h http.Header, b []byte) []byte { h.Set("Wechatpay-Timestamp", "soon"); return b }, ErrReplySignatureInvalid},
		{"wechat other serial", signing.WechatPayName, func(h http.Header, b []byte) []byte { h.Set("Wechatpay-Serial", "01"); return b }, ErrReplyUnknownKey},
		{"wechat no signature", signing.WechatPayName, func(h http.Header, b []byte) []byte { h.Del("Wechatpay-Signature"); return b }, ErrReplyUnsigned},
		{"httpsig digest", signing.HTTPSigName, func(h http.Header, b []byte) []byte { return append(b, ' ') }, ErrReplySignatureInvalid},
		{"httpsig only input", signing.HTTPSigName, func(h http.Header, b []byte) []byte { h.Del("Signature"); return b }, ErrReplySignatureInvalid},
		{"httpsig garbage", signing.HTTPSigName, func(h http.Header, b []byte) []byte { h.Set("Signature-Input", "sig1=(("); return b }, ErrReplySignatureInvalid},
		{"form sign removed", signing.FormName, func(h http.Header, b []byte) []byte { return []byte("result_code=SUCCESS") }, ErrReplyUnsigned},
		{"form bad encoding", signing.FormName, func(h http.Header, b []byte) []byte { return []byte("result_code=SUCCESS&sign=%zz") }, ErrReplySignatureInvalid},
		{"unionpay other method", signing.UnionPayName, func(h http.Header, b []byte) []byte {
			return []byte(strings.Replace(string(b), "signMethod=21", "signMethod=01", 1))
		}, ErrReplySignatureInvalid},
	}
	for _, tc := range cases {
		rm := signedReply(t, p, tc.scheme, replyBody(tc.scheme), now)
		body := tc.mod(rm.Header, rm.Body)
		_, _, err := mk(tc.scheme).verifyReply(200, rm.Header, body)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestGatewayErrorBody(t *testing.T) {
	for _, tc := range []struct{ body, code, msg string }{
		{`{"code":"replay","message":"request was already received"}`, "replay", "request was already received"},
		{`{"code":"x\u0001","message":"m"}`, "", "m"},
		{`not json`, "", ""},
		{`{"code":"` + strings.Repeat("a", 100) + `"}`, strings.Repeat("a", 64), ""},
		{strings.Repeat(" ", 5000), "", ""},
	} {
		c, m := gatewayError([]byte(tc.body))
		if c != tc.code || m != tc.msg {
			t.Errorf("gatewayError(%.20q) = %q, %q", tc.body, c, m)
		}
	}
}

// FuzzVerifyReply feeds arbitrary replies (headers and body) to the verification of every
// scheme: it must never panic, and must either verify (with an identity) or fail with a
// *ReplyError carrying one of the sentinels.
func FuzzVerifyReply(f *testing.F) {
	p := getPKI(f)
	trs := map[int]*Transport{}
	for i, scheme := range allSchemes {
		cfg := withEnvelope(baseConfig(f, p, scheme), p)
		cfg.Envelope.RequireSealedReply = false
		tr, err := NewTransport(cfg)
		if err != nil {
			f.Fatal(err)
		}
		trs[i] = tr
		rm := signedReply(f, p, scheme, replyBody(scheme), time.Now())
		var hs []string
		for k, vs := range rm.Header {
			for _, v := range vs {
				hs = append(hs, k+": "+v)
			}
		}
		f.Add(uint8(i), strings.Join(hs, "\n"), rm.Body)
	}
	f.Add(uint8(0), "Content-Type: "+EnvelopeContentType, []byte{0x30, 0x80, 0x00})
	sentinels := []error{ErrReplyUnsigned, ErrReplySignatureInvalid, ErrReplyStale, ErrReplyUnknownKey, ErrReplyEnvelope}
	f.Fuzz(func(t *testing.T, which uint8, headers string, body []byte) {
		tr := trs[int(which)%len(trs)]
		h := http.Header{}
		for _, line := range strings.Split(headers, "\n") {
			if k, v, ok := strings.Cut(line, ": "); ok && k != "" {
				h.Add(k, v)
			}
		}
		r, plain, err := tr.verifyReply(200, h, body)
		if err == nil {
			if r == nil || r.Certificate == nil || plain == nil && len(body) > 0 {
				t.Fatal("verified without identity")
			}
			return
		}
		var re *ReplyError
		if !errors.As(err, &re) {
			t.Fatalf("untyped error %T %v", err, err)
		}
		ok := false
		for _, s := range sentinels {
			ok = ok || re.Err == s
		}
		if !ok {
			t.Fatalf("unexpected sentinel %v", re.Err)
		}
	})
}

// FuzzOpen: envelopes from the network never panic Open.
func FuzzOpen(f *testing.F) {
	p := getPKI(f)
	env, err := Seal([]byte("hello"), p.termEnc.Certificate)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(env)
	f.Add([]byte("MIIB"))
	key := p.termEnc.Key.(*sm2Key)
	f.Fuzz(func(t *testing.T, data []byte) {
		out, err := Open(data, p.termEnc.Certificate, key, 1<<16)
		if err == nil && out == nil {
			t.Fatal("nil plaintext without error")
		}
		if err != nil && !errors.Is(err, ErrReplyEnvelope) {
			t.Fatalf("untyped error %v", err)
		}
	})
}
