package banksim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gmgate/gmgate/signing"
)

var (
	once sync.Once
	tp   *TestPKI
	perr error
)

func testPKI(t testing.TB) *TestPKI {
	once.Do(func() { tp, perr = NewTestPKI("bank.test") })
	if perr != nil {
		t.Fatal(perr)
	}
	return tp
}

const body = `{"orderId":"1","txnAmt":"100","accNo":"6216610000000000018"}`

// signWith signs a request with package signing (the gateway's implementation): the simulator,
// written separately, must accept it; and must refuse it once any signed part changes.
func signWith(t *testing.T, p *TestPKI, sch signing.Scheme, keyID string) *http.Request {
	t.Helper()
	m := &signing.Message{Kind: signing.Request, Method: "POST", Target: "/pay?x=1", Authority: "bank.test", Scheme: "http",
		Header: http.Header{"Content-Type": {"application/json"}}, Body: []byte(body)}
	k := signing.Key{Signer: p.PlatformSign.Key, Cert: p.PlatformSign.Cert, KeyID: keyID, MerchantID: "m1"}
	if err := sch.Sign(m, k, time.Now(), ""); err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("POST", "http://bank.test/pay?x=1", bytes.NewReader(m.Body))
	r.Header = m.Header
	return r
}

func TestVerifiesEachScheme(t *testing.T) {
	p := testPKI(t)
	hexSerial := signing.SerialHex(p.PlatformSign.Cert.SerialNumber)
	cases := []struct {
		prof  Profile
		sch   signing.Scheme
		keyID string
	}{
		{Profile{Scheme: UnionPay}, signing.NewUnionPay(), ""},
		{Profile{Scheme: Form}, signing.NewForm(), p.PlatformSign.Cert.SerialNumber.String()},
		{Profile{Scheme: HTTPSig}, signing.NewHTTPSig(), hexSerial},
		{Profile{Scheme: WechatPay}, signing.NewWechatPay(), ""},
		{Profile{Scheme: WechatPay, Raw: ptr(true), Hex: true}, signing.NewWechatPay(signing.WithSignatureEncoding(signing.Raw), signing.WithTextEncoding(signing.Hex)), ""},
	}
	tampers := map[string]func(r *http.Request){
		"body":   func(r *http.Request) { r.Body = httptestBody(strings.Replace(readAll(r), "100", "900", 1)) },
		"target": func(r *http.Request) { r.URL.RawQuery = "x=2"; r.RequestURI = "/pay?x=2" },
	}
	for _, c := range cases {
		t.Run(c.prof.Scheme, func(t *testing.T) {
			s, err := New(FromTestPKI(p, c.prof))
			if err != nil {
				t.Fatal(err)
			}
			rec := httptest.NewRecorder()
			s.Handler().ServeHTTP(rec, signWith(t, p, c.sch, c.keyID))
			if rec.Code != 200 || rec.Header().Get(HeaderVerified) != "ok" {
				t.Fatalf("%d %q %s", rec.Code, rec.Header().Get(HeaderVerified), rec.Body)
			}
			for name, tamper := range tampers {
				if name == "target" && (c.prof.Scheme == UnionPay || c.prof.Scheme == Form) {
					continue // parameter schemes do not sign the target
				}
				r := signWith(t, p, c.sch, c.keyID)
				tamper(r)
				rec := httptest.NewRecorder()
				s.Handler().ServeHTTP(rec, r)
				if rec.Code != http.StatusUnauthorized || !strings.HasPrefix(rec.Header().Get(HeaderVerified), "signature") {
					t.Fatalf("tampered %s accepted: %d %q", name, rec.Code, rec.Header().Get(HeaderVerified))
				}
			}
		})
	}
}

// TestUnknownPlatformCert: a request signed with a key the bank does not know is refused.
func TestUnknownPlatformCert(t *testing.T) {
	p := testPKI(t)
	s, err := New(FromTestPKI(p, Profile{Scheme: UnionPay}))
	if err != nil {
		t.Fatal(err)
	}
	m := &signing.Message{Kind: signing.Request, Method: "POST", Target: "/pay", Header: http.Header{"Content-Type": {"application/json"}}, Body: []byte(body)}
	if err := signing.NewUnionPay().Sign(m, signing.Key{Signer: p.RogueSign.Key, Cert: p.RogueSign.Cert}, time.Now(), ""); err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("POST", "/pay", bytes.NewReader(m.Body))
	r.Header = m.Header
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, r)
	if rec.Code != http.StatusUnauthorized {
		t.Fatalf("status %d", rec.Code)
	}
	if got := s.Received(); len(got) != 1 || got[0].Verified {
		t.Fatalf("%+v", got)
	}
}

