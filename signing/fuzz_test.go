package signing

import (
	"bytes"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
)

var typedErrors = []error{ErrMissingSignature, ErrMalformedHeader, ErrMalformedBody, ErrUnsupportedAlgorithm,
	ErrBadSignature, ErrDigestMismatch, ErrMissingComponent, ErrAmbiguousParams}

func checkTyped(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	for _, e := range typedErrors {
		if errors.Is(err, e) {
			return
		}
	}
	t.Fatalf("untyped error: %v", err)
}

func FuzzWechatAuthorization(f *testing.F) {
	priv := newKey(f)
	m := &Message{Method: "POST", Target: "/v3/pay", Header: http.Header{}, Body: []byte("{}")}
	_ = NewWechatPay().Sign(m, Key{Signer: priv, KeyID: "S", MerchantID: "1"}, testNow, "n")
	f.Add(m.Header.Get("Authorization"))
	f.Add(`WECHATPAY2-SM2-WITH-SM3 mchid=1, nonce_str = "n",timestamp=1,serial_no="s",signature="c2ln"`)
	f.Add(`WECHATPAY2-SHA256-RSA2048 a="`)
	s := NewWechatPay()
	f.Fuzz(func(t *testing.T, auth string) {
		schema, params, err := ParseWechatAuthorization(auth)
		checkTyped(t, err)
		if err == nil && (schema == "" || len(params) == 0 || len(params) > maxWechatParams) {
			t.Fatalf("accepted %q -> %q %v", auth, schema, params)
		}
		msg := &Message{Method: "GET", Target: "/", Header: http.Header{"Authorization": {auth}}}
		sd, err := s.Parse(msg)
		checkTyped(t, err)
		if err == nil {
			if !bytes.HasPrefix(sd.SignedBytes, []byte("GET\n/\n")) || sd.Nonce == "" {
				t.Fatalf("bad signed %+v", sd)
			}
			checkTyped(t, s.Verify(sd, &priv.PublicKey))
		}
	})
}

func FuzzHTTPSigParse(f *testing.F) {
	priv := newKey(f)
	m := &Message{Method: "POST", Target: "/p?q", Authority: "h", Header: http.Header{}, Body: []byte("b")}
	_ = NewHTTPSig().Sign(m, Key{Signer: priv, KeyID: "k"}, testNow, "n")
	f.Add(m.Header.Get("Signature-Input"), m.Header.Get("Signature"), m.Header.Get("Content-Digest"), m.Body)
	f.Add(`sig1=("@method" "@status");created=1;keyid="k";nonce="n";alg="x"`, "sig1=:AA==:", "sm3=:AA==:", []byte{})
	f.Add(`a=(), b=("x";y);created=-1`, `a=?1, b=%"x"`, `sm3=("a")`, []byte("x"))
	s := NewHTTPSig(WithRequiredComponents(Request))
	f.Fuzz(func(t *testing.T, in, sig, digest string, body []byte) {
		msg := &Message{Method: "POST", Target: "/p?q", Authority: "h", Body: body,
			Header: http.Header{"Signature-Input": {in}, "Signature": {sig}, "Content-Digest": {digest}}}
		sd, err := s.Parse(msg)
		checkTyped(t, err)
		if err == nil {
			if !bytes.Contains(sd.SignedBytes, []byte(`"@signature-params": (`)) || sd.KeyID == "" {
				t.Fatalf("bad base %q", sd.SignedBytes)
			}
			checkTyped(t, s.Verify(sd, &priv.PublicKey))
		}
	})
}

