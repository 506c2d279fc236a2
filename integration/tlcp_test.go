package integration

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/tlcp"
)

const tlcpCaddyfile = `{
	admin {ADMIN}
	skip_install_trust
	auto_https disable_redirects
	gmgate {
		dev_pki {DIR}/pki
	}
	servers :{TLCP} {
		listener_wrappers {
			tlcp {
				client_auth verify_if_given
			}
		}
	}
	servers :{DUAL} {
		listener_wrappers {
			tlcp {
				dual_stack
			}
			tls
			tlcp_join
		}
	}
}

http://:{TLCP} {
	tlcp_vars
	respond "over tlcp {tlcp.cipher_suite} {tlcp.version} {http.request.scheme} client={tlcp.client.subject}"
}

https://localhost:{DUAL} {
	tls internal
	respond "dual {http.request.tls.version} {http.request.scheme}"
}
`

// tlcpClientConfig trusts the development root and presents the development client pair.
func tlcpClientConfig(t *testing.T, pkiDir string, suite uint16) *tlcp.Config {
	t.Helper()
	roots, err := pki.LoadCertificatesFile(filepath.Join(pkiDir, "root.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := smx509.NewCertPool()
	for _, c := range roots {
		pool.AddCert(c)
	}
	load := func(base string) tlcp.Certificate {
		certs, err := pki.LoadCertificatesFile(filepath.Join(pkiDir, base+".pem"))
		if err != nil {
			t.Fatal(err)
		}
		key, err := pki.LoadPrivateKeyFile(filepath.Join(pkiDir, base+".key"), nil)
		if err != nil {
			t.Fatal(err)
		}
		return tlcp.Certificate{Certificate: [][]byte{certs[0].Raw}, PrivateKey: key, Leaf: certs[0]}
	}
	return &tlcp.Config{
		RootCAs:         pool,
		ServerName:      "localhost",
		CipherSuites:    []uint16{suite},
		SignCertificate: load(pki.DevClientSignBase),
		EncCertificate:  load(pki.DevClientEncBase),
	}
}

// getOverTLCP sends one HTTP/1.1 GET over a fresh TLCP connection.
func getOverTLCP(t *testing.T, addr string, cfg *tlcp.Config) (string, tlcp.ConnectionState) {
	t.Helper()
	conn, err := tlcp.Dial("tcp", addr, cfg)
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

func TestTLCPListener(t *testing.T) {
	tlcpPort, dualPort := freePort(t), freePort(t)
	cf := strings.NewReplacer("{TLCP}", fmt.Sprint(tlcpPort), "{DUAL}", fmt.Sprint(dualPort)).Replace(tlcpCaddyfile)
	inst := startGmgate(t, cf)
	pkiDir := filepath.Join(inst.dir, "pki")

	for _, suite := range tlcp.CipherSuites() {
		for _, port := range []int{tlcpPort, dualPort} {
			name := fmt.Sprintf("%s/port%d", tlcp.CipherSuiteName(suite), port)
			t.Run(name, func(t *testing.T) {
				body, st := getOverTLCP(t, fmt.Sprintf("127.0.0.1:%d", port), tlcpClientConfig(t, pkiDir, suite))
				if st.CipherSuite != suite {
					t.Fatalf("negotiated %s, want %s", tlcp.CipherSuiteName(st.CipherSuite), tlcp.CipherSuiteName(suite))
				}
				// r.TLS is set for TLCP requests on both kinds of port: scheme https.
				want := "over tlcp " + tlcp.CipherSuiteName(suite) + " 0x0101 https client=CN="
				if port == dualPort {
					want = "dual 0x0101 https"
				}
				if !strings.HasPrefix(body, want) {
					t.Fatalf("body %q, want prefix %q", body, want)
				}
			})
		}
	}

	t.Run("TLS on the dual-stack port", func(t *testing.T) {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"}}}
		// Caddy obtains the `tls internal` certificate in the background after start: until
		// then TLS handshakes fail with internal_error.
		var resp *http.Response
		var err error
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			resp, err = c.Get(fmt.Sprintf("https://localhost:%d/", dualPort))
			if err == nil || !strings.Contains(err.Error(), "internal error") || time.Now().After(deadline) {
				break
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(string(body), "dual") || resp.TLS == nil {
			t.Fatalf("status %d body %q", resp.StatusCode, body)
		}
	})

	t.Run("garbage on the TLCP port leaves it serving", func(t *testing.T) {
		for _, junk := range []string{"GET / HTTP/1.1\r\n\r\n", "\x16\x01\x01\xff\xff", "\x16\x03\x01\x00\x05hello", strings.Repeat("\x00", 4096)} {
			c, err := netDial(fmt.Sprintf("127.0.0.1:%d", tlcpPort))
			if err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			c.Write([]byte(junk))
			io.Copy(io.Discard, c)
			c.Close()
		}
		body, _ := getOverTLCP(t, fmt.Sprintf("127.0.0.1:%d", tlcpPort), tlcpClientConfig(t, pkiDir, tlcp.ECC_SM4_GCM_SM3))
		if !strings.HasPrefix(body, "over tlcp") {
			t.Fatalf("body %q", body)
		}
	})
}
