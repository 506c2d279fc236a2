package signing

import (
	"bytes"
	"net/http"
	"net/url"
	"testing"
)

// TestSchemeFactsMatchSchemes checks every row of the facts table against what its scheme
// does: a header scheme leaves the body as sent and sets its signature headers, a body scheme
// writes the signature into the body and sets none; the nonce and time travel in the named
// fields; the reply of a header scheme is signed in its headers too.
func TestSchemeFactsMatchSchemes(t *testing.T) {
	priv := newKey(t)
	key := Key{Signer: priv, KeyID: "K1", MerchantID: "M1"}
	names := Names()
	if len(names) != 4 {
		t.Fatalf("Names() = %v", names)
	}
	for i, name := range names {
		if i > 0 && names[i-1] >= name {
			t.Fatalf("Names() not sorted: %v", names)
		}
		t.Run(name, func(t *testing.T) {
			f, ok := SchemeFacts(name)
			if !ok || f.Name != name || SignsInHeader(name) != f.SignsInHeader {
				t.Fatalf("SchemeFacts(%q) = %+v, %v", name, f, ok)
			}
			sch, err := New(name)
			if err != nil || sch.Name() != name {
				t.Fatalf("New(%q) = %v, %v", name, sch, err)
			}
			if b, err := (Settings{Name: name}).Build(); err != nil || b.Name() != name {
				t.Fatalf("Settings.Build(%q) = %v, %v", name, b, err)
			}
			body := []byte("amount=100&out_trade_no=T1")
			m := &Message{Kind: Request, Method: "POST", Target: "/pay", Authority: "gw", Scheme: "https",
				Header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, Body: append([]byte(nil), body...)}
			const nonce = "N0nce42"
			if err := sch.Sign(m, key, testNow, nonce); err != nil {
				t.Fatal(err)
			}
			sd, err := parseVerify(sch, m, &priv.PublicKey)
			if err != nil {
				t.Fatal(err)
			}
			if sd.Nonce != nonce || !sd.Timestamp.Equal(testNow) {
				t.Fatalf("nonce %q time %v, want %q %v", sd.Nonce, sd.Timestamp, nonce, testNow)
			}
			sigHeaders := 0
			for _, h := range SignatureHeaders(name) {
				if m.Header.Get(h) != "" {
					sigHeaders++
				}
			}
			if f.SignsInHeader {
				if !bytes.Equal(m.Body, body) {
					t.Fatalf("header scheme changed the body: %q", m.Body)
				}
				if sigHeaders == 0 && m.Header.Get("Authorization") == "" {
					t.Fatalf("header scheme set no signature header: %v", m.Header)
				}
				hdr := m.Header.Get("Authorization") + m.Header.Get("Signature-Input")
				if !bytes.Contains([]byte(hdr), []byte(f.NonceField+"=\""+nonce+"\"")) ||
					!bytes.Contains([]byte(hdr), []byte(f.TimestampField+"=")) {
					t.Fatalf("nonce/time not in %s/%s of %q", f.NonceField, f.TimestampField, hdr)
				}
			} else {
				if len(f.SignatureHeaders) != 0 || sigHeaders != 0 {
					t.Fatalf("body scheme has signature headers %v", f.SignatureHeaders)
				}
				v, err := url.ParseQuery(string(m.Body))
				if err != nil {
					t.Fatal(err)
				}
				if v.Get(f.NonceField) != nonce || v.Get(f.TimestampField) == "" {
					t.Fatalf("nonce/time not in fields %s/%s of %q", f.NonceField, f.TimestampField, m.Body)
				}
			}

			// Replies: header schemes sign in their headers, body schemes in the body.
			r := &Message{Kind: Response, Status: 200, Header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}},
				Body: []byte("result=SUCCESS")}
			if err := sch.Sign(r, key, testNow, nonce); err != nil {
				t.Fatal(err)
			}
			if _, err := parseVerify(sch, r, &priv.PublicKey); err != nil {
				t.Fatal(err)
			}
			if f.SignsInHeader != bytes.Equal(r.Body, []byte("result=SUCCESS")) {
				t.Fatalf("reply body %q for SignsInHeader=%v", r.Body, f.SignsInHeader)
			}
			if len(f.ReplySigned) == 0 {
				t.Fatal("no ReplySigned")
			}
			for _, h := range f.ReplySigned {
				if len(h) > 0 && h[0] >= 'A' && h[0] <= 'Z' && r.Header.Get(h) == "" {
					t.Fatalf("reply lacks signed header %s", h)
				}
			}
		})
	}
	if _, err := New("rsa-sha256"); err == nil {
		t.Fatal("unknown scheme built")
	}
	if _, err := New(""); err == nil {
		t.Fatal("empty scheme name built")
	}
	if SignsInHeader("rsa-sha256") || SignatureHeaders("rsa-sha256") != nil {
		t.Fatal("facts for an unknown scheme")
	}
}
