package caddymodule

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/emmansun/gmsm/smx509"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/tlcp"
	"github.com/gmgate/gmgate/tls13sm"
)

func init() {
	caddy.RegisterModule(TLS13SMListenerWrapper{})
}

// TLS13SMListenerWrapper terminates TLS 1.3 with the SM suites of RFC 8998 (package tls13sm)
// on a port that also serves ordinary TLS (and, with `tlcp { dual_stack }` before it, TLCP):
// a ClientHello whose first offered suite is TLS_SM4_GCM_SM3 or TLS_SM4_CCM_SM3 is answered
// here with the SM2 certificate; every other connection goes on to Caddy's TLS (with its
// ECDSA/RSA certificate) untouched. Put it before the `tls` placeholder and `tlcp_join` right
// after it; the RFC 8998 connections re-enter the server through tlcp_join.
type TLS13SMListenerWrapper struct {
	// SignKey names the server's SM2 signing key in the gmgate key vault; its certificate
	// chain comes from the vault's key configuration. Default: the development PKI's
	// dev-server-sign.
	SignKey string `json:"sign_key,omitempty"`
	// ClientAuth is the client-certificate policy: "none" (default), "request", "require",
	// "verify_if_given" or "require_and_verify".
	ClientAuth string `json:"client_auth,omitempty"`
	// ClientCAs are PEM files of the GM roots client certificates must chain to. Default with
	// the development PKI: its root.
	ClientCAs []string `json:"client_cas,omitempty"`
	// CRLs are CRL files (PEM or DER) checked for every client certificate (also when a
	// session is resumed); reloaded when they change.
	CRLs []string `json:"crls,omitempty"`
	// CipherSuites in preference order: TLS_SM4_GCM_SM3, TLS_SM4_CCM_SM3 (the default order).
	CipherSuites []string `json:"cipher_suites,omitempty"`
	// SessionTickets "off" disables resumption; default on.
	SessionTickets string `json:"session_tickets,omitempty"`
	// SessionLifetime is how long a session ticket may be used. Default 2h, at most 7 days.
	SessionLifetime caddy.Duration `json:"session_lifetime,omitempty"`
	// TicketKey names a vault SM4 key from which the ticket keys are derived (HMAC-SM3 of the
	// day number), so that every instance sharing the vault key opens every instance's tickets
	// and keys rotate daily (the previous day's key still opens). Default: random keys of
	// this process, rotated daily.
	TicketKey string `json:"ticket_key,omitempty"`
	// HandshakeTimeout bounds each handshake. Default 10s.
	HandshakeTimeout caddy.Duration `json:"handshake_timeout,omitempty"`
	// MaxHandshakeMessageSize bounds one handshake message, in bytes. Default 65536.
	MaxHandshakeMessageSize int `json:"max_handshake_message_size,omitempty"`
	// PeekTimeout bounds how long a client may take to send the bytes that decide its
	// protocol. Default 10s.
	PeekTimeout caddy.Duration `json:"peek_timeout,omitempty"`
	// MaxPendingPerSource bounds the connections of one source IP that have not yet sent the
	// bytes that decide their protocol; more are closed at once. Default 256.
	MaxPendingPerSource int `json:"max_pending_per_source,omitempty"`

	config *tls13sm.Config
	logger *zap.Logger
	stop   context.CancelFunc
}

var (
	tls13smHandshakes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "gmgate", Subsystem: "tls13sm", Name: "handshakes_total",
		Help: "RFC 8998 (TLS 1.3 with SM suites) handshakes by cipher suite and result (ok or the alert/error class).",
	}, []string{"suite", "result"})
	tls13smHandshakeSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "gmgate", Subsystem: "tls13sm", Name: "handshake_duration_seconds",
		Help:    "Duration of completed RFC 8998 handshakes by cipher suite and whether the session was resumed.",
		Buckets: prometheus.ExponentialBuckets(0.0002, 2, 14),
	}, []string{"suite", "resumed"})
)

// tls13smJoinSuffix keys the parked RFC 8998 listener for tlcp_join (beside the TLCP one).
const tls13smJoinSuffix = "|tls13sm"

// CaddyModule returns the Caddy module information.
func (TLS13SMListenerWrapper) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "caddy.listeners.tls13sm",
		New: func() caddy.Module { return new(TLS13SMListenerWrapper) },
	}
}

