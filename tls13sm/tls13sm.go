package tls13sm

import (
	"context"
	"errors"
	"net"

	"github.com/gmgate/gmgate/internal/dialhs"
)

type listener struct {
	net.Listener
	config *Config
}

// Accept waits for the next connection and wraps it as a server connection.
// The handshake runs on first Read/Write or Handshake.
func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return Server(c, l.config), nil
}

// NewListener wraps inner so that accepted connections are servers.
func NewListener(inner net.Listener, config *Config) net.Listener {
	return &listener{Listener: inner, config: config}
}

// Listen listens on network/laddr and serves with config.
func Listen(network, laddr string, config *Config) (net.Listener, error) {
	if config == nil || (config.Certificate == nil && config.GetCertificate == nil) {
		return nil, errors.New("tls13sm: Listen needs a Certificate or GetCertificate")
	}
	l, err := net.Listen(network, laddr)
	if err != nil {
		return nil, err
	}
	return NewListener(l, config), nil
}

// Dialer dials connections; it is what the bank-channel transport uses.
type Dialer struct {
	// NetDialer is the dialer for the TCP connection; a zero Dialer if nil.
	NetDialer *net.Dialer
	// Config is the configuration. If ServerName is empty, the host part of
	// the address is used.
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

// Dial connects to addr and runs the handshake.
func Dial(network, addr string, config *Config) (*Conn, error) {
	return dial(context.Background(), nil, network, addr, config)
}

func dial(ctx context.Context, nd *net.Dialer, network, addr string, config *Config) (*Conn, error) {
	if config == nil {
		return nil, errors.New("tls13sm: nil Config")
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
	return &Config{
		Rand: c.Rand, Time: c.Time, Certificate: c.Certificate, GetCertificate: c.GetCertificate,
		RootCAs: c.RootCAs, ClientCAs: c.ClientCAs, ClientAuth: c.ClientAuth,
		VerifyPeerCertificate: c.VerifyPeerCertificate, ServerName: name, InsecureSkipVerify: c.InsecureSkipVerify,
		CipherSuites: c.CipherSuites, NextProtos: c.NextProtos, SessionTicketsDisabled: c.SessionTicketsDisabled,
		SessionTicketLifetime: c.SessionTicketLifetime, ClientSessionCache: c.ClientSessionCache,
		HandshakeTimeout: c.HandshakeTimeout, MaxHandshakeMessageSize: c.MaxHandshakeMessageSize,
		keyLog: c.keyLog,
	}
}
