package cryptosvc

import (
	"bytes"
	"crypto/ecdsa"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	"github.com/emmansun/gmsm/sm2"
)

// ntvDo runs a GM/T 0136 body through the translation, the service and back.
func ntvDo(t *testing.T, s *Service, op Op, body string) (map[string]ntvItem, error) {
	t.Helper()
	if !IsNTV([]byte(body)) {
		t.Fatalf("not recognised as GM/T 0136: %s", body)
	}
	native, err := DecodeNTV(op, []byte(body))
	if err != nil {
		return nil, err
	}
	resp, err := s.Do(t.Context(), settlement, op, native, "")
	if err != nil {
		return nil, err
	}
	out, err := EncodeNTV(resp)
	if err != nil {
		t.Fatal(err)
	}
	var got struct{ Data []ntvItem }
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	m := map[string]ntvItem{}
	for _, it := range got.Data {
		m[it.Name] = it
	}
	return m, nil
}

func ntvText(t *testing.T, it ntvItem) string {
	t.Helper()
	var s string
	if err := json.Unmarshal(it.Value, &s); err != nil {
		t.Fatalf("%s: %v", it.Name, err)
	}
	return s
}

// TestNTVEncoding: GM/T 0136's Name/Type/Value items as an alternative encoding: encrypt with
// a Base64 PlainText, decrypt with a Hex Context, sign a Raw PlainText (the standard's Sign with
// KeyId and PlainText); the answers come back as items (bytes Base64, text Raw).
func TestNTVEncoding(t *testing.T) {
	v := fileVault(t)
	s := newService(t, v, &recSink{})
	secret := []byte("card 6222021234567890")
	ctx := []byte("order-1")
	enc, err := ntvDo(t, s, OpEncrypt, `{"Data":[{"Name":"KeyId","Type":"Raw","Value":"pii"},`+
		`{"Name":"PlainText","Type":"Base64","Value":"`+base64.StdEncoding.EncodeToString(secret)+`"},`+
		`{"Name":"Context","Type":"Raw","Value":"order-1"}]}`)
	if err != nil {
		t.Fatal(err)
	}
	ct := ntvText(t, enc["CipherText"])
	if enc["CipherText"].Type != "Raw" || !strings.HasPrefix(ct, "gm:v1:") || string(enc["KeyVersion"].Value) != "1" {
		t.Fatalf("encrypt answer %+v", enc)
	}
	dec, err := ntvDo(t, s, OpDecrypt, `{"Data":[{"Name":"KeyId","Type":"Raw","Value":"pii"},`+
		`{"Name":"CipherText","Type":"Raw","Value":"`+ct+`"},{"Name":"Context","Type":"Hex","Value":"`+hex.EncodeToString(ctx)+`"}]}`)
	if err != nil {
		t.Fatal(err)
	}
	if pt, _ := base64.StdEncoding.DecodeString(ntvText(t, dec["PlainText"])); dec["PlainText"].Type != "Base64" || !bytes.Equal(pt, secret) {
		t.Fatalf("decrypt answer %+v", dec)
	}
	sig, err := ntvDo(t, s, OpSign, `{"Data":[{"Name":"KeyId","Type":"Raw","Value":"platform-sign"},{"Name":"PlainText","Type":"Raw","Value":"pay 100"}]}`)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := base64.StdEncoding.DecodeString(ntvText(t, sig["Signature"]))
	pub, _ := v.PublicKey("platform-sign")
	if !sm2.VerifyASN1WithSM2(pub.(*ecdsa.PublicKey), []byte("settlement@gmgate"), []byte("pay 100"), der) {
		t.Fatal("the GM/T 0136 Sign answer does not verify")
	}
	// Refusals: every mistake is crypto_malformed (or too_large), never a silent default.
	for _, body := range []string{
		`{"Data":[{"Name":"KeyId","Type":"Raw","Value":"pii"},{"Name":"Plaintext","Type":"Raw","Value":"x"}]}`,                                          // unknown name (case)
		`{"Data":[{"Name":"KeyId","Type":"Raw","Value":"pii"},{"Name":"KeyId","Type":"Raw","Value":"pii-other"}]}`,                                      // duplicate
		`{"Data":[{"Name":"KeyId","Type":"Raw","Value":"pii"},{"Name":"CipherText","Type":"Raw","Value":"x"},{"Name":"IV","Type":"Hex","Value":"00"}]}`, // IV
		`{"Data":[{"Name":"KeyId","Type":"DateTime","Value":"2026-12-04T00:00:00Z"}]}`,
		`{"Data":[{"Name":"KeyId","Type":"Raw","Value":"pii"},{"Name":"PlainText","Type":"Base64","Value":"***"}]}`,
		`{"Data":[{"Name":"KeyId","Type":"Utf8","Value":"pii"}]}`,
		`{"Data":[{"Name":"KeyId","Type":"Raw","Value":"pii","Extra":1}]}`,
		`{"Data":[{"Name":"KeyId","Type":"Raw","Value":"pii"}]} {}`,
		`{"Data":[{"Name":"PlainText","Type":"Raw","Value":"x"},{"Name":"Digest","Type":"Raw","Value":"y"}]}`, // digest not taken by Encrypt: the native parser refuses
	} {
		native, err := DecodeNTV(OpEncrypt, []byte(body))
		if err == nil {
			_, err = s.Do(t.Context(), settlement, OpEncrypt, native, "")
		}
		if c := CodeOf(err); c != CodeMalformed {
			t.Errorf("%s: %v (%s), want crypto_malformed", body, err, c)
		}
	}
	// Data first, then another member: meant as GM/T 0136, refused by its strict decoder.
	if _, err := DecodeNTV(OpEncrypt, []byte(`{"Data":[],"key":"pii"}`)); CodeOf(err) != CodeMalformed {
		t.Fatalf("extra member: %v", err)
	}
	many := `{"Data":[` + strings.Repeat(`{"Name":"Gcm","Type":"Raw","Value":true},`, MaxNTVItems) + `{"Name":"KeyId","Type":"Raw","Value":"pii"}]}`
	if _, err := DecodeNTV(OpEncrypt, []byte(many)); CodeOf(err) != CodeTooLarge {
		t.Fatalf("too many items: %v", err)
	}
	for body, want := range map[string]bool{
		`{"Data":[]}`:                 true,
		` { "Data" : [ ] } `:          true,
		`{"data":"eA=="}`:             false,
		`{"Data":"eA=="}`:             false, // Go's decoder would read it as native "data": not NTV
		`{"key":"pii","Data":[]}`:     false,
		`{"key":"pii","plaintext":1}`: false,
		`[]`:                          false,
	} {
		if IsNTV([]byte(body)) != want {
			t.Errorf("IsNTV(%s) != %v", body, want)
		}
	}
}