// Provision loads the certificate from the key vault and builds the configuration once.
func (w *TLS13SMListenerWrapper) Provision(ctx caddy.Context) error {
	w.logger = ctx.Logger()
	if reg := ctx.GetMetricsRegistry(); reg != nil {
		for _, c := range []prometheus.Collector{tls13smHandshakes, tls13smHandshakeSeconds} {
			if err := reg.Register(c); err != nil {
				var are prometheus.AlreadyRegisteredError
				if !errors.As(err, &are) {
					return err
				}
			}
		}
	}
	app, err := gmgateApp(ctx)
	if err != nil {
		return err
	}
	if w.SignKey == "" {
		w.SignKey = DevServerSignKey
	}
	chain, err := app.Certificates(w.SignKey)
	if err != nil {
		return fmt.Errorf("tls13sm: certificate of key %q: %w", w.SignKey, err)
	}
	if len(chain) == 0 {
		return fmt.Errorf("tls13sm: key %q has no certificate configured", w.SignKey)
	}
	signer, err := app.Signer(w.SignKey)
	if err != nil {
		return fmt.Errorf("tls13sm: key %q: %w", w.SignKey, err)
	}
	cert := &tls13sm.Certificate{PrivateKey: signer, Leaf: chain[0]}
	for _, c := range chain {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	cfg := &tls13sm.Config{
		Certificate:             cert,
		HandshakeTimeout:        10 * time.Second,
		MaxHandshakeMessageSize: w.MaxHandshakeMessageSize,
		SessionTicketLifetime:   time.Duration(w.SessionLifetime),
		SessionTicketsDisabled:  w.SessionTickets == "off",
	}
	if w.HandshakeTimeout > 0 {
		cfg.HandshakeTimeout = time.Duration(w.HandshakeTimeout)
	}
	ca, err := parseClientAuth(w.ClientAuth)
	if err != nil {
		return err
	}
	cfg.ClientAuth = map[tlcp.ClientAuthType]tls13sm.ClientAuthType{
		tlcp.NoClientCert: tls13sm.NoClientCert, tlcp.RequestClientCert: tls13sm.RequestClientCert,
		tlcp.RequireAnyClientCert: tls13sm.RequireAnyClientCert, tlcp.VerifyClientCertIfGiven: tls13sm.VerifyClientCertIfGiven,
		tlcp.RequireAndVerifyClientCert: tls13sm.RequireAndVerifyClientCert,
	}[ca]
	if cfg.CipherSuites, err = parseTLS13SMSuites(w.CipherSuites); err != nil {
		return err
	}
	roots, err := pki.LoadCertificatesFiles(w.ClientCAs...)
	if err != nil {
		return err
	}
	if len(roots) == 0 && app.Dev() != nil {
		roots = []*smx509.Certificate{app.Dev().Root.Cert}
	}
	if len(roots) > 0 {
		cfg.ClientCAs = smx509.NewCertPool()
		for _, c := range roots {
			cfg.ClientCAs.AddCert(c)
		}
	}
	if len(w.CRLs) > 0 {
		crls, err := pki.NewCRLStore(w.CRLs, withEnrollCRLs(w.CRLs, pki.CRLOptions{}))
		if err != nil {
			return fmt.Errorf("tls13sm: loading CRLs: %w", err)
		}
		cfg.VerifyPeerCertificate = revocationCheck(crls)
	}
	if w.TicketKey != "" && !cfg.SessionTicketsDisabled {
		key, err := app.SM4(w.TicketKey)
		if err != nil {
			return fmt.Errorf("tls13sm: ticket_key %q: %w", w.TicketKey, err)
		}
		derive := func(day int64) ([32]byte, error) {
			var seed [32]byte
			msg := make([]byte, 0, 40)
			msg = append(msg, "gmgate tls13sm ticket key "...)
			msg = binary.BigEndian.AppendUint64(msg, uint64(day))
			mac, err := key.HMACSM3(msg)
			if err != nil {
				return seed, err
			}
			copy(seed[:], mac)
			return seed, nil
		}
		set := func() error {
			day := time.Now().Unix() / 86400
			cur, err := derive(day)
			if err != nil {
				return err
			}
			prev, err := derive(day - 1)
			if err != nil {
				return err
			}
			return cfg.SetSessionTicketKeys([][32]byte{cur, prev})
		}
		if err := set(); err != nil {
			return fmt.Errorf("tls13sm: deriving ticket keys from %q: %w", w.TicketKey, err)
		}
		rctx, cancel := context.WithCancel(context.Background())
		w.stop = cancel
		go func() {
			t := time.NewTicker(time.Minute)
			defer t.Stop()
			for {
				select {
				case <-rctx.Done():
					return
				case <-t.C:
					if err := set(); err != nil {
						w.logger.Error("tls13sm: refreshing ticket keys failed; keeping the previous ones", zap.Error(err))
					}
				}
			}
		}()
	}
	w.config = cfg
	return nil
}

// Cleanup stops the ticket key rotation.
func (w *TLS13SMListenerWrapper) Cleanup() error {
	if w.stop != nil {
		w.stop()
	}
	return nil
}

func parseTLS13SMSuites(names []string) ([]uint16, error) {
	var out []uint16
	for _, n := range names {
		switch strings.ToUpper(n) {
		case "TLS_SM4_GCM_SM3":
			out = append(out, tls13sm.TLS_SM4_GCM_SM3)
		case "TLS_SM4_CCM_SM3":
			out = append(out, tls13sm.TLS_SM4_CCM_SM3)
		default:
			return nil, fmt.Errorf("tls13sm: unknown cipher suite %q (want TLS_SM4_GCM_SM3 or TLS_SM4_CCM_SM3)", n)
		}
	}
	return out, nil
}

// WrapListener splits ln: RFC 8998 connections are parked for tlcp_join, every other
// connection is returned to the next wrapper (Caddy's `tls`).
func (w *TLS13SMListenerWrapper) WrapListener(ln net.Listener) net.Listener {
	w.logger.Info("serving TLS 1.3 with SM suites (RFC 8998)",
		zap.String("address", ln.Addr().String()), zap.String("sign_key", w.SignKey))
	mux := tls13sm.NewMux(ln, tls13sm.MuxConfig{PeekTimeout: time.Duration(w.PeekTimeout),
		MaxPendingPerSource: w.MaxPendingPerSource})
	key := ln.Addr().String() + tls13smJoinSuffix
	parked := &tls13smListener{Listener: mux.SM(), w: w}
	joins.parkUntilJoined(key, parked, parked.Listener, func() {
		w.logger.Error("tls13sm without tlcp_join after tls: RFC 8998 connections are refused", zap.String("address", ln.Addr().String()))
	})
	return mux.Other()
}

type tls13smListener struct {
	net.Listener
	w *TLS13SMListenerWrapper
}

// Accept returns the next connection as an RFC 8998 server connection; its handshake runs
// on first use, in the connection's own goroutine.
func (l *tls13smListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &gmStateConn{newGMConn(tls13sm.Server(c, l.w.config), tls13smProtocol, l.w.logger)}, nil
}

// tls13smProtocol is RFC 8998 behind the shared connection wrapper (gmconn.go). Its
// connections always report a crypto/tls-shaped state, so Caddy sets r.TLS (version tls1.3,
// cipher suite 0x00C6/0x00C7, scheme https).
var tls13smProtocol = &gmProtocol{
	name: "RFC 8998",
	observe: func(c gmProtoConn, err error, elapsed time.Duration) {
		st := c.(*tls13sm.Conn).ConnectionState()
		suite := "none"
		if st.CipherSuite != 0 {
			suite = tls13sm.CipherSuiteName(st.CipherSuite)
		}
		tls13smHandshakes.WithLabelValues(suite, handshakeResult(err)).Inc()
		if err == nil {
			tls13smHandshakeSeconds.WithLabelValues(suite, fmt.Sprint(st.DidResume)).Observe(elapsed.Seconds())
		}
	},
	view:     func(c gmProtoConn) *connView { return tls13smView(c.(*tls13sm.Conn).ConnectionState()) },
	tlsState: func(c gmProtoConn) tls.ConnectionState { return tls13smTLSState(c.(*tls13sm.Conn).ConnectionState()) },
}

// tls13smView is the handlers' view of an established RFC 8998 connection. The client's leaf
// is its identity only when its chain was verified (client_auth verify_if_given or
// require_and_verify): with request or require it is whatever the client sent.
func tls13smView(st tls13sm.ConnectionState) *connView {
	cs := tls13smTLSState(st)
	v := &connView{protocol: protoTLS13SM, tls: &cs, version: fmt.Sprintf("0x%04x", st.Version),
		suite: tls13sm.CipherSuiteName(st.CipherSuite), serverName: st.ServerName, resumed: strconv.FormatBool(st.DidResume)}
	if len(st.VerifiedChains) > 0 && len(st.PeerCertificates) > 0 {
		v.setClient(st.PeerCertificates[0])
	}
	return v
}

// tls13smTLSState is an RFC 8998 session in crypto/tls terms (no peer certificates: SM2
// certificates are not crypto/x509 certificates).
func tls13smTLSState(st tls13sm.ConnectionState) tls.ConnectionState {
	return tls.ConnectionState{Version: st.Version, HandshakeComplete: st.HandshakeComplete, DidResume: st.DidResume,
		CipherSuite: st.CipherSuite, ServerName: st.ServerName, NegotiatedProtocol: st.NegotiatedProtocol}
}

// Interface guards
var (
	_ caddy.Provisioner     = (*TLS13SMListenerWrapper)(nil)
	_ caddy.CleanerUpper    = (*TLS13SMListenerWrapper)(nil)
	_ caddy.ListenerWrapper = (*TLS13SMListenerWrapper)(nil)
	_ net.Conn              = (*gmStateConn)(nil)
)
