package tls13sm

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"github.com/gmgate/gmgate/internal/testenv"
	"github.com/gmgate/gmgate/internal/testpki"
	"io"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"
)

func helloRecord(t testing.TB, suites []uint16) []byte {
	h := &clientHelloMsg{vers: versionTLS12, random: make([]byte, 32), sessionID: make([]byte, 32),
		cipherSuites: suites, compressionMethods: []uint8{0}, supportedVersions: []uint16{VersionTLS13},
		supportedGroups: []uint16{groupCurveSM2}, signatureAlgorithms: []uint16{schemeSM2SM3},
		keyShares: []keyShare{{group: groupCurveSM2, data: bytes.Repeat([]byte{4}, 65)}}}
	return plainRecord(recordTypeHandshake, h.marshal())
}

func TestClassifyClientHello(t *testing.T) {
	cases := []struct {
		name string
		in   []byte
		want bool
	}{
		{"SM suites only", helloRecord(t, []uint16{TLS_SM4_GCM_SM3, TLS_SM4_CCM_SM3}), true},
		{"SM first, AES after", helloRecord(t, []uint16{TLS_SM4_CCM_SM3, 0x1301}), true},
		{"GREASE then SM", helloRecord(t, []uint16{0x3A3A, TLS_SM4_GCM_SM3, 0x1301}), true},
		{"AES first, SM after", helloRecord(t, []uint16{0x1301, TLS_SM4_GCM_SM3}), false},
		{"AES only", helloRecord(t, []uint16{0x1301, 0x1302, 0xC02B}), false},
		{"TLCP hello", func() []byte {
			r := helloRecord(t, []uint16{0xE053})
			r[1], r[2], r[9], r[10] = 1, 1, 1, 1
			return r
		}(), false},
		{"HTTP", []byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), false},
		{"suite list beyond the record", func() []byte {
			r := helloRecord(t, []uint16{TLS_SM4_GCM_SM3})
			r[3], r[4] = 0, 40 // the record claims to end before the suites
			return r
		}(), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, more := classifyClientHello(tc.in)
			if more || got != tc.want {
				t.Fatalf("got %v (need more %v), want %v", got, more, tc.want)
			}
			// Every prefix either asks for more or already gives the same answer.
			for i := 0; i < len(tc.in); i++ {
				g, m := classifyClientHello(tc.in[:i])
				if !m && g != tc.want {
					t.Fatalf("prefix of %d bytes decided %v", i, g)
				}
			}
		})
	}
}

func FuzzClassifyClientHello(f *testing.F) {
	f.Add(helloRecord(f, []uint16{TLS_SM4_GCM_SM3}))
	f.Add(helloRecord(f, []uint16{0x1301, TLS_SM4_GCM_SM3}))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, more := classifyClientHello(b)
		if more {
			return
		}
		// A decision never changes when more bytes arrive.
		g2, m2 := classifyClientHello(append(append([]byte(nil), b...), 0x16, 3, 3, 0, 0))
		if m2 || g2 != got {
			t.Fatalf("decision changed with more bytes: %v -> %v (more %v)", got, g2, m2)
		}
	})
}

// ecdsaTLSConfig is an ordinary crypto/tls server configuration with an ECDSA P-256
// certificate: what the other side of a one-port deployment serves to non-SM clients.
func ecdsaTLSConfig(t testing.TB) (*tls.Config, *x509.CertPool) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(5), Subject: pkix.Name{CommonName: "server.test"},
		DNSNames: []string{"server.test", "localhost"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, pool
}

// startDualServer serves one port: RFC 8998 hellos with our SM2 certificate, everything else
// with crypto/tls and an ECDSA certificate; each connection echoes one line with the
// protocol that served it.
func startDualServer(t *testing.T, smCfg *Config, tlsCfg *tls.Config, mc MuxConfig) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := NewMux(ln, mc)
	t.Cleanup(func() { m.Close() })
	serve := func(l net.Listener, name string) {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				buf := make([]byte, 64)
				n, err := c.Read(buf)
				if err != nil {
					return
				}
				io.WriteString(c, name+":"+string(buf[:n]))
			}()
		}
	}
	go serve(NewListener(m.SM(), smCfg), "rfc8998")
	go serve(tls.NewListener(m.Other(), tlsCfg), "tls")
	return ln.Addr().String()
}

