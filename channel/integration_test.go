package channel

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gmgate/gmgate/audit"
	"github.com/gmgate/gmgate/signing"

	"github.com/gmgate/gmgate/integration/banksim"
	"github.com/gmgate/gmgate/keyvault"
)

// The production types fit the small interfaces.
var (
	_ audit.Sink = (*audit.Log)(nil)
	_ DataKey    = (*keyvault.SM4Key)(nil)
)

// TestRealAuditLogAndHTTPS: an exchange over HTTPS writes a decision in a real audit.Log
// (the client side's log), whose chain and checkpoint verify.
func TestRealAuditLogAndHTTPS(t *testing.T) {
	p := getPKI(t)
	pr := profile{name: "https", scheme: signing.Settings{Name: "wechatpay-v3-sm2"}, sim: banksim.Profile{Scheme: banksim.WechatPay}}
	sim, err := banksim.New(banksim.FromTestPKI(p, pr.sim))
	if err != nil {
		t.Fatal(err)
	}
	ts, err := sim.StartHTTPS()
	if err != nil {
		t.Fatal(err)
	}
	defer ts.Close()
	pool := x509.NewCertPool()
	pool.AddCert(ts.Certificate())
	inner := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	defer inner.CloseIdleConnections()

	base := filepath.Join(t.TempDir(), "channel.log")
	log, err := audit.Open(audit.Options{Path: base, Signer: p.PlatformSign.Key})
	if err != nil {
		t.Fatal(err)
	}
	ch, err := New(channelConfig(t, p, pr))
	if err != nil {
		t.Fatal(err)
	}
	tr, err := NewTransport(ch, TransportOptions{Inner: inner, Audit: log})
	if err != nil {
		t.Fatal(err)
	}
	resp, body := do(t, tr, http.MethodPost, sim.URL+"/v3/pay", "application/json", payJSON, map[string]string{"X-Request-Id": "req-42"})
	if resp.StatusCode != 200 || jsonMap(t, body)["respCode"] != "00" {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	sim.SetMisbehaviour(banksim.BadSignature)
	resp, body = do(t, tr, http.MethodPost, sim.URL+"/v3/pay", "application/json", payJSON, nil)
	if resp.StatusCode != 502 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if err := log.Close(); err != nil {
		t.Fatal(err)
	}
	segs, err := audit.Segments(base)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := audit.VerifyFile(segs, &p.PlatformSign.Key.PublicKey)
	if err != nil || !rep.OK || rep.Decisions != 2 {
		t.Fatalf("audit verify: %v %+v", err, rep)
	}
	raw, err := os.ReadFile(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	text := string(raw)
	for _, want := range []string{`"direction":"outbound"`, `"request_id":"req-42"`, `"reason":"bank_signature_invalid"`, `"verdict":"accept"`, `"scheme":"wechatpay-v3-sm2"`} {
		if !strings.Contains(text, want) {
			t.Fatalf("audit log lacks %s:\n%s", want, text)
		}
	}
}

// TestBodyLimits: an oversized request is refused before anything is sent; an oversized reply
// is refused and not forwarded.
func TestBodyLimits(t *testing.T) {
	p := getPKI(t)
	pr := profile{name: "limits", scheme: signing.Settings{Name: "http-sig-sm2"}, sim: banksim.Profile{Scheme: banksim.HTTPSig}}
	sim := startSim(t, p, pr, func(o *banksim.Options) {
		o.Handler = func(r *banksim.Received) (int, string, []byte) {
			return 200, "text/plain", []byte(strings.Repeat("x", 4096))
		}
	})
	tr, aud, _ := newTransport(t, channelConfig(t, p, pr), http.DefaultTransport, func(o *TransportOptions) { o.MaxBody = 2048 })
	resp, body := do(t, tr, http.MethodPost, sim.URL+"/pay", "text/plain", strings.Repeat("y", 3000), nil)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || jsonMap(t, body)["code"] != string(CodeRequestTooLarge) || len(sim.Received()) != 0 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	resp, body = do(t, tr, http.MethodPost, sim.URL+"/pay", "text/plain", "small", nil)
	if resp.StatusCode != http.StatusBadGateway || jsonMap(t, body)["code"] != string(CodeBankReplyTooLarge) || strings.Contains(string(body), "xxx") {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if recs := aud.all(); len(recs) != 2 || recs[1].Reason != string(CodeBankReplyTooLarge) {
		t.Fatalf("audit %+v", recs)
	}
}

// TestAuditFailureWithholdsReply: the bank's verified reply is accepted, its audit entry is
// written but the fsync fails: the reply is withheld (channel_internal_error) and a reject entry
// for the same request follows the accept, so the log's last word is the outcome the caller saw.
func TestAuditFailureWithholdsReply(t *testing.T) {
	p := getPKI(t)
	pr := profile{name: "auditfail", scheme: signing.Settings{Name: "wechatpay-v3-sm2"}, sim: banksim.Profile{Scheme: banksim.WechatPay}}
	sim := startSim(t, p, pr, nil)
	tr, evidence, _ := newTransport(t, channelConfig(t, p, pr), http.DefaultTransport, nil)
	evidence.failAccepts = 1
	resp, body := do(t, tr, http.MethodPost, sim.URL+"/v3/pay", "application/json", payJSON, map[string]string{"X-Request-Id": "req-fsync"})
	if resp.StatusCode != CodeInternal.Status() || jsonMap(t, body)["code"] != string(CodeInternal) || strings.Contains(string(body), "respCode") {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	recs := evidence.all()
	if len(recs) != 2 || recs[0].Verdict != audit.VerdictAccept || recs[1].Verdict != audit.VerdictReject ||
		recs[1].Reason != string(CodeInternal) || recs[0].RequestID != "req-fsync" || recs[1].RequestID != "req-fsync" {
		t.Fatalf("audit %+v", recs)
	}
}

// TestCodes: every code has a message and a status; unknown errors map to internal.
func TestCodes(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range Codes() {
		if c.Message() == "bank channel error" || seen[c.Message()] || c.Status() < 400 {
			t.Fatalf("code %s: %q %d", c, c.Message(), c.Status())
		}
		seen[c.Message()] = true
		r := ErrorResponse(nil, c)
		if r.StatusCode != c.Status() || r.Header.Get(HeaderChannelError) != string(c) {
			t.Fatal(r)
		}
	}
	if CodeOf(os.ErrNotExist) != CodeInternal || CodeOf(nil) != CodeOK || CodeOf(fail(CodeBankTimeout, nil)) != CodeBankTimeout {
		t.Fatal("CodeOf")
	}
}
