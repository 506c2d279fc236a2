package tlcp

import (
	"bytes"
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"
	"github.com/gmgate/gmgate/internal/testpki"
)

// checkGoroutines fails if goroutines started by a test do not settle.
func checkGoroutines(t *testing.T) func() {
	before := runtime.NumGoroutine()
	return func() {
		deadline := time.Now().Add(5 * time.Second)
		for {
			n := runtime.NumGoroutine()
			if n <= before {
				return
			}
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<16)
				buf = buf[:runtime.Stack(buf, true)]
				t.Fatalf("goroutines: %d before, %d after\n%s", before, n, buf)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// tamperConn lets a test modify the client's writes.
type tamperConn struct {
	net.Conn
	mu     sync.Mutex
	writes int
	fn     func(i int, b []byte) []byte
}

func (c *tamperConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	i := c.writes
	c.writes++
	c.mu.Unlock()
	out := c.fn(i, append([]byte(nil), b...))
	if _, err := c.Conn.Write(out); err != nil {
		return 0, err
	}
	return len(b), nil
}

// runTampered runs a handshake with the client's writes passed through fn.
func runTampered(t *testing.T, sc, cc *Config, fn func(i int, b []byte) []byte, after func(cli, srv *Conn)) (cliErr, srvErr error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ch := make(chan error, 1)
	var srv *Conn
	go func() {
		raw, err := ln.Accept()
		if err != nil {
			ch <- err
			return
		}
		srv = Server(raw, sc)
		srv.SetDeadline(time.Now().Add(10 * time.Second))
		err = srv.Handshake()
		if err == nil && after != nil {
			_, err = srv.Read(make([]byte, 100))
		}
		srv.Close()
		ch <- err
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	cli := Client(&tamperConn{Conn: raw, fn: fn}, cc)
	cli.SetDeadline(time.Now().Add(10 * time.Second))
	cliErr = cli.Handshake()
	if cliErr == nil && after != nil {
		after(cli, srv)
	}
	srvErr = <-ch
	if cliErr == nil {
		_, cliErr = cli.Read(make([]byte, 10))
	}
	cli.Close()
	return cliErr, srvErr
}

func wantAlert(t *testing.T, who string, err error, a Alert, remote bool) {
	t.Helper()
	var ae *AlertError
	if !errors.As(err, &ae) || ae.Alert != a || ae.Remote != remote {
		t.Fatalf("%s: got %v, want alert %v (remote=%v)", who, err, a, remote)
	}
}

func TestNegativeCertificates(t *testing.T) {
	defer checkGoroutines(t)()
	p := getPKI(t)
	expiredKey, expiredEncKey := testpki.Key(t), testpki.Key(t)
	past := time.Now().Add(-48 * time.Hour)
	expSign := testpki.Issue(t, testpki.Spec{CN: "server.test", DNS: []string{"server.test"}, Usage: smx509.KeyUsageDigitalSignature,
		NotBefore: past, NotAfter: past.Add(time.Hour)}, expiredKey, p.caCert, p.caKey)
	expEnc := testpki.Issue(t, testpki.Spec{CN: "server.test", DNS: []string{"server.test"}, Usage: smx509.KeyUsageKeyEncipherment,
		NotBefore: past, NotAfter: past.Add(time.Hour)}, expiredEncKey, p.caCert, p.caKey)
	// A server whose "enc" certificate only allows signatures.
	badEncKey := testpki.Key(t)
	badEnc := testpki.Issue(t, testpki.Spec{CN: "server.test", DNS: []string{"server.test"}, Usage: smx509.KeyUsageDigitalSignature}, badEncKey, p.caCert, p.caKey)
	otherCA := smx509.NewCertPool()
	otherCA.AddCert(testpki.Issue(t, testpki.Spec{CN: "other CA", IsCA: true, Usage: smx509.KeyUsageCertSign}, testpki.Key(t), nil, nil))

	cases := []struct {
		name      string
		server    func() *Config
		client    func() *Config
		cliAlert  Alert
		cliRemote bool
		srvAlert  Alert
		srvRemote bool
	}{
		{"expired server certificate", func() *Config {
			return &Config{SignCertificate: Certificate{Certificate: [][]byte{expSign.Raw}, PrivateKey: expiredKey},
				EncCertificate: Certificate{Certificate: [][]byte{expEnc.Raw}, PrivateKey: expiredEncKey}}
		}, func() *Config { return clientConfig(p, false) }, AlertCertificateExpired, false, AlertCertificateExpired, true},
		{"unknown CA", func() *Config { return serverConfig(p) }, func() *Config {
			c := clientConfig(p, false)
			c.RootCAs = otherCA
			return c
		}, AlertUnknownCA, false, AlertUnknownCA, true},
		{"wrong host name", func() *Config { return serverConfig(p) }, func() *Config {
			c := clientConfig(p, false)
			c.ServerName = "evil.test"
			return c
		}, AlertBadCertificate, false, AlertBadCertificate, true},
		{"wrong key usage on server enc certificate", func() *Config {
			sc := serverConfig(p)
			pair := sc.localPair()
			prep, err := pair.prepare()
			if err != nil {
				t.Fatal(err)
			}
			prep.certMsg = (&certificateMsg{certificates: [][]byte{p.server.Sign.Certificate[0], badEnc.Raw}}).marshal()
			prep.eccSKESuffix = encSuffixOf(badEnc.Raw)
			return sc
		}, func() *Config { return clientConfig(p, false) }, AlertUnsupportedCertificate, false, AlertUnsupportedCertificate, true},
		{"wrong key usage on client sign certificate", func() *Config {
			sc := serverConfig(p)
			sc.ClientAuth = RequireAndVerifyClientCert
			return sc
		}, func() *Config {
			c := clientConfig(p, true)
			prep, err := c.localPair().prepare()
			if err != nil {
				t.Fatal(err)
			}
			prep.rawCerts = [][]byte{p.client.Enc.Certificate[0], p.client.Enc.Certificate[0]} // enc cert as sign cert
			return c
		}, AlertUnsupportedCertificate, true, AlertUnsupportedCertificate, false},
		{"client certificate from unknown CA", func() *Config {
			sc := serverConfig(p)
			sc.ClientAuth = RequireAndVerifyClientCert
			sc.ClientCAs = otherCA
			return sc
		}, func() *Config { return clientConfig(p, true) }, AlertUnknownCA, true, AlertUnknownCA, false},
		{"revoked by VerifyPeerCertificate", func() *Config { return serverConfig(p) }, func() *Config {
			c := clientConfig(p, false)
			c.VerifyPeerCertificate = func([][]byte, [][]*smx509.Certificate) error { return ErrCertificateRevoked }
			return c
		}, AlertCertificateRevoked, false, AlertCertificateRevoked, true},
		{"no common suite", func() *Config {
			sc := serverConfig(p)
			sc.CipherSuites = []uint16{ECC_SM4_CBC_SM3}
			return sc
		}, func() *Config {
			c := clientConfig(p, false)
			c.CipherSuites = []uint16{ECC_SM4_GCM_SM3}
			return c
		}, AlertHandshakeFailure, true, AlertHandshakeFailure, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cliErr, srvErr := runPair(t, tc.server(), tc.client(), nil)
			wantAlert(t, "client", cliErr, tc.cliAlert, tc.cliRemote)
			wantAlert(t, "server", srvErr, tc.srvAlert, tc.srvRemote)
		})
	}
}

func TestNegativeTampering(t *testing.T) {
	defer checkGoroutines(t)()
	p := getPKI(t)
	t.Run("bad Finished (transcript differs)", func(t *testing.T) {
		cc := clientConfig(p, false)
		cc.CipherSuites = []uint16{ECC_SM4_GCM_SM3, ECC_SM4_CBC_SM3}
		cliErr, srvErr := runTampered(t, serverConfig(p), cc, func(i int, b []byte) []byte {
			if i == 0 { // swap the two offered suites in the ClientHello
				b[46], b[47], b[48], b[49] = b[48], b[49], b[46], b[47]
			}
			return b
		}, nil)
		wantAlert(t, "server", srvErr, AlertDecryptError, false)
		wantAlert(t, "client", cliErr, AlertDecryptError, true)
	})
	for _, suite := range []uint16{ECC_SM4_GCM_SM3, ECC_SM4_CBC_SM3} {
		t.Run("tampered record "+CipherSuiteName(suite), func(t *testing.T) {
			cc := clientConfig(p, false)
			cc.CipherSuites = []uint16{suite}
			var cliErr2 error
			_, srvErr := runTampered(t, serverConfig(p), cc, func(i int, b []byte) []byte {
				if b[0] == recordTypeApplicationData {
					b[len(b)-1] ^= 0x01
				}
				return b
			}, func(cli, srv *Conn) {
				_, cliErr2 = cli.Write([]byte("hello"))
			})
			if cliErr2 != nil {
				t.Fatal(cliErr2)
			}
			wantAlert(t, "server", srvErr, AlertBadRecordMAC, false)
		})
	}
}

// rawServerExchange sends raw bytes to a server and returns its handshake error.
func rawServerExchange(t *testing.T, sc *Config, data []byte) error {
	cside, sside := net.Pipe()
	defer cside.Close()
	srv := Server(sside, sc)
	errc := make(chan error, 1)
	go func() { errc <- srv.Handshake(); sside.Close() }()
	go io.Copy(io.Discard, cside)
	cside.SetWriteDeadline(time.Now().Add(5 * time.Second))
	cside.Write(data)
	select {
	case err := <-errc:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("server handshake did not finish")
	}
	return nil
}

func TestNegativeMalformedInput(t *testing.T) {
	defer checkGoroutines(t)()
	p := getPKI(t)
	hello := (&clientHelloMsg{vers: VersionTLCP, random: make([]byte, 32), cipherSuites: []uint16{ECC_SM4_GCM_SM3},
		compressionMethods: []byte{0}}).marshal()
	rec := func(typ uint8, vers uint16, body []byte) []byte {
		return append([]byte{typ, byte(vers >> 8), byte(vers), byte(len(body) >> 8), byte(len(body))}, body...)
	}
	truncated := append([]byte{}, hello...)
	truncated = truncated[:len(truncated)-2] // drop compression methods
	truncated[3] -= 2
	tlsHello := append([]byte{}, hello...)
	tlsHello[4], tlsHello[5] = 3, 3
	noNull := append([]byte{}, hello...)
	noNull[len(noNull)-1] = 1
	cases := []struct {
		name string
		data []byte
		want Alert
	}{
		{"truncated ClientHello", rec(22, 0x0101, truncated), AlertDecodeError},
		{"oversized record", append([]byte{22, 1, 1, 0x48, 0x01}, make([]byte, 100)...), AlertRecordOverflow},
		{"oversized handshake message", rec(22, 0x0101, []byte{1, 0x10, 0, 0}), AlertDecodeError},
		{"TLS 1.2 ClientHello version", rec(22, 0x0303, tlsHello), AlertProtocolVersion},
		{"bad record version", rec(22, 0x0202, hello), AlertProtocolVersion},
		{"application data first", rec(23, 0x0101, []byte{1}), AlertUnexpectedMessage},
		{"ServerHello to a server", rec(22, 0x0101, (&serverHelloMsg{vers: VersionTLCP, random: make([]byte, 32)}).marshal()), AlertUnexpectedMessage},
		{"no null compression", rec(22, 0x0101, noNull), AlertDecodeError},
		{"CCS before handshake", append(rec(22, 0x0101, hello), rec(20, 0x0101, []byte{1})...), AlertUnexpectedMessage},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := rawServerExchange(t, serverConfig(p), tc.data)
			wantAlert(t, "server", err, tc.want, false)
		})
	}
}

