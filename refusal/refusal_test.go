package refusal

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
)

const (
	codeTestDenied   Code = "refusal_test_denied"
	codeTestBusy     Code = "refusal_test_busy"
	codeTestInternal Code = "refusal_test_internal"
	codeTestOther    Code = "refusal_test_other"
)

var (
	testCatalog = NewCatalog("side", codeTestInternal, "X-Test-Refusal",
		Def{Code: codeTestDenied, Status: http.StatusUnauthorized, Message: "denied"},
		Def{Code: codeTestBusy, Status: http.StatusServiceUnavailable, Message: "busy"},
		Def{Code: codeTestInternal, Status: http.StatusBadGateway, Message: "internal"},
	)
	otherCatalog = NewCatalog("other", codeTestOther, "",
		Def{Code: codeTestOther, Status: http.StatusInternalServerError, Message: "other"})
)

// TestWriteAndResponseAgree: the ResponseWriter path and the synthesized-reply path write the
// same status, headers and body for every code, and a foreign, unknown or OK code is written as
// the catalog's internal code.
func TestWriteAndResponseAgree(t *testing.T) {
	for _, tc := range []struct {
		code   Code
		want   Code
		status int
	}{
		{codeTestDenied, codeTestDenied, 401},
		{codeTestBusy, codeTestBusy, 503},
		{codeTestInternal, codeTestInternal, 502},
		{OK, codeTestInternal, 502},
		{"nope", codeTestInternal, 502},
		{codeTestOther, codeTestInternal, 502}, // another side's code
	} {
		rec := httptest.NewRecorder()
		testCatalog.Write(rec, tc.code)
		resp := testCatalog.Response(nil, tc.code)
		body, _ := io.ReadAll(resp.Body)
		if rec.Code != tc.status || resp.StatusCode != tc.status {
			t.Errorf("%s: status %d / %d, want %d", tc.code, rec.Code, resp.StatusCode, tc.status)
		}
		if !reflect.DeepEqual(rec.Header(), resp.Header) {
			t.Errorf("%s: headers differ: %v / %v", tc.code, rec.Header(), resp.Header)
		}
		if rec.Body.String() != string(body) || resp.ContentLength != int64(len(body)) {
			t.Errorf("%s: bodies differ: %q / %q", tc.code, rec.Body, body)
		}
		var b map[string]string
		if err := json.Unmarshal(body, &b); err != nil || len(b) != 2 || b["code"] != string(tc.want) || b["message"] != tc.want.Message() {
			t.Errorf("%s: body %s", tc.code, body)
		}
		h := resp.Header
		if h.Get("Content-Type") != "application/json; charset=utf-8" || h.Get("Cache-Control") != "no-store" ||
			h.Get("X-Content-Type-Options") != "nosniff" || h.Get("X-Test-Refusal") != string(tc.want) {
			t.Errorf("%s: headers %v", tc.code, h)
		}
	}
}

func TestCodeFacts(t *testing.T) {
	if !reflect.DeepEqual(testCatalog.Codes(), []Code{codeTestDenied, codeTestBusy, codeTestInternal}) {
		t.Fatalf("Codes() = %v", testCatalog.Codes())
	}
	for _, tc := range []struct {
		code   Code
		known  bool
		status int
		msg    string
	}{
		{OK, true, 200, "ok"},
		{codeTestBusy, true, 503, "busy"},
		{codeTestOther, true, 500, "other"},
		{"nope", false, 500, "internal error"},
	} {
		if tc.code.Known() != tc.known || tc.code.Status() != tc.status || tc.code.Message() != tc.msg {
			t.Errorf("%s: %v %d %q", tc.code, tc.code.Known(), tc.code.Status(), tc.code.Message())
		}
	}
	if testCatalog.Has(OK) || testCatalog.Has(codeTestOther) || !otherCatalog.Has(codeTestOther) {
		t.Error("Has")
	}
}

