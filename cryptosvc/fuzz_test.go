package cryptosvc

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/emmansun/gmsm/pkcs7"

	"github.com/gmgate/gmgate/keyvault"
)

// FuzzParseRequest: the request parser never panics, refuses with a code of this package only,
// and whatever it accepts respects the bounds and survives a marshal/parse round trip.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		`{"key":"pii","plaintext":"aGVsbG8="}`,
		`{"key":"pii","batch_input":[{"plaintext":"YQ=="},{"plaintext":"Yg==","context":"Yw=="}]}`,
		`{"key":"platform-sign","data":"eA==","user_id":"1234567812345678"}`,
		`{"key":"pii","ciphertext":"gm:v3:AAAA"}`,
		`{"bytes":32}`,
		`{"cms":"MA==","digest":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}`,
		`{"key":"pii","batch_input":[]}`,
		`{"key":"pii","plaintext":"aGVsbG8="} x`,
		`[]`, `null`, `{"key":null}`, `{"batch_input":null,"bytes":1}`,
	} {
		for _, op := range Ops() {
			f.Add(string(op), []byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, op string, body []byte) {
		r, err := ParseRequest(Op(op), body, 8, 256)
		if err != nil {
			if !refusals.Has(CodeOf(err)) {
				t.Fatalf("refusal without a code of the catalog: %v", err)
			}
			return
		}
		items := r.Items()
		if len(items) == 0 || len(items) > 8 {
			t.Fatalf("%d items accepted", len(items))
		}
		for _, it := range items {
			for _, n := range []int{len(it.Data), len(it.Plaintext), len(it.Ciphertext), len(it.Signature)} {
				if n > 256 {
					t.Fatal("item over the bound accepted")
				}
			}
		}
		again, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		r2, err := ParseRequest(Op(op), again, 8, 256)
		if err != nil {
			t.Fatalf("re-parse of %s: %v", again, err)
		}
		again2, _ := json.Marshal(r2)
		if !bytes.Equal(again, again2) {
			t.Fatalf("round trip differs: %s vs %s", again, again2)
		}
	})
}

// FuzzParseVersioned: the "gm:v<N>:<base64>" parser never panics and what it accepts formats
// back to the same string.
func FuzzParseVersioned(f *testing.F) {
	for _, s := range []string{"gm:v1:AAAA", "gm:v3:", "gm:v0:AA==", "gm:v999999999:YQ==", "gm:v12a:AA", "vault:v1:AA"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, body, err := parseVersioned(s)
		if err != nil {
			return
		}
		if v < 1 || formatVersioned(v, body) != s {
			t.Fatalf("%q parsed as v%d but formats as %q", s, v, formatVersioned(v, body))
		}
	})
}

// TestAADBindsKeyName: two vault names on the same SM4 key material: a ciphertext made under
// one does not open under the other, so the tag, not only the key bytes, binds the key name.
func TestAADBindsKeyName(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "shared.key")
	if err := os.WriteFile(p, []byte("000102030405060708090a0b0c0d0e0f\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := keyvault.Open(keyvault.Config{Keys: []keyvault.KeyConfig{
		{Name: "pii", Type: keyvault.KeyTypeSM4, Ref: "file:" + p},
		{Name: "pii-other", Type: keyvault.KeyTypeSM4, Ref: "file:" + p},
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	s := newService(t, v, nil)
	ct := mustOK(t, s, settlement, OpEncrypt, item{"key": "pii", "plaintext": b64([]byte("x"))}).Ciphertext
	_, err = s.Do(context.Background(), settlement, OpDecrypt, []byte(`{"key":"pii-other","ciphertext":"`+ct+`"}`), "")
	mustCode(t, err, CodeBadCiphertext)
	if r := mustOK(t, s, settlement, OpDecrypt, item{"key": "pii", "ciphertext": ct}); string(r.Plaintext) != "x" {
		t.Fatal("control: decrypt under the right name")
	}
}

// FuzzVerifyMessage: hostile SignedData (and certificates), with data or a content digest,
// never panic the service and are refused with a code of this package unless they verify.
func FuzzVerifyMessage(f *testing.F) {
	p := loadTestPKI(f)
	s := certService(f, p, nil)
	good := externalCMS(f, p.signer, nil, []byte("x"), false)
	detached := externalCMS(f, p.signer, nil, []byte("x"), true)
	f.Add(good, []byte(nil), []byte(nil))
	f.Add(detached, []byte("x"), []byte(nil))
	f.Add(detached, []byte(nil), sm3sum([]byte("x")))
	f.Add(detached, []byte(nil), sm3sum([]byte("y")))
	f.Add(cmsBuild(f, p.signer, nil, []byte("x"), true, true, pkcs7.SignerInfoConfig{}, nil), []byte(nil), sm3sum([]byte("x")))
	f.Add([]byte{0x30, 0x80, 0x06, 0x09}, []byte(nil), []byte(nil))
	f.Add(p.signer.Cert.Raw, []byte(nil), []byte(nil))
	f.Fuzz(func(t *testing.T, cms, data, digest []byte) {
		var res Result
		it := Item{CMS: cms, Data: data, Digest: digest}
		if len(cms) == 0 {
			it.CMS = nil
		}
		if len(digest) == 0 {
			it.Digest = nil
		}
		out := s.verifyMessage(&it, &res)
		if out.err != nil && !refusals.Has(CodeOf(out.err)) {
			t.Fatalf("error without a code: %v", out.err)
		}
		if out.err == nil && (res.Signer == nil || !res.Valid) {
			t.Fatal("accepted without a signer")
		}
		if out.err == nil && it.Digest != nil && (len(it.Digest) != 32 || it.Data != nil || res.Content != nil) {
			t.Fatal("accepted a digest of the wrong length, with data, or with attached content")
		}
		var res2 Result
		_ = s.parseCertificate(&Item{Certificate: b64(cms)}, &res2)
	})
}