func TestEmptyRecordsAndRenegotiation(t *testing.T) {
	defer checkGoroutines(t)()
	p := getPKI(t)
	cliErr, srvErr := runPair(t, serverConfig(p), clientConfig(p, false), func(cli, srv *Conn) error {
		// 15 empty records and a refused renegotiation (16 useless records in a row) are
		// accepted, then data arrives. The renegotiation attempt counts: it no longer resets.
		cli.out.Lock()
		for i := 0; i < maxUselessRecords-1; i++ {
			cli.writeRecordLocked(recordTypeApplicationData, nil)
		}
		// A renegotiating ClientHello gets a warning no_renegotiation.
		cli.writeRecordLocked(recordTypeHandshake, (&clientHelloMsg{vers: VersionTLCP, random: make([]byte, 32),
			cipherSuites: []uint16{ECC_SM4_GCM_SM3}, compressionMethods: []byte{0}}).marshal())
		cli.out.Unlock()
		go cli.Write([]byte("data"))
		buf := make([]byte, 4)
		if _, err := io.ReadFull(srv, buf); err != nil || string(buf) != "data" {
			return errors.New("server did not survive empty records / renegotiation attempt: " + errString(err))
		}
		srv.Write([]byte("ok"))
		got := make([]byte, 2)
		if _, err := io.ReadFull(cli, got); err != nil || !bytes.Equal(got, []byte("ok")) {
			return errors.New("client did not get data after the no_renegotiation warning: " + errString(err))
		}
		// Too many empty records in a row is an error.
		cli.out.Lock()
		for i := 0; i < maxUselessRecords+1; i++ {
			cli.writeRecordLocked(recordTypeApplicationData, nil)
		}
		cli.out.Unlock()
		_, err := srv.Read(buf)
		if a, ok := alertOf(err); !ok || a != AlertUnexpectedMessage {
			return errors.New("expected unexpected_message after 17 empty records, got " + errString(err))
		}
		return nil
	})
	if cliErr != nil || srvErr != nil {
		t.Fatal(cliErr, srvErr)
	}
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

func TestHandshakeTimeoutNoLeak(t *testing.T) {
	defer checkGoroutines(t)()
	p := getPKI(t)
	sc := serverConfig(p)
	sc.HandshakeTimeout = 100 * time.Millisecond
	cside, sside := net.Pipe()
	defer cside.Close()
	srv := Server(sside, sc)
	start := time.Now()
	err := srv.Handshake()
	if err == nil || time.Since(start) > 3*time.Second {
		t.Fatalf("handshake with a silent client: %v after %v", err, time.Since(start))
	}
	sside.Close()
}

func TestVerifyCacheHonoursExpiry(t *testing.T) {
	p := getPKI(t)
	now := time.Now()
	sc := serverConfig(p)
	sc.ClientAuth = RequireAndVerifyClientCert
	sc.Time = func() time.Time { return now }
	for i := 0; i < 2; i++ {
		if a, b := runPair(t, sc, clientConfig(p, true), nil); a != nil || b != nil {
			t.Fatal(a, b)
		}
	}
	if sc.verifyCache.Len() != 1 {
		t.Fatalf("verify cache has %d entries, want 1", sc.verifyCache.Len())
	}
	now = now.Add(30 * time.Hour) // past the client certificates' NotAfter
	_, srvErr := runPair(t, sc, clientConfig(p, true), nil)
	wantAlert(t, "server", srvErr, AlertCertificateExpired, false)
}

// splitConn delivers each write in two halves with a pause in between.
type splitConn struct {
	net.Conn
	split bool
}

func (s *splitConn) Write(b []byte) (int, error) {
	if !s.split || len(b) < 2 {
		return s.Conn.Write(b)
	}
	h := len(b) / 2
	if _, err := s.Conn.Write(b[:h]); err != nil {
		return 0, err
	}
	time.Sleep(100 * time.Millisecond)
	if _, err := s.Conn.Write(b[h:]); err != nil {
		return h, err
	}
	return len(b), nil
}

// TestReadTimeoutKeepsPartialRecord: a read deadline that fires while a
// record is half received must not lose the bytes already read.
func TestReadTimeoutKeepsPartialRecord(t *testing.T) {
	defer checkGoroutines(t)()
	p := getPKI(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srvDone := make(chan error, 1)
	go func() {
		raw, err := ln.Accept()
		if err != nil {
			srvDone <- err
			return
		}
		sc := &splitConn{Conn: raw}
		s := Server(sc, serverConfig(p))
		defer s.Close()
		if err := s.Handshake(); err != nil {
			srvDone <- err
			return
		}
		sc.split = true
		_, err = s.Write([]byte("a record that arrives in two halves"))
		sc.split = false
		srvDone <- err
	}()
	c, err := Dial("tcp", ln.Addr().String(), clientConfig(p, false))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(40 * time.Millisecond))
	buf := make([]byte, 100)
	if _, err := c.Read(buf); err == nil {
		t.Fatal("expected a timeout while the record is incomplete")
	} else if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		t.Fatalf("expected a timeout, got %v", err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != "a record that arrives in two halves" {
		t.Fatalf("after the timeout: %q %v", buf[:n], err)
	}
	if err := <-srvDone; err != nil {
		t.Fatal(err)
	}
}
