package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gmgate/gmgate/integration/banksim"
	"github.com/gmgate/gmgate/integration/gmproc"
	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/tlcp"
)

// ingressCaddyfile is the 支付前置: TLCP listener, gm_verify (client signature, replay memory
// store, reply signing with the platform key), reverse_proxy to the legacy back end.
const ingressCaddyfile = `{
	admin {ADMIN}
	skip_install_trust
	auto_https off
	gmgate {
		dev_pki {DIR}/pki
{AUDIT}{VAULT}	}
	servers :{PORT} {
		listener_wrappers {
			tlcp {
				client_auth verify_if_given
				cipher_suites ECC_SM4_GCM_SM3
				session_cache 10000 1h
			}
		}
	}
}

http://:{PORT} {
	gm_verify {
		scheme {SCHEME}
		replay {
			window 5m
			store memory
		}
{REPLY}	}
	reverse_proxy {BACKEND}
}
`

// egressCaddyfile is the 渠道前置: gm_channel re-signs with the platform key (unionpay-sm2) and
// speaks TLCP with mutual authentication to the bank, verifying its signed replies.
const egressCaddyfile = `{
	admin {ADMIN}
	skip_install_trust
	auto_https off
	gmgate {
{AUDIT}{VAULT}	}
}

http://127.0.0.1:{PORT} {
	reverse_proxy {BANK} {
		transport gm_channel {
			bank banksim
			scheme unionpay-sm2
			platform_key platform-sign
			bank_cert {DIR}/bank_sign.pem
			bank_root {DIR}/bank_root.pem
			tlcp {
				sign_key platform-tlcp-sign
				enc_key platform-tlcp-enc
				server_name localhost
				cipher_suites ECC_SM4_GCM_SM3
			}
			response_timeout 10s
		}
	}
}
`

// baselineCaddyfile is plain Caddy: TLS 1.3 (Caddy's internal CA, ECDSA P-256) and
// reverse_proxy to the same kind of back end.
const baselineCaddyfile = `{
	admin {ADMIN}
	skip_install_trust
	auto_https disable_redirects
}

https://localhost:{PORT} {
	tls internal
	reverse_proxy {BACKEND}
}
`

// egressFileKeys are the egress's TLCP client keys (file-backed in every mode: they only
// serve handshakes).
const egressFileKeys = `			key platform-tlcp-sign file:{DIR}/platform_tlcp_sign.key {
				certificate {DIR}/platform_tlcp_sign.pem
			}
			key platform-tlcp-enc file:{DIR}/platform_tlcp_enc.key {
				certificate {DIR}/platform_tlcp_enc.pem
			}
`

// egressFileVault is the egress vault with the platform signing key in a file too.
const egressFileVault = `		vault {
			key platform-sign file:{DIR}/platform_sign.key {
				certificate {DIR}/platform_sign.pem
			}
` + egressFileKeys + `		}
`

// auditBlock returns the global audit option for policy ("off": none).
func auditBlock(policy, signingKey string) string {
	if policy == "off" {
		return ""
	}
	b := "\t\taudit {DIR}/audit/audit.log {\n\t\t\tfsync " + policy + "\n"
	if signingKey != "" {
		b += "\t\t\tsigning_key " + signingKey + "\n"
	}
	return b + "\t\t}\n"
}

// gmProc is one running gmgate process of the harness, named for the report.
type gmProc struct {
	*gmproc.Proc
	name  string
	dir   string
	admin string
	out   *gmproc.Buffer
}

func freePort() (int, error) { return gmproc.FreePort() }

