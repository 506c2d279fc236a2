package channel

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/gmgate/gmgate/tls13sm"
)

// TLS13SMTransportConfig configures a link to a bank that speaks TLS 1.3 with the SM suites
// of RFC 8998 (package tls13sm) instead of TLCP.
type TLS13SMTransportConfig struct {
	// Config is the client configuration: the platform certificate (mutual authentication),
	// the bank's RootCAs, ServerName (SNI; empty: the host of the address), CipherSuites,
	// ClientSessionCache (ticket resumption). Required.
	Config *tls13sm.Config
	// DialTimeout bounds the TCP connect (default 5s).
	DialTimeout time.Duration
	// HandshakeTimeout bounds the handshake (default 10s).
	HandshakeTimeout time.Duration
	// KeepAlive is the TCP keep-alive period (default 30s; negative disables).
	KeepAlive time.Duration
}

// TLS13SMDialFunc returns a DialTLSContext function that connects over TCP and runs the RFC
// 8998 handshake, for use in any *http.Transport (Caddy's included).
func TLS13SMDialFunc(cfg TLS13SMTransportConfig) (func(ctx context.Context, network, addr string) (net.Conn, error), error) {
	if cfg.Config == nil {
		return nil, errors.New("channel: tls13sm configuration required")
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if cfg.KeepAlive == 0 {
		cfg.KeepAlive = DefaultKeepAlive
	}
	d := &tls13sm.Dialer{NetDialer: &net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: cfg.KeepAlive}, Config: cfg.Config}
	total := cfg.DialTimeout + cfg.HandshakeTimeout
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		ctx, cancel := context.WithTimeout(ctx, total)
		defer cancel()
		return d.DialContext(ctx, network, addr)
	}, nil
}

// UseTLS13SM makes an existing *http.Transport speak RFC 8998 for https requests: its
// dialing, plain http refused, HTTP/1.1 only, no transparent compression (the signed reply
// body is exactly what is verified).
func UseTLS13SM(t *http.Transport, cfg TLS13SMTransportConfig) error {
	dial, err := TLS13SMDialFunc(cfg)
	if err != nil {
		return err
	}
	t.DialTLSContext = dial
	t.DialContext = refusePlain
	t.TLSClientConfig = nil
	t.ForceAttemptHTTP2 = false
	t.DisableCompression = true
	return nil
}
