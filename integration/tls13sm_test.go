package integration

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/integration/banksim"
	"github.com/gmgate/gmgate/internal/testenv"
	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/tlcp"
	"github.com/gmgate/gmgate/tls13sm"
)

// One port, three protocols: TLCP, TLS 1.3 with the RFC 8998 SM suites, and ordinary TLS.
const tls13smCaddyfile = `{
	admin {ADMIN}
	skip_install_trust
	auto_https disable_redirects
	gmgate {
		dev_pki {DIR}/pki
	}
	servers :{PORT} {
		listener_wrappers {
			tlcp {
				dual_stack
			}
			tls13sm {
				client_auth verify_if_given
			}
			tls
			tlcp_join
		}
	}
}

https://localhost:{PORT} {
	tls internal
	respond "served {http.request.tls.version} {http.request.tls.cipher_suite} {http.request.scheme}"
}
`

func tls13smClientConfig(t *testing.T, pkiDir string, suite uint16, withCert bool) *tls13sm.Config {
	t.Helper()
	roots, err := pki.LoadCertificatesFile(filepath.Join(pkiDir, "root.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := smx509.NewCertPool()
	for _, c := range roots {
		pool.AddCert(c)
	}
	cfg := &tls13sm.Config{RootCAs: pool, ServerName: "localhost", CipherSuites: []uint16{suite},
		ClientSessionCache: tls13sm.NewLRUClientSessionCache(4)}
	if withCert {
		certs, err := pki.LoadCertificatesFile(filepath.Join(pkiDir, pki.DevClientSignBase+".pem"))
		if err != nil {
			t.Fatal(err)
		}
		key, err := pki.LoadPrivateKeyFile(filepath.Join(pkiDir, pki.DevClientSignBase+".key"), nil)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificate = &tls13sm.Certificate{Certificate: [][]byte{certs[0].Raw}, PrivateKey: key}
	}
	return cfg
}

func getOverTLS13SM(t *testing.T, addr string, cfg *tls13sm.Config) (string, tls13sm.ConnectionState) {
	t.Helper()
	conn, err := tls13sm.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading response: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	return string(body), conn.ConnectionState()
}

// TestTLS13SMOnePort: the real binary serves TLCP, RFC 8998 (both suites, with a client
// certificate, resumed) and ordinary TLS 1.3 on one port; Tongsuo's s_client gets RFC 8998.
func TestTLS13SMOnePort(t *testing.T) {
	port := freePort(t)
	inst := startGmgate(t, strings.ReplaceAll(tls13smCaddyfile, "{PORT}", fmt.Sprint(port)))
	pkiDir := filepath.Join(inst.dir, "pki")
	addr := fmt.Sprintf("127.0.0.1:%d", port)

	for _, suite := range []uint16{tls13sm.TLS_SM4_GCM_SM3, tls13sm.TLS_SM4_CCM_SM3} {
		t.Run("rfc8998/"+tls13sm.CipherSuiteName(suite), func(t *testing.T) {
			cfg := tls13smClientConfig(t, pkiDir, suite, true)
			for i, resumed := range []bool{false, true} {
				body, st := getOverTLS13SM(t, addr, cfg)
				want := fmt.Sprintf("served tls1.3 0x%04X https", suite)
				if body != want || st.CipherSuite != suite || st.DidResume != resumed {
					t.Fatalf("connection %d: body %q (want %q), suite %#x, resumed %v", i, body, want, st.CipherSuite, st.DidResume)
				}
			}
		})
	}
	t.Run("tlcp", func(t *testing.T) {
		body, _ := getOverTLCP(t, addr, tlcpClientConfig(t, pkiDir, tlcp.ECC_SM4_GCM_SM3))
		if !strings.HasPrefix(body, "served 0x0101") {
			t.Fatalf("body %q", body)
		}
	})
	t.Run("ordinary TLS", func(t *testing.T) {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"}}}
		var resp *http.Response
		var err error
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			resp, err = c.Get(fmt.Sprintf("https://localhost:%d/", port))
			if err == nil || !strings.Contains(err.Error(), "internal error") || time.Now().After(deadline) {
				break
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(string(body), "served tls1.3 TLS_") {
			t.Fatalf("status %d body %q", resp.StatusCode, body)
		}
	})
	t.Run("tongsuo s_client", func(t *testing.T) {
		bin := testenv.TongsuoBin(t)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, "s_client", "-connect", addr, "-tls1_3", "-ciphersuites", "TLS_SM4_GCM_SM3",
			"-groups", "curveSM2", "-sigalgs", "sm2sig_sm3", "-servername", "localhost", "-CAfile", filepath.Join(pkiDir, "root.pem"),
			"-verify_return_error", "-ign_eof")
		cmd.Stdin = strings.NewReader("GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "served tls1.3 0x00C6 https") {
			t.Fatalf("s_client: %v\n%s", err, out)
		}
	})
}

const channelTLS13SMCaddyfile = `{
	admin {ADMIN}
	gmgate {
		vault {
			key platform-sign file:{DIR}/platform_sign.key {
				certificate {DIR}/platform_sign.pem
			}
			key platform-tls-sign file:{DIR}/platform_tlcp_sign.key {
				certificate {DIR}/platform_tlcp_sign.pem
			}
		}
	}
}

http://127.0.0.1:{EGRESS} {
	reverse_proxy {BANK} {
		transport gm_channel {
			bank banksim
			scheme unionpay-sm2
			platform_key platform-sign
			bank_cert {DIR}/bank_sign.pem
			bank_root {DIR}/bank_root.pem
			tls13sm {
				sign_key platform-tls-sign
				server_name localhost
				cipher_suites TLS_SM4_CCM_SM3
			}
			response_timeout 5s
		}
	}
}
`

// TestChannelEgressOverTLS13SM: gm_channel reaches a bank that speaks RFC 8998 (the bank
// simulator behind our tls13sm server, mutual authentication against the platform root): the
// request is signed, verified by the bank, and the bank's signed reply verified.
func TestChannelEgressOverTLS13SM(t *testing.T) {
	tp, err := banksim.NewTestPKI("localhost")
	if err != nil {
		t.Fatal(err)
	}
	bank, err := banksim.New(banksim.FromTestPKI(tp, banksim.Profile{Scheme: banksim.UnionPay}))
	if err != nil {
		t.Fatal(err)
	}
	platformPool := smx509.NewCertPool()
	platformPool.AddCert(tp.PlatformRoot.Cert)
	var suite atomicSuite
	scfg := &tls13sm.Config{
		Certificate: &tls13sm.Certificate{Certificate: [][]byte{tp.BankServer.Sign.Cert.Raw, tp.BankRoot.Cert.Raw}, PrivateKey: tp.BankServer.Sign.Key},
		ClientCAs:   platformPool, ClientAuth: tls13sm.RequireAndVerifyClientCert,
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := bank.Serve(&suiteListener{Listener: tls13sm.NewListener(ln, scfg), suite: &suite}, "https"); err != nil {
		t.Fatal(err)
	}
	defer bank.Close()

	dir := t.TempDir()
	writeIssuedFiles(t, dir, "platform_sign", tp.PlatformSign)
	writeIssuedFiles(t, dir, "platform_tlcp_sign", tp.PlatformTLCP.Sign)
	writeIssuedFiles(t, dir, "bank_sign", &pki.Issued{Cert: tp.BankSign.Cert})
	writeIssuedFiles(t, dir, "bank_root", &pki.Issued{Cert: tp.BankRoot.Cert})
	egress := freePort(t)
	cf := strings.NewReplacer("{EGRESS}", fmt.Sprint(egress), "{BANK}", ln.Addr().String(), "{DIR}", dir).Replace(channelTLS13SMCaddyfile)
	inst := startGmgate(t, cf)

	form := url.Values{"orderId": {"GM202612040001"}, "txnAmt": {"100"}, "merId": {"898000000000001"},
		"txnTime": {"20261204060000"}, "accNo": {"6216610000000000001"}}
	resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/gateway/api/appTransReq.do", egress),
		"application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "GM202612040001") {
		t.Fatalf("status %d: %s\n%s", resp.StatusCode, body, inst.out)
	}
	if got := bank.Received(); len(got) != 1 || !got[0].Verified {
		t.Fatalf("bank did not verify the request: %+v", got)
	}
	if s := suite.load(); s != tls13sm.TLS_SM4_CCM_SM3 {
		t.Fatalf("bank link negotiated %#x, want TLS_SM4_CCM_SM3", s)
	}
}

// suiteListener records the suite of the connections it accepted (after their handshake).
type suiteListener struct {
	net.Listener
	suite *atomicSuite
}

func (l *suiteListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &suiteConn{Conn: c.(*tls13sm.Conn), suite: l.suite}, nil
}

type suiteConn struct {
	*tls13sm.Conn
	suite *atomicSuite
}

func (c *suiteConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if st := c.Conn.ConnectionState(); st.HandshakeComplete {
		c.suite.store(st.CipherSuite)
	}
	return n, err
}

type atomicSuite struct{ v atomic.Uint32 }

func (a *atomicSuite) store(s uint16) { a.v.Store(uint32(s)) }
func (a *atomicSuite) load() uint16   { return uint16(a.v.Load()) }
