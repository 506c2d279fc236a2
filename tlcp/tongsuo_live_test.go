package tlcp

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
	"github.com/gmgate/gmgate/internal/testenv"
	"github.com/gmgate/gmgate/internal/testpki"
	"github.com/gmgate/gmgate/pki"
)

// Live interop with Tongsuo 8.5 (an independent TLCP implementation, in C) in both directions:
// our client against its s_server, our server against its s_client, all four suites, client
// authentication, session resumption, and the certificates it must refuse. The certificates come
// from two PKIs: the one Tongsuo's own CLI made (../shared/interop/tongsuo/pki) and one made
// here with our pki package, so that each side verifies the other's certificates.

// livePair is a sign/enc pair as files (for Tongsuo) and as a tlcp configuration (for us).
type livePair struct {
	signCert, signKey, encCert, encKey string
	sign, enc                          *smx509.Certificate
	signPriv, encPriv                  *sm2.PrivateKey
}

func (p *livePair) tongsuoArgs(prefix string) []string {
	return []string{"-" + prefix + "sign_cert", p.signCert, "-" + prefix + "sign_key", p.signKey,
		"-" + prefix + "enc_cert", p.encCert, "-" + prefix + "enc_key", p.encKey}
}

func (p *livePair) certificates() (Certificate, Certificate) {
	return Certificate{Certificate: [][]byte{p.sign.Raw}, PrivateKey: p.signPriv},
		Certificate{Certificate: [][]byte{p.enc.Raw}, PrivateKey: p.encPriv}
}

type livePKI struct {
	name        string
	caFile      string
	ca          *smx509.Certificate
	server, cli *livePair
}

func (p *livePKI) pool() *smx509.CertPool {
	pool := smx509.NewCertPool()
	pool.AddCert(p.ca)
	return pool
}

// tongsuoMadePKI is the PKI Tongsuo's CLI generated.
func tongsuoMadePKI(t *testing.T) *livePKI {
	d := testenv.InteropDir(t, "tongsuo", "pki")
	pair := func(role string) *livePair {
		f := func(n string) string { return filepath.Join(d, role+"_"+n+".pem") }
		return &livePair{signCert: f("sign_cert"), signKey: f("sign_key"), encCert: f("enc_cert"), encKey: f("enc_key"),
			sign: testpki.LoadCert(t, f("sign_cert")), enc: testpki.LoadCert(t, f("enc_cert")),
			signPriv: testpki.LoadKey(t, f("sign_key")), encPriv: testpki.LoadKey(t, f("enc_key"))}
	}
	return &livePKI{name: "tongsuo-pki", caFile: filepath.Join(d, "ca.pem"), ca: testpki.LoadCert(t, filepath.Join(d, "ca.pem")),
		server: pair("server"), cli: pair("client")}
}

// gmgateMadePKI is a PKI made with our pki package, written where Tongsuo can read it.
func gmgateMadePKI(t *testing.T, cn string) *livePKI {
	dir := t.TempDir()
	root, _, err := pki.NewRootCA(pki.IssueOptions{CommonName: cn})
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pair := func(role string, p *pki.Pair) *livePair {
		key := func(k *sm2.PrivateKey) []byte {
			b, err := pki.MarshalPrivateKeyPEM(k, nil)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
		return &livePair{
			signCert: write(role+"_sign.pem", pki.EncodeCertificatesPEM(p.Sign.Cert)), signKey: write(role+"_sign.key", key(p.Sign.Key)),
			encCert: write(role+"_enc.pem", pki.EncodeCertificatesPEM(p.Enc.Cert)), encKey: write(role+"_enc.key", key(p.Enc.Key)),
			sign: p.Sign.Cert, enc: p.Enc.Cert, signPriv: p.Sign.Key, encPriv: p.Enc.Key}
	}
	srv, err := root.IssueServerPair(pki.IssueOptions{CommonName: "localhost", DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}})
	if err != nil {
		t.Fatal(err)
	}
	cli, err := root.IssueClientPair(pki.IssueOptions{CommonName: "gmgate live client"})
	if err != nil {
		t.Fatal(err)
	}
	return &livePKI{name: "gmgate-pki", caFile: write("ca.pem", pki.EncodeCertificatesPEM(root.Cert)), ca: root.Cert,
		server: pair("server", srv), cli: pair("client", cli)}
}

