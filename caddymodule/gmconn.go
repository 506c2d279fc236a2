package caddymodule

import (
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/emmansun/gmsm/smx509"
	"go.uber.org/zap"

	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/signing"
	"github.com/gmgate/gmgate/tlcp"
)

// The one server-connection wrapper of the `tlcp` and `tls13sm` listener wrappers: the
// handshake runs on first use in the connection's own goroutine, is recorded in the protocol's
// metrics, and an established connection is registered (by local and remote address) for the
// HTTP handlers, which read the client's identity from it whichever GM protocol it speaks.

// gmProtoConn is a TLCP (*tlcp.Conn) or RFC 8998 (*tls13sm.Conn) server connection.
type gmProtoConn interface {
	net.Conn
	Handshake() error
}

// gmProtocol is what differs between the protocols behind gmConn.
type gmProtocol struct {
	// name is the log name: "TLCP", "RFC 8998".
	name string
	// observe records a handshake outcome and its duration in the protocol's metrics.
	observe func(c gmProtoConn, err error, elapsed time.Duration)
	// view computes the handlers' view of an established connection.
	view func(c gmProtoConn) *connView
	// tlsState is the connection's state in crypto/tls terms (no peer certificates: SM2
	// certificates are not crypto/x509 certificates; handlers read them from the view).
	tlsState func(c gmProtoConn) tls.ConnectionState
}

// Protocol names, the value of {gm.tls.protocol}.
const (
	protoTLCP    = "tlcp"
	protoTLS13SM = "tls13sm"
)

// gmConn is a TLCP or RFC 8998 server connection that records its handshake in metrics and in
// the registry the HTTP handlers read the connection's details from.
type gmConn struct {
	gmProtoConn
	p      *gmProtocol
	logger *zap.Logger
	key    string // liveConns key: local|remote address, set once the handshake succeeded (under mu)
	once   sync.Once
	hsErr  error
	// viewOnce/viewed: the handlers' view, computed on first use after the handshake.
	viewOnce sync.Once
	viewed   *connView
	mu       sync.Mutex // guards closed and the liveConns entry
	closed   bool
}

func newGMConn(c gmProtoConn, p *gmProtocol, logger *zap.Logger) *gmConn {
	return &gmConn{gmProtoConn: c, p: p, logger: logger}
}

func (c *gmConn) handshake() error {
	c.once.Do(func() {
		start := time.Now()
		err := c.gmProtoConn.Handshake()
		c.p.observe(c.gmProtoConn, err, time.Since(start))
		if err != nil {
			c.hsErr = err
			c.logger.Debug(c.p.name+" handshake failed", zap.String("remote", c.RemoteAddr().String()), zap.Error(err))
			return
		}
		key := connKey(c.LocalAddr(), c.RemoteAddr())
		c.mu.Lock()
		if !c.closed {
			c.key = key
			liveConns.Store(key, c)
		}
		c.mu.Unlock()
	})
	return c.hsErr
}

// Handshake runs the handshake once (later calls return its result).
func (c *gmConn) Handshake() error { return c.handshake() }

// Read runs the handshake first.
func (c *gmConn) Read(b []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.gmProtoConn.Read(b)
}

// Write runs the handshake first.
func (c *gmConn) Write(b []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.gmProtoConn.Write(b)
}

// Close sends close_notify and forgets the connection.
func (c *gmConn) Close() error {
	c.mu.Lock()
	c.closed = true
	if c.key != "" {
		liveConns.CompareAndDelete(c.key, c)
	}
	c.mu.Unlock()
	return c.gmProtoConn.Close()
}

func (c *gmConn) view() *connView {
	c.viewOnce.Do(func() { c.viewed = c.p.view(c.gmProtoConn) })
	return c.viewed
}

// gmStateConn also reports a crypto/tls-shaped ConnectionState, so Caddy treats the request as
// arriving over a secure channel (r.TLS set: the protocol's version and suite ID; scheme https
// for placeholders, X-Forwarded-Proto and signatures that cover @target-uri). Caddy asks once
// the first request has been read, after the handshake.
type gmStateConn struct{ *gmConn }

// ConnectionState reports the session in crypto/tls terms.
func (c *gmStateConn) ConnectionState() tls.ConnectionState { return c.p.tlsState(c.gmProtoConn) }

// liveConns maps "local|remote" to the established TLCP or RFC 8998 connection, for the HTTP
// handlers.
var liveConns sync.Map

func connKey(local, remote net.Addr) string { return local.String() + "|" + remote.String() }

// liveConn returns the established connection a request arrived on.
func liveConn(local, remote string) (*gmConn, bool) {
	v, ok := liveConns.Load(local + "|" + remote)
	if !ok {
		return nil, false
	}
	return v.(*gmConn), true
}

// connView is what the HTTP handlers read of an established connection, computed once per
// connection (not per request): its protocol, state and placeholder values.
type connView struct {
	protocol string               // protoTLCP or protoTLS13SM
	tlcp     tlcp.ConnectionState // TLCP connections only
	tls      *tls.ConnectionState // state in crypto/tls terms, for r.TLS
	// client is the client's signing certificate when, and only when, its chain was verified
	// (TLCP: PeerSignCertificate; RFC 8998: the leaf of a verified chain); nil otherwise. It is
	// the connection's client identity ({gm.tls.client.*}, bind_tls_client).
	client                                 *smx509.Certificate
	version, suite, serverName, resumed    string
	clientSubject, clientSerial, clientSM3 string
}

// setClient fills the client identity fields from a verified signing certificate.
func (v *connView) setClient(cert *smx509.Certificate) {
	if cert == nil {
		return
	}
	v.client = cert
	v.clientSubject = cert.Subject.String()
	v.clientSerial = signing.SerialHex(cert.SerialNumber)
	v.clientSM3 = pki.FingerprintSM3(cert)
}

// requestConn returns the TLCP or RFC 8998 connection r came on.
func requestConn(r *http.Request) (*gmConn, bool) {
	la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok || la == nil {
		return nil, false
	}
	return liveConn(la.String(), r.RemoteAddr)
}

// gmConnView returns the view of the TLCP or RFC 8998 connection r came on.
func gmConnView(r *http.Request) (*connView, bool) {
	c, ok := requestConn(r)
	if !ok {
		return nil, false
	}
	return c.view(), true
}

// tlsClientCertificate returns the verified client signing certificate of the TLCP or RFC 8998
// connection r came on, or nil (no GM connection, no certificate, or one whose chain was not
// verified: never an identity then).
func tlsClientCertificate(r *http.Request) *smx509.Certificate {
	if v, ok := gmConnView(r); ok {
		return v.client
	}
	return nil
}
