package gateway

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// FuzzVerifierRequest feeds arbitrary Authorization headers, targets and bodies through the
// whole request path (bounded read, parse, identity lookup, verify, replay). It must never
// panic, never accept, and always answer with a defined code.
func FuzzVerifierRequest(f *testing.F) {
	p := newTestPKI(f)
	v := newTestVerifier(f, p, func(o *VerifierOptions) { o.MaxBodySize = 4096 })
	good := signWechat(f, p.good.Sign, "POST", "/v3/pay", []byte(`{"a":1}`), time.Now(), "seed")
	f.Add(good.Header.Get("Authorization"), "/v3/pay", []byte(`{"a":1}`))
	f.Add(`WECHATPAY2-SM2-WITH-SM3 mchid="1",nonce_str="n",timestamp="1",serial_no="00",signature="AA=="`, "/", []byte{})
	f.Add(`WECHATPAY2-SM2-WITH-SM3 serial_no="`+"9999999999999999999999999999"+`"`, "/x?y=z", []byte("\x00"))
	f.Add(`WECHATPAY2-SM2-WITH-SM3 mchid="",,,,=`, "/", []byte(`{`))
	f.Fuzz(func(t *testing.T, auth, target string, body []byte) {
		r := httptest.NewRequest("POST", "/", bytes.NewReader(body))
		r.RequestURI = target
		r.Header.Set("Authorization", auth)
		r.Header.Set("X-Gm-Client-Serial", "forged")
		res, err := v.Verify(context.Background(), r, nil)
		if err == nil {
			// Only the unmodified seed can verify, and only once (replay store).
			if auth != good.Header.Get("Authorization") || res == nil {
				t.Fatalf("accepted %q %q", auth, target)
			}
			return
		}
		c := CodeOf(err)
		if !c.Known() || c == CodeOK || c == CodeInternal {
			t.Fatalf("code %q for %q: %v", c, auth, err)
		}
		if r.Header.Get("X-Gm-Client-Serial") != "forged" {
			t.Fatal("rejected request modified")
		}
		if st := c.Status(); st != http.StatusUnauthorized && st != http.StatusBadRequest && st != http.StatusRequestEntityTooLarge {
			t.Fatalf("status %d for %s", st, c)
		}
	})
}

// FuzzKeyIDLookup checks the serial normalisation of key IDs.
func FuzzKeyIDLookup(f *testing.F) {
	p := newTestPKI(f)
	f.Add(p.good.Sign.Cert.SerialNumber.Text(16))
	f.Add(p.good.Sign.Cert.SerialNumber.String())
	f.Add("0x00:ff")
	f.Fuzz(func(t *testing.T, keyID string) {
		id, err := p.identities.Lookup(keyID)
		if err == nil && id == nil {
			t.Fatal("nil identity without error")
		}
		if err != nil {
			switch CodeOf(err) {
			case CodeUnknownKey, CodeCertExpired, CodeCertNotYetValid, CodeCertRevoked, CodeCertWrongUsage, CodeCertUntrusted:
			default:
				t.Fatalf("code %s", CodeOf(err))
			}
		}
	})
}