func FuzzFormParse(f *testing.F) {
	priv := newKey(f)
	m := &Message{Header: http.Header{}, Body: []byte("a=1&b=2")}
	_ = NewForm().Sign(m, Key{Signer: priv, MerchantID: "m"}, testNow, "n")
	f.Add(m.Body, false)
	f.Add([]byte(`{"a":1,"b":"x","sign":"AAAA","timestamp":"2025-01-01 00:00:00"}`), true)
	f.Add([]byte(`{"a":{"b":1}}`), true)
	f.Add([]byte("sign=%zz&&=&a"), false)
	s := NewForm()
	f.Fuzz(func(t *testing.T, body []byte, isJSON bool) {
		h := http.Header{}
		if isJSON {
			h.Set("Content-Type", "application/json")
		}
		sd, err := s.Parse(&Message{Header: h, Body: body})
		checkTyped(t, err)
		if err == nil {
			if len(sd.Params) > MaxParams || len(sd.Signature) == 0 {
				t.Fatalf("bad parse %+v", sd)
			}
			checkTyped(t, s.Verify(sd, &priv.PublicKey))
		}
	})
}

func FuzzUnionPayParse(f *testing.F) {
	priv := newKey(f)
	m := &Message{Header: http.Header{}, Body: []byte("txnAmt=1&orderId=1")}
	_ = NewUnionPay().Sign(m, Key{Signer: priv, KeyID: "69042905377"}, testNow, "")
	f.Add(m.Body)
	f.Add([]byte("signMethod=21&certId=1&signature=AAAA&txnTime=20250101000000"))
	f.Add([]byte(`{"signMethod":"21","certId":"1","signature":"AA=="}`))
	s := NewUnionPay()
	f.Fuzz(func(t *testing.T, body []byte) {
		sd, err := s.Parse(&Message{Body: body})
		checkTyped(t, err)
		if err == nil {
			if len(sd.SignedBytes) != 64 || sd.KeyID == "" || string(sd.UserID) != sd.KeyID {
				t.Fatalf("bad parse %+v", sd)
			}
			checkTyped(t, s.Verify(sd, &priv.PublicKey))
		}
	})
}

func FuzzRawDER(f *testing.F) {
	priv := newKey(f)
	der, _ := SignSM2(priv, []byte("x"), nil, DER)
	raw, _ := derToRaw(der)
	f.Add(der)
	f.Add(raw)
	f.Add([]byte{0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, err := derToRaw(b); err == nil {
			if len(r) != 64 {
				t.Fatalf("raw length %d", len(r))
			}
			back, err := rawToDER(r)
			if err != nil || !bytes.Equal(back, b) {
				t.Fatalf("DER %x accepted but not canonical (%x, %v)", b, back, err)
			}
		}
		if d, err := rawToDER(b); err == nil {
			back, err := derToRaw(d)
			if err != nil || !bytes.Equal(back, b) {
				t.Fatalf("raw %x does not round trip (%v)", b, err)
			}
		}
		checkTyped(t, VerifySM2(&priv.PublicKey, []byte("x"), b, nil, DER))
		checkTyped(t, VerifySM2(&priv.PublicKey, []byte("x"), b, nil, Raw))
	})
}

// FuzzParamsSignedStringDifferential is the differential check of the `k=v&k=v` builders
// (form-sm2, unionpay-sm2): for any two bodies that parse as signed messages, different signed
// field sets never give the same signed bytes, and the signed string of an accepted set splits
// back into exactly that set. The re-split rewrite of the security review is a seed.
func FuzzParamsSignedStringDifferential(f *testing.F) {
	f.Add([]byte("nonce_str=N1&notify_url=https://m/n&sign=AA"), []byte("nonce_str=N1%26notify_url%3Dhttps://m/n&sign=AA"), false)
	f.Add([]byte(`{"a":"1","b":"2=3","sign":"AA"}`), []byte(`{"a":"1&b=2=3","sign":"AA"}`), true)
	f.Add([]byte("a%3D1=x&sign=AA"), []byte("a=1%3Dx&sign=AA"), false)
	f.Add([]byte("a=&b=1&sign=AA"), []byte("b=1&sign=AA"), false)
	schemes := []*paramScheme{&NewForm().p, &NewUnionPay().p}
	f.Fuzz(func(t *testing.T, a, b []byte, isJSON bool) {
		for _, p := range schemes {
			pa, errA := ParseParams(a, isJSON)
			pb, errB := ParseParams(b, isJSON)
			okA := errA == nil && p.checkUnambiguous(pa) == nil
			okB := errB == nil && p.checkUnambiguous(pb) == nil
			if okA {
				if got := splitSigned(CanonicalParams(pa, p.exclude()...)); !sameSigned(got, pa, p.exclude()) {
					t.Fatalf("%s: %q does not split back into its fields", p.name, CanonicalParams(pa, p.exclude()...))
				}
			}
			if okA && okB && !sameSigned(signedSet(pa, p.exclude()), pb, p.exclude()) &&
				bytes.Equal(p.signedBytes(pa), p.signedBytes(pb)) {
				t.Fatalf("%s: two field sets, one signed string %q", p.name, p.signedBytes(pa))
			}
		}
	})
}