func roundTrip(t *testing.T, c net.Conn) string {
	t.Helper()
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "ping"); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(c)
	if err != nil && len(b) == 0 {
		t.Fatal(err)
	}
	return string(b)
}

// TestMuxOnePortBothCertificates: on one port, a client offering the SM suites gets the SM2
// certificate over RFC 8998, a client offering only AES suites gets the ECDSA certificate over
// ordinary TLS 1.3; a silent source is bounded.
func TestMuxOnePortBothCertificates(t *testing.T) {
	tlsCfg, ecPool := ecdsaTLSConfig(t)
	addr := startDualServer(t, serverConfig(t), tlsCfg, MuxConfig{PeekTimeout: 2 * time.Second, MaxPendingPerSource: 4})

	c, err := Dial("tcp", addr, clientConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	if got := roundTrip(t, c); got != "rfc8998:ping" {
		t.Fatalf("SM client: %q", got)
	}
	tc, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ecPool, ServerName: "server.test"})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := tc.ConnectionState().PeerCertificates[0].PublicKey.(*ecdsa.PublicKey); !ok {
		t.Fatal("ordinary client did not get the ECDSA certificate")
	}
	if got := roundTrip(t, tc); got != "tls:ping" {
		t.Fatalf("ordinary client: %q", got)
	}

	// Silent sockets of one source do not block others, and beyond the bound are closed.
	var silent []net.Conn
	for i := 0; i < 6; i++ {
		s, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		silent = append(silent, s)
	}
	defer func() {
		for _, s := range silent {
			s.Close()
		}
	}()
	time.Sleep(200 * time.Millisecond)
	closed := 0
	for _, s := range silent {
		s.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if _, err := s.Read(make([]byte, 1)); err == io.EOF {
			closed++
		}
	}
	if closed != 2 {
		t.Fatalf("%d silent connections closed at once, want 2 (bound 4)", closed)
	}
}

// TestTongsuoLiveOnePort: Tongsuo's s_client with the RFC 8998 profile and Tongsuo's s_client
// with ordinary TLS 1.3 (AES, P-256, ECDSA) reach the same port and each gets its certificate.
func TestTongsuoLiveOnePort(t *testing.T) {
	bin := testenv.TongsuoBin(t)
	p := tongsuoPKI(t)
	tlsCfg, _ := ecdsaTLSConfig(t)
	addr := startDualServer(t, &Config{Certificate: p.server}, tlsCfg, MuxConfig{})
	out, err := runSClient(t, bin, addr, "-ciphersuites", "TLS_SM4_GCM_SM3", "-groups", "curveSM2", "-sigalgs", "sm2sig_sm3", "-CAfile", p.caFile)
	if err != nil || !strings.Contains(out, "rfc8998:ping") || !strings.Contains(out, "Cipher is TLS_SM4_GCM_SM3") {
		t.Fatalf("SM s_client: %v\n%s", err, out)
	}
	ecCA := testpki.WritePEM(t, t.TempDir(), "ec.pem", "CERTIFICATE", tlsCfg.Certificates[0].Certificate[0])
	out, _ = runSClient(t, bin, addr, "-ciphersuites", "TLS_AES_128_GCM_SHA256", "-groups", "P-256", "-CAfile", ecCA)
	if !strings.Contains(out, "tls:ping") || !strings.Contains(out, "Cipher is TLS_AES_128_GCM_SHA256") ||
		!strings.Contains(out, "Peer signature type: ecdsa_secp256r1_sha256") {
		t.Fatalf("ordinary s_client:\n%s", out)
	}
}
