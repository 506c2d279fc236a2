package tls13sm

import (
	"bytes"
	mrand "math/rand"
	"net"
	"sync"
	"testing"
)

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

// FuzzClientHandshakeInput feeds a client (gm_channel toward a hostile bank over RFC 8998)
// arbitrary server flights, seeded with a recorded genuine one (with and without a certificate
// request) for a client whose randomness is fixed: ServerHello, HelloRetryRequest and, as far
// as the keys allow, the encrypted flight are reached. Whatever arrives, the handshake ends
// without a panic or a hang.
func FuzzClientHandshakeInput(f *testing.F) {
	newClient := func(tb testing.TB) *Config {
		cc := clientConfig(tb)
		cc.Certificate = getPKI(tb).client
		cc.Rand = mrand.New(mrand.NewSource(7))
		cc.SessionTicketsDisabled = true
		return cc
	}
	for _, auth := range []ClientAuthType{NoClientCert, RequireAndVerifyClientCert} {
		sc := serverConfig(f)
		sc.ClientAuth = auth
		sraw, craw := tcpPair(f)
		rec := &readRecorder{Conn: craw}
		errc := make(chan error, 1)
		go func() { errc <- Server(sraw, sc).Handshake() }()
		if err := Client(rec, newClient(f)).Handshake(); err != nil {
			f.Fatalf("recording handshake: %v", err)
		}
		if err := <-errc; err != nil {
			f.Fatalf("recording handshake (server): %v", err)
		}
		f.Add(rec.got.Bytes())
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c := Client(&scriptConn{r: bytes.NewReader(data)}, newClient(t))
		_ = c.Handshake() // only panics and hangs matter
		c.Close()
	})
}
