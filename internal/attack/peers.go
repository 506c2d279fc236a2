package attack

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// SilentPeers opens n TCP connections to addr that never send a byte (the slow-loris of a
// port that peeks at the first record), spread round-robin over the given local source IPs
// (loopback aliases such as 127.0.0.2 emulate a distributed attacker). The caller closes them
// with CloseAll.
func SilentPeers(addr string, n int, sources []string) ([]net.Conn, error) {
	if len(sources) == 0 {
		sources = []string{"127.0.0.1"}
	}
	conns := make([]net.Conn, 0, n)
	for i := 0; i < n; i++ {
		d := net.Dialer{Timeout: 5 * time.Second,
			LocalAddr: &net.TCPAddr{IP: net.ParseIP(sources[i%len(sources)])}}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			CloseAll(conns)
			return nil, fmt.Errorf("attack: silent peer %d: %w", i, err)
		}
		conns = append(conns, c)
	}
	return conns, nil
}

// CloseAll closes every connection.
func CloseAll(conns []net.Conn) {
	for _, c := range conns {
		_ = c.Close()
	}
}

// Loopbacks returns n loopback source addresses 127.0.0.<first>.. (n <= 250).
func Loopbacks(first, n int) []string {
	out := make([]string, 0, n)
	for i := 0; i < n && first+i < 255; i++ {
		out = append(out, fmt.Sprintf("127.0.0.%d", first+i))
	}
	return out
}

// SlowPeer dials addr and trickles data one byte per interval (the slow-loris of a port that
// peeks at the first record: each byte arrives before any per-read timeout would fire). It
// returns the connection at once; the returned channel receives the write error that ended the
// trickle (nil when all of data was sent) and is closed after it.
func SlowPeer(addr string, data []byte, interval time.Duration) (net.Conn, <-chan error, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, nil, fmt.Errorf("attack: slow peer: %w", err)
	}
	done := make(chan error, 1)
	go func() {
		defer close(done)
		for i := range data {
			if i > 0 {
				time.Sleep(interval)
			}
			if _, err := c.Write(data[i : i+1]); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	return c, done, nil
}

// HostileOpening is a first flight a hostile client sends to a port that classifies
// connections by their first record.
type HostileOpening struct {
	Name string
	Data []byte
	// TLCP is true when the opening carries the TLCP ClientHello prefix, so a dual-stack
	// port routes it to the TLCP side, which must refuse the rest.
	TLCP bool
	// Partial is true when the opening is a strict prefix of what a classifier needs: the
	// peer then stays silent.
	Partial bool
}

// HostileOpenings lists the first flights of garbage peers: oversized and zero record lengths,
// truncated TLCP and TLS hellos, plaintext protocols and random bytes.
func HostileOpenings() []HostileOpening {
	tlcpPrefix := []byte{22, 1, 1, 0x00, 0x40, 1, 0x00, 0x00, 0x3c, 1, 1}
	oversized := append([]byte{22, 1, 1, 0xff, 0xff, 1, 0xff, 0xff, 0xff, 1, 1}, make([]byte, 64)...)
	zeroLen := []byte{22, 1, 1, 0x00, 0x00, 1, 0x00, 0x00, 0x00, 1, 1}
	hugeHandshake := append([]byte{22, 1, 1, 0x00, 0x40, 1, 0xff, 0xff, 0xff, 1, 1}, make([]byte, 0x40-6)...)
	return []HostileOpening{
		{Name: "tlcp-oversized-record-length", Data: oversized, TLCP: true},
		{Name: "tlcp-zero-record-length", Data: zeroLen, TLCP: true},
		{Name: "tlcp-oversized-handshake-length", Data: hugeHandshake, TLCP: true},
		{Name: "tlcp-truncated-record", Data: tlcpPrefix, TLCP: true},
		{Name: "tlcp-partial-header", Data: tlcpPrefix[:7], TLCP: true, Partial: true},
		{Name: "one-byte", Data: []byte{22}, Partial: true},
		{Name: "tls-oversized-record-length", Data: []byte{22, 3, 1, 0xff, 0xff, 1, 0xff, 0xff, 0xff, 3, 3}},
		{Name: "tls-truncated-hello", Data: []byte{22, 3, 1, 0x02, 0x00, 1, 0x00, 0x01, 0xfc, 3, 3}},
		{Name: "alert-first", Data: []byte{21, 1, 1, 0x00, 0x02, 2, 40}},
		{Name: "sslv2-hello", Data: []byte{0x80, 0x2e, 0x01, 0x03, 0x01, 0x00, 0x15}},
		{Name: "http-plaintext", Data: []byte("GET / HTTP/1.1\r\nHost: gateway\r\n\r\n")},
		{Name: "zeros", Data: make([]byte, 64)},
		{Name: "ones", Data: bytesOf(0xff, 64)},
	}
}

func bytesOf(b byte, n int) []byte {
	out := make([]byte, n)
	for i := range out {
		out[i] = b
	}
	return out
}

// Step is one read of a ScriptConn: Data (at most that much per Read) or, when Data is
// empty, Err.
type Step struct {
	Data []byte
	Err  error
}

// Fragment cuts data into the reads a hostile or congested network delivers, following plan:
// each plan byte p gives a chunk of p&0x3f+1 bytes, preceded by a read that times out when
// p&0x80 is set (a caller's deadline firing mid-record). What plan does not cover arrives in
// one last chunk. Fuzz targets pass their input as plan.
func Fragment(data, plan []byte) []Step {
	var steps []Step
	for _, p := range plan {
		if len(data) == 0 {
			break
		}
		if p&0x80 != 0 {
			steps = append(steps, Step{Err: os.ErrDeadlineExceeded})
		}
		n := int(p&0x3f) + 1
		if n > len(data) {
			n = len(data)
		}
		steps = append(steps, Step{Data: data[:n]})
		data = data[n:]
	}
	if len(data) > 0 {
		steps = append(steps, Step{Data: data})
	}
	return steps
}

// ScriptConn is an in-memory net.Conn whose reads follow a script: each Step is delivered by
// one or more Reads (never more than the step holds) or fails one Read with its error; after
// the script, reads return End (io.EOF when nil). Writes are kept; Close is observable.
// Deadlines are accepted and ignored: timeouts come from the script.
type ScriptConn struct {
	Steps  []Step
	End    error
	Remote net.Addr

	mu      sync.Mutex
	written bytes.Buffer
	closed  chan struct{}
	once    sync.Once
}

// NewScriptConn returns a ScriptConn from remote (127.0.0.1:1 when nil).
func NewScriptConn(steps []Step, remote net.Addr) *ScriptConn {
	if remote == nil {
		remote = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
	}
	return &ScriptConn{Steps: steps, Remote: remote, closed: make(chan struct{})}
}

// Read implements net.Conn.
func (s *ScriptConn) Read(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.closed:
		return 0, net.ErrClosed
	default:
	}
	for len(s.Steps) > 0 {
		st := &s.Steps[0]
		if len(st.Data) == 0 {
			s.Steps = s.Steps[1:]
			if st.Err != nil {
				return 0, st.Err
			}
			continue
		}
		n := copy(p, st.Data)
		st.Data = st.Data[n:]
		if len(st.Data) == 0 && st.Err == nil {
			s.Steps = s.Steps[1:]
		}
		return n, nil
	}
	if s.End != nil {
		return 0, s.End
	}
	return 0, io.EOF
}

