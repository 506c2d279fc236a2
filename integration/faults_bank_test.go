package integration

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gmgate/gmgate/integration/banksim"
	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/tlcp"
)

// The bank misbehaves, through the real binary. TestChannelEgressOverTLCP (channel_test.go)
// already covers bad-signature, wrong-cert, tamper-after-sign, unsigned and drop on a plain
// profile; this covers the rest: the wrong key behind the right certificate, a corrupted
// ciphertext under a good signature, a reply later than response_timeout, a TCP reset after the
// request, unsigned and signed 5xx replies, a bank that speaks plain HTTP or random bytes instead
// of TLCP, one whose TLCP certificate chains to an untrusted root, and one that accepts the
// connection and never answers the handshake.

const fltBankSite = `
http://127.0.0.1:{PORT} {
	reverse_proxy {UPSTREAM} {
		transport gm_channel {
			bank {BANK}
			scheme unionpay-sm2
			platform_key platform-sign
			bank_cert {DIR}/bank_sign.pem
			bank_root {DIR}/bank_root.pem
			encrypt fields {
				cipher sm4-gcm
				fields accNo
				data_key channel-data
			}
			tlcp {
				sign_key platform-tlcp-sign
				enc_key platform-tlcp-enc
				server_name localhost
				cipher_suites ECC_SM4_GCM_SM3
				handshake_timeout 1s
			}
			response_timeout 1s
		}
	}
}
`

const fltBankGlobal = `{
	admin {ADMIN}
	gmgate {
		vault {
			key platform-sign file:{DIR}/platform_sign.key {
				certificate {DIR}/platform_sign.pem
			}
			key platform-tlcp-sign file:{DIR}/platform_tlcp_sign.key {
				certificate {DIR}/platform_tlcp_sign.pem
			}
			key platform-tlcp-enc file:{DIR}/platform_tlcp_enc.key {
				certificate {DIR}/platform_tlcp_enc.pem
			}
			key channel-data file:{DIR}/channel_data.sm4 {
				type sm4
			}
		}
	}
}
`

// Marker values the bank puts in its replies: none may reach the back end unless verified.
const (
	fltOrderID    = "GMFAULT20261125"
	fltBankMarker = "BANK-UNVERIFIED-CONTENT"
)

// fltServeTCP accepts connections on a fresh loopback port and hands each to h.
func fltServeTCP(t *testing.T, h func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go h(c)
		}
	}()
	return ln.Addr().String()
}

