// Package firstrecord splits one listener in two by the first bytes each
// accepted connection sends: the one accept loop behind tlcp.Mux (TLCP
// beside TLS) and tls13sm.Mux (RFC 8998 beside other TLS). Each protocol
// gives its classifier; this package owns the bounds: the accept loop never
// waits for a peer (each connection is peeked in its own goroutine under
// PeekTimeout, at most MaxPeek bytes), a source IP with MaxPendingPerSource
// connections still undecided (or the Mux with MaxPending) has new ones
// closed at once, and temporary accept errors (EMFILE, ENFILE, ECONNABORTED,
// timeouts) are retried with a backoff of 5 ms doubling to 1 s, as net/http
// does, instead of closing the listener. Routed connections replay the
// peeked bytes.
package firstrecord

import (
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"time"
)

// Classify decides from the first bytes b of a connection whether it goes
// to the Match listener. needMore is true while b is a matching prefix too
// short to decide. It must not panic on any input.
type Classify func(b []byte) (match, needMore bool)

// Config bounds a Mux. Zero values take the defaults.
type Config struct {
	// PeekTimeout bounds how long a client may take to send the bytes that
	// decide its protocol (default 10 s); connections undecided in time are
	// closed.
	PeekTimeout time.Duration
	// MaxPendingPerSource bounds the undecided connections of one source IP
	// (default 256); more are closed at accept.
	MaxPendingPerSource int
	// MaxPending bounds all undecided connections (default 65536).
	MaxPending int
	// MaxPeek bounds the bytes read before deciding (required, > 0): when
	// the classifier still needs more at MaxPeek bytes, the connection goes
	// to the Other listener.
	MaxPeek int
}

// Defaults of Config.
const (
	DefaultPeekTimeout         = 10 * time.Second
	DefaultMaxPendingPerSource = 256
	DefaultMaxPending          = 65536
)

// Mux routes the connections of one listener to Match or Other.
type Mux struct {
	inner        net.Listener
	cfg          Config
	classify     Classify
	match, other *listener
	done         chan struct{}
	closeOnce    sync.Once
	closeErr     error
	wg           sync.WaitGroup

	mu      sync.Mutex
	pending map[string]int // connections being peeked, by source IP
	total   int
	peeking map[net.Conn]struct{} // closed by Close
}

// New starts routing connections accepted from inner by classify.
func New(inner net.Listener, cfg Config, classify Classify) *Mux {
	if cfg.PeekTimeout <= 0 {
		cfg.PeekTimeout = DefaultPeekTimeout
	}
	if cfg.MaxPendingPerSource <= 0 {
		cfg.MaxPendingPerSource = DefaultMaxPendingPerSource
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = DefaultMaxPending
	}
	if cfg.MaxPeek <= 0 {
		cfg.MaxPeek = 1
	}
	m := &Mux{inner: inner, cfg: cfg, classify: classify, done: make(chan struct{}),
		pending: map[string]int{}, peeking: map[net.Conn]struct{}{}}
	m.match = &listener{m: m, ch: make(chan net.Conn)}
	m.other = &listener{m: m, ch: make(chan net.Conn)}
	m.wg.Add(1)
	go m.acceptLoop()
	return m
}

// Match returns the listener of the connections the classifier matched.
func (m *Mux) Match() net.Listener { return m.match }

// Other returns the listener of every other connection.
func (m *Mux) Other() net.Listener { return m.other }

// Pending reports the connections still being peeked: in all, their number
// of distinct sources, and those Close would close.
func (m *Mux) Pending() (total, sources, peeking int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.total, len(m.pending), len(m.peeking)
}

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
			m.shutdown() //nolint:errcheck // the inner error ends the Mux
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

// admit counts a connection of src as pending, unless a bound is reached or
// the Mux is closed.
func (m *Mux) admit(src string, c net.Conn) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	select {
	case <-m.done:
		return false
	default:
	}
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
	buf := make([]byte, 0, min(512, m.cfg.MaxPeek))
	c.SetReadDeadline(time.Now().Add(m.cfg.PeekTimeout)) //nolint:errcheck
	match := false
	for {
		if len(buf) == cap(buf) {
			nb := make([]byte, len(buf), min(2*cap(buf), m.cfg.MaxPeek))
			copy(nb, buf)
			buf = nb
		}
		n, err := c.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		var more bool
		match, more = m.classify(buf)
		if !more || len(buf) >= m.cfg.MaxPeek {
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
	if match {
		dst = m.match
	}
	select {
	case dst.ch <- pc:
	case <-m.done:
		c.Close()
	}
}

type listener struct {
	m  *Mux
	ch chan net.Conn
}

// Accept returns the next routed connection.
func (l *listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.m.done:
		return nil, net.ErrClosed
	}
}

// Close closes the whole Mux.
func (l *listener) Close() error { return l.m.Close() }

// Addr returns the inner listener's address.
func (l *listener) Addr() net.Addr { return l.m.inner.Addr() }

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
