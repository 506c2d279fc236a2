package gateway

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gmgate/gmgate/internal/attack"
	"github.com/gmgate/gmgate/signing"
)

// TestAttackResplitReplay is finding 2 of the security review: from a captured form-sm2 or
// unionpay-sm2 request, an attacker folds the field that sorts after the nonce into the nonce's
// value. The signed string is byte-identical (checked below, so the attack is real), the nonce is
// new, and before the fix the verifier accepted it a second time and forwarded another field set.
// Now such a message is refused as malformed, and the original's nonce stays spent.
func TestAttackResplitReplay(t *testing.T) {
	p := newTestPKI(t)
	cases := []struct {
		name   string
		scheme signing.Scheme
		fields map[string]string
		nonce  string
		excl   []string
	}{
		{"form-sm2 nonce_str<-notify_url", signing.NewForm(), map[string]string{
			"app_id": "2021000000", "out_trade_no": "GM-1", "total_amount": "100.00",
			"notify_url": "https://merchant.example/notify"}, "nonce_str", []string{"sign", "sign_type"}},
		{"unionpay-sm2 orderId<-payTimeout", signing.NewUnionPay(), map[string]string{
			"merId": "777290058110097", "txnAmt": "100", "txnType": "01", "version": "5.1.0",
			"payTimeout": "20261204120000"}, "orderId", []string{"signature"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := newTestVerifier(t, p, func(o *VerifierOptions) { o.Scheme = tc.scheme })
			m := &signing.Message{Kind: signing.Request, Method: http.MethodPost, Target: "/pay",
				Header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, Body: attack.FormBody(tc.fields)}
			key := signing.Key{Signer: p.good.Sign.Key, Cert: p.good.Sign.Cert, KeyID: signing.SerialHex(p.good.Sign.Cert.SerialNumber)}
			if tc.scheme.Name() == signing.UnionPayName {
				key.KeyID = ""
			}
			if err := tc.scheme.Sign(m, key, time.Now(), ""); err != nil {
				t.Fatal(err)
			}
			send := func(body []byte) (*Result, error) {
				r := httptest.NewRequest(http.MethodPost, "/pay", bytes.NewReader(body))
				r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				return v.Verify(context.Background(), r, nil)
			}
			if _, err := send(m.Body); err != nil {
				t.Fatalf("genuine request: %v", err)
			}
			// The capture, rewritten.
			captured, err := signing.ParseParams(m.Body, false)
			if err != nil {
				t.Fatal(err)
			}
			forged, moved, err := attack.Resplit(captured, tc.nonce, tc.excl...)
			if err != nil {
				t.Fatal(err)
			}
			if signing.CanonicalParams(forged, tc.excl...) != signing.CanonicalParams(captured, tc.excl...) {
				t.Fatal("the rewrite changed the signed string: the attack under test is not the real one")
			}
			if forged[tc.nonce] == captured[tc.nonce] || forged[moved] != "" {
				t.Fatalf("rewrite did not move %s into %s", moved, tc.nonce)
			}
			res, err := send(attack.FormBody(forged))
			if err == nil {
				t.Fatalf("re-split capture accepted (nonce %q, forwarded %q)", res.Signed.Nonce, res.Body)
			}
			if CodeOf(err) != CodeMalformedHeader {
				t.Fatalf("re-split capture: code %s (%v), want %s", CodeOf(err), err, CodeMalformedHeader)
			}
			// And the genuine bytes once more: still a replay.
			if _, err := send(m.Body); CodeOf(err) != CodeReplay {
				t.Fatalf("genuine request again: %v", err)
			}
		})
	}
}
