package tlcp

import (
	"errors"
	"io"
	"net"
	"sync"
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
type Mux struct {
	inner       net.Listener
	peekTimeout time.Duration
	tlcp, other *muxListener
	done        chan struct{}
	closeOnce   sync.Once
	closeErr    error
	wg          sync.WaitGroup
	sem         chan struct{}
}

// NewMux starts routing connections accepted from inner. peekTimeout bounds
// how long a client may take to send its first 11 bytes (default 10 s).
// Connections that send nothing in time are closed.
func NewMux(inner net.Listener, peekTimeout time.Duration) *Mux {
	if peekTimeout <= 0 {
		peekTimeout = 10 * time.Second
	}
	m := &Mux{inner: inner, peekTimeout: peekTimeout, done: make(chan struct{}), sem: make(chan struct{}, 1024)}
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
	})
	return m.closeErr
}

var errMuxClosed = net.ErrClosed

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
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
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
		select {
		case m.sem <- struct{}{}:
		case <-m.done:
			c.Close()
			return
		}
		m.wg.Add(1)
		go m.route(c)
	}
}

func (m *Mux) route(c net.Conn) {
	defer m.wg.Done()
	defer func() { <-m.sem }()
	buf := make([]byte, 0, firstRecordPeekLen)
	c.SetReadDeadline(time.Now().Add(m.peekTimeout)) //nolint:errcheck
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
			c.Close()
			return
		}
	}
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