var liveSuites = []struct {
	id    uint16
	name  string
	ecdhe bool
}{
	{ECC_SM4_CBC_SM3, "ECC-SM2-SM4-CBC-SM3", false},
	{ECC_SM4_GCM_SM3, "ECC-SM2-SM4-GCM-SM3", false},
	{ECDHE_SM4_CBC_SM3, "ECDHE-SM2-SM4-CBC-SM3", true},
	{ECDHE_SM4_GCM_SM3, "ECDHE-SM2-SM4-GCM-SM3", true},
}

// startSServer runs `tongsuo s_server -enable_ntls -www` with pair (and asks for client
// certificates with verifyClient) and waits until it accepts.
func startSServer(t *testing.T, bin string, p *livePKI, pair *livePair, verifyClient bool) string {
	t.Helper()
	args := append([]string{"-enable_ntls", "-CAfile", p.caFile, "-www", "-quiet"}, pair.tongsuoArgs("")...)
	if verifyClient {
		args = append(args, "-Verify", "1")
	}
	return testenv.TongsuoServer(t, bin, args...)
}

// getRoot sends GET / over c and returns the status line.
func getRoot(c net.Conn) (string, error) {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.0\r\n\r\n"); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

// TestTongsuoLiveOurClient: our client against Tongsuo's s_server, every suite, with and
// without a client pair, then a resumed session; and a server certificate from a CA we do not
// trust is refused.
func TestTongsuoLiveOurClient(t *testing.T) {
	bin := testenv.TongsuoBin(t)
	for _, p := range []*livePKI{tongsuoMadePKI(t), gmgateMadePKI(t, "gmgate live root")} {
		for _, s := range liveSuites {
			for _, withCert := range []bool{false, true} {
				if s.ecdhe && !withCert {
					continue // ECDHE needs the client's enc pair
				}
				t.Run(fmt.Sprintf("%s/%s/clientcert=%v", p.name, s.name, withCert), func(t *testing.T) {
					addr := startSServer(t, bin, p, p.server, withCert)
					cfg := &Config{RootCAs: p.pool(), ServerName: "localhost", CipherSuites: []uint16{s.id},
						SessionCache: NewLRUSessionCache(4, time.Hour)}
					if withCert {
						cfg.SignCertificate, cfg.EncCertificate = p.cli.certificates()
					}
					for i, wantResume := range []bool{false, true} {
						c, err := Dial("tcp", addr, cfg)
						if err != nil {
							t.Fatalf("connection %d: %v", i, err)
						}
						st := c.ConnectionState()
						line, err := getRoot(c)
						c.Close()
						if err != nil || !strings.HasPrefix(line, "HTTP/1.0 200") {
							t.Fatalf("connection %d: %q %v", i, line, err)
						}
						if st.CipherSuite != s.id || st.DidResume != wantResume {
							t.Fatalf("connection %d: suite %#x resumed %v, want %#x %v", i, st.CipherSuite, st.DidResume, s.id, wantResume)
						}
					}
				})
			}
		}
	}
	t.Run("rogue server certificate", func(t *testing.T) {
		trusted, rogue := tongsuoMadePKI(t), gmgateMadePKI(t, "rogue root")
		addr := startSServer(t, bin, rogue, rogue.server, false)
		_, err := Dial("tcp", addr, &Config{RootCAs: trusted.pool(), ServerName: "localhost"})
		if a, ok := alertOf(err); !ok || a != AlertUnknownCA {
			t.Fatalf("server certificate of an untrusted CA: %v, want unknown_ca", err)
		}
	})
}

// runSClient runs `tongsuo s_client -enable_ntls -ntls` against addr with stdin "ping\n" and
// returns its output and error.
func runSClient(t *testing.T, bin, addr string, p *livePKI, suite string, pair *livePair, extra ...string) (string, error) {
	t.Helper()
	args := []string{"-enable_ntls", "-ntls", "-cipher", suite, "-CAfile", p.caFile, "-verify_return_error", "-ign_eof"}
	if pair != nil {
		args = append(args, pair.tongsuoArgs("")...)
	}
	return testenv.TongsuoClient(t, bin, addr, append(args, extra...)...)
}

// startEchoServer runs our TLCP server with cfg: it answers each line "echo:<line>" and closes.
func startEchoServer(t *testing.T, cfg *Config) (string, chan error) {
	t.Helper()
	ln, err := Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	errs := make(chan error, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(15 * time.Second))
				line, err := bufio.NewReader(c).ReadString('\n')
				if err != nil {
					select {
					case errs <- err:
					default:
					}
					return
				}
				io.WriteString(c, "echo:"+line)
			}()
		}
	}()
	return ln.Addr().String(), errs
}