// startProc runs `gmgate run` on caddyfile ({ADMIN} and {DIR} substituted) in root/name and
// waits for its admin endpoint.
func startProc(bin, root, name, caddyfile string, env ...string) (*gmProc, error) {
	dir := filepath.Join(root, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	p, err := gmproc.Start(bin, dir, caddyfile, env...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &gmProc{Proc: p, name: name, dir: p.Dir, admin: p.Admin, out: p.Out}, nil
}

func (p *gmProc) pid() string { return strconv.Itoa(p.Cmd.Process.Pid) }

func (p *gmProc) stop() { p.Stop() }

// metrics fetches the Prometheus text of the admin endpoint.
func (p *gmProc) metrics() string { return p.Metrics() }

// parseHandshakes sums gmgate_tlcp_handshake_duration_seconds_count by the resumed label.
func parseHandshakes(prom string) (full, resumed float64) {
	const name = "gmgate_tlcp_handshake_duration_seconds_count{"
	for _, line := range strings.Split(prom, "\n") {
		if !strings.HasPrefix(line, name) {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(strings.TrimSpace(line[i+1:]), 64)
		if err != nil {
			continue
		}
		if strings.Contains(line, `resumed="true"`) {
			resumed += v
		} else {
			full += v
		}
	}
	return full, resumed
}

// waitPort waits until addr accepts TCP connections.
func waitPort(addr string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not listening: %w", addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// countingListener counts accepted connections (the bank's TLCP connections from the egress).
type countingListener struct {
	net.Listener
	n atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// bank is the in-process bank simulator over TLCP with mutual authentication.
type bank struct {
	srv  *banksim.Server
	pki  *banksim.TestPKI
	ln   *countingListener
	addr string
}

func startBank() (*bank, error) {
	tp, err := banksim.NewTestPKI("localhost")
	if err != nil {
		return nil, err
	}
	srv, err := banksim.New(banksim.FromTestPKI(tp, banksim.Profile{Scheme: banksim.UnionPay}))
	if err != nil {
		return nil, err
	}
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	cl := &countingListener{Listener: raw}
	if err := srv.Serve(tlcp.NewListener(cl, tp.ServerTLCPConfig()), "https"); err != nil {
		raw.Close()
		return nil, err
	}
	return &bank{srv: srv, pki: tp, ln: cl, addr: raw.Addr().String()}, nil
}

// writeEgressFiles writes the platform keys and the bank certificates the egress needs.
func writeEgressFiles(dir string, tp *banksim.TestPKI) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	write := func(base string, iss *pki.Issued) error {
		if err := os.WriteFile(filepath.Join(dir, base+".pem"), pki.EncodeCertificatesPEM(iss.Cert), 0o644); err != nil {
			return err
		}
		if iss.Key == nil {
			return nil
		}
		k, err := pki.MarshalPrivateKeyPEM(iss.Key, nil)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, base+".key"), k, 0o600)
	}
	for _, f := range []struct {
		base string
		iss  *pki.Issued
	}{
		{"platform_sign", tp.PlatformSign},
		{"platform_tlcp_sign", tp.PlatformTLCP.Sign},
		{"platform_tlcp_enc", tp.PlatformTLCP.Enc},
		{"bank_sign", &pki.Issued{Cert: tp.BankSign.Cert}},
		{"bank_root", &pki.Issued{Cert: tp.BankRoot.Cert}},
	} {
		if err := write(f.base, f.iss); err != nil {
			return err
		}
	}
	return nil
}

// legacy is the plain-HTTP legacy back end. It knows nothing of GM; with an egress URL it
// asks the bank through the egress gateway for every request (as a payment back end would).
type legacy struct {
	srv    *http.Server
	addr   string
	egress string
	hc     *http.Client
	seq    atomic.Uint64
	// egressLat collects the back end's view of egress+bank round trips while recording.
	mu        sync.Mutex
	recording bool
	egressLat []time.Duration
}

func startLegacy(egressURL string) (*legacy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	l := &legacy{addr: ln.Addr().String(), egress: egressURL,
		hc: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			MaxIdleConns: 1024, MaxIdleConnsPerHost: 1024, IdleConnTimeout: 90 * time.Second}}}
	l.srv = &http.Server{Handler: l, ReadHeaderTimeout: 10 * time.Second}
	go l.srv.Serve(ln)
	return l, nil
}

func (l *legacy) record(on bool) []time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recording = on
	out := l.egressLat
	l.egressLat = nil
	return out
}

func (l *legacy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, "read", http.StatusBadRequest)
		return
	}
	n := l.seq.Add(1)
	bankAnswer := `"-"`
	if l.egress != "" {
		form := url.Values{"orderId": {fmt.Sprintf("GM%018d", n)}, "txnAmt": {"100"}, "merId": {"898000000000001"},
			"txnTime": {time.Now().Format("20060102150405")}, "accNo": {"6216610000000000001"}}
		start := time.Now()
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodPost, l.egress+"/gateway/api/appTransReq.do", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := l.hc.Do(req)
		if err != nil {
			http.Error(w, fmt.Sprintf(`{"code":"egress","message":%q}`, err.Error()), http.StatusBadGateway)
			return
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !bytes.Contains(b, []byte(form.Get("orderId"))) {
			http.Error(w, fmt.Sprintf(`{"code":"bank","message":%q}`, fmt.Sprintf("egress status %d: %.200s", resp.StatusCode, b)), http.StatusBadGateway)
			return
		}
		d := time.Since(start)
		l.mu.Lock()
		if l.recording {
			l.egressLat = append(l.egressLat, d)
		}
		l.mu.Unlock()
		bankAnswer = strconv.Itoa(len(b))
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"result":"SUCCESS","seq":%d,"request_bytes":%d,"bank_reply_bytes":%s}`, n, len(body), bankAnswer)
}

func (l *legacy) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = l.srv.Shutdown(ctx)
}
