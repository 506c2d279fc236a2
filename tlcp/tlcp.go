package tlcp

import (
	"context"
	"errors"
	"net"

	"github.com/gmgate/gmgate/internal/dialhs"
)

// Server returns a server-side TLCP connection over conn.
func Server(conn net.Conn, config *Config) *Conn {
	c := &Conn{conn: conn, config: config}
	c.handshakeFn = c.serverHandshake
	return c
}

// Client returns a client-side TLCP connection over conn. config must set
// ServerName or InsecureSkipVerify.
func Client(conn net.Conn, config *Config) *Conn {
	c := &Conn{conn: conn, config: config, isClient: true}
	c.handshakeFn = c.clientHandshake
	return c
}

type listener struct {
	net.Listener
	config *Config
}

// Accept waits for the next connection and wraps it as a TLCP server
// connection. The handshake runs on first Read/Write or Handshake.
func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return Server(c, l.config), nil
}

// NewListener wraps inner so that accepted connections are TLCP servers.
func NewListener(inner net.Listener, config *Config) net.Listener {
	return &listener{Listener: inner, config: config}
}

// Listen listens on network/laddr and serves TLCP with config.
func Listen(network, laddr string, config *Config) (net.Listener, error) {
	if config == nil || (!config.hasLocalPair() && config.GetCertificate == nil) {
		return nil, errors.New("tlcp: Listen needs a certificate pair or GetCertificate")
	}
	l, err := net.Listen(network, laddr)
	if err != nil {
		return nil, err
	}
	return NewListener(l, config), nil
}

// Dialer dials TLCP connections; it is what the bank-channel transport uses.
type Dialer struct {
	// NetDialer is the dialer for the TCP connection; a zero Dialer if nil.
	NetDialer *net.Dialer
	// Config is the TLCP configuration. If ServerName is empty, the host
	// part of the address is used.
	Config *Config
}

// Dial connects to addr and runs the handshake.
func (d *Dialer) Dial(network, addr string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, addr)
}

// DialContext connects to addr and runs the handshake under ctx.
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := dial(ctx, d.NetDialer, network, addr, d.Config)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// DialWithDialer dials with dialer and runs the handshake; dialer.Timeout
// also bounds the handshake.
func DialWithDialer(dialer *net.Dialer, network, addr string, config *Config) (*Conn, error) {
	return dial(context.Background(), dialer, network, addr, config)
}

// Dial connects to addr and runs the handshake.
func Dial(network, addr string, config *Config) (*Conn, error) {
	return dial(context.Background(), nil, network, addr, config)
}

func dial(ctx context.Context, nd *net.Dialer, network, addr string, config *Config) (*Conn, error) {
	if config == nil {
		return nil, errors.New("tlcp: nil Config")
	}
	return dialhs.Dial(ctx, nd, network, addr, func(ctx context.Context, raw net.Conn, host string) (*Conn, error) {
		cfg := config
		if cfg.ServerName == "" && !cfg.InsecureSkipVerify {
			cfg = config.cloneWithServerName(host)
		}
		c := Client(raw, cfg)
		if err := c.HandshakeContext(ctx); err != nil {
			return nil, err
		}
		return c, nil
	})
}

// cloneWithServerName returns a copy of c's public settings with ServerName set.
func (c *Config) cloneWithServerName(name string) *Config {
	n := &Config{
		Rand: c.Rand, Time: c.Time, SignCertificate: c.SignCertificate, EncCertificate: c.EncCertificate,
		GetCertificate: c.GetCertificate, RootCAs: c.RootCAs, ClientCAs: c.ClientCAs, ClientAuth: c.ClientAuth,
		VerifyPeerCertificate: c.VerifyPeerCertificate, ServerName: name, InsecureSkipVerify: c.InsecureSkipVerify,
		CipherSuites: c.CipherSuites, PreferClientCipherSuites: c.PreferClientCipherSuites,
		SessionCache: c.SessionCache, HandshakeTimeout: c.HandshakeTimeout,
		MaxHandshakeMessageSize: c.MaxHandshakeMessageSize, ECDHEParamsAsVector: c.ECDHEParamsAsVector,
		ECCCiphertextRaw: c.ECCCiphertextRaw,
	}
	n.pair = c.localPair() // share the prepared pair
	return n
}
