package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gmgate/gmgate/internal/attack"
	"github.com/gmgate/gmgate/signing"
)

// TestAttackCaseShadowedField: form-sm2 and unionpay-sm2 leave empty fields out of the signed
// string. To a captured request an attacker appends an empty field named like a signed one but
// for letter case ("Notify_url":""). The signature verified and gmgate forwarded the body; a back
// end binding JSON case-insensitively (Go's encoding/json: the last matching key wins) read the
// empty value instead of the signed notify_url. Two field names equal but for case are now
// refused (malformed_header), signed or not.
func TestAttackCaseShadowedField(t *testing.T) {
	p := newTestPKI(t)
	for _, isJSON := range []bool{true, false} {
		name, ctype := "json", "application/json"
		if !isJSON {
			name, ctype = "form", "application/x-www-form-urlencoded"
		}
		t.Run(name, func(t *testing.T) {
			v := newTestVerifier(t, p, func(o *VerifierOptions) { o.Scheme = signing.NewForm() })
			fields := map[string]string{"app_id": "2021000000", "out_trade_no": "GM-7", "total_amount": "100.00",
				"notify_url": "https://merchant.example/notify"}
			body := attack.FormBody(fields)
			if isJSON {
				body = attack.JSONBody(fields)
			}
			m := &signing.Message{Kind: signing.Request, Method: http.MethodPost, Target: "/pay",
				Header: http.Header{"Content-Type": {ctype}}, Body: body}
			key := signing.Key{Signer: p.good.Sign.Key, Cert: p.good.Sign.Cert, KeyID: signing.SerialHex(p.good.Sign.Cert.SerialNumber)}
			if err := signing.NewForm().Sign(m, key, time.Now(), ""); err != nil {
				t.Fatal(err)
			}
			forged := attack.CaseShadow(m.Body, "notify_url", isJSON) // captured, never delivered
			r := httptest.NewRequest(http.MethodPost, "/pay", bytes.NewReader(forged))
			r.Header.Set("Content-Type", ctype)
			res, err := v.Verify(context.Background(), r, nil)
			if err == nil {
				var order struct {
					NotifyURL string `json:"notify_url"`
				}
				if isJSON && json.Unmarshal(res.Body, &order) == nil && order.NotifyURL != fields["notify_url"] {
					t.Fatalf("shadowed capture accepted: the back end reads notify_url %q, signed %q", order.NotifyURL, fields["notify_url"])
				}
				t.Fatalf("shadowed capture accepted: %s", res.Body)
			}
			if CodeOf(err) != CodeMalformedHeader {
				t.Fatalf("code %s (%v), want %s", CodeOf(err), err, CodeMalformedHeader)
			}
			// The genuine request is untouched by the refusal: accepted once.
			r = httptest.NewRequest(http.MethodPost, "/pay", bytes.NewReader(m.Body))
			r.Header.Set("Content-Type", ctype)
			if _, err := v.Verify(context.Background(), r, nil); err != nil {
				t.Fatalf("genuine request: %v", err)
			}
		})
	}
}
