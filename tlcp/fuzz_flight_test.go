package tlcp

import (
	"bytes"
	"io"
	mrand "math/rand"
	"net"
	"sync"
	"testing"
)

// The handshake state machines fed a whole hostile flight: a recorded genuine flight mutated by
// the fuzzer reaches every message the peer sends in the clear (certificates, key exchanges,
// CertificateVerify) and the checks after them, not only the first message. The side under test
// draws its randomness from a fixed seed, so the recorded peer flight (whose signatures cover
// our random) stays valid for the unmutated seed. Each execution costs SM2 operations: run them
// with a short -fuzzminimizetime (e.g. 1s), or minimization of each new input eats the run.

// detRand is a deterministic entropy source: the same bytes on every run.
func detRand() io.Reader { return mrand.New(mrand.NewSource(7)) }

// readRecorder records what a connection reads (the peer's flight).
type readRecorder struct {
	net.Conn
	mu  sync.Mutex
	got bytes.Buffer
}

func (r *readRecorder) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	r.mu.Lock()
	r.got.Write(p[:n])
	r.mu.Unlock()
	return n, err
}

// recordFlight runs a genuine handshake and returns
// what the client read (server=false: the server's flight) or what the server read (true).
func recordFlight(tb testing.TB, sc, cc *Config, server bool) []byte {
	tb.Helper()
	a, b := net.Pipe()
	var rec *readRecorder
	var cliConn, srvConn net.Conn = a, b
	if server {
		rec = &readRecorder{Conn: b}
		srvConn = rec
	} else {
		rec = &readRecorder{Conn: a}
		cliConn = rec
	}
	errc := make(chan error, 1)
	go func() { errc <- Server(srvConn, sc).Handshake() }()
	if err := Client(cliConn, cc).Handshake(); err != nil {
		tb.Fatalf("recording handshake: %v", err)
	}
	if err := <-errc; err != nil {
		tb.Fatalf("recording handshake (server): %v", err)
	}
	a.Close()
	b.Close()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]byte(nil), rec.got.Bytes()...)
}

// FuzzClientHandshakeInput feeds a client (gm_channel toward a hostile bank) arbitrary server
// flights: it must fail or succeed without panicking, and never succeed on a flight that was
// changed in a signed or authenticated part.
func FuzzClientHandshakeInput(f *testing.F) {
	p := getPKI(f)
	for _, suite := range []uint16{ECC_SM4_GCM_SM3, ECC_SM4_CBC_SM3, ECDHE_SM4_GCM_SM3} {
		cc := clientConfig(p, true)
		cc.CipherSuites = []uint16{suite}
		cc.Rand = detRand()
		sc := serverConfig(p)
		sc.ClientAuth = RequireAndVerifyClientCert
		f.Add(uint8(suite), recordFlight(f, sc, cc, false))
	}
	f.Fuzz(func(t *testing.T, suite uint8, data []byte) {
		cc := clientConfig(p, true)
		cc.CipherSuites = []uint16{0xe000 | uint16(suite)}
		if suiteByID(cc.CipherSuites[0]) == nil {
			cc.CipherSuites = nil
		}
		cc.Rand = detRand()
		fc := &feedConn{}
		fc.buf.Write(data)
		c := Client(fc, cc)
		_ = c.Handshake() // only panics and hangs matter; a flight replayed unchanged may succeed
		c.Close()
	})
}

// FuzzServerHandshakeFlight feeds a server (the tlcp listener) arbitrary client flights that
// start from a genuine one with client authentication: certificates, ClientKeyExchange (ECC
// decryption, ECDHE), CertificateVerify and Finished are reached.
func FuzzServerHandshakeFlight(f *testing.F) {
	p := getPKI(f)
	newServer := func() *Config {
		sc := serverConfig(p)
		sc.ClientAuth = RequireAndVerifyClientCert
		sc.Rand = detRand()
		return sc
	}
	for _, suite := range []uint16{ECC_SM4_GCM_SM3, ECC_SM4_CBC_SM3, ECDHE_SM4_GCM_SM3} {
		cc := clientConfig(p, true)
		cc.CipherSuites = []uint16{suite}
		f.Add(recordFlight(f, newServer(), cc, true))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fc := &feedConn{}
		fc.buf.Write(data)
		c := Server(fc, newServer())
		_ = c.Handshake()
		c.Close()
	})
}