// splitSigned is the canonical split of a `k=v&k=v` signed string: on '&', then the first '='.
func splitSigned(s string) map[string]string {
	out := map[string]string{}
	if s == "" {
		return out
	}
	for _, kv := range strings.Split(s, "&") {
		k, v, _ := strings.Cut(kv, "=")
		out[k] = v
	}
	return out
}

// signedSet is the part of params a signature covers: non-empty, not excluded.
func signedSet(params map[string]string, exclude []string) map[string]string {
	out := map[string]string{}
	for k, v := range params {
		if v != "" && !slices.Contains(exclude, k) {
			out[k] = v
		}
	}
	return out
}

// sameSigned reports whether got equals the signed part of params.
func sameSigned(got, params map[string]string, exclude []string) bool {
	want := signedSet(params, exclude)
	if len(got) != len(want) {
		return false
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			return false
		}
	}
	return true
}

// FuzzHeaderSchemesDifferential is the differential check of the header schemes' signed bytes
// (wechatpay-v3-sm2: method, target, timestamp, nonce and body joined by newlines; http-sig-sm2:
// the RFC 9421 signature base): a message signed, then parsed back, yields exactly the signed
// values, and two messages that differ in target, nonce or body never share signed bytes. A
// newline or quote smuggled into a field must be refused when signing or parsing, never shift
// bytes from one field into another.
func FuzzHeaderSchemesDifferential(f *testing.F) {
	f.Add("/v3/pay", "N1", []byte(`{"a":1}`), "/v3/pay", "N1\n{", []byte(`"a":1}`))
	f.Add("/v3/pay?x=1", "N\"2", []byte("b"), "/v3/pay", "N2", []byte("x=1\nb"))
	f.Add("/a\n/b", "N", []byte(""), "/a", "N", []byte("/b"))
	priv := newKey(f)
	schemes := []Scheme{NewWechatPay(), NewHTTPSig()}
	f.Fuzz(func(t *testing.T, targetA, nonceA string, bodyA []byte, targetB, nonceB string, bodyB []byte) {
		for _, s := range schemes {
			sign := func(target, nonce string, body []byte) *Signed {
				m := &Message{Kind: Request, Method: "POST", Target: target, Authority: "gw.example", Scheme: "https",
					Header: http.Header{"Content-Type": {"application/json"}}, Body: append([]byte(nil), body...)}
				if err := s.Sign(m, Key{Signer: priv, KeyID: "K1", MerchantID: "1900000001"}, testNow, nonce); err != nil {
					return nil
				}
				sd, err := s.Parse(m)
				if err != nil {
					return nil
				}
				if nonce != "" && sd.Nonce != nonce { // "": the scheme draws one
					t.Fatalf("%s: nonce %q signed, %q parsed back", s.Name(), nonce, sd.Nonce)
				}
				if err := s.Verify(sd, &priv.PublicKey); err != nil {
					t.Fatalf("%s: own signature does not verify: %v", s.Name(), err)
				}
				return sd
			}
			a, b := sign(targetA, nonceA, bodyA), sign(targetB, nonceB, bodyB)
			if a == nil || b == nil {
				continue
			}
			same := targetA == targetB && nonceA == nonceB && bytes.Equal(bodyA, bodyB)
			if !same && bytes.Equal(a.SignedBytes, b.SignedBytes) {
				t.Fatalf("%s: two messages, one signed string %q", s.Name(), a.SignedBytes)
			}
		}
	})
}