func TestErrorAndOf(t *testing.T) {
	secret := errors.New("token slot 3 pin=1234")
	for _, tc := range []struct {
		err  error
		want Code
	}{
		{nil, OK},
		{secret, codeTestInternal},
		{Wrap(codeTestDenied, secret), codeTestDenied},
		{fmt.Errorf("outer: %w", Wrap(codeTestBusy, secret)), codeTestBusy},
		{Wrap(codeTestOther, secret), codeTestInternal}, // another side's code is not ours
		{Wrap("nope", secret), codeTestInternal},
	} {
		if got := testCatalog.Of(tc.err); got != tc.want {
			t.Errorf("Of(%v) = %s, want %s", tc.err, got, tc.want)
		}
		if b := string(testCatalog.Body(testCatalog.Of(tc.err))); strings.Contains(b, "1234") {
			t.Errorf("body leaks the cause: %s", b)
		}
	}
	if Wrap(codeTestDenied, nil) != nil {
		t.Error("Wrap(nil) != nil")
	}
	e := Wrap(codeTestDenied, secret)
	if e.Error() != "side: refusal_test_denied: token slot 3 pin=1234" || !errors.Is(e, secret) {
		t.Errorf("Error() = %q", e.Error())
	}
	if s := (&Error{Code: "nope"}).Error(); s != "refusal: nope" {
		t.Errorf("Error() = %q", s)
	}
}

func TestNewCatalogRejectsMistakes(t *testing.T) {
	for name, defs := range map[string][]Def{
		"duplicate in another catalog": {{Code: "refusal_test_i1", Status: 500, Message: "x"}, {Code: codeTestDenied, Status: 401, Message: "x"}},
		"duplicate":                    {{Code: "refusal_test_i1", Status: 500, Message: "x"}, {Code: "refusal_test_i1", Status: 500, Message: "x"}},
		"ok":                           {{Code: OK, Status: 401, Message: "x"}},
		"no status":                    {{Code: "refusal_test_i2", Message: "x"}},
		"no message":                   {{Code: "refusal_test_i3", Status: 400}},
		"internal missing":             {{Code: "refusal_test_i4", Status: 400, Message: "x"}},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			NewCatalog("bad", "refusal_test_i1", "", defs...)
		}()
	}
	// A refused catalog defined nothing.
	for _, c := range []Code{"refusal_test_i1", "refusal_test_i2", "refusal_test_i3", "refusal_test_i4"} {
		if c.Known() {
			t.Errorf("%s registered by a refused catalog", c)
		}
	}
}

func TestParseBody(t *testing.T) {
	for _, tc := range []struct {
		body, code, msg string
		ok              bool
	}{
		{string(testCatalog.Body(codeTestBusy)), string(codeTestBusy), "busy", true},
		{`{"code":"x\u0001","message":"m"}`, "", "m", true},
		{`not json`, "", "", false},
		{`{"code":"` + strings.Repeat("a", 100) + `"}`, strings.Repeat("a", 64), "", true},
		{strings.Repeat(" ", 5000), "", "", false},
		{``, "", "", false},
	} {
		c, m, ok := ParseBody([]byte(tc.body))
		if c != tc.code || m != tc.msg || ok != tc.ok {
			t.Errorf("ParseBody(%.20q) = %q, %q, %v", tc.body, c, m, ok)
		}
	}
}

// FuzzParseBody: never panics; what it returns is bounded printable ASCII.
func FuzzParseBody(f *testing.F) {
	f.Add(testCatalog.Body(codeTestDenied))
	f.Add([]byte(`{"code":"a","message":"\u00e9"}`))
	f.Add([]byte(`[1,2]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, m, _ := ParseBody(b)
		if len(c) > 64 || len(m) > 256 {
			t.Fatalf("unbounded: %d %d", len(c), len(m))
		}
		for _, s := range []string{c, m} {
			for i := 0; i < len(s); i++ {
				if s[i] < 0x20 || s[i] > 0x7e {
					t.Fatalf("not printable: %q", s)
				}
			}
		}
	})
}
