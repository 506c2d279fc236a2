package signing

import (
	"bytes"
	"errors"
	"net/http"
	"testing"
)

var typedErrors = []error{ErrMissingSignature, ErrMalformedHeader, ErrMalformedBody, ErrUnsupportedAlgorithm,
	ErrBadSignature, ErrDigestMismatch, ErrMissingComponent}

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
	raw, _ := DERToRaw(der)
	f.Add(der)
	f.Add(raw)
	f.Add([]byte{0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, err := DERToRaw(b); err == nil {
			if len(r) != 64 {
				t.Fatalf("raw length %d", len(r))
			}
			back, err := RawToDER(r)
			if err != nil || !bytes.Equal(back, b) {
				t.Fatalf("DER %x accepted but not canonical (%x, %v)", b, back, err)
			}
		}
		if d, err := RawToDER(b); err == nil {
			back, err := DERToRaw(d)
			if err != nil || !bytes.Equal(back, b) {
				t.Fatalf("raw %x does not round trip (%v)", b, err)
			}
		}
		checkTyped(t, VerifySM2(&priv.PublicKey, []byte("x"), b, nil, DER))
		checkTyped(t, VerifySM2(&priv.PublicKey, []byte("x"), b, nil, Raw))
	})
}