// Write implements net.Conn; the bytes are kept for Written.
func (s *ScriptConn) Write(p []byte) (int, error) {
	select {
	case <-s.closed:
		return 0, net.ErrClosed
	default:
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.written.Write(p)
}

// Written returns a copy of everything written so far.
func (s *ScriptConn) Written() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.written.Bytes())
}

// Close implements net.Conn.
func (s *ScriptConn) Close() error {
	s.once.Do(func() { close(s.closed) })
	return nil
}

// Closed is closed once Close was called.
func (s *ScriptConn) Closed() <-chan struct{} { return s.closed }

// LocalAddr implements net.Conn.
func (s *ScriptConn) LocalAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 443} }

// RemoteAddr implements net.Conn.
func (s *ScriptConn) RemoteAddr() net.Addr { return s.Remote }

// SetDeadline implements net.Conn.
func (s *ScriptConn) SetDeadline(time.Time) error { return nil }

// SetReadDeadline implements net.Conn.
func (s *ScriptConn) SetReadDeadline(time.Time) error { return nil }

// SetWriteDeadline implements net.Conn.
func (s *ScriptConn) SetWriteDeadline(time.Time) error { return nil }

// ConnListener is a net.Listener that hands out the connections sent on it; Close ends Accept.
type ConnListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

// NewConnListener returns an empty ConnListener.
func NewConnListener() *ConnListener {
	return &ConnListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

// Deliver makes c the next accepted connection; it reports false once the listener is closed.
func (l *ConnListener) Deliver(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.done:
		return false
	}
}

// Accept implements net.Listener.
func (l *ConnListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close implements net.Listener.
func (l *ConnListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

// Addr implements net.Listener.
func (l *ConnListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 443} }
