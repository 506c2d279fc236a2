package tls13sm

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"
	"github.com/gmgate/gmgate/internal/testenv"
	"github.com/gmgate/gmgate/internal/testpki"
)

// Live interop with Tongsuo 8.5 (an independent TLS 1.3 + RFC 8998 implementation, in C) in
// both directions. The certificates are the SM2 signing certificates Tongsuo's own CLI made
// (../shared/interop/tongsuo/pki), so each side also verifies certificates it did not make.

type livePKI struct {
	caFile                    string
	pool                      *smx509.CertPool
	serverCertFile, serverKey string
	clientCertFile, clientKey string
	server, client            *Certificate
	serverLeaf                *smx509.Certificate
}

func tongsuoPKI(t *testing.T) *livePKI {
	d := testenv.InteropDir(t, "tongsuo", "pki")
	f := func(n string) string { return filepath.Join(d, n) }
	p := &livePKI{caFile: f("ca.pem"), serverCertFile: f("server_sign_cert.pem"), serverKey: f("server_sign_key.pem"),
		clientCertFile: f("client_sign_cert.pem"), clientKey: f("client_sign_key.pem")}
	p.pool = smx509.NewCertPool()
	p.pool.AddCert(testpki.LoadCert(t, p.caFile))
	p.serverLeaf = testpki.LoadCert(t, p.serverCertFile)
	p.server = &Certificate{Certificate: [][]byte{p.serverLeaf.Raw}, PrivateKey: testpki.LoadKey(t, p.serverKey)}
	p.client = &Certificate{Certificate: [][]byte{testpki.LoadCert(t, p.clientCertFile).Raw}, PrivateKey: testpki.LoadKey(t, p.clientKey)}
	return p
}

var liveSuites = []struct {
	id   uint16
	name string
}{
	{TLS_SM4_GCM_SM3, "TLS_SM4_GCM_SM3"},
	{TLS_SM4_CCM_SM3, "TLS_SM4_CCM_SM3"},
}

// echoServer runs our server with cfg: each connection answers its first line with
// "echo:<line>" and closes; the server-side state of each connection is reported.
type echoServer struct {
	addr   string
	states chan serverResult
}

type serverResult struct {
	st  ConnectionState
	hrr bool
	err error
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
	return testenv.TongsuoClient(t, bin, addr, append([]string{"-tls1_3", "-servername", "localhost",
		"-verify_return_error", "-ign_eof"}, extra...)...)
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

// startSServer runs `tongsuo s_server -tls1_3 -www` with the RFC 8998 profile and waits until
// it accepts.
func startSServer(t *testing.T, bin string, p *livePKI, extra ...string) string {
	t.Helper()
	return testenv.TongsuoServer(t, bin, append([]string{"-tls1_3",
		"-ciphersuites", "TLS_SM4_GCM_SM3:TLS_SM4_CCM_SM3", "-groups", "curveSM2", "-sigalgs", "sm2sig_sm3",
		"-cert", p.serverCertFile, "-key", p.serverKey, "-CAfile", p.caFile, "-www", "-quiet"}, extra...)...)
}

// getRoot sends GET / over c and returns the whole response (s_server -www answers with
// an HTML page describing the session, then closes).
func getRoot(c net.Conn) (string, error) {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.0\r\n\r\n"); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	return string(b), err
}

// TestTongsuoLiveOurClient: our client against Tongsuo's s_server: both suites, with and
// without client authentication, resumption with Tongsuo's ticket, a KeyUpdate we request
// (Tongsuo must answer with its own), and a HelloRetryRequest with a cookie (-stateless).
func TestTongsuoLiveOurClient(t *testing.T) {
	bin := testenv.TongsuoBin(t)
	p := tongsuoPKI(t)
	for _, s := range liveSuites {
		for _, withCert := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/clientcert=%v", s.name, withCert), func(t *testing.T) {
				var extra []string
				if withCert {
					extra = append(extra, "-Verify", "1")
				}
				addr := startSServer(t, bin, p, extra...)
				cfg := &Config{RootCAs: p.pool, ServerName: "localhost", CipherSuites: []uint16{s.id},
					ClientSessionCache: NewLRUClientSessionCache(4)}
				if withCert {
					cfg.Certificate = p.client
				}
				for i, wantResume := range []bool{false, true, true} {
					c, err := Dial("tcp", addr, cfg)
					if err != nil {
						t.Fatalf("connection %d: %v", i, err)
					}
					st := c.ConnectionState()
					if i == 2 {
						// Ask Tongsuo to update its keys too; the response arrives under its new keys.
						if err := c.updateKeys(true); err != nil {
							t.Fatalf("KeyUpdate: %v", err)
						}
					}
					page, err := getRoot(c)
					c.Close()
					if err != nil || !strings.HasPrefix(page, "HTTP/1.0 200") {
						t.Fatalf("connection %d: %v\n%s", i, err, page)
					}
					if st.CipherSuite != s.id || st.DidResume != wantResume {
						t.Fatalf("connection %d: suite %#x resumed %v, want %#x %v", i, st.CipherSuite, st.DidResume, s.id, wantResume)
					}
					if !strings.Contains(page, "Cipher is "+s.name) {
						t.Fatalf("connection %d: s_server reports another cipher:\n%s", i, page)
					}
					if wantResume && !strings.Contains(page, "Reused, TLSv1.3") {
						t.Fatalf("connection %d: s_server does not report a resumed session:\n%s", i, page)
					}
					if withCert && !strings.Contains(page, "peer-client") {
						t.Fatalf("connection %d: s_server did not see our client certificate:\n%s", i, page)
					}
					if len(st.VerifiedChains) == 0 {
						t.Fatalf("connection %d: server chain not verified", i)
					}
				}
			})
		}
	}
	t.Run("HelloRetryRequest with cookie", func(t *testing.T) {
		// -stateless makes s_server answer every first ClientHello with a cookie HRR; it
		// works in its echo mode (not -www), where what we send is printed on its stdout.
		port := testenv.FreePort(t)
		cmd := exec.Command(bin, "s_server", "-accept", fmt.Sprint(port), "-tls1_3", "-stateless",
			"-ciphersuites", "TLS_SM4_GCM_SM3", "-groups", "curveSM2", "-sigalgs", "sm2sig_sm3",
			"-cert", p.serverCertFile, "-key", p.serverKey, "-quiet")
		var out testenv.SyncBuffer
		cmd.Stdout, cmd.Stderr = &out, &out
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { stdin.Close(); _ = cmd.Process.Kill(); _ = cmd.Wait() })
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		var c *Conn
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if c, err = Dial("tcp", addr, &Config{RootCAs: p.pool, ServerName: "localhost"}); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%v\n%s", err, out.String())
			}
		}
		defer c.Close()
		if !c.didHRR {
			t.Fatal("no HelloRetryRequest seen")
		}
		if _, err := io.WriteString(c, "payment-ping-after-hrr\n"); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(10 * time.Second); !strings.Contains(out.String(), "payment-ping-after-hrr"); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("s_server did not receive our data:\n%s", out.String())
			}
		}
	})
}

