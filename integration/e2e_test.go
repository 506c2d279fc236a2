package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/audit"
	"github.com/gmgate/gmgate/client"
	"github.com/gmgate/gmgate/gateway"
	"github.com/gmgate/gmgate/integration/banksim"
	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/signing"
	"github.com/gmgate/gmgate/tlcp"
)

// e2eCaddyfile is the one configuration both gateway instances run (ports and directories
// differ). Every key lives in the SoftHSM2 token made by `gmgate vault`: the ingress TLCP pair
// (srv-sign, srv-enc), the platform key (reply signatures, requests to the bank, audit
// checkpoints) and the egress TLCP client pair toward the bank (chan-sign, chan-enc).
const e2eCaddyfile = `{
	admin {ADMIN}
	skip_install_trust
	auto_https off
	metrics
	gmgate {
		audit {DIR}/audit/audit.log {
			signing_key platform-sign
			checkpoint_every 1
		}
{VAULT}	}
	servers :{INGRESS} {
		listener_wrappers {
			tlcp {
				sign_key srv-sign
				enc_key srv-enc
				client_auth require_and_verify
				client_ca {CA}
				cipher_suites ECC_SM4_GCM_SM3 ECDHE_SM4_GCM_SM3
			}
		}
	}
}

# Ingress (支付前置): TLCP with client certificates, SM2 signature of every payment instruction,
# nonces shared in Redis with the other instance, plain request to the legacy back end.
http://:{INGRESS} {
	gm_verify {
		scheme wechatpay-v3-sm2
		trusted_roots {CA}
		identities {
			file {CLIENT}
		}
		bind_tlcp_client cert
		replay {
			window 5m
			store redis
			redis_address {REDIS}
			redis_prefix {PREFIX}
		}
		reply_signing {
			key platform-sign
		}
	}
	reverse_proxy {BACKEND}
}

# Egress (渠道前置): the back end's plain request is signed with the platform key (UnionPay SM2)
# and sent over TLCP with mutual authentication; the bank's reply is verified before it goes back.
http://127.0.0.1:{EGRESS} {
	reverse_proxy {BANK} {
		transport gm_channel {
			bank banksim
			scheme unionpay-sm2
			platform_key platform-sign
			bank_cert {BANKSIGN}
			bank_root {BANKROOT}
			tlcp {
				sign_key chan-sign
				enc_key chan-enc
				server_name localhost
			}
			response_timeout 10s
		}
	}
}
`

// e2eBackend is the legacy back end: plain HTTP, no GM at all. On POST /v3/pay/transactions it
// takes the plain JSON order, posts a plain JSON payment to its gateway's egress and returns the
// bank's (already verified) reply.
type e2eBackend struct {
	egress string
	srv    *httptest.Server

	mu    sync.Mutex
	calls []backendCall
}

type backendCall struct {
	Header   http.Header
	Body     []byte
	BankCode int
	BankBody []byte
	Err      string
}

func newE2EBackend(t *testing.T, egressPort int) *e2eBackend {
	b := &e2eBackend{egress: fmt.Sprintf("http://127.0.0.1:%d/gateway/api/appTransReq.do", egressPort)}
	b.srv = httptest.NewServer(http.HandlerFunc(b.serve))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *e2eBackend) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	call := backendCall{Header: r.Header.Clone(), Body: body}
	defer func() {
		b.mu.Lock()
		b.calls = append(b.calls, call)
		b.mu.Unlock()
	}()
	fail := func(status int, msg string) {
		call.Err = msg
		http.Error(w, msg, status)
	}
	if r.Method != http.MethodPost || r.URL.Path != "/v3/pay/transactions" {
		fail(http.StatusNotFound, "no such route")
		return
	}
	var order struct {
		OutTradeNo string `json:"out_trade_no"`
		Amount     struct {
			Total int `json:"total"`
		} `json:"amount"`
		Payer struct {
			Account string `json:"account"`
		} `json:"payer"`
	}
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") || json.Unmarshal(body, &order) != nil || order.OutTradeNo == "" {
		fail(http.StatusBadRequest, "not a plain JSON order")
		return
	}
	payment, _ := json.Marshal(map[string]string{
		"orderId": order.OutTradeNo, "txnAmt": strconv.Itoa(order.Amount.Total), "merId": "898000000000001",
		"txnTime": time.Now().Format("20060102150405"), "accNo": order.Payer.Account,
	})
	resp, err := http.Post(b.egress, "application/json", bytes.NewReader(payment))
	if err != nil {
		fail(http.StatusBadGateway, "egress: "+err.Error())
		return
	}
	reply, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	call.BankCode, call.BankBody = resp.StatusCode, reply
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(resp.StatusCode)
	w.Write(reply)
}

