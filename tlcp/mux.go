package tlcp

import (
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"time"
)

// firstRecordPeekLen is what the classifier needs: record header (5),
// handshake type (1), length (3) and client_version (2).
const firstRecordPeekLen = 11

// classifyFirstRecord decides from the first bytes of a connection whether
// it starts with a TLCP ClientHello: record type handshake, record version
// 0x0101, handshake type client_hello, client_version 0x0101. needMore is
// true while b is a matching prefix shorter than needed.
func classifyFirstRecord(b []byte) (isTLCP, needMore bool) {
	want := [...]struct {
		off int
		val byte
	}{{0, recordTypeHandshake}, {1, 1}, {2, 1}, {5, typeClientHello}, {9, 1}, {10, 1}}
	for _, w := range want {
		if len(b) <= w.off {
			return false, true
		}
		if b[w.off] != w.val {
			return false, false
		}
	}
	return true, false
}

// Mux serves TLCP and another protocol (TLS 1.2/1.3 for crypto/tls) on one
// listener, routing each accepted connection by its first record. The
// returned connections replay the peeked bytes, so nothing is lost.
//
// The accept loop never waits for a peer: each connection is peeked in its
// own goroutine, and a source address with MaxPendingPerSource connections
// still being peeked (or the whole Mux with MaxPending) has new connections
// closed at once, so silent sockets cannot stall other users. Temporary
// accept errors (EMFILE, ENFILE, ECONNABORTED, timeouts) are retried with a
// backoff of 5 ms doubling to 1 s, as net/http does, instead of closing the
// listener.
type Mux struct {
	inner     net.Listener
	cfg       MuxConfig
	tlcp      *muxListener
	other     *muxListener
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
	wg        sync.WaitGroup

	mu      sync.Mutex
	pending map[string]int // connections being peeked, by source IP
	total   int
	peeking map[net.Conn]struct{} // closed by Close
}

// MuxConfig bounds a Mux. Zero values take the defaults.
type MuxConfig struct {
	// PeekTimeout bounds how long a client may take to send its first 11
	// bytes (default 10 s); connections that send nothing in time are closed.
	PeekTimeout time.Duration
	// MaxPendingPerSource bounds the connections of one source IP that are
	// still being peeked (default 256); more are closed at accept.
	MaxPendingPerSource int
	// MaxPending bounds all connections still being peeked (default 65536).
	MaxPending int
}

// Mux defaults.
const (
	DefaultMuxPeekTimeout         = 10 * time.Second
	DefaultMuxMaxPendingPerSource = 256
	DefaultMuxMaxPending          = 65536
)

// NewMux starts routing connections accepted from inner with the default
// bounds and the given peek timeout (default 10 s).
func NewMux(inner net.Listener, peekTimeout time.Duration) *Mux {
	return NewMuxConfig(inner, MuxConfig{PeekTimeout: peekTimeout})
}

// NewMuxConfig starts routing connections accepted from inner.
func NewMuxConfig(inner net.Listener, cfg MuxConfig) *Mux {
	if cfg.PeekTimeout <= 0 {
		cfg.PeekTimeout = DefaultMuxPeekTimeout
	}
	if cfg.MaxPendingPerSource <= 0 {
		cfg.MaxPendingPerSource = DefaultMuxMaxPendingPerSource
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = DefaultMuxMaxPending
	}
	m := &Mux{inner: inner, cfg: cfg, done: make(chan struct{}), pending: map[string]int{}, peeking: map[net.Conn]struct{}{}}
	m.tlcp = &muxListener{m: m, ch: make(chan net.Conn)}
	m.other = &muxListener{m: m, ch: make(chan net.Conn)}
	m.wg.Add(1)
	go m.acceptLoop()
	return m
}

// TLCP returns the listener that receives TLCP connections (raw; wrap it
// with NewListener to serve TLCP).
func (m *Mux) TLCP() net.Listener { return m.tlcp }

// Other returns the listener that receives every other connection (for
// example to hand to crypto/tls).
func (m *Mux) Other() net.Listener { return m.other }

// Close closes the inner listener and both routed listeners and waits for
// the routing goroutines to finish.
func (m *Mux) Close() error {
	err := m.shutdown()
	m.wg.Wait()
	return err
}

