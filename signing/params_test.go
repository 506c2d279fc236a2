package signing

import (
	"crypto/rand"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
)

func formValue(m *Message, k string) string {
	v, _ := url.ParseQuery(string(m.Body))
	return v.Get(k)
}

func setFormValue(m *Message, k, val string) {
	v, _ := url.ParseQuery(string(m.Body))
	v.Set(k, val)
	m.Body = []byte(v.Encode())
}

func TestFormSM2(t *testing.T) {
	priv, other := newKey(t), newKey(t)
	s := NewForm()
	key := Key{Signer: priv, MerchantID: "2021000000000001"}
	mk := func() *Message {
		return &Message{Method: "POST", Target: "/gateway.do",
			Header: http.Header{"Content-Type": {"application/x-www-form-urlencoded; charset=utf-8"}},
			Body:   []byte("method=alipay.trade.pay&biz_content=%7B%22out_trade_no%22%3A%221%22%2C%22total_amount%22%3A%220.01%22%7D&charset=utf-8&empty=")}
	}
	m := mk()
	if err := s.Sign(m, key, testNow, "F1"); err != nil {
		t.Fatal(err)
	}
	sd, err := parseVerify(s, m, &priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	want := `app_id=2021000000000001&biz_content={"out_trade_no":"1","total_amount":"0.01"}&charset=utf-8&method=alipay.trade.pay&nonce_str=F1&timestamp=2025-11-25 00:00:00`
	if string(sd.SignedBytes) != want {
		t.Fatalf("signed string %q", sd.SignedBytes)
	}
	if sd.MerchantID != key.MerchantID || sd.Nonce != "F1" || !sd.Timestamp.Equal(testNow) || sd.Encoding != DER ||
		formValue(m, "sign_type") != "SM2" {
		t.Fatalf("%+v", sd)
	}
	runTampers(t, s, mk, key, &priv.PublicKey, []tamper{
		{"value", func(m *Message) { setFormValue(m, "method", "alipay.trade.refund") }, nil, ErrBadSignature},
		{"added field", func(m *Message) { setFormValue(m, "extra", "1") }, nil, ErrBadSignature},
		{"removed field", func(m *Message) { setFormValue(m, "charset", "") }, nil, ErrBadSignature},
		{"timestamp", func(m *Message) { setFormValue(m, "timestamp", "2025-11-25 00:00:01") }, nil, ErrBadSignature},
		{"nonce", func(m *Message) { setFormValue(m, "nonce_str", "F2") }, nil, ErrBadSignature},
		{"merchant", func(m *Message) { setFormValue(m, "app_id", "2021000000000002") }, nil, ErrBadSignature},
		{"signature", func(m *Message) {
			sig, _ := Base64.Decode(formValue(m, "sign"))
			setFormValue(m, "sign", Base64.Encode(flipByte(sig, 30)))
		}, nil, ErrBadSignature},
		{"other key", nil, &other.PublicKey, ErrBadSignature},
		{"sign_type not signed", func(m *Message) { setFormValue(m, "sign_type", "sm2") }, nil, nil},
		{"sign_type RSA2", func(m *Message) { setFormValue(m, "sign_type", "RSA2") }, nil, ErrUnsupportedAlgorithm},
		{"empty field added (ignored)", func(m *Message) { m.Body = append(m.Body, "&blank="...) }, nil, nil},
		{"no sign", func(m *Message) { setFormValue(m, "sign", "") }, nil, ErrMissingSignature},
		{"sign not base64", func(m *Message) { setFormValue(m, "sign", "@@") }, nil, ErrMalformedBody},
		{"duplicate field", func(m *Message) { m.Body = append(m.Body, "&charset=gbk"...) }, nil, ErrMalformedBody},
		{"bad escape", func(m *Message) { m.Body = append(m.Body, "&x=%zz"...) }, nil, ErrMalformedBody},
		{"bad timestamp", func(m *Message) { setFormValue(m, "timestamp", "yesterday") }, nil, ErrMalformedBody},
	})
}

func TestFormSM2JSON(t *testing.T) {
	priv := newKey(t)
	s := NewForm(WithSignatureEncoding(Raw), WithTextEncoding(Hex), WithTimestampField("timestamp", "unix"))
	key := Key{Signer: priv, MerchantID: "m1", KeyID: "0123456789ABCDEF"}
	mk := func() *Message {
		return &Message{Kind: Response, Status: 200, Header: http.Header{"Content-Type": {"application/json"}},
			Body: []byte(`{"amount": 100, "paid": true, "note": null, "desc": "a+b=c"}`)}
	}
	m := mk()
	if err := s.Sign(m, key, testNow, "J1"); err != nil {
		t.Fatal(err)
	}
	var obj map[string]any
	if err := json.Unmarshal(m.Body, &obj); err != nil {
		t.Fatal(err)
	}
	if obj["amount"] != float64(100) || obj["paid"] != true || obj["app_cert_sn"] != "0123456789ABCDEF" {
		t.Fatalf("rewritten body %s", m.Body)
	}
	sd, err := parseVerify(s, m, &priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if string(sd.SignedBytes) != "amount=100&app_cert_sn=0123456789ABCDEF&app_id=m1&desc=a+b=c&nonce_str=J1&paid=true&timestamp=1764000000" {
		t.Fatalf("%q", sd.SignedBytes)
	}
	setJSON := func(k string, v any) func(m *Message) {
		return func(m *Message) {
			var o map[string]any
			_ = json.Unmarshal(m.Body, &o)
			o[k] = v
			m.Body, _ = json.Marshal(o)
		}
	}
	runTampers(t, s, mk, key, &priv.PublicKey, []tamper{
		{"amount", setJSON("amount", 101), nil, ErrBadSignature},
		{"paid", setJSON("paid", false), nil, ErrBadSignature},
		{"nested", setJSON("x", map[string]any{"a": 1}), nil, ErrMalformedBody},
		{"array", func(m *Message) { m.Body = []byte(`[1]`) }, nil, ErrMalformedBody},
		{"trailing", func(m *Message) { m.Body = append(m.Body, "{}"...) }, nil, ErrMalformedBody},
		{"duplicate", func(m *Message) { m.Body = []byte(strings.Replace(string(m.Body), "{", `{"paid":true,`, 1)) }, nil, ErrMalformedBody},
		{"null added (empty, ignored)", setJSON("extra", nil), nil, nil},
	})
	// Certificate serial as user ID: signature made under it fails with the default ID.
	sUID := NewForm(WithUserIDMode(UserIDFromKeyID))
	m = &Message{Header: http.Header{}, Body: []byte("a=1")}
	if err := sUID.Sign(m, key, testNow, ""); err != nil {
		t.Fatal(err)
	}
	sd, err = parseVerify(sUID, m, &priv.PublicKey)
	if err != nil || string(sd.UserID) != key.KeyID {
		t.Fatalf("uid from key id: %v %q", err, sd.UserID)
	}
	if _, err := parseVerify(NewForm(), m, &priv.PublicKey); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("default uid accepted serial-uid signature: %v", err)
	}
	setFormValue(m, "app_cert_sn", "")
	if _, err := sUID.Parse(m); !errors.Is(err, ErrMissingComponent) {
		t.Fatalf("no key id: %v", err)
	}
}

func testCert(t *testing.T, priv *sm2.PrivateKey, serial int64) *smx509.Certificate {
	t.Helper()
	tmpl := &smx509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "unionpay test signer"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     smx509.KeyUsageDigitalSignature,
	}
	der, err := smx509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	c, err := smx509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestUnionPaySM2(t *testing.T) {
	priv, other := newKey(t), newKey(t)
	cert := testCert(t, priv, 69042905377)
	s := NewUnionPay(WithEmbedCert(true))
	key := Key{Signer: priv, Cert: cert, MerchantID: "777290058110048"}
	mk := func() *Message {
		return &Message{Method: "POST", Target: "/gateway/api/frontTransReq.do", Header: http.Header{},
			Body: []byte("version=5.1.0&encoding=UTF-8&txnType=01&txnAmt=1000&orderId=20251125000001&txnTime=20251125080000&currencyCode=156&reserved=")}
	}
	m := mk()
	if err := s.Sign(m, key, testNow, ""); err != nil {
		t.Fatal(err)
	}
	if formValue(m, "certId") != "69042905377" || formValue(m, "signMethod") != "21" ||
		!strings.HasPrefix(formValue(m, "signPubKeyCert"), "-----BEGIN CERTIFICATE-----") ||
		formValue(m, "txnTime") != "20251125080000" {
		t.Fatalf("body %s", m.Body)
	}
	sd, err := parseVerify(s, m, &priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	params, _ := ParseParams(m.Body, false)
	wantStr := CanonicalParams(params, "signature")
	if string(sd.SignedBytes) != SM3Hex([]byte(wantStr)) || len(sd.SignedBytes) != 64 ||
		string(sd.UserID) != "69042905377" || sd.Encoding != Raw || sd.KeyID != "69042905377" ||
		sd.Nonce != "20251125000001" || !sd.Timestamp.Equal(time.Date(2025, 11, 25, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("%+v", sd)
	}
	// Independent check of the rule with gmsm directly: SM2(uid=certId) over hex(SM3(string)).
	sig, _ := Base64.Decode(formValue(m, "signature"))
	der, _ := rawToDER(sig)
	if len(sig) != 64 || !sm2.VerifyASN1WithSM2(&priv.PublicKey, []byte("69042905377"), []byte(SM3Hex([]byte(wantStr))), der) {
		t.Fatal("gmsm does not verify the UnionPay rule")
	}
	runTampers(t, s, mk, key, &priv.PublicKey, []tamper{
		{"amount", func(m *Message) { setFormValue(m, "txnAmt", "1001") }, nil, ErrBadSignature},
		{"certId", func(m *Message) { setFormValue(m, "certId", "69042905378") }, nil, ErrBadSignature},
		{"cert", func(m *Message) { setFormValue(m, "signPubKeyCert", "x") }, nil, ErrBadSignature},
		{"signature", func(m *Message) {
			sig, _ := Base64.Decode(formValue(m, "signature"))
			setFormValue(m, "signature", Base64.Encode(flipByte(sig, 60)))
		}, nil, ErrBadSignature},
		{"signature DER", func(m *Message) {
			sig, _ := Base64.Decode(formValue(m, "signature"))
			der, _ := rawToDER(sig)
			setFormValue(m, "signature", Base64.Encode(der))
		}, nil, ErrBadSignature},
		{"other key", nil, &other.PublicKey, ErrBadSignature},
		{"signMethod 01", func(m *Message) { setFormValue(m, "signMethod", "01") }, nil, ErrUnsupportedAlgorithm},
		{"no signMethod", func(m *Message) { setFormValue(m, "signMethod", "") }, nil, ErrMissingComponent},
		{"no certId", func(m *Message) { setFormValue(m, "certId", "") }, nil, ErrMissingComponent},
		{"no signature", func(m *Message) { setFormValue(m, "signature", "") }, nil, ErrMissingSignature},
	})
	// Reply direction, certId given as KeyID, no embedded cert.
	plain := NewUnionPay()
	r := &Message{Kind: Response, Status: 200, Header: http.Header{}, Body: []byte("respCode=00&respMsg=success&orderId=1")}
	if err := plain.Sign(r, Key{Signer: priv, KeyID: "123"}, testNow, ""); err != nil {
		t.Fatal(err)
	}
	if formValue(r, "signPubKeyCert") != "" || formValue(r, "txnTime") != "20251125000000" {
		t.Fatalf("reply %s", r.Body)
	}
	if _, err := parseVerify(plain, r, &priv.PublicKey); err != nil {
		t.Fatal(err)
	}
}

func TestParseParamsBounds(t *testing.T) {
	many := strings.Repeat("a=1&", MaxParams+1)
	if _, err := ParseParams([]byte(many), false); !errors.Is(err, ErrMalformedBody) {
		t.Fatal("too many form params accepted")
	}
	var sb strings.Builder
	sb.WriteString("{")
	for i := 0; i <= MaxParams; i++ {
		if i > 0 {
			sb.WriteString(",")
		}
		sb.WriteString(`"k` + big.NewInt(int64(i)).String() + `":1`)
	}
	sb.WriteString("}")
	if _, err := ParseParams([]byte(sb.String()), true); !errors.Is(err, ErrMalformedBody) {
		t.Fatal("too many JSON params accepted")
	}
	if p, err := ParseParams([]byte("a=1&b=%E4%BD%A0"), false); err != nil || p["b"] != "你" {
		t.Fatal(p, err)
	}
}
