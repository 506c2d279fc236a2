package tlcp

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"
)

func echoCheck(size int) func(cli, srv *Conn) error {
	return func(cli, srv *Conn) error {
		msg := make([]byte, size)
		rand.Read(msg)
		errc := make(chan error, 1)
		go func() {
			buf := make([]byte, size)
			if _, err := io.ReadFull(srv, buf); err != nil {
				errc <- err
				return
			}
			_, err := srv.Write(buf)
			errc <- err
		}()
		if _, err := cli.Write(msg); err != nil {
			return err
		}
		got := make([]byte, size)
		if _, err := io.ReadFull(cli, got); err != nil {
			return err
		}
		if err := <-errc; err != nil {
			return err
		}
		if !bytes.Equal(got, msg) {
			return errors.New("echo mismatch")
		}
		return nil
	}
}

func TestHandshakeAllSuitesAndAuthModes(t *testing.T) {
	p := getPKI(t)
	modes := []ClientAuthType{NoClientCert, RequestClientCert, RequireAnyClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert}
	for _, suite := range defaultSuites {
		for _, mode := range modes {
			for _, withCert := range []bool{false, true} {
				name := fmt.Sprintf("%s/%s/cert=%v", CipherSuiteName(suite), mode, withCert)
				t.Run(name, func(t *testing.T) {
					sc := serverConfig(p)
					sc.ClientAuth = mode
					cc := clientConfig(p, withCert)
					cc.CipherSuites = []uint16{suite}
					var st ConnectionState
					cliErr, srvErr := runPair(t, sc, cc, func(cli, srv *Conn) error {
						st = srv.ConnectionState()
						return echoCheck(1000)(cli, srv)
					})
					ecdhe := suiteByID(suite).ecdhe
					wantFail := (!withCert && (ecdhe || mode == RequireAnyClientCert || mode == RequireAndVerifyClientCert))
					if ecdhe && !withCert {
						// Client cannot even offer ECDHE without its own key pair.
						if cliErr == nil {
							t.Fatal("ECDHE without client certificates succeeded")
						}
						return
					}
					if wantFail {
						if srvErr == nil {
							t.Fatalf("expected failure, got success")
						}
						if a, ok := alertOf(srvErr); !ok || a != AlertHandshakeFailure {
							t.Fatalf("server error %v, want handshake_failure", srvErr)
						}
						if a, ok := alertOf(cliErr); !ok || a != AlertHandshakeFailure {
							t.Fatalf("client error %v, want remote handshake_failure", cliErr)
						}
						return
					}
					if cliErr != nil || srvErr != nil {
						t.Fatalf("client %v, server %v", cliErr, srvErr)
					}
					if st.CipherSuite != suite || st.Version != VersionTLCP {
						t.Fatalf("state %+v", st)
					}
					verifies := mode == VerifyClientCertIfGiven || mode == RequireAndVerifyClientCert
					if withCert && mode != NoClientCert || ecdhe {
						if len(st.PeerCertificates) < 2 {
							t.Fatal("server did not record client certificates")
						}
						if verifies && (len(st.VerifiedChains) == 0 || st.PeerSignCertificate == nil || st.PeerEncCertificate == nil) {
							t.Fatal("verified client certificates not exposed as the identity")
						}
						if !verifies && (st.PeerSignCertificate != nil || st.PeerEncCertificate != nil || len(st.VerifiedChains) != 0) {
							t.Fatal("an unverified client certificate is exposed as the identity")
						}
					} else if st.PeerSignCertificate != nil || len(st.PeerCertificates) != 0 {
						t.Fatal("unexpected client certificate")
					}
				})
			}
		}
	}
}

func TestServerPreferenceAndClientPreference(t *testing.T) {
	p := getPKI(t)
	for _, preferClient := range []bool{false, true} {
		sc := serverConfig(p)
		sc.CipherSuites = []uint16{ECC_SM4_CBC_SM3, ECC_SM4_GCM_SM3}
		sc.PreferClientCipherSuites = preferClient
		cc := clientConfig(p, false)
		cc.CipherSuites = []uint16{ECC_SM4_GCM_SM3, ECC_SM4_CBC_SM3}
		var got uint16
		cliErr, srvErr := runPair(t, sc, cc, func(cli, srv *Conn) error {
			got = cli.ConnectionState().CipherSuite
			return nil
		})
		if cliErr != nil || srvErr != nil {
			t.Fatal(cliErr, srvErr)
		}
		want := ECC_SM4_CBC_SM3
		if preferClient {
			want = ECC_SM4_GCM_SM3
		}
		if got != want {
			t.Fatalf("preferClient=%v: got %s want %s", preferClient, CipherSuiteName(got), CipherSuiteName(want))
		}
	}
}