// TestTongsuoLiveOurServer: Tongsuo's s_client against our server, every suite, every client
// authentication mode, session resumption (-sess_out/-sess_in), and the client certificates our
// server must refuse: one from a CA it does not trust, and a revoked one.
func TestTongsuoLiveOurServer(t *testing.T) {
	bin := testenv.TongsuoBin(t)
	modes := []ClientAuthType{NoClientCert, RequestClientCert, RequireAnyClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert}
	for _, p := range []*livePKI{tongsuoMadePKI(t), gmgateMadePKI(t, "gmgate live root")} {
		for _, s := range liveSuites {
			for _, mode := range modes {
				t.Run(fmt.Sprintf("%s/%s/%s", p.name, s.name, mode), func(t *testing.T) {
					cfg := &Config{ClientAuth: mode, ClientCAs: p.pool(), SessionCache: NewLRUSessionCache(8, time.Hour)}
					cfg.SignCertificate, cfg.EncCertificate = p.server.certificates()
					addr, _ := startEchoServer(t, cfg)
					sess := filepath.Join(t.TempDir(), "sess.pem")
					out, err := runSClient(t, bin, addr, p, s.name, p.cli, "-sess_out", sess)
					if err != nil || !strings.Contains(out, "Cipher is "+s.name) || !strings.Contains(out, "echo:ping") {
						t.Fatalf("s_client: %v\n%s", err, out)
					}
					out, err = runSClient(t, bin, addr, p, s.name, p.cli, "-sess_in", sess)
					if err != nil || !strings.Contains(out, "Reused, NTLSv1.1, Cipher is "+s.name) || !strings.Contains(out, "echo:ping") {
						t.Fatalf("s_client resuming: %v\n%s", err, out)
					}
					if !s.ecdhe && mode != RequireAnyClientCert && mode != RequireAndVerifyClientCert {
						// Without a client pair (ECC suites only: ECDHE needs one).
						out, err := runSClient(t, bin, addr, p, s.name, nil)
						if err != nil || !strings.Contains(out, "echo:ping") {
							t.Fatalf("s_client without a client certificate: %v\n%s", err, out)
						}
					}
				})
			}
		}
	}
	t.Run("rogue and revoked client certificates", func(t *testing.T) {
		p, rogue := tongsuoMadePKI(t), gmgateMadePKI(t, "rogue root")
		revoked := p.cli.sign.SerialNumber
		cfg := &Config{ClientAuth: RequireAndVerifyClientCert, ClientCAs: p.pool(),
			VerifyPeerCertificate: func(_ [][]byte, chains [][]*smx509.Certificate) error {
				for _, ch := range chains {
					if ch[0].SerialNumber.Cmp(revoked) == 0 {
						return fmt.Errorf("%w: serial %s", ErrCertificateRevoked, revoked.Text(16))
					}
				}
				return nil
			}}
		cfg.SignCertificate, cfg.EncCertificate = p.server.certificates()
		addr, _ := startEchoServer(t, cfg)
		for _, tc := range []struct {
			name string
			pair *livePair
		}{{"self-made CA", rogue.cli}, {"revoked", p.cli}} {
			for _, s := range []string{"ECC-SM2-SM4-GCM-SM3", "ECDHE-SM2-SM4-GCM-SM3"} {
				out, err := runSClient(t, bin, addr, p, s, tc.pair)
				if strings.Contains(out, "echo:ping") {
					t.Fatalf("%s client certificate accepted over %s (%v)\n%s", tc.name, s, err, out)
				}
			}
		}
	})
}