// TestTongsuoLiveRefusals: what the strict profile refuses, against the real peer. Our server
// refuses s_client offers outside RFC 8998 with handshake_failure; a Tongsuo s_server holding
// only an ECDSA P-256 certificate refuses our client (which offers sm2sig_sm3 only); a server
// chain we do not trust is refused with unknown_ca.
func TestTongsuoLiveRefusals(t *testing.T) {
	bin := testenv.TongsuoBin(t)
	p := tongsuoPKI(t)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"ECDSA signature scheme only", []string{"-ciphersuites", "TLS_SM4_GCM_SM3", "-groups", "curveSM2", "-sigalgs", "ecdsa_secp256r1_sha256"}},
		{"AES suite only", []string{"-ciphersuites", "TLS_AES_128_GCM_SHA256", "-groups", "curveSM2", "-sigalgs", "sm2sig_sm3"}},
		{"P-256 group only", []string{"-ciphersuites", "TLS_SM4_GCM_SM3", "-groups", "P-256", "-sigalgs", "sm2sig_sm3"}},
	} {
		t.Run("our server/"+tc.name, func(t *testing.T) {
			es := startEchoServer(t, &Config{Certificate: p.server})
			out, err := runSClient(t, bin, es.addr, append(tc.args, "-CAfile", p.caFile)...)
			if err == nil || strings.Contains(out, "echo:ping") {
				t.Fatalf("s_client succeeded:\n%s", out)
			}
			r := es.next(t)
			if a, ok := alertOf(r.err); !ok || a != AlertHandshakeFailure {
				t.Fatalf("server: %v, want handshake_failure", r.err)
			}
			if !strings.Contains(out, "alert handshake failure") {
				t.Fatalf("s_client did not report our handshake_failure alert:\n%s", out)
			}
		})
	}
	t.Run("our client/ECDSA certificate with the SM suite", func(t *testing.T) {
		dir := t.TempDir()
		key, certFile := filepath.Join(dir, "ec.key"), filepath.Join(dir, "ec.crt")
		for _, args := range [][]string{
			{"genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key},
			{"req", "-new", "-x509", "-sha256", "-key", key, "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
				"-addext", "keyUsage=critical,digitalSignature", "-days", "2", "-out", certFile},
		} {
			if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
				t.Fatalf("%v: %v\n%s", args, err, out)
			}
		}
		addr := testenv.TongsuoServer(t, bin, "-tls1_3", "-ciphersuites", "TLS_SM4_GCM_SM3",
			"-groups", "curveSM2", "-cert", certFile, "-key", key, "-www", "-quiet")
		var err error
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			_, err = Dial("tcp", addr, &Config{RootCAs: p.pool, ServerName: "localhost", InsecureSkipVerify: true})
			var ne *net.OpError
			if !errors.As(err, &ne) || time.Now().After(deadline) {
				break
			}
		}
		// Measured: Tongsuo 8.5 does not serve an ECDSA certificate to a client that offers only
		// sm2sig_sm3; it ends the handshake with handshake_failure. (Our client's refusal of such
		// a certificate, were a server to send it, is TestClientRefusesNonSM2Certificates.)
		var ae *AlertError
		if !errors.As(err, &ae) || !ae.Remote || ae.Alert != AlertHandshakeFailure {
			t.Fatalf("client: %v, want Tongsuo's handshake_failure", err)
		}
	})
	t.Run("our client/untrusted server chain", func(t *testing.T) {
		addr := startSServer(t, bin, p)
		_, err := Dial("tcp", addr, &Config{RootCAs: getPKI(t).pool, ServerName: "localhost"})
		if a, ok := alertOf(err); !ok || a != AlertUnknownCA {
			t.Fatalf("client: %v, want unknown_ca", err)
		}
	})
}
