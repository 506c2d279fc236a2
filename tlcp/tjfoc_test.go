package tlcp

import (
	"bytes"
	"encoding/pem"
	"io"
	"net"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"
	"github.com/tjfoc/gmsm/gmtls"
	tjx509 "github.com/tjfoc/gmsm/x509"
)

// tjfocCert converts one of our test certificates (chain + *sm2.PrivateKey)
// to a gmtls.Certificate through PEM, as a tjfoc user would load it.
func tjfocCert(t *testing.T, c Certificate, withChain bool) gmtls.Certificate {
	t.Helper()
	var certPEM bytes.Buffer
	chain := c.Certificate
	if !withChain {
		chain = chain[:1]
	}
	for _, der := range chain {
		pem.Encode(&certPEM, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	keyDER, err := smx509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	tc, err := gmtls.X509KeyPair(certPEM.Bytes(), keyPEM)
	if err != nil {
		t.Fatalf("gmtls.X509KeyPair: %v", err)
	}
	return tc
}

func tjfocPool(t *testing.T, p *testPKI) *tjx509.CertPool {
	ca, err := tjx509.ParseCertificate(p.caCert.Raw)
	if err != nil {
		t.Fatal(err)
	}
	pool := tjx509.NewCertPool()
	pool.AddCert(ca)
	return pool
}

// TestTjfocClientAgainstOurServer: tjfoc gmtls v1.4.1 client, ECC_SM4_CBC_SM3.
func TestTjfocClientAgainstOurServer(t *testing.T) {
	p := getPKI(t)
	for _, clientCert := range []bool{false, true} {
		t.Run(map[bool]string{false: "no-client-cert", true: "client-cert"}[clientCert], func(t *testing.T) {
			sc := serverConfig(p)
			// tjfoc clients verify every certificate in the list as a leaf
			// for ServerName, so a CA in the chain fails: send leaves only.
			sc.SignCertificate.Certificate = sc.SignCertificate.Certificate[:1]
			sc.EncCertificate.Certificate = sc.EncCertificate.Certificate[:1]
			if clientCert {
				sc.ClientAuth = RequireAndVerifyClientCert
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			type result struct {
				st  ConnectionState
				err error
			}
			done := make(chan result, 1)
			go func() {
				raw, err := ln.Accept()
				if err != nil {
					done <- result{err: err}
					return
				}
				c := Server(raw, sc)
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				buf := make([]byte, 5)
				if _, err := io.ReadFull(c, buf); err != nil {
					done <- result{err: err}
					return
				}
				_, err = c.Write(append([]byte("echo:"), buf...))
				done <- result{st: c.ConnectionState(), err: err}
			}()
			cfg := &gmtls.Config{GMSupport: gmtls.NewGMSupport(), ServerName: "server.test", RootCAs: tjfocPool(t, p)}
			if clientCert {
				cfg.Certificates = []gmtls.Certificate{tjfocCert(t, p.client.Sign, false), tjfocCert(t, p.client.Enc, false)}
			}
			conn, err := gmtls.Dial("tcp", ln.Addr().String(), cfg)
			if err != nil {
				r := <-done
				t.Fatalf("tjfoc dial: %v (server: %v)", err, r.err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := conn.Write([]byte("hello")); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, 10)
			if _, err := io.ReadFull(conn, got); err != nil {
				t.Fatal(err)
			}
			if string(got) != "echo:hello" {
				t.Fatalf("got %q", got)
			}
			r := <-done
			if r.err != nil {
				t.Fatal(r.err)
			}
			if r.st.CipherSuite != ECC_SM4_CBC_SM3 {
				t.Fatalf("suite %s", CipherSuiteName(r.st.CipherSuite))
			}
			if clientCert != (r.st.PeerSignCertificate != nil) {
				t.Fatalf("client certificate seen=%v", r.st.PeerSignCertificate != nil)
			}
		})
	}
}

// TestOurClientAgainstTjfocServer: our client, tjfoc gmtls v1.4.1 server.
func TestOurClientAgainstTjfocServer(t *testing.T) {
	p := getPKI(t)
	for _, clientCert := range []bool{false, true} {
		t.Run(map[bool]string{false: "no-client-cert", true: "client-cert"}[clientCert], func(t *testing.T) {
			scfg := &gmtls.Config{GMSupport: gmtls.NewGMSupport(),
				// With chains: tjfoc sends [sign, CA, enc, CA] (its order quirk).
				Certificates: []gmtls.Certificate{tjfocCert(t, p.server.Sign, true), tjfocCert(t, p.server.Enc, true)}}
			if clientCert {
				scfg.ClientAuth = gmtls.RequireAndVerifyClientCert
				scfg.ClientCAs = tjfocPool(t, p)
			}
			ln, err := gmtls.Listen("tcp", "127.0.0.1:0", scfg)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			srvErr := make(chan error, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					srvErr <- err
					return
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				buf := make([]byte, 5)
				if _, err := io.ReadFull(c, buf); err != nil {
					srvErr <- err
					return
				}
				_, err = c.Write(append([]byte("echo:"), buf...))
				srvErr <- err
			}()
			cc := clientConfig(p, clientCert)
			cc.CipherSuites = []uint16{ECC_SM4_CBC_SM3}
			// tjfoc v1.4.1 sends and expects DER (sm2.CipherMarshal), not raw.
			conn, err := Dial("tcp", ln.Addr().String(), cc)
			if err != nil {
				select {
				case e := <-srvErr:
					t.Fatalf("dial: %v (tjfoc server: %v)", err, e)
				case <-time.After(2 * time.Second):
					t.Fatalf("dial: %v", err)
				}
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := conn.Write([]byte("hello")); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, 10)
			if _, err := io.ReadFull(conn, got); err != nil {
				t.Fatal(err)
			}
			if string(got) != "echo:hello" {
				t.Fatalf("got %q", got)
			}
			if err := <-srvErr; err != nil {
				t.Fatal(err)
			}
			st := conn.ConnectionState()
			if st.PeerEncCertificate == nil || st.PeerEncCertificate.KeyUsage&smx509.KeyUsageKeyEncipherment == 0 {
				t.Fatal("enc certificate not found at position 1 after reordering")
			}
		})
	}
}