// TestRepliesVerifyWithSigning: the simulator's signed replies verify with package signing, and
// a BadSignature reply does not.
func TestRepliesVerifyWithSigning(t *testing.T) {
	p := testPKI(t)
	for _, c := range []struct {
		prof Profile
		sch  signing.Scheme
	}{
		{Profile{Scheme: UnionPay}, signing.NewUnionPay()},
		{Profile{Scheme: Form}, signing.NewForm()},
		{Profile{Scheme: HTTPSig}, signing.NewHTTPSig()},
		{Profile{Scheme: WechatPay}, signing.NewWechatPay()},
	} {
		for _, mb := range []Misbehaviour{Behave, BadSignature} {
			s, err := New(FromTestPKI(p, c.prof))
			if err != nil {
				t.Fatal(err)
			}
			h, out, err := s.sealReply(200, "application/json", []byte(`{"respCode":"00"}`), mb, "")
			if err != nil {
				t.Fatal(err)
			}
			signed, err := c.sch.Parse(&signing.Message{Kind: signing.Response, Status: 200, Header: h, Body: out})
			if err != nil {
				t.Fatalf("%s: parse: %v", c.prof.Scheme, err)
			}
			err = c.sch.Verify(signed, pubOf(p.BankSign.Cert))
			if (err == nil) != (mb == Behave) {
				t.Fatalf("%s %q: verify %v", c.prof.Scheme, mb, err)
			}
		}
	}
}

func ptr(b bool) *bool { return &b }

func readAll(r *http.Request) string {
	var b bytes.Buffer
	b.ReadFrom(r.Body)
	return b.String()
}

func httptestBody(s string) *nopCloser { return &nopCloser{strings.NewReader(s)} }

type nopCloser struct{ *strings.Reader }

func (nopCloser) Close() error { return nil }

func FuzzParseSigInput(f *testing.F) {
	f.Add(`sig1=("@method" "@target-uri" "content-digest");created=1700000000;nonce="abc";keyid="0A"`)
	f.Add(`sig1=(`)
	f.Add(`=()`)
	f.Fuzz(func(t *testing.T, v string) {
		si, err := parseSigInput(v)
		if err == nil && si == nil {
			t.Fatal("nil without error")
		}
		parseByteSeq(v, "sig1")
		parseAuthorization(v)
	})
}

func FuzzParseParams(f *testing.F) {
	f.Add([]byte(body), true)
	f.Add([]byte("a=1&b=%zz"), false)
	f.Fuzz(func(t *testing.T, b []byte, asJSON bool) {
		parseParams(b, asJSON)
	})
}

// TestTamperBody: the default tamper changes exactly one byte and keeps its class, so the
// txnTime a unionpay-sm2 reply ends with stays a valid time at every second of a minute (the
// old tamper made "...59" into "...69" and the reply was malformed, not badly signed); the
// chosen tampers do what HeaderTamper says.
func TestTamperBody(t *testing.T) {
	for sec := 0; sec < 60; sec++ {
		ts := fmt.Sprintf("202612041645%02d", sec)
		body := []byte(`{"respMsg":"success","signature":"AbZ9+/==","txnTime":"` + ts + `"}`)
		out, err := tamperBody(body, "")
		if err != nil {
			t.Fatal(err)
		}
		diff := 0
		for i := range body {
			if body[i] != out[i] {
				diff++
			}
		}
		var m map[string]string
		if diff != 1 || len(out) != len(body) || json.Unmarshal(out, &m) != nil {
			t.Fatalf("second %d: %s", sec, out)
		}
		if m["txnTime"] == ts {
			t.Fatalf("second %d: txnTime not tampered: %s", sec, out)
		}
		if _, err := time.Parse("20060102150405", m["txnTime"]); err != nil {
			t.Fatalf("second %d: tampered txnTime %q is not a time", sec, m["txnTime"])
		}
	}
	for _, c := range []struct{ body, how, want string }{
		{`{"a":"z"}`, "", `{"a":"a"}`},
		{`{"a":"Z9"}`, "", `{"a":"Z0"}`},
		{`{"a":"b","c":"d"}`, "c=x&y", `{"a":"b","c":"x\u0026y"}`},
		{`{"a":"b"}`, "truncate", `{"a":"b"`},
	} {
		out, err := tamperBody([]byte(c.body), c.how)
		if err != nil || string(out) != c.want {
			t.Fatalf("%s %q: %s %v, want %s", c.body, c.how, out, err, c.want)
		}
	}
	for _, how := range []string{"nosuch=1", "=1", "garble"} {
		if _, err := tamperBody([]byte(`{"a":"b"}`), how); err == nil {
			t.Fatalf("tamper %q accepted", how)
		}
	}
}