func (m *Mux) shutdown() error {
	m.closeOnce.Do(func() {
		close(m.done)
		m.closeErr = m.inner.Close()
		m.mu.Lock()
		for c := range m.peeking {
			c.Close() // connections still silent end with the listener
		}
		m.mu.Unlock()
	})
	return m.closeErr
}

var errMuxClosed = net.ErrClosed

// temporaryAcceptError reports whether an accept error is worth retrying:
// the process or system is out of descriptors or buffers, or one connection
// was aborted before it was accepted.
func temporaryAcceptError(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ECONNABORTED, syscall.ECONNRESET,
		syscall.ENOBUFS, syscall.ENOMEM, syscall.EAGAIN, syscall.EINTR, syscall.EPROTO, syscall.EPERM} {
		if errors.Is(err, e) {
			return true
		}
	}
	var te interface{ Temporary() bool }
	return errors.As(err, &te) && te.Temporary()
}

func (m *Mux) acceptLoop() {
	defer m.wg.Done()
	var delay time.Duration
	for {
		c, err := m.inner.Accept()
		if err != nil {
			select {
			case <-m.done:
				return
			default:
			}
			if temporaryAcceptError(err) {
				if delay == 0 {
					delay = 5 * time.Millisecond
				} else if delay *= 2; delay > time.Second {
					delay = time.Second
				}
				select {
				case <-time.After(delay):
				case <-m.done:
					return
				}
				continue
			}
			m.shutdown() //nolint:errcheck // the inner error is what matters
			return
		}
		delay = 0
		src := sourceIP(c.RemoteAddr())
		if !m.admit(src, c) {
			c.Close() // the source (or everyone) has too many connections still silent
			continue
		}
		m.wg.Add(1)
		go m.route(c, src)
	}
}

// admit counts a connection of src as pending, unless a bound is reached.
func (m *Mux) admit(src string, c net.Conn) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.total >= m.cfg.MaxPending || m.pending[src] >= m.cfg.MaxPendingPerSource {
		return false
	}
	m.total++
	m.pending[src]++
	m.peeking[c] = struct{}{}
	return true
}

func (m *Mux) release(src string, c net.Conn) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.peeking, c)
	m.total--
	if m.pending[src]--; m.pending[src] <= 0 {
		delete(m.pending, src)
	}
}

// sourceIP is the host part of a remote address (the whole string if it has no port).
func sourceIP(a net.Addr) string {
	if a == nil {
		return ""
	}
	s := a.String()
	if h, _, err := net.SplitHostPort(s); err == nil {
		return h
	}
	return s
}

func (m *Mux) route(c net.Conn, src string) {
	defer m.wg.Done()
	buf := make([]byte, 0, firstRecordPeekLen)
	c.SetReadDeadline(time.Now().Add(m.cfg.PeekTimeout)) //nolint:errcheck
	isTLCP := false
	for {
		n, err := c.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		var more bool
		isTLCP, more = classifyFirstRecord(buf)
		if !more {
			break
		}
		if err != nil {
			m.release(src, c)
			c.Close()
			return
		}
	}
	m.release(src, c)              // classified: no longer a silent connection
	c.SetReadDeadline(time.Time{}) //nolint:errcheck
	pc := &prefixConn{Conn: c, prefix: buf}
	dst := m.other
	if isTLCP {
		dst = m.tlcp
	}
	select {
	case dst.ch <- pc:
	case <-m.done:
		c.Close()
	}
}

type muxListener struct {
	m  *Mux
	ch chan net.Conn
}

// Accept returns the next routed connection.
func (l *muxListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.m.done:
		return nil, errMuxClosed
	}
}

// Close closes the whole Mux.
func (l *muxListener) Close() error { return l.m.Close() }

// Addr returns the inner listener's address.
func (l *muxListener) Addr() net.Addr { return l.m.inner.Addr() }

// prefixConn replays peeked bytes before reading from the connection.
type prefixConn struct {
	net.Conn
	prefix []byte
}

// Read implements io.Reader.
func (p *prefixConn) Read(b []byte) (int, error) {
	if len(p.prefix) > 0 {
		n := copy(b, p.prefix)
		p.prefix = p.prefix[n:]
		return n, nil
	}
	return p.Conn.Read(b)
}

var _ io.Reader = (*prefixConn)(nil)
