package tls13sm

import (
	"bufio"
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/internal/testenv"
)

// Live interop with Tongsuo 8.5 (an independent TLS 1.3 + RFC 8998 implementation, in C) in
// both directions. The certificates are the SM2 signing certificates Tongsuo's own CLI made
// (../shared/interop/tongsuo/pki), so each side also verifies certificates it did not make.

type livePKI struct {
	caFile                     string
	pool                       *smx509.CertPool
	serverCertFile, serverKey  string
	clientCertFile, clientKey  string
	server, client             *Certificate
	serverLeaf                 *smx509.Certificate
}

func loadPEMCert(t *testing.T, path string) *smx509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := smx509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func loadPEMKey(t *testing.T, path string) *sm2.PrivateKey {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		t.Fatalf("%s: no PEM", path)
	}
	if k, err := smx509.ParsePKCS8PrivateKey(b.Bytes); err == nil {
		if sk, ok := k.(*sm2.PrivateKey); ok {
			return sk
		}
	}
	k, err := smx509.ParseSM2PrivateKey(b.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return k
}

func tongsuoPKI(t *testing.T) *livePKI {
	d := testenv.InteropDir(t, "tongsuo", "pki")
	f := func(n string) string { return filepath.Join(d, n) }
	p := &livePKI{caFile: f("ca.pem"), serverCertFile: f("server_sign_cert.pem"), serverKey: f("server_sign_key.pem"),
		clientCertFile: f("client_sign_cert.pem"), clientKey: f("client_sign_key.pem")}
	p.pool = smx509.NewCertPool()
	p.pool.AddCert(loadPEMCert(t, p.caFile))
	p.serverLeaf = loadPEMCert(t, p.serverCertFile)
	p.server = &Certificate{Certificate: [][]byte{p.serverLeaf.Raw}, PrivateKey: loadPEMKey(t, p.serverKey)}
	p.client = &Certificate{Certificate: [][]byte{loadPEMCert(t, p.clientCertFile).Raw}, PrivateKey: loadPEMKey(t, p.clientKey)}
	return p
}

var liveSuites = []struct {
	id   uint16
	name string
}{
	{TLS_SM4_GCM_SM3, "TLS_SM4_GCM_SM3"},
	{TLS_SM4_CCM_SM3, "TLS_SM4_CCM_SM3"},
}

func liveFreePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// echoServer runs our server with cfg: each connection answers its first line with
// "echo:<line>" and closes; the server-side state of each connection is reported.
type echoServer struct {
	addr   string
	states chan serverResult
}

type serverResult struct {
	st     ConnectionState
	hrr    bool
	err    error
}

func startEchoServer(t *testing.T, cfg *Config) *echoServer {
	t.Helper()
	ln, err := Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	es := &echoServer{addr: ln.Addr().String(), states: make(chan serverResult, 16)}
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				c := nc.(*Conn)
				defer c.Close()
				c.SetDeadline(time.Now().Add(15 * time.Second))
				err := c.Handshake()
				var line string
				if err == nil {
					line, err = bufio.NewReader(c).ReadString('\n')
				}
				res := serverResult{st: c.ConnectionState(), hrr: c.didHRR, err: err}
				if err == nil {
					_, res.err = io.WriteString(c, "echo:"+line)
				}
				select {
				case es.states <- res:
				default:
				}
			}()
		}
	}()
	return es
}

func (es *echoServer) next(t *testing.T) serverResult {
	t.Helper()
	select {
	case r := <-es.states:
		return r
	case <-time.After(20 * time.Second):
		t.Fatal("no server result")
	}
	return serverResult{}
}

// runSClient runs `tongsuo s_client -tls1_3` against addr with stdin "ping\n".
func runSClient(t *testing.T, bin, addr string, extra ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	args := append([]string{"s_client", "-connect", addr, "-tls1_3", "-servername", "localhost",
		"-verify_return_error", "-ign_eof"}, extra...)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdin = strings.NewReader("ping\n")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestTongsuoLiveOurServer: Tongsuo's s_client against our server: both suites, with and
// without a client certificate, HelloRetryRequest (Tongsuo's first key share is P-256),
// resumption with our ticket (-sess_out/-sess_in), KeyUpdate requested by the client.
func TestTongsuoLiveOurServer(t *testing.T) {
	bin := testenv.TongsuoBin(t)
	p := tongsuoPKI(t)
	for _, s := range liveSuites {
		for _, auth := range []ClientAuthType{NoClientCert, RequireAndVerifyClientCert} {
			for _, groups := range []string{"curveSM2", "P-256:curveSM2"} {
				name := fmt.Sprintf("%s/%s/groups=%s", s.name, auth, groups)
				t.Run(name, func(t *testing.T) {
					cfg := &Config{Certificate: p.server, ClientCAs: p.pool, ClientAuth: auth}
					es := startEchoServer(t, cfg)
					args := []string{"-ciphersuites", s.name, "-groups", groups, "-sigalgs", "sm2sig_sm3", "-CAfile", p.caFile}
					if auth != NoClientCert {
						args = append(args, "-cert", p.clientCertFile, "-key", p.clientKey)
					}
					sess := filepath.Join(t.TempDir(), "sess.pem")
					out, err := runSClient(t, bin, es.addr, append(args, "-sess_out", sess)...)
					if err != nil || !strings.Contains(out, "echo:ping") {
						t.Fatalf("s_client: %v\n%s", err, out)
					}
					r := es.next(t)
					if r.err != nil || r.st.CipherSuite != s.id || r.st.DidResume {
						t.Fatalf("server: %+v", r)
					}
					if want := groups != "curveSM2"; r.hrr != want {
						t.Fatalf("HelloRetryRequest sent: %v, want %v", r.hrr, want)
					}
					if auth != NoClientCert && len(r.st.VerifiedChains) == 0 {
						t.Fatal("client certificate not verified")
					}
					if !strings.Contains(out, "New, TLSv1.3, Cipher is "+s.name) {
						t.Fatalf("s_client did not report a new TLS 1.3 session with %s:\n%s", s.name, out)
					}
					// Resumption with the ticket our server issued.
					out, err = runSClient(t, bin, es.addr, append(args, "-sess_in", sess)...)
					if err != nil || !strings.Contains(out, "echo:ping") {
						t.Fatalf("s_client resuming: %v\n%s", err, out)
					}
					r = es.next(t)
					if r.err != nil || !r.st.DidResume {
						t.Fatalf("server did not resume: %+v\n%s", r, out)
					}
					if !strings.Contains(out, "Reused, TLSv1.3, Cipher is "+s.name) {
						t.Fatalf("s_client did not report a resumed session:\n%s", out)
					}
					if auth != NoClientCert && len(r.st.PeerCertificates) == 0 {
						t.Fatal("resumed session lost the client certificate")
					}
				})
			}
		}
	}
}
