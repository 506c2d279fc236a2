package signing

import (
	"bytes"
	"errors"
	"maps"
	"net/http"
	"strings"
	"testing"
)

// rewriteSeeds are bodies for the rewriteJSON differential tests: the plain common case and
// everything the plain path must leave to encoding/json (escapes, HTML characters, U+2028,
// invalid UTF-8, duplicates, nesting, bad numbers, trailing data, Unicode spaces).
var rewriteSeeds = []string{
	``, ` `, "\u00a0", "\v\f", `{}`, ` { } `, `null`, `[]`, `"s"`, `1`,
	`{"txnAmt":"1","orderId":"O1"}`, `{"a":1,"b":-0.5e+10,"c":true,"d":false,"e":null}`,
	`{"a" : "b" ,` + "\t\r\n" + `"c":2}`, `{"a":1E-2,"b":0,"c":-0}`,
	`{"a":"<b>"}`, `{"a&b":"c"}`, `{"a":"x>y"}`, "{\"a\":\"\u2028\"}", "{\"\u2029\":1}",
	`{"a":"\u00e9"}`, `{"a":"é"}`, `{"é":"ü","ü":"é"}`, `{"a":"\n"}`, `{"a":"\\"}`, `{"a\"b":1}`,
	"{\"a\":\"\xff\"}", "{\"\xfe\":1}", "{\"a\":\"\x7f\"}", "{\"a\":\"\x01\"}",
	`{"a":1,"a":2}`, `{"a":null,"a":"x"}`, `{"":1}`, `{"a":{}}`, `{"a":[1]}`, `{"a":{"b":1}}`,
	`{"a":01}`, `{"a":1.}`, `{"a":.5}`, `{"a":1e}`, `{"a":-}`, `{"a":tru}`, `{"a":nullx}`, `{"a":truex}`,
	`{"a":1,}`, `{,}`, `{"a"}`, `{"a":}`, `{"a" 1}`, `{1:2}`, `{"a":1} x`, `{"a":1}{}`, `{"a":1}` + "\u00a0",
	"\ufeff{}", `{"a":"b"`, `{"a":"` + strings.Repeat("x", 300) + `"}`,
	`{"signature":"old","txnAmt":100,"orderId":"O1"}`,
}

// rewriteParams is what sign hands rewriteJSON for body: its parameters (when it parses), with
// extra ("k=v" lines) set over them; "k=" deletes k.
func rewriteParams(body []byte, extra string) map[string]string {
	params, err := ParseParams(body, true)
	if err != nil {
		params = map[string]string{}
	}
	for _, line := range strings.Split(extra, "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		if v == "" {
			delete(params, k)
		} else {
			params[k] = v
		}
	}
	return params
}

func checkRewriteSame(t *testing.T, body []byte, params map[string]string) {
	t.Helper()
	in := maps.Clone(params)
	got, gerr := rewriteJSON(body, params)
	want, werr := rewriteJSONMarshal(body, params)
	if (gerr == nil) != (werr == nil) || !bytes.Equal(got, want) {
		t.Fatalf("body %q, params %q:\nrewriteJSON        %q %v\nrewriteJSONMarshal %q %v", body, params, got, gerr, want, werr)
	}
	if gerr != nil && !errors.Is(gerr, ErrMalformedBody) {
		t.Fatalf("body %q: error %v is not ErrMalformedBody", body, gerr)
	}
	if !maps.Equal(in, params) {
		t.Fatalf("body %q: params changed", body)
	}
}

// FuzzRewriteJSONDifferential: rewriteJSON writes exactly what encoding/json writes
// (rewriteJSONMarshal, the former implementation), and fails exactly when it fails.
func FuzzRewriteJSONDifferential(f *testing.F) {
	for _, s := range rewriteSeeds {
		f.Add([]byte(s), "")
		f.Add([]byte(s), "signature=MEUCIQ==\ncertId=6902\ntxnAmt=100")
	}
	f.Add([]byte(`{"a":"1"}`), "a=<&>\nb=\u2028\nc=\xff\nd=\"\\\n")
	f.Add([]byte(`{"a":null,"b":1}`), "a=")
	f.Add([]byte(`{"a":null,"b":1}`), "a=\x00")
	f.Fuzz(func(t *testing.T, body []byte, extra string) {
		if len(body) > 8192 || len(extra) > 4096 {
			return
		}
		checkRewriteSame(t, body, rewriteParams(body, extra))
	})
}