func (b *e2eBackend) seen() []backendCall {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]backendCall(nil), b.calls...)
}

// wireRecorder keeps a copy of the last request the SDK put on the wire (signed headers and
// body), so that the very same bytes can be replayed.
type wireRecorder struct {
	base http.RoundTripper

	mu     sync.Mutex
	method string
	uri    string
	header http.Header
	body   []byte
}

func (w *wireRecorder) RoundTrip(r *http.Request) (*http.Response, error) {
	var body []byte
	if r.Body != nil {
		var err error
		if body, err = io.ReadAll(r.Body); err != nil {
			return nil, err
		}
		r.Body.Close()
		r = r.Clone(r.Context())
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
	}
	w.mu.Lock()
	w.method, w.uri, w.header, w.body = r.Method, r.URL.RequestURI(), r.Header.Clone(), body
	w.mu.Unlock()
	return w.base.RoundTrip(r)
}

// replay sends the recorded request, byte for byte, to baseURL over the SDK's own TLCP
// transport (same client certificate), and returns the status and the gateway's error code.
func (w *wireRecorder) replay(t *testing.T, baseURL string) (int, string) {
	t.Helper()
	w.mu.Lock()
	req, err := http.NewRequest(w.method, baseURL+w.uri, bytes.NewReader(w.body))
	if err != nil {
		w.mu.Unlock()
		t.Fatal(err)
	}
	req.Header = w.header.Clone()
	w.mu.Unlock()
	resp, err := w.base.RoundTrip(req)
	if err != nil {
		t.Fatalf("replaying to %s: %v", baseURL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var e struct{ Code, Message string }
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("replay to %s: status %d, body is not a JSON error: %q", baseURL, resp.StatusCode, b)
	}
	return resp.StatusCode, e.Code
}

// redisAddr returns the shared Redis, skipping (or failing under GMGATE_REQUIRE_SERVICES) when
// none is configured or reachable.
func redisAddr(t *testing.T) string {
	t.Helper()
	addr := os.Getenv("GMGATE_REDIS_ADDR")
	why := "GMGATE_REDIS_ADDR unset"
	if addr != "" {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err == nil {
			c.Close()
			return addr
		}
		why = fmt.Sprintf("Redis at %s unreachable: %v", addr, err)
	}
	if os.Getenv("GMGATE_REQUIRE_SERVICES") != "" {
		t.Fatalf("Redis required (GMGATE_REQUIRE_SERVICES is set): %s", why)
	}
	t.Skipf("no Redis: %s", why)
	return ""
}

// TestEndToEndPayment runs the whole payment path with real processes: a TLCP terminal (package
// client) → gateway A (TLCP with token keys, gm_verify, Redis nonces) → a plain back end →
// A's egress (gm_channel, platform key in the token, TLCP client keys in the token) → the bank
// simulator, which verifies the request independently → the bank's reply verified by the
// egress → signed by A with the platform key → verified by the terminal. The same signed
// request replayed to gateway B (same Caddyfile, same Redis) and to A is rejected as a replay.
// Metrics and audit logs of both instances are checked.
//
// The bank simulator runs in-process (package banksim): cmd/banksim issues its own platform
// keys, whereas here the bank must accept the platform and channel keys made in the token.
func TestEndToEndPayment(t *testing.T) {
	redis := redisAddr(t)
	v := newVaultToken(t,
		keySpec{Name: "srv-sign", Role: pki.RoleSign, CN: "localhost", SANs: []string{"localhost", "127.0.0.1"},
			EKU: []smx509.ExtKeyUsage{smx509.ExtKeyUsageServerAuth}},
		keySpec{Name: "srv-enc", Role: pki.RoleEnc, CN: "localhost", SANs: []string{"localhost", "127.0.0.1"},
			EKU: []smx509.ExtKeyUsage{smx509.ExtKeyUsageServerAuth}},
		keySpec{Name: "platform-sign", Role: pki.RoleSign, CN: "gmgate platform"},
		keySpec{Name: "chan-sign", Role: pki.RoleSign, CN: "gmgate channel", EKU: []smx509.ExtKeyUsage{smx509.ExtKeyUsageClientAuth}},
		keySpec{Name: "chan-enc", Role: pki.RoleEnc, CN: "gmgate channel", EKU: []smx509.ExtKeyUsage{smx509.ExtKeyUsageClientAuth}},
	)
	platformCert := v.Cert(t, "platform-sign")

	// The terminal's dual certificate, issued by the same CA (its keys are the terminal's, in files).
	term, err := v.CA.IssueClientPair(pki.IssueOptions{CommonName: "terminal-0001", Organization: []string{"GM Test Merchant"}})
	if err != nil {
		t.Fatal(err)
	}
	writeIssuedFiles(t, v.Dir, "terminal_sign", term.Sign)
	writeIssuedFiles(t, v.Dir, "terminal_enc", term.Enc)

	// The bank: its own PKI for its keys; it accepts requests signed by the token's platform
	// certificate and TLCP clients whose certificates chain to the token's CA.
	tp, err := banksim.NewTestPKI("localhost")
	if err != nil {
		t.Fatal(err)
	}
	opts := banksim.FromTestPKI(tp, banksim.Profile{Scheme: banksim.UnionPay})
	opts.PlatformCerts = []*smx509.Certificate{platformCert}
	bank, err := banksim.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	bankTLCP := tp.ServerTLCPConfig()
	bankTLCP.ClientCAs = smx509.NewCertPool()
	bankTLCP.ClientCAs.AddCert(v.CA.Cert)
	if err := bank.StartTLCP(bankTLCP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bank.Close() })
	writeIssuedFiles(t, v.Dir, "bank_sign", &pki.Issued{Cert: tp.BankSign.Cert})
	writeIssuedFiles(t, v.Dir, "bank_root", &pki.Issued{Cert: tp.BankRoot.Cert})

	// Two gateway instances with the same configuration, each with its own back end.
	prefix := "gmgate-e2e-" + randomDigits(t, 12) + ":"
	type gw struct {
		name    string
		ingress int
		backend *e2eBackend
		inst    *instance
	}
	start := func(name string) *gw {
		g := &gw{name: name, ingress: freePort(t)}
		egress := freePort(t)
		g.backend = newE2EBackend(t, egress)
		cf := strings.NewReplacer(
			"{VAULT}", v.Block, "{INGRESS}", fmt.Sprint(g.ingress), "{EGRESS}", fmt.Sprint(egress),
			"{CA}", v.CAFile, "{CLIENT}", filepath.Join(v.Dir, "terminal_sign.pem"),
			"{REDIS}", redis, "{PREFIX}", prefix, "{BACKEND}", g.backend.srv.Listener.Addr().String(),
			"{BANK}", strings.TrimPrefix(bank.URL, "https://"),
			"{BANKSIGN}", filepath.Join(v.Dir, "bank_sign.pem"), "{BANKROOT}", filepath.Join(v.Dir, "bank_root.pem"),
		).Replace(e2eCaddyfile)
		g.inst = startGmgate(t, cf, v.Env...)
		return g
	}
	a, b := start("A"), start("B")
	urlOf := func(g *gw) string { return fmt.Sprintf("https://localhost:%d", g.ingress) }

	roots := smx509.NewCertPool()
	roots.AddCert(v.CA.Cert)
	sign := &client.Identity{Certificate: term.Sign.Cert, Key: term.Sign.Key}
	enc := &client.Identity{Certificate: term.Enc.Cert, Key: term.Enc.Key}
	const mchID = "1900000001"
	newClient := func(g *gw, suite uint16) (*client.Client, *wireRecorder) {
		key, err := sign.SigningKey("", mchID)
		if err != nil {
			t.Fatal(err)
		}
		c, err := client.New(client.Config{
			BaseURL: urlOf(g),
			TLCP:    &client.TLCPConfig{Sign: sign, Enc: enc, RootCAs: roots, ServerName: "localhost", CipherSuites: []uint16{suite}},
			Scheme:  signing.WechatPayName, Key: key,
			PlatformCerts: []*smx509.Certificate{platformCert},
			Timeout:       20 * time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		rec := &wireRecorder{base: c.Transport().Base}
		c.Transport().Base = rec
		t.Cleanup(c.CloseIdleConnections)
		return c, rec
	}
	pay := func(c *client.Client, orderID, account string) *client.Response {
		t.Helper()
		order, _ := json.Marshal(map[string]any{"mchid": mchID, "out_trade_no": orderID, "description": "GM e2e",
			"amount": map[string]any{"total": 100, "currency": "CNY"}, "payer": map[string]string{"account": account}})
		req, err := c.NewRequest(context.Background(), http.MethodPost, "/v3/pay/transactions", "application/json", order)
		if err != nil {
			t.Fatal(err)
		}
		// Identity headers a client must not be able to set.
		req.Header.Set("X-Gm-Client-Subject", "CN=forged")
		req.Header.Set("X-Gm-Client-Serial", "00")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("payment %s: %v", orderID, err)
		}
		return resp
	}
	termSerial := signing.SerialHex(term.Sign.Cert.SerialNumber)

	// checkPayment asserts one accepted payment end to end.
	checkPayment := func(g *gw, resp *client.Response, orderID, account string, nBank int) {
		t.Helper()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: status %d: %s", g.name, resp.StatusCode, resp.Body)
		}
		// The SDK verified the reply signature with the token's platform certificate.
		if resp.Reply == nil || resp.Reply.Certificate == nil || !resp.Reply.Certificate.Equal(platformCert) ||
			resp.Reply.Serial != signing.SerialHex(platformCert.SerialNumber) || resp.Reply.Scheme != signing.WechatPayName {
			t.Fatalf("%s: reply not verified with the platform certificate: %+v", g.name, resp.Reply)
		}
		// The back end saw plain JSON with the verified identity, not the forged one.
		calls := g.backend.seen()
		if len(calls) != 1 {
			t.Fatalf("%s: back end saw %d requests, want 1", g.name, len(calls))
		}
		c := calls[0]
		var plain map[string]any
		if err := json.Unmarshal(c.Body, &plain); err != nil || plain["out_trade_no"] != orderID || c.Err != "" {
			t.Fatalf("%s: back end did not get the plain JSON order: %q %v %s", g.name, c.Body, err, c.Err)
		}
		if got, want := c.Header.Get("X-Gm-Client-Subject"), term.Sign.Cert.Subject.String(); got != want {
			t.Fatalf("%s: X-Gm-Client-Subject %q, want %q", g.name, got, want)
		}
		if c.Header.Get("X-Gm-Client-Serial") != termSerial || c.Header.Get("X-Gm-Verify-Scheme") != signing.WechatPayName {
			t.Fatalf("%s: identity headers at the back end: %v", g.name, c.Header)
		}
		if strings.Contains(c.Header.Get("Authorization"), "CN=forged") || len(c.Header.Values("X-Gm-Client-Subject")) != 1 {
			t.Fatalf("%s: forged identity reached the back end: %v", g.name, c.Header)
		}
		// The bank verified the request with the platform certificate and got the back end's
		// plain payment; its reply (verified by the egress) is what the terminal received.
		recv := bank.Received()
		if len(recv) != nBank {
			t.Fatalf("bank saw %d requests, want %d", len(recv), nBank)
		}
		r := recv[nBank-1]
		if !r.Verified || r.Err != "" || r.Params["certId"] != platformCert.SerialNumber.String() || r.Params["signMethod"] != "21" ||
			r.Params["orderId"] != orderID || r.Params["accNo"] != account {
			t.Fatalf("%s: bank side: verified=%v err=%q params=%v", g.name, r.Verified, r.Err, r.Params)
		}
		if c.BankCode != http.StatusOK || !bytes.Equal(resp.Body, c.BankBody) {
			t.Fatalf("%s: terminal got %q, back end got %d %q from the egress", g.name, resp.Body, c.BankCode, c.BankBody)
		}
		var bankReply map[string]string
		if err := json.Unmarshal(resp.Body, &bankReply); err != nil || bankReply["respCode"] != "00" || bankReply["orderId"] != orderID {
			t.Fatalf("%s: reply is not the bank's answer: %s (%v)", g.name, resp.Body, err)
		}
	}

	// 1. A payment through A.
	ca, recA := newClient(a, tlcp.ECC_SM4_GCM_SM3)
	resp := pay(ca, "GM20261125000001", "6216610000000000001")
	checkPayment(a, resp, "GM20261125000001", "6216610000000000001", 1)

	// 2. The very same signed request replayed to B, then to A: a replay for both.
	for _, g := range []*gw{b, a} {
		status, code := recA.replay(t, urlOf(g))
		if status != http.StatusUnauthorized || code != string(gateway.CodeReplay) {
			t.Fatalf("replay to %s: %d %q, want 401 %q", g.name, status, code, gateway.CodeReplay)
		}
	}
	if n := len(a.backend.seen()) + len(b.backend.seen()); n != 1 {
		t.Fatalf("a replayed request reached a back end (%d calls)", n)
	}

	// 3. B serves fresh payments (ECDHE this time).
	cb, _ := newClient(b, tlcp.ECDHE_SM4_GCM_SM3)
	resp = pay(cb, "GM20261125000002", "6216610000000000002")
	checkPayment(b, resp, "GM20261125000002", "6216610000000000002", 2)

	// 4. A terminal without a client certificate cannot complete the handshake with A
	// (client_auth require_and_verify): a failed handshake for the metrics.
	if conn, err := tlcp.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", a.ingress), &tlcp.Config{RootCAs: roots, ServerName: "localhost",
		CipherSuites: []uint16{tlcp.ECC_SM4_GCM_SM3}}); err == nil {
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
		reply, _ := io.ReadAll(conn)
		conn.Close()
		if bytes.HasPrefix(reply, []byte("HTTP/")) {
			t.Fatalf("a TLCP client without certificate was served: %q", reply)
		}
	}

	// 5. Metrics on each instance's admin endpoint.
	const wx = signing.WechatPayName
	for _, tc := range []struct {
		g     *gw
		suite string
		kx    string // vault operation of the server enc key in the handshake
	}{{a, "ECC_SM4_GCM_SM3", "decrypt"}, {b, "ECDHE_SM4_GCM_SM3", "mqv"}} {
		m := scrapeMetrics(t, tc.g.inst.admin)
		for _, want := range []struct {
			name   string
			labels map[string]string
			min    float64
			max    float64 // 0: no upper bound
		}{
			{"gmgate_tlcp_handshakes_total", map[string]string{"suite": tc.suite, "result": "ok"}, 1, 0},
			{"gmgate_tlcp_handshake_duration_seconds_count", map[string]string{"suite": tc.suite}, 1, 0},
			{"gmgate_verify_results_total", map[string]string{"scheme": wx, "result": "ok"}, 1, 1},
			{"gmgate_verify_results_total", map[string]string{"scheme": wx, "result": string(gateway.CodeReplay)}, 1, 1},
			{"gmgate_verify_replay_rejections_total", map[string]string{"scheme": wx}, 1, 1},
			{"gmgate_channel_requests_total", map[string]string{"bank": "banksim", "result": "ok"}, 1, 1},
			{"gmgate_channel_duration_seconds_count", map[string]string{"bank": "banksim"}, 1, 1},
			{"gmgate_vault_operations_total", map[string]string{"token": "hsm", "key": "platform-sign", "op": "load", "result": "ok"}, 1, 1},
			// reply signature + request to the bank + audit checkpoints
			{"gmgate_vault_operations_total", map[string]string{"token": "hsm", "key": "platform-sign", "op": "sign", "result": "ok"}, 3, 0},
			{"gmgate_vault_operations_total", map[string]string{"token": "hsm", "key": "srv-sign", "op": "sign", "result": "ok"}, 1, 0},
			{"gmgate_vault_operations_total", map[string]string{"token": "hsm", "key": "srv-enc", "op": tc.kx, "result": "ok"}, 1, 0},
			{"gmgate_vault_operations_total", map[string]string{"token": "hsm", "key": "chan-sign", "op": "sign", "result": "ok"}, 1, 0},
			{"gmgate_vault_token_up", map[string]string{"token": "hsm"}, 1, 1},
		} {
			got, ok := m.sum(want.name, want.labels)
			if !ok || got < want.min || (want.max > 0 && got > want.max) {
				t.Errorf("%s: %s%v = %v (present %v), want in [%v, %v]", tc.g.name, want.name, want.labels, got, ok, want.min, want.max)
			}
		}
		if tc.g == a {
			all, _ := m.sum("gmgate_tlcp_handshakes_total", map[string]string{"suite": tc.suite})
			ok, _ := m.sum("gmgate_tlcp_handshakes_total", map[string]string{"suite": tc.suite, "result": "ok"})
			if all-ok < 1 {
				t.Errorf("A: the refused handshake is not counted with a failure result: %v", m.grep("gmgate_tlcp_handshakes_total"))
			}
		}
		t.Logf("%s metrics:\n%s", tc.g.name, strings.Join(m.grep("gmgate_tlcp_handshakes_total", "gmgate_verify_", "gmgate_channel_requests", "gmgate_vault_operations_total"), "\n"))
	}
	if t.Failed() {
		return
	}

	// 6. Each audit log verifies (chain and checkpoints signed by the token's platform key) and
	// holds exactly this instance's decisions.
	for _, g := range []*gw{a, b} {
		g.inst.stop()
		base := filepath.Join(g.inst.dir, "audit", "audit.log")
		out, err := exec.Command(gmgateBin(t), "audit", "verify", "--cert", v.CertFile("platform-sign"), base).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "audit log intact") {
			t.Fatalf("%s: gmgate audit verify: %v\n%s", g.name, err, out)
		}
		got := auditDecisions(t, base)
		t.Logf("%s: %s; decisions %v", g.name, strings.TrimSpace(string(out)), got)
		want := []string{
			"inbound/accept/ok/" + wx + "/" + termSerial,
			"outbound/accept/ok/unionpay-sm2/",
			"inbound/reject/replay/" + wx + "/" + termSerial,
		}
		if g == b {
			want = []string{want[2], want[0], want[1]}
		}
		if len(got) != len(want) {
			t.Fatalf("%s: audit decisions %v, want %v", g.name, got, want)
		}
		for i := range want {
			if strings.HasPrefix(want[i], "outbound/") {
				want[i] += signing.SerialHex(tp.BankSign.Cert.SerialNumber)
			}
			if got[i] != want[i] { // serials in upper-case hex on both sides
				t.Fatalf("%s: audit decision %d is %q, want %q...", g.name, i, got[i], want[i])
			}
		}
	}
}

