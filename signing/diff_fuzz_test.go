package signing

import (
	"bytes"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// The differential fuzz targets of the signed-string builders (issue 11, "make it systematic"):
// every builder must be injective on what the receiver acts on. Two messages that parse as
// signed and give the same signed bytes must carry the same fields; a signed message parsed,
// rebuilt and re-signed must give the same signed bytes and verify. FuzzParamsSignedString-
// Differential (fuzz_test.go) covers the `k=v` builders at the field-set level; these cover
// the newline-joined WeChat Pay strings, the RFC 9421 signature base and every scheme's round
// trip through Sign, Parse and Verify.

// wechatReq builds a WeChat Pay request with an Authorization header written from parts.
func wechatReq(method, target, ts, nonce string, body []byte) *Message {
	return &Message{Kind: Request, Method: method, Target: target, Header: http.Header{"Authorization": {
		WechatPaySchema + ` mchid="1",nonce_str="` + nonce + `",timestamp="` + ts + `",serial_no="S",signature="AA=="`}},
		Body: body}
}

// FuzzWechatSignedStringDifferential: "METHOD\nTARGET\nTS\nNONCE\nBODY\n" (requests) and
// "TS\nNONCE\nBODY\n" (replies) split back into one field set only: two parsed messages with
// the same signed bytes have the same method, target, timestamp, nonce and body.
func FuzzWechatSignedStringDifferential(f *testing.F) {
	f.Add("POST", "/v3/pay", "1764000000", "N1", []byte("{}"), "POST", "/v3/pay", "1764000000", "N1", []byte("{}"))
	// The target absorbs the time and nonce lines of the other message.
	f.Add("POST", "/p\n1\nN", "2", "M", []byte("B"), "POST", "/p", "1", "N", []byte("2\nM\nB"))
	f.Add("POST\n/p", "1", "2", "N", []byte("B"), "POST", "/p\n1", "2", "N", []byte("B"))
	w := NewWechatPay()
	f.Fuzz(func(t *testing.T, m1, t1, ts1, n1 string, b1 []byte, m2, t2, ts2, n2 string, b2 []byte) {
		a, errA := w.Parse(wechatReq(m1, t1, ts1, n1, b1))
		b, errB := w.Parse(wechatReq(m2, t2, ts2, n2, b2))
		checkTyped(t, errA)
		checkTyped(t, errB)
		if errA == nil && errB == nil && bytes.Equal(a.SignedBytes, b.SignedBytes) &&
			(m1 != m2 || t1 != t2 || ts1 != ts2 || n1 != n2 || !bytes.Equal(b1, b2)) {
			t.Fatalf("two requests, one signed string %q", a.SignedBytes)
		}
		reply := func(ts, nonce string, body []byte) (*Signed, error) {
			return w.Parse(&Message{Kind: Response, Status: 200, Body: body, Header: http.Header{
				HeaderWechatpayTimestamp: {ts}, HeaderWechatpayNonce: {nonce},
				HeaderWechatpaySignature: {"AA=="}, HeaderWechatpaySerial: {"S"}}})
		}
		ra, errA := reply(ts1, n1, b1)
		rb, errB := reply(ts2, n2, b2)
		checkTyped(t, errA)
		checkTyped(t, errB)
		if errA == nil && errB == nil && bytes.Equal(ra.SignedBytes, rb.SignedBytes) &&
			(ra.Nonce != rb.Nonce || !ra.Timestamp.Equal(rb.Timestamp) || !bytes.Equal(b1, b2)) {
			t.Fatalf("two replies, one signed string %q", ra.SignedBytes)
		}
	})
}

// httpSigReq is a request with a Signature-Input written from parts.
func httpSigReq(method, target, authority, digest, sigInput string) *Message {
	return &Message{Kind: Request, Method: method, Target: target, Authority: authority, Header: http.Header{
		"Content-Digest": {digest}, "Signature-Input": {sigInput}, "Signature": {"sig1=:AA==:"}}}
}

// FuzzHTTPSigBaseDifferential: two requests whose RFC 9421 signature bases are equal cover the
// same components with the same values and carry the same parameters (nonce, created, expires,
// keyid, alg, tag).
func FuzzHTTPSigBaseDifferential(f *testing.F) {
	in := `sig1=("@method" "@target-uri" "content-digest");created=1764000000;nonce="n";keyid="k"`
	d := "sm3=:" + strings.Repeat("A", 43) + "=:"
	f.Add("POST", "/p", "h", d, in, "POST", "/p", "h", d, in)
	f.Add("POST", "/p\n\"content-digest\": x", "h", d, in, "POST", "/p", "h", "x", in)
	f.Add("POST", "/p", "h", d, in, "POST", "/p", "h", d, strings.Replace(in, `"content-digest"`, `"content-digest" "@method"`, 1))
	h := NewHTTPSig()
	f.Fuzz(func(t *testing.T, m1, t1, a1, d1, i1, m2, t2, a2, d2, i2 string) {
		ma, mb := httpSigReq(m1, t1, a1, d1, i1), httpSigReq(m2, t2, a2, d2, i2)
		a, errA := h.Parse(ma)
		b, errB := h.Parse(mb)
		checkTyped(t, errA)
		checkTyped(t, errB)
		if errA != nil || errB != nil || !bytes.Equal(a.SignedBytes, b.SignedBytes) {
			return
		}
		if a.Nonce != b.Nonce || a.KeyID != b.KeyID || !a.Timestamp.Equal(b.Timestamp) || !a.Expires.Equal(b.Expires) ||
			a.Params["components"] != b.Params["components"] || a.Params["alg"] != b.Params["alg"] || a.Params["tag"] != b.Params["tag"] {
			t.Fatalf("two parameter sets, one signature base %q", a.SignedBytes)
		}
		for _, c := range strings.Fields(a.Params["components"]) {
			va, _ := componentValue(ma, c)
			vb, _ := componentValue(mb, c)
			if va != vb {
				t.Fatalf("%s differs (%q, %q) under one signature base %q", c, va, vb, a.SignedBytes)
			}
		}
	})
}

// FuzzSchemeRoundTrip signs a fuzzed request with every scheme, then parses and verifies it,
// and rebuilds it: the signed message parsed, stripped of its signature and signed again with
// the same time and nonce must give the same signed bytes, which verify. A scheme may refuse to
// sign (typed error) but never sign what it then refuses or splits differently.
func FuzzSchemeRoundTrip(f *testing.F) {
	f.Add("POST", "/v3/pay?x=1", []byte("amount=100&out_trade_no=T1"), "N1")
	f.Add("POST", "/p", []byte("a=1%26b%3D2&c=3"), "N2")
	f.Add("POST", "/p", []byte(`{"txnAmt":"1","orderId":"O1"}`), "")
	f.Add("GET", "/p?q=%0A", []byte(""), "N\n3")
	priv := newKey(f)
	key := Key{Signer: priv, KeyID: "1234", MerchantID: "M1"}
	f.Fuzz(func(t *testing.T, method, target string, body []byte, nonce string) {
		if len(body) > 4096 || len(target) > 1024 || len(method) > 32 || len(nonce) > 64 {
			return
		}
		for _, name := range Names() {
			sch, _ := New(name)
			ct := "application/x-www-form-urlencoded"
			if bytes.HasPrefix(bytes.TrimSpace(body), []byte("{")) {
				ct = "application/json"
			}
			m := &Message{Kind: Request, Method: method, Target: target, Authority: "gw.example", Scheme: "https",
				Header: http.Header{"Content-Type": {ct}}, Body: append([]byte(nil), body...)}
			err := sch.Sign(m, key, testNow, nonce)
			checkTyped(t, err)
			if err != nil {
				continue
			}
			sd, err := parseVerify(sch, cloneMessage(m), &priv.PublicKey)
			if err != nil {
				t.Fatalf("%s: signed message refused: %v", name, err)
			}
			if nonce != "" && sd.Nonce != nonce && SignsInHeader(name) {
				t.Fatalf("%s: nonce %q parsed as %q", name, nonce, sd.Nonce)
			}
			// Rebuild: strip the signature and sign again.
			again := cloneMessage(m)
			if !SignsInHeader(name) {
				params, err := ParseParams(again.Body, ct == "application/json")
				if err != nil {
					t.Fatalf("%s: signed body does not parse: %v", name, err)
				}
				sig := map[string]string{FormName: "sign", UnionPayName: "signature"}[name]
				delete(params, sig)
				if ct == "application/json" {
					if again.Body, err = rewriteJSON(again.Body, params); err != nil {
						t.Fatal(err)
					}
				} else {
					v := url.Values{}
					for k, x := range params {
						v.Set(k, x)
					}
					again.Body = []byte(v.Encode())
				}
			}
			if err := sch.Sign(again, key, testNow, sd.Nonce); err != nil {
				t.Fatalf("%s: signed message cannot be signed again: %v", name, err)
			}
			sd2, err := parseVerify(sch, again, &priv.PublicKey)
			if err != nil {
				t.Fatalf("%s: re-signed message refused: %v", name, err)
			}
			if !bytes.Equal(sd.SignedBytes, sd2.SignedBytes) || sd.Nonce != sd2.Nonce {
				t.Fatalf("%s: rebuild changed the signed bytes:\n%q\n%q", name, sd.SignedBytes, sd2.SignedBytes)
			}
		}
	})
}