func TestRewriteJSONMatchesMarshal(t *testing.T) {
	for _, s := range rewriteSeeds {
		for _, extra := range []string{"", "signature=MEUCIQ==", "a=2\nz=<", "txnAmt=100\norderId=O1", "é=\u2028", "e=", "a=",
			"a=\x00\ne=\x00", "a=true\nb=1", "c=true"} {
			checkRewriteSame(t, []byte(s), rewriteParams([]byte(s), extra))
		}
	}
}

// TestRewriteJSONPlainPath: a UnionPay request, its parameters re-signed, is written by the
// plain path (so the benchmark's saving is the path real requests take), keeping its number
// and boolean values as they were.
func TestRewriteJSONPlainPath(t *testing.T) {
	body := []byte(unionPayJSONBody)
	params := rewriteParams(body, "signature=MEUCIQD3k9bqkJ1F6n5p0sM3oP9qYb8x==\ncertId=69026276696\nsignMethod=SM2")
	out, ok := rewriteJSONPlain(body, params)
	if !ok {
		t.Fatal("plain path not taken")
	}
	if !bytes.Contains(out, []byte(`"txnAmt":1000,`)) || !bytes.Contains(out, []byte(`"accessType":0,`)) {
		t.Fatalf("values not kept: %s", out)
	}
	if _, ok := rewriteJSONPlain([]byte(`{"a":"<"}`), map[string]string{"a": "<"}); ok {
		t.Fatal("plain path took a value encoding/json escapes")
	}
}

const unionPayJSONBody = `{"version":"6.0.0","encoding":"UTF-8","txnType":"01","txnSubType":"01","bizType":"000201",` +
	`"channelType":"07","accessType":0,"merId":"777290058110048","orderId":"20261204000123",` +
	`"txnTime":"20261204063000","txnAmt":1000,"currencyCode":"156","frontUrl":"https://shop.example/front",` +
	`"backUrl":"https://shop.example/back","riskRateInfo":"{commodityName=test}","payTimeout":"20261204064500"}`

// BenchmarkRewriteJSON: the body of a re-signed UnionPay request (16 members, three changed),
// the plain path against encoding/json in the same run.
func BenchmarkRewriteJSON(b *testing.B) {
	body := []byte(unionPayJSONBody)
	params := rewriteParams(body, "signature=MEUCIQD3k9bqkJ1F6n5p0sM3oP9qYb8xQ7Zl5mR2T1cW4eKp2wIgV6rH0yJ8uN3tS5oL9aQ2bC7dE1fG4hI6jK8lM0nP3qR=\ncertId=69026276696\nsignMethod=SM2")
	for _, impl := range []struct {
		name string
		fn   func([]byte, map[string]string) ([]byte, error)
	}{{"plain", rewriteJSON}, {"marshal", rewriteJSONMarshal}} {
		b.Run(impl.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := impl.fn(body, params); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSignUnionPayJSON: the whole unionpay-sm2 signature of a JSON request (parse, canonical
// string, SM3, SM2 sign, rewrite), as the egress does it per request.
func BenchmarkSignUnionPayJSON(b *testing.B) {
	priv := newKey(b)
	key := Key{Signer: priv, KeyID: "69026276696"}
	s := NewUnionPay()
	b.ReportAllocs()
	for b.Loop() {
		m := &Message{Kind: Request, Method: "POST", Target: "/gateway/api/frontTransReq.do",
			Header: http.Header{"Content-Type": {"application/json"}}, Body: []byte(unionPayJSONBody)}
		if err := s.Sign(m, key, testNow, "N"); err != nil {
			b.Fatal(err)
		}
	}
}