// FuzzDecodeNTV: the GM/T 0136 translation never panics, refuses with a code of this package,
// and what it accepts is a JSON object the native parser can judge.
func FuzzDecodeNTV(f *testing.F) {
	for _, s := range []string{
		`{"Data":[{"Name":"KeyId","Type":"Raw","Value":"pii"},{"Name":"PlainText","Type":"Base64","Value":"aGVsbG8="}]}`,
		`{"Data":[{"Name":"KeyVersion","Type":"Raw","Value":3},{"Name":"Detached","Type":"Raw","Value":"true"}]}`,
		`{"Data":[{"Name":"Chain","Type":"Raw","Value":["a","b"]},{"Name":"Certificate","Type":"Hex","Value":"3082"}]}`,
		`{"Data":[{"Name":"IV","Type":"Hex","Value":"00"}]}`, `{"Data":null}`, `{"Data":[null]}`,
	} {
		f.Add(string(OpEncrypt), []byte(s))
		f.Add(string(OpVerifyData), []byte(s))
	}
	f.Fuzz(func(t *testing.T, op string, body []byte) {
		native, err := DecodeNTV(Op(op), body)
		if err != nil {
			if !refusals.Has(CodeOf(err)) {
				t.Fatalf("refusal without a code of the catalog: %v", err)
			}
			return
		}
		var m map[string]json.RawMessage
		if json.Unmarshal(native, &m) != nil {
			t.Fatalf("accepted body translates to %q", native)
		}
		if _, err := ParseRequest(Op(op), native, 8, 1024); err != nil && !refusals.Has(CodeOf(err)) {
			t.Fatalf("native parser: %v", err)
		}
	})
}

// TestNTVVerifyMessageDigest: GM/T 0136's Digest item carries a content digest to
// VerifyMessage (Cms Base64, Digest Hex), as it does to Sign and SignMessage.
func TestNTVVerifyMessageDigest(t *testing.T) {
	p := loadTestPKI(t)
	s := certService(t, p, nil)
	data := []byte("ntv detached content")
	cms := externalCMS(t, p.signer, nil, data, true)
	body := func(md []byte) string {
		return `{"Data":[{"Name":"Cms","Type":"Base64","Value":"` + base64.StdEncoding.EncodeToString(cms) + `"},` +
			`{"Name":"Digest","Type":"Hex","Value":"` + hex.EncodeToString(md) + `"}]}`
	}
	native, err := DecodeNTV(OpVerifyMessage, []byte(body(sm3sum(data))))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := s.Do(t.Context(), risk, OpVerifyMessage, native, "")
	if err != nil {
		t.Fatal(err)
	}
	if r := resp.Results[0]; !r.Valid || r.Signer.Subject != p.signer.Cert.Subject.String() {
		t.Fatalf("result %+v", r)
	}
	native, err = DecodeNTV(OpVerifyMessage, []byte(body(sm3sum([]byte("other")))))
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Do(t.Context(), risk, OpVerifyMessage, native, "")
	mustCode(t, err, CodeBadSignature)
}