// fltReset closes c with a TCP RST (SO_LINGER 0), looking through a TLCP connection.
func fltReset(c net.Conn) {
	if nc, ok := c.(interface{ NetConn() net.Conn }); ok {
		c = nc.NetConn()
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

func TestFaultBankMisbehaves(t *testing.T) {
	t.Parallel()
	tp, err := banksim.NewTestPKI("localhost")
	if err != nil {
		t.Fatal(err)
	}
	dataKey := bytes.Repeat([]byte{0x5a}, 16)
	opts := banksim.FromTestPKI(tp, banksim.Profile{Scheme: banksim.UnionPay, Target: "fields", Cipher: "sm4-gcm",
		Fields: []string{"accNo"}, SM4Key: dataKey})
	// The bank answers a verified request for order FAIL500 with a signed 500.
	opts.Handler = func(r *banksim.Received) (int, string, []byte) {
		out := map[string]string{"respCode": "00", "respMsg": "success", "orderId": r.Params["orderId"], "accNo": r.Params["accNo"]}
		status := http.StatusOK
		if r.Params["orderId"] == "FAIL500" {
			status, out["respCode"], out["respMsg"] = http.StatusInternalServerError, "96", "system error"
		}
		b, _ := json.Marshal(out)
		return status, "application/json", b
	}
	bank, err := banksim.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	bank.SetScheme("https")
	// The bank's own TLCP server, with a front that can reset the connection or answer an
	// unsigned 503 (a load balancer's error page) instead of the bank.
	bankLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bankSrv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Header.Get("X-Fault") {
		case "reset":
			io.Copy(io.Discard, r.Body)
			if c, _, err := w.(http.Hijacker).Hijack(); err == nil {
				fltReset(c)
			}
			return
		case "unsigned-503":
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "<html>503 %s</html>", fltBankMarker)
			return
		}
		bank.Handler().ServeHTTP(w, r)
	})}
	go bankSrv.Serve(tlcp.NewListener(bankLn, tp.ServerTLCPConfig()))
	t.Cleanup(func() { bankSrv.Close() })

	// A "bank" with a TLCP certificate from a root the gateway does not trust.
	rogue, err := banksim.NewTestPKI("localhost")
	if err != nil {
		t.Fatal(err)
	}
	rogueCfg := rogue.ServerTLCPConfig()
	rogueCfg.ClientAuth = tlcp.NoClientCert
	rogueLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rogueSrv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, fltBankMarker)
	})}
	go rogueSrv.Serve(tlcp.NewListener(rogueLn, rogueCfg))
	t.Cleanup(func() { rogueSrv.Close() })

	// Peers that do not speak TLCP at all.
	readSome := func(c net.Conn) {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		c.Read(make([]byte, 512))
	}
	plainHTTP := fltServeTCP(t, func(c net.Conn) {
		defer c.Close()
		readSome(c)
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{\"m\":%q}", len(fltBankMarker)+8, fltBankMarker)
	})
	randomBytes := fltServeTCP(t, func(c net.Conn) {
		defer c.Close()
		readSome(c)
		junk := []byte(fltBankMarker)
		for i := 0; len(junk) < 4096; i++ {
			junk = append(junk, byte(i*131+7))
		}
		c.Write(junk)
	})
	silent := fltServeTCP(t, func(c net.Conn) {
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		io.Copy(io.Discard, c)
	})
	resetAtHello := fltServeTCP(t, func(c net.Conn) { readSome(c); fltReset(c) })

	dir := t.TempDir()
	writeIssuedFiles(t, dir, "platform_sign", tp.PlatformSign)
	writeIssuedFiles(t, dir, "platform_tlcp_sign", tp.PlatformTLCP.Sign)
	writeIssuedFiles(t, dir, "platform_tlcp_enc", tp.PlatformTLCP.Enc)
	writeIssuedFiles(t, dir, "bank_sign", &pki.Issued{Cert: tp.BankSign.Cert})
	writeIssuedFiles(t, dir, "bank_root", &pki.Issued{Cert: tp.BankRoot.Cert})
	if err := os.WriteFile(filepath.Join(dir, "channel_data.sm4"), []byte(hex.EncodeToString(dataKey)), 0o600); err != nil {
		t.Fatal(err)
	}
	upstreams := []struct{ name, addr string }{
		{"banksim", bankLn.Addr().String()},
		{"rogue", rogueLn.Addr().String()},
		{"plainhttp", plainHTTP},
		{"random", randomBytes},
		{"silent", silent},
		{"resethello", resetAtHello},
	}
	ports := map[string]int{}
	cf := fltBankGlobal
	for _, u := range upstreams {
		ports[u.name] = freePort(t)
		cf += strings.NewReplacer("{PORT}", fmt.Sprint(ports[u.name]), "{UPSTREAM}", u.addr, "{BANK}", u.name).Replace(fltBankSite)
	}
	inst := startGmgate(t, strings.ReplaceAll(cf, "{DIR}", dir))

	post := func(upstream, order string, hdr map[string]string) (*http.Response, []byte) {
		t.Helper()
		form := url.Values{"orderId": {order}, "txnAmt": {"100"}, "merId": {"898000000000001"},
			"txnTime": {"20261125180000"}, "accNo": {"6216610000000000001"}}
		req, _ := http.NewRequest("POST", fmt.Sprintf("http://127.0.0.1:%d/gateway/api/appTransReq.do", ports[upstream]), strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := (&http.Client{Timeout: 15 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, body
	}

	// A well-behaved exchange first: the bank decrypts accNo, the reply is verified and decrypted.
	resp, body := post("banksim", fltOrderID, nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), fltOrderID) || !strings.Contains(string(body), "6216610000000000001") {
		t.Fatalf("good exchange: %d %s\n%s", resp.StatusCode, body, inst.out)
	}
	if got := bank.Received(); len(got) != 1 || !got[0].Verified || got[0].Params["accNo"] != "6216610000000000001" ||
		strings.Contains(string(got[0].Wire), "6216610000000000001") {
		t.Fatalf("bank did not verify and decrypt the request, or accNo travelled in the clear: %+v", got)
	}

	// A verified 500 from the bank is the bank's answer: passed on as it is, verified.
	resp, body = post("banksim", "FAIL500", nil)
	if resp.StatusCode != http.StatusInternalServerError || resp.Header.Get("X-Gmgate-Channel-Error") != "" ||
		!strings.Contains(string(body), `"respCode":"96"`) {
		t.Fatalf("signed 500: %d %v %s", resp.StatusCode, resp.Header, body)
	}

	for _, tc := range []struct {
		name     string
		upstream string
		hdr      map[string]string
		code     string
	}{
		{"wrong key behind the bank certificate", "banksim", map[string]string{banksim.HeaderMisbehave: string(banksim.WrongKey)}, "bank_signature_invalid"},
		{"ciphertext corrupted then signed", "banksim", map[string]string{banksim.HeaderMisbehave: string(banksim.TamperCiphertext)}, "bank_decrypt_failed"},
		{"reply later than response_timeout", "banksim", map[string]string{banksim.HeaderMisbehave: string(banksim.Slow), banksim.HeaderDelay: "3s"}, "bank_timeout"},
		{"connection reset after the request", "banksim", map[string]string{"X-Fault": "reset"}, "bank_unreachable"},
		{"unsigned 503 error page", "banksim", map[string]string{"X-Fault": "unsigned-503"}, "bank_signature_missing"},
		{"TLCP certificate from an untrusted root", "rogue", nil, "bank_unreachable"},
		{"plain HTTP instead of TLCP", "plainhttp", nil, "bank_unreachable"},
		{"random bytes instead of TLCP", "random", nil, "bank_unreachable"},
		{"connection reset at the ClientHello", "resethello", nil, "bank_unreachable"},
		{"handshake never answered", "silent", nil, "bank_timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			metric := func() float64 {
				return fltMetric(t, inst.admin, "gmgate_channel_requests_total", "bank", tc.upstream, "result", tc.code)
			}
			before := metric()
			resp, body := post(tc.upstream, fltOrderID, tc.hdr)
			if resp.StatusCode != http.StatusBadGateway {
				t.Fatalf("status %d, want 502: %s", resp.StatusCode, body)
			}
			var e map[string]string
			if err := json.Unmarshal(body, &e); err != nil || len(e) != 2 || e["code"] != tc.code || e["message"] == "" {
				t.Fatalf("body %s, want exactly {code:%s, message}", body, tc.code)
			}
			if h := resp.Header.Get("X-Gmgate-Channel-Error"); h != tc.code {
				t.Fatalf("X-Gmgate-Channel-Error %q, want %q", h, tc.code)
			}
			for _, leak := range []string{fltOrderID, fltBankMarker, "6216610000000000001", "respCode"} {
				if strings.Contains(string(body), leak) {
					t.Fatalf("unverified bank content %q reached the back end: %s", leak, body)
				}
			}
			if got := metric(); got != before+1 {
				t.Fatalf("gmgate_channel_requests_total{bank=%s,result=%s} %v -> %v", tc.upstream, tc.code, before, got)
			}
		})
	}

	// The gateway still serves the good bank afterwards.
	resp, body = post("banksim", fltOrderID, nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), fltOrderID) {
		t.Fatalf("after the faults: %d %s", resp.StatusCode, body)
	}
}