func TestResumption(t *testing.T) {
	p := getPKI(t)
	for _, suite := range defaultSuites {
		t.Run(CipherSuiteName(suite), func(t *testing.T) {
			sc := serverConfig(p)
			sc.SessionCache = NewLRUSessionCache(10, time.Hour)
			sc.ClientAuth = RequireAndVerifyClientCert
			cc := clientConfig(p, true)
			cc.CipherSuites = []uint16{suite}
			cc.SessionCache = NewLRUSessionCache(10, time.Hour)
			var ids [][]byte
			for i := 0; i < 3; i++ {
				var st, cst ConnectionState
				cliErr, srvErr := runPair(t, sc, cc, func(cli, srv *Conn) error {
					st, cst = srv.ConnectionState(), cli.ConnectionState()
					return echoCheck(100)(cli, srv)
				})
				if cliErr != nil || srvErr != nil {
					t.Fatal(cliErr, srvErr)
				}
				if st.DidResume != (i > 0) || cst.DidResume != (i > 0) {
					t.Fatalf("conn %d: resumed server=%v client=%v", i, st.DidResume, cst.DidResume)
				}
				if len(st.SessionID) != 32 || !bytes.Equal(st.SessionID, cst.SessionID) {
					t.Fatalf("session IDs %x %x", st.SessionID, cst.SessionID)
				}
				if st.PeerSignCertificate == nil || cst.PeerSignCertificate == nil {
					t.Fatal("peer certificates lost on resumption")
				}
				ids = append(ids, st.SessionID)
			}
			if !bytes.Equal(ids[0], ids[2]) {
				t.Fatal("session ID changed on resumption")
			}
		})
	}
}

func TestResumptionExpiredSession(t *testing.T) {
	p := getPKI(t)
	sc := serverConfig(p)
	cache := NewLRUSessionCache(10, time.Minute)
	now := time.Now()
	cache.now = func() time.Time { return now }
	sc.SessionCache = cache
	cc := clientConfig(p, false)
	cc.SessionCache = NewLRUSessionCache(10, time.Hour)
	if a, b := runPair(t, sc, cc, nil); a != nil || b != nil {
		t.Fatal(a, b)
	}
	now = now.Add(2 * time.Minute)
	var resumed bool
	if a, b := runPair(t, sc, cc, func(cli, srv *Conn) error { resumed = srv.ConnectionState().DidResume; return nil }); a != nil || b != nil {
		t.Fatal(a, b)
	}
	if resumed {
		t.Fatal("expired session was resumed")
	}
}

func TestLRUSessionCacheBound(t *testing.T) {
	c := NewLRUSessionCache(3, time.Hour)
	for i := 0; i < 10; i++ {
		c.Put(fmt.Sprint(i), &SessionState{Created: time.Now()})
	}
	if c.Len() != 3 {
		t.Fatalf("len %d", c.Len())
	}
	if _, ok := c.Get("0"); ok {
		t.Fatal("oldest entry not evicted")
	}
	if _, ok := c.Get("9"); !ok {
		t.Fatal("newest entry missing")
	}
	c.Put("9", nil)
	if _, ok := c.Get("9"); ok {
		t.Fatal("delete failed")
	}
}

func TestSNIGetCertificate(t *testing.T) {
	p := getPKI(t)
	other := pairFor(t, p, "other.test", []string{"other.test"}, 1 /* serverAuth */)
	sc := &Config{GetCertificate: func(h *ClientHelloInfo) (*CertificatePair, error) {
		if h.ServerName == "other.test" {
			return other, nil
		}
		return p.server, nil
	}}
	for _, name := range []string{"server.test", "other.test"} {
		cc := clientConfig(p, false)
		cc.ServerName = name
		var sn, cn string
		cliErr, srvErr := runPair(t, sc, cc, func(cli, srv *Conn) error {
			sn = srv.ConnectionState().ServerName
			cn = cli.ConnectionState().PeerSignCertificate.Subject.CommonName
			return nil
		})
		if cliErr != nil || srvErr != nil {
			t.Fatal(name, cliErr, srvErr)
		}
		if sn != name || cn != name {
			t.Fatalf("SNI %q: server saw %q, cert CN %q", name, sn, cn)
		}
	}
}

func TestLargeTransferAndCloseNotify(t *testing.T) {
	p := getPKI(t)
	for _, suite := range []uint16{ECC_SM4_GCM_SM3, ECC_SM4_CBC_SM3} {
		t.Run(CipherSuiteName(suite), func(t *testing.T) {
			cc := clientConfig(p, false)
			cc.CipherSuites = []uint16{suite}
			cliErr, srvErr := runPair(t, serverConfig(p), cc, func(cli, srv *Conn) error {
				const size = 3<<20 + 12345
				data := make([]byte, size)
				rand.Read(data)
				done := make(chan error, 1)
				go func() {
					_, err := cli.Write(data)
					if err == nil {
						err = cli.Close()
					}
					done <- err
				}()
				got, err := io.ReadAll(srv) // ends with io.EOF on close_notify
				if err != nil {
					return err
				}
				if err := <-done; err != nil {
					return err
				}
				if !bytes.Equal(got, data) {
					return errors.New("data mismatch")
				}
				return nil
			})
			if cliErr != nil || srvErr != nil {
				t.Fatal(cliErr, srvErr)
			}
		})
	}
}

func TestCompatSwitches(t *testing.T) {
	p := getPKI(t)
	cases := []struct {
		name  string
		suite uint16
		mod   func(*Config)
	}{
		{"ECC raw C1C3C2 ciphertext", ECC_SM4_GCM_SM3, func(c *Config) { c.ECCCiphertextRaw = true }},
		{"ECC DER ciphertext", ECC_SM4_GCM_SM3, func(c *Config) {}},
		{"ECDHE 71-byte vector CKE", ECDHE_SM4_GCM_SM3, func(c *Config) { c.ECDHEParamsAsVector = true }},
		{"ECDHE 69-byte CKE", ECDHE_SM4_CBC_SM3, func(c *Config) {}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cc := clientConfig(p, true)
			cc.CipherSuites = []uint16{tc.suite}
			tc.mod(cc)
			if a, b := runPair(t, serverConfig(p), cc, echoCheck(10)); a != nil || b != nil {
				t.Fatal(a, b)
			}
		})
	}
}
