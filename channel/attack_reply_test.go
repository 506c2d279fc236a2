package channel

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gmgate/gmgate/integration/banksim"
	"github.com/gmgate/gmgate/internal/attack"
	"github.com/gmgate/gmgate/signing"
)

// TestAttackHostileBankLink is finding 7 of the security review: on a bank link that is not
// mutually authenticated TLCP, a man in the middle holds validly signed replies of the bank and
// rewrites what it can. Before the fix each row passed (status 200 to the back end, or the
// rewritten status and headers forwarded); each must now be refused or neutralised.
func TestAttackHostileBankLink(t *testing.T) {
	p := getPKI(t)
	wechat := profile{name: "wechatpay-v3-sm2", scheme: signing.Settings{Name: "wechatpay-v3-sm2"},
		sim: banksim.Profile{Scheme: banksim.WechatPay}, ctype: "application/json", body: payJSON}
	unionpay := profile{name: "unionpay-form", scheme: signing.Settings{Name: "unionpay-sm2"},
		sim: banksim.Profile{Scheme: banksim.UnionPay}, ctype: "application/x-www-form-urlencoded", body: payForm}
	other := func(body string) string {
		return strings.NewReplacer("20240101000001", "20240101000009", "20240101000002", "20240101000009").Replace(body)
	}
	cases := []struct {
		name     string
		pr       profile
		clock    time.Duration // the gateway's clock ahead of the bank's
		rewrite  func(int, attack.Reply) attack.Reply
		second   func(string) string // body of a second request, if any
		wantCode Code
	}{
		{name: "reply an hour old", pr: wechat, clock: time.Hour, wantCode: CodeBankReplyStale},
		{name: "captured reply replayed to the next request", pr: wechat, rewrite: attack.ReplayFirst(),
			second: other, wantCode: CodeBankReplyReplayed},
		{name: "reply of another order swapped in", pr: unionpay, rewrite: attack.ReplayFirst(),
			second: other, wantCode: CodeBankReplyUnbound},
		{name: "success rewritten to 500", pr: wechat, rewrite: func(_ int, r attack.Reply) attack.Reply {
			r.Status = http.StatusInternalServerError
			return r
		}, wantCode: CodeBankReplyMalformed},
		{name: "unionpay 200 rewritten to 503", pr: unionpay, rewrite: func(_ int, r attack.Reply) attack.Reply {
			r.Status = http.StatusServiceUnavailable
			return r
		}, wantCode: CodeBankReplyMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sim := startSim(t, p, tc.pr, nil)
			cfg := channelConfig(t, p, tc.pr)
			if tc.clock != 0 {
				cfg.Now = func() time.Time { return time.Now().Add(tc.clock) }
			}
			tr, _, _ := newTransport(t, cfg, &attack.MITM{Inner: http.DefaultTransport, Rewrite: tc.rewrite}, nil)
			body := tc.pr.body
			if tc.second != nil {
				if resp, b := do(t, tr, http.MethodPost, sim.URL+"/gateway/api/pay", tc.pr.ctype, body, nil); resp.StatusCode != http.StatusOK {
					t.Fatalf("genuine first exchange: %d %s", resp.StatusCode, b)
				}
				body = tc.second(body)
			}
			resp, b := do(t, tr, http.MethodPost, sim.URL+"/gateway/api/pay", tc.pr.ctype, body, nil)
			if resp.StatusCode == http.StatusOK || !strings.Contains(string(b), string(tc.wantCode)) {
				t.Fatalf("attack passed: status %d, body %s; want %s", resp.StatusCode, b, tc.wantCode)
			}
		})
	}

	t.Run("unsigned headers injected", func(t *testing.T) {
		sim := startSim(t, p, wechat, nil)
		tr, _, _ := newTransport(t, channelConfig(t, p, wechat), &attack.MITM{Inner: http.DefaultTransport,
			Rewrite: func(_ int, r attack.Reply) attack.Reply {
				r.Header.Set("Set-Cookie", "session=attacker")
				r.Header.Set("Location", "https://evil.example/")
				return r
			}}, nil)
		resp, b := do(t, tr, http.MethodPost, sim.URL+"/gateway/api/pay", wechat.ctype, wechat.body, nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d %s", resp.StatusCode, b)
		}
		if resp.Header.Get("Set-Cookie") != "" || resp.Header.Get("Location") != "" {
			t.Fatalf("unsigned bank headers forwarded: %v", resp.Header)
		}
	})
}
