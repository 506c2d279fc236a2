package tls13sm

import (
	"bytes"
	"io"
	"testing"
)

func TestGoToGoHandshake(t *testing.T) {
	for _, suite := range []uint16{TLS_SM4_GCM_SM3, TLS_SM4_CCM_SM3} {
		for _, auth := range []ClientAuthType{NoClientCert, RequireAndVerifyClientCert} {
			t.Run(CipherSuiteName(suite)+"/"+auth.String(), func(t *testing.T) {
				scfg := serverConfig(t)
				scfg.ClientAuth = auth
				ccfg := clientConfig(t)
				ccfg.CipherSuites = []uint16{suite}
				if auth != NoClientCert {
					ccfg.Certificate = getPKI(t).client
				}
				s, c, serr, cerr := handshakePair(t, scfg, ccfg)
				if serr != nil || cerr != nil {
					t.Fatalf("server %v, client %v", serr, cerr)
				}
				if c.ConnectionState().CipherSuite != suite || s.ConnectionState().CipherSuite != suite {
					t.Fatalf("suite: %x %x", c.ConnectionState().CipherSuite, s.ConnectionState().CipherSuite)
				}
				if len(c.ConnectionState().VerifiedChains) == 0 {
					t.Fatal("client did not verify the server chain")
				}
				if auth != NoClientCert && len(s.ConnectionState().VerifiedChains) == 0 {
					t.Fatal("server did not verify the client chain")
				}
				msg := bytes.Repeat([]byte("payment-order;"), 3000) // > one record
				go func() { c.Write(msg); c.Close() }()
				got, err := io.ReadAll(s)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, msg) {
					t.Fatalf("got %d bytes, want %d", len(got), len(msg))
				}
			})
		}
	}
}