// auditDecisions reads the decision entries of an audit log as
// "direction/verdict/reason/scheme/cert serial".
func auditDecisions(t *testing.T, base string) []string {
	t.Helper()
	segs, err := audit.Segments(base)
	if err != nil || len(segs) == 0 {
		t.Fatalf("audit segments of %s: %v", base, err)
	}
	var out []string
	for _, s := range segs {
		f, err := os.Open(s)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var e struct {
				Type, Direction, Verdict, Reason, Scheme string
				CertSerial                               string `json:"cert_serial"`
			}
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				f.Close()
				t.Fatalf("audit line %q: %v", sc.Text(), err)
			}
			if e.Type == audit.TypeDecision {
				out = append(out, strings.Join([]string{e.Direction, e.Verdict, e.Reason, e.Scheme, e.CertSerial}, "/"))
			}
		}
		f.Close()
	}
	return out
}

// metricsText is one scrape of a Prometheus text endpoint.
type metricsText []string

var labelPair = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)

// scrapeMetrics reads http://<admin>/metrics.
func scrapeMetrics(t *testing.T, admin string) metricsText {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", resp.StatusCode, b)
	}
	return metricsText(strings.Split(string(b), "\n"))
}

// grep returns the series lines whose names start with one of prefixes.
func (m metricsText) grep(prefixes ...string) []string {
	var out []string
	for _, line := range m {
		for _, p := range prefixes {
			if strings.HasPrefix(line, p) {
				out = append(out, line)
				break
			}
		}
	}
	return out
}

// sum adds the values of every series called name whose labels include labels; ok tells
// whether any series matched.
func (m metricsText) sum(name string, labels map[string]string) (total float64, ok bool) {
	for _, line := range m {
		if line == "" || line[0] == '#' {
			continue
		}
		var series, labelText, value string
		if i := strings.IndexByte(line, '{'); i >= 0 {
			j := strings.LastIndexByte(line, '}')
			if j < i {
				continue
			}
			series, labelText, value = line[:i], line[i+1:j], strings.TrimSpace(line[j+1:])
		} else {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			series, value = f[0], f[1]
		}
		if series != name {
			continue
		}
		got := map[string]string{}
		for _, p := range labelPair.FindAllStringSubmatch(labelText, -1) {
			got[p[1]] = p[2]
		}
		match := true
		for k, v := range labels {
			if got[k] != v {
				match = false
				break
			}
		}
		if !match {
			continue
		}
		if f := strings.Fields(value); len(f) > 0 {
			if x, err := strconv.ParseFloat(f[0], 64); err == nil {
				total += x
				ok = true
			}
		}
	}
	return total, ok
}
