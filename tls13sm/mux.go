package tls13sm

import (
	"errors"
	"net"
	"sync"
	"syscall"
	"time"
)

// classifyClientHello decides from the first bytes of a connection whether
// they start a TLS ClientHello that this package should serve: one whose
// first offered cipher suite (GREASE and signalling values skipped) is an
// RFC 8998 suite, i.e. a client offering only SM suites or preferring them.
// needMore is true while b is a matching prefix too short to decide. The
// decision reads only the record and handshake headers, the session ID and
// the cipher-suite list of the first record.
func classifyClientHello(b []byte) (isSM, needMore bool) {
	const hdr = recordHeaderLen + 4 + 2 + 32 + 1 // record hdr, handshake hdr, version, random, sid length
	if len(b) < hdr {
		// Reject early what cannot be a ClientHello record.
		if len(b) > 0 && b[0] != recordTypeHandshake || len(b) > 1 && b[1] != 3 || len(b) > 5 && b[5] != typeClientHello {
			return false, false
		}
		return false, true
	}
	if b[0] != recordTypeHandshake || b[1] != 3 || b[5] != typeClientHello {
		return false, false
	}
	recLen := int(b[3])<<8 | int(b[4])
	if recLen > maxPlaintext {
		return false, false
	}
	end := recordHeaderLen + recLen // the hello must be decidable within the first record
	off := hdr + int(b[hdr-1])      // after the session ID
	if off+2 > end {
		return false, false
	}
	if len(b) < off+2 {
		return false, true
	}
	n := int(b[off])<<8 | int(b[off+1])
	off += 2
	if n == 0 || n%2 != 0 || off+n > end {
		return false, false
	}
	for i := 0; i < n; i += 2 {
		if len(b) < off+i+2 {
			return false, true
		}
		s := uint16(b[off+i])<<8 | uint16(b[off+i+1])
		if s&0x0F0F == 0x0A0A && s>>8 == s&0xFF || s == 0x00FF || s == 0x5600 { // GREASE, SCSVs
			continue
		}
		return supportedSuite(s), false
	}
	return false, false
}

// muxPeekMax bounds what the Mux reads before deciding: a full first record.
const muxPeekMax = recordHeaderLen + maxPlaintext

// Mux splits one listener into connections for this package (ClientHellos
// offering only or first the RFC 8998 suites) and every other connection
// (for crypto/tls, or the tlcp Mux in front of it), by peeking at the first
// record; the routed connections replay the peeked bytes. As in tlcp.Mux the
// accept loop never waits for a peer: each connection is peeked in its own
// goroutine under PeekTimeout, and a source IP with MaxPendingPerSource
// connections still undecided (or the Mux with MaxPending) has new ones
// closed at once.
type Mux struct {
	inner     net.Listener
	cfg       MuxConfig
	sm, other *muxListener
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
	wg        sync.WaitGroup

	mu      sync.Mutex
	pending map[string]int
	total   int
	peeking map[net.Conn]struct{}
}

// MuxConfig bounds a Mux. Zero values take the defaults.
type MuxConfig struct {
	// PeekTimeout bounds how long a client may take to send the bytes that
	// decide its protocol (default 10 s).
	PeekTimeout time.Duration
	// MaxPendingPerSource bounds the undecided connections of one source IP
	// (default 256).
	MaxPendingPerSource int
	// MaxPending bounds all undecided connections (default 65536).
	MaxPending int
}

// NewMux starts routing connections accepted from inner.
func NewMux(inner net.Listener, cfg MuxConfig) *Mux {
	if cfg.PeekTimeout <= 0 {
		cfg.PeekTimeout = 10 * time.Second
	}
	if cfg.MaxPendingPerSource <= 0 {
		cfg.MaxPendingPerSource = 256
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = 65536
	}
	m := &Mux{inner: inner, cfg: cfg, done: make(chan struct{}), pending: map[string]int{}, peeking: map[net.Conn]struct{}{}}
	m.sm = &muxListener{m: m, ch: make(chan net.Conn)}
	m.other = &muxListener{m: m, ch: make(chan net.Conn)}
	m.wg.Add(1)
	go m.acceptLoop()
	return m
}

// SM returns the listener of the RFC 8998 connections (raw; wrap it with
// NewListener to serve them).
func (m *Mux) SM() net.Listener { return m.sm }

// Other returns the listener of every other connection.
func (m *Mux) Other() net.Listener { return m.other }

// Close closes the inner listener and both routed listeners.
func (m *Mux) Close() error {
	m.closeOnce.Do(func() {
		close(m.done)
		m.closeErr = m.inner.Close()
		m.mu.Lock()
		for c := range m.peeking {
			c.Close()
		}
		m.mu.Unlock()
	})
	m.wg.Wait()
	return m.closeErr
}

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
	return false
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
			go m.Close() //nolint:errcheck // the inner error ends the Mux
			return
		}
		delay = 0
		src := sourceIP(c.RemoteAddr())
		if !m.admit(src, c) {
			c.Close()
			continue
		}
		m.wg.Add(1)
		go m.route(c, src)
	}
}

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
	buf := make([]byte, 0, 512)
	c.SetReadDeadline(time.Now().Add(m.cfg.PeekTimeout)) //nolint:errcheck
	isSM := false
	for {
		if len(buf) == cap(buf) {
			nb := make([]byte, len(buf), min(2*cap(buf), muxPeekMax))
			copy(nb, buf)
			buf = nb
		}
		n, err := c.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		var more bool
		isSM, more = classifyClientHello(buf)
		if !more || len(buf) >= muxPeekMax {
			break
		}
		if err != nil {
			m.release(src, c)
			c.Close()
			return
		}
	}
	m.release(src, c)
	c.SetReadDeadline(time.Time{}) //nolint:errcheck
	pc := &prefixConn{Conn: c, prefix: buf}
	dst := m.other
	if isSM {
		dst = m.sm
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
		return nil, net.ErrClosed
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
