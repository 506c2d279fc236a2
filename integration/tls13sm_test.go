package integration

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"

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
