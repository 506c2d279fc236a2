package signing

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"strconv"
	"strings"
	"testing"
)

// parseJSONParamsDecoder is the former parseJSONParams (encoding/json's Decoder, token by
// token): the reference of FuzzJSONParamsDifferential.
func parseJSONParamsDecoder(body []byte) (map[string]string, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return nil, errf(ErrMalformedBody, "not a JSON object")
	}
	out := map[string]string{}
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return nil, errf(ErrMalformedBody, "bad JSON")
		}
		key, ok := kt.(string)
		if !ok || key == "" {
			return nil, errf(ErrMalformedBody, "bad JSON key")
		}
		vt, err := dec.Token()
		if err != nil {
			return nil, errf(ErrMalformedBody, "bad JSON")
		}
		var val string
		switch v := vt.(type) {
		case string:
			val = v
		case json.Number:
			val = v.String()
		case bool:
			val = strconv.FormatBool(v)
		case nil:
			val = ""
		default:
			return nil, errf(ErrMalformedBody, "nested JSON value")
		}
		if _, dup := out[key]; dup {
			return nil, errf(ErrMalformedBody, "duplicate parameter")
		}
		if len(out) >= MaxParams {
			return nil, errf(ErrMalformedBody, "too many parameters")
		}
		out[key] = val
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, errf(ErrMalformedBody, "bad JSON")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errf(ErrMalformedBody, "trailing data after JSON object")
	}
	return out, nil
}

var jsonParamsSeeds = []string{
	`{}`, ` { } `, `{"a":"b"}`, `{"a":1,"b":-0.5e+10,"c":true,"d":false,"e":null}`,
	`{"a":"\u00e9\ud83d\ude00\n\"\\\/"}`, `{"a":"\ud800"}`, "{\"a\":\"\xff\xfe\"}", "{\"\xc3\xa9\":\"x\"}",
	`{"a":1,"a":2}`, `{"":1}`, `{"a":{}}`, `{"a":[1]}`, `{"a":01}`, `{"a":1.}`, `{"a":.5}`, `{"a":1e}`,
	`{"a":-}`, `{"a":tru}`, `{"a":nullx}`, `{"a":1,}`, `{,}`, `{"a"}`, `{"a":}`, `{"a" 1}`, `{1:2}`,
	`{"a":1} x`, `{"a":1}{}`, "{\"a\":\"\x01\"}", `{"a":"\x"}`, `{"a":"\u12"}`, `[]`, ``, `"s"`, `{`,
	"\ufeff{}", `{"a":"b"` + "\t\r\n}", `{"a":1E-2,"b":0,"c":-0}`, `{"a":"` + strings.Repeat("x", 300) + `"}`,
}

func FuzzJSONParamsDifferential(f *testing.F) {
	for _, s := range jsonParamsSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got, gerr := parseJSONParams(body)
		want, werr := parseJSONParamsDecoder(body)
		if (gerr == nil) != (werr == nil) {
			t.Fatalf("%q: one-pass err %v, decoder err %v", body, gerr, werr)
		}
		if gerr != nil {
			if !errors.Is(gerr, ErrMalformedBody) {
				t.Fatalf("%q: error %v is not ErrMalformedBody", body, gerr)
			}
			return
		}
		if !maps.Equal(got, want) {
			t.Fatalf("%q: one-pass %q, decoder %q", body, got, want)
		}
	})
}

func TestJSONParamsMatchesDecoder(t *testing.T) {
	many := "{"
	for i := 0; i < MaxParams+1; i++ {
		many += `"k` + strconv.Itoa(i) + `":1,`
	}
	many = strings.TrimSuffix(many, ",") + "}"
	for _, s := range append(jsonParamsSeeds, many) {
		got, gerr := parseJSONParams([]byte(s))
		want, werr := parseJSONParamsDecoder([]byte(s))
		if (gerr == nil) != (werr == nil) || !maps.Equal(got, want) {
			t.Errorf("%q: one-pass %q %v, decoder %q %v", s, got, gerr, want, werr)
		}
	}
}

// BenchmarkJSONParams: a bank reply's parameters, one pass against the Decoder.
func BenchmarkJSONParams(b *testing.B) {
	body := []byte(`{"version":"6.0.0","encoding":"UTF-8","signMethod":"SM2","txnType":"01","respCode":"00",` +
		`"respMsg":"success","merId":"777290058110048","orderId":"20261204000123","txnTime":"20261204063000",` +
		`"txnAmt":1000,"queryId":"612412040630001234","certId":"69026276696","nonce":"a8d1f2c3b4e5",` +
		`"signature":"MEUCIQD3k9bqkJ1F6n5p0sM3oP9qYb8xQ7Zl5mR2T1cW4eKp2wIgV6rH0yJ8uN3tS5oL9aQ2bC7dE1fG4hI6jK8lM0nP3qR="}`)
	for _, impl := range []struct {
		name string
		fn   func([]byte) (map[string]string, error)
	}{{"one-pass", parseJSONParams}, {"decoder", parseJSONParamsDecoder}} {
		b.Run(impl.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := impl.fn(body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
