package channel

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/gmgate/gmgate/tlcp"
)

// Defaults of TLCPTransportConfig.
const (
	DefaultDialTimeout      = 5 * time.Second
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultIdleConnTimeout  = 90 * time.Second
	DefaultKeepAlive        = 30 * time.Second
)

// TLCPTransportConfig configures the TLCP link to a bank.
type TLCPTransportConfig struct {
	// TLCP is the client configuration: the platform sign and enc certificates (mutual
	// authentication), the bank's RootCAs, ServerName (SNI; empty: the host of the address),
	// CipherSuites in preference order, ECDHEParamsAsVector, ECCCiphertextRaw. Required.
	TLCP *tlcp.Config
	// DialTimeout bounds the TCP connect (default 5s).
	DialTimeout time.Duration
	// HandshakeTimeout bounds the TLCP handshake (default 10s). When TLCP.ServerName is empty
	// the connect and the handshake share DialTimeout+HandshakeTimeout.
	HandshakeTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for the reply headers (0: none; the Transport's
	// ResponseTimeout still applies).
	ResponseHeaderTimeout time.Duration
	// IdleConnTimeout closes idle kept-alive connections (default 90s).
	IdleConnTimeout time.Duration
	// MaxIdleConnsPerHost bounds kept-alive connections per bank endpoint (default 8).
	MaxIdleConnsPerHost int
	// KeepAlive is the TCP keep-alive period (default 30s; negative disables).
	KeepAlive time.Duration
}

func (c *TLCPTransportConfig) defaults() {
	if c.DialTimeout <= 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if c.IdleConnTimeout <= 0 {
		c.IdleConnTimeout = DefaultIdleConnTimeout
	}
	if c.MaxIdleConnsPerHost <= 0 {
		c.MaxIdleConnsPerHost = 8
	}
	if c.KeepAlive == 0 {
		c.KeepAlive = DefaultKeepAlive
	}
}

// tlcpDialFunc returns a DialTLSContext function that connects over TCP and runs the TLCP
// handshake with cfg.TLCP, for use in any *http.Transport (Caddy's included).
func tlcpDialFunc(cfg TLCPTransportConfig) (func(ctx context.Context, network, addr string) (net.Conn, error), error) {
	if cfg.TLCP == nil {
		return nil, errors.New("channel: TLCP configuration required")
	}
	cfg.defaults()
	nd := &net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: cfg.KeepAlive}
	tc := cfg.TLCP
	if tc.ServerName == "" && !tc.InsecureSkipVerify {
		d := &tlcp.Dialer{NetDialer: &net.Dialer{KeepAlive: cfg.KeepAlive}, Config: tc}
		total := cfg.DialTimeout + cfg.HandshakeTimeout
		return func(ctx context.Context, network, addr string) (net.Conn, error) {
			ctx, cancel := context.WithTimeout(ctx, total)
			defer cancel()
			return d.DialContext(ctx, network, addr)
		}, nil
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		raw, err := nd.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		hctx, cancel := context.WithTimeout(ctx, cfg.HandshakeTimeout)
		defer cancel()
		c := tlcp.Client(raw, tc)
		if err := c.HandshakeContext(hctx); err != nil {
			raw.Close()
			return nil, err
		}
		return c, nil
	}, nil
}

// newTLCPHTTPTransport returns an *http.Transport whose https connections are TLCP (HTTP/1.1
// with keep-alive, dial, handshake and response-header timeouts, no transparent compression so
// that the signed reply body is exactly what is verified). Requests must use the https scheme.
func newTLCPHTTPTransport(cfg TLCPTransportConfig) (*http.Transport, error) {
	cfg.defaults()
	t := &http.Transport{
		MaxIdleConnsPerHost:    cfg.MaxIdleConnsPerHost,
		IdleConnTimeout:        cfg.IdleConnTimeout,
		ResponseHeaderTimeout:  cfg.ResponseHeaderTimeout,
		TLSHandshakeTimeout:    cfg.HandshakeTimeout,
		MaxResponseHeaderBytes: 64 << 10,
	}
	if err := UseTLCP(t, cfg); err != nil {
		return nil, err
	}
	return t, nil
}

// UseTLCP makes an existing *http.Transport (Caddy's, for instance) speak TLCP for https
// requests: TLCP dialing, plain http refused, HTTP/1.1 only, and no transparent compression so
// that the signed reply body is exactly what is verified.
func UseTLCP(t *http.Transport, cfg TLCPTransportConfig) error {
	dial, err := tlcpDialFunc(cfg)
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

// refusePlain refuses plain-text connections: a TLCP transport must not fall back to http.
func refusePlain(context.Context, string, string) (net.Conn, error) {
	return nil, errors.New("channel: plain http refused on a TLCP transport (use https URLs)")
}
