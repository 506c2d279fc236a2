package caddymodule

import (
	"crypto"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
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
	caddy.RegisterModule(ListenerWrapper{})
}

// ListenerWrapper terminates TLCP (GB/T 38636-2020) on a Caddy server's listener.
//
// On a TLCP-only port (site address http://host:port) put it anywhere in listener_wrappers.
// To serve TLCP and ordinary TLS on one port (DualStack), put it before the `tls` placeholder
// and `tlcp_join` right after it: connections whose first record is a TLCP ClientHello are
// terminated here and re-enter the server through tlcp_join; every other connection goes on
// to Caddy's TLS handshake untouched.
type ListenerWrapper struct {
	// SignKey names the server's signing key in the gmgate key vault; its certificate chain
	// comes from the vault's key configuration. Default: the development PKI's dev-server-sign,
	// the equivalent of `tls internal`.
	SignKey string `json:"sign_key,omitempty"`
	// EncKey names the server's encryption key in the vault (certificate chain from the vault).
	// Default: the development PKI's dev-server-enc.
	EncKey string `json:"enc_key,omitempty"`

	// ClientAuth is the client-certificate policy: "none" (default), "request", "require",
	// "verify_if_given" or "require_and_verify". The ECDHE suites always ask for the client's
	// certificates, since the key exchange needs the client's encryption key.
	ClientAuth string `json:"client_auth,omitempty"`
	// ClientCAs are PEM files of the GM roots (and intermediates) client certificates must chain
	// to. Default with the development PKI: its root.
	ClientCAs []string `json:"client_cas,omitempty"`
	// CRLs are CRL files (PEM or DER) checked for every client certificate; reloaded when they
	// change.
	CRLs []string `json:"crls,omitempty"`

	// CipherSuites in preference order, by name: ECC_SM4_GCM_SM3, ECC_SM4_CBC_SM3,
	// ECDHE_SM4_GCM_SM3, ECDHE_SM4_CBC_SM3. Default: that order.
	CipherSuites []string `json:"cipher_suites,omitempty"`
	// PreferClientCipherSuites follows the client's order instead of the server's.
	PreferClientCipherSuites bool `json:"prefer_client_cipher_suites,omitempty"`

	// SessionCacheSize is the number of sessions kept for session-ID resumption. Default 10000;
	// -1 disables resumption.
	SessionCacheSize int `json:"session_cache_size,omitempty"`
	// SessionLifetime is how long a session may be resumed. Default 1h.
	SessionLifetime caddy.Duration `json:"session_lifetime,omitempty"`
	// HandshakeTimeout bounds each TLCP handshake. Default 10s.
	HandshakeTimeout caddy.Duration `json:"handshake_timeout,omitempty"`
	// MaxHandshakeMessageSize bounds one handshake message, in bytes. Default 65536.
	MaxHandshakeMessageSize int `json:"max_handshake_message_size,omitempty"`

	// DualStack routes connections by their first record: TLCP ClientHellos are served here,
	// everything else (TLS 1.2/1.3) passes on to Caddy's TLS. Requires tlcp_join after `tls`.
	DualStack bool `json:"dual_stack,omitempty"`
	// PeekTimeout bounds, in dual-stack mode, how long a client may take to send the first
	// bytes that decide its protocol. Default 10s.
	PeekTimeout caddy.Duration `json:"peek_timeout,omitempty"`
	// MaxPendingPerSource bounds, in dual-stack mode, the connections of one source IP that have
	// not yet sent the bytes that decide their protocol; more are closed at once, so silent
	// sockets from one host cannot pile up. The accept loop never waits for them. Default 256.
	MaxPendingPerSource int `json:"max_pending_per_source,omitempty"`

	config   *tlcp.Config
	releases []func() // expiry reporting, stopped at Cleanup
	logger   *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (ListenerWrapper) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "caddy.listeners.tlcp",
		New: func() caddy.Module { return new(ListenerWrapper) },
	}
}

// Provision loads the certificate pair from the key vault and builds the TLCP configuration
// once; nothing of it is repeated per handshake.
func (w *ListenerWrapper) Provision(ctx caddy.Context) error {
	w.logger = ctx.Logger()
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return err
	}
	app, err := gmgateApp(ctx)
	if err != nil {
		return err
	}
	if w.SignKey == "" {
		w.SignKey = DevServerSignKey
	}
	if w.EncKey == "" {
		w.EncKey = DevServerEncKey
	}
	signCert, err := vaultCertificate(app, w.SignKey, true)
	if err != nil {
		return err
	}
	encCert, err := vaultCertificate(app, w.EncKey, false)
	if err != nil {
		return err
	}
	cfg := &tlcp.Config{
		SignCertificate:          signCert,
		EncCertificate:           encCert,
		PreferClientCipherSuites: w.PreferClientCipherSuites,
		HandshakeTimeout:         10 * time.Second,
		MaxHandshakeMessageSize:  w.MaxHandshakeMessageSize,
	}
	if w.HandshakeTimeout > 0 {
		cfg.HandshakeTimeout = time.Duration(w.HandshakeTimeout)
	}
	if cfg.ClientAuth, err = parseClientAuth(w.ClientAuth); err != nil {
		return err
	}
	if cfg.CipherSuites, err = parseSuites(w.CipherSuites); err != nil {
		return err
	}
	if w.SessionCacheSize >= 0 {
		size, life := w.SessionCacheSize, time.Duration(w.SessionLifetime)
		if size == 0 {
			size = 10000
		}
		if life <= 0 {
			life = time.Hour
		}
		cfg.SessionCache = tlcp.NewLRUSessionCache(size, life)
	}
	roots, err := pki.LoadCertificatesFiles(w.ClientCAs...)
	if err != nil {
		return err
	}
	if len(roots) == 0 && app.Dev() != nil {
		roots = []*smx509.Certificate{app.Dev().Root.Cert}
	}
	w.releases = append(w.releases, trackCertificates("tlcp", "tlcp_client_root", "client_cas", roots))
	if len(roots) > 0 {
		cfg.ClientCAs = smx509.NewCertPool()
		for _, c := range roots {
			cfg.ClientCAs.AddCert(c)
		}
	}
	if len(w.CRLs) > 0 {
		crls, err := pki.NewCRLStore(w.CRLs, withEnrollCRLs(w.CRLs, pki.CRLOptions{}))
		if err != nil {
			return fmt.Errorf("tlcp: loading CRLs: %w", err)
		}
		cfg.VerifyPeerCertificate = revocationCheck(crls)
		w.releases = append(w.releases, trackCRLs("tlcp", crls))
	}
	served := cfg.CipherSuites
	if len(served) == 0 {
		served = tlcp.CipherSuites()
	}
	names := make([]string, 0, len(served))
	for _, id := range served {
		names = append(names, tlcp.CipherSuiteName(id))
	}
	zeroTLCPMetrics(names)
	w.config = cfg
	return nil
}

// Validate checks the configuration without touching keys.
func (w *ListenerWrapper) Validate() error {
	if _, err := parseClientAuth(w.ClientAuth); err != nil {
		return err
	}
	if _, err := parseSuites(w.CipherSuites); err != nil {
		return err
	}
	if n := w.MaxHandshakeMessageSize; n != 0 && (n < 1024 || n > 1<<24) {
		return fmt.Errorf("tlcp: max_handshake_message_size must be 1KiB..16MiB, got %d", n)
	}
	if w.HandshakeTimeout < 0 || w.SessionLifetime < 0 {
		return errors.New("tlcp: handshake_timeout and the session lifetime must not be negative")
	}
	return nil
}

// Cleanup stops reporting this configuration's certificates and CRLs.
func (w *ListenerWrapper) Cleanup() error {
	for _, release := range w.releases {
		release()
	}
	w.releases = nil
	return nil
}

// vaultCertificate builds a tlcp.Certificate from a vault key and its configured chain.
func vaultCertificate(app *App, name string, sign bool) (tlcp.Certificate, error) {
	chain, err := app.Certificates(name)
	if err != nil {
		return tlcp.Certificate{}, fmt.Errorf("tlcp: certificate of key %q: %w", name, err)
	}
	if len(chain) == 0 {
		return tlcp.Certificate{}, fmt.Errorf("tlcp: key %q has no certificate configured", name)
	}
	var key crypto.PrivateKey
	if sign {
		key, err = app.Signer(name)
	} else {
		key, err = app.Decrypter(name)
	}
	if err != nil {
		return tlcp.Certificate{}, fmt.Errorf("tlcp: key %q: %w", name, err)
	}
	c := tlcp.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, cert := range chain {
		c.Certificate = append(c.Certificate, cert.Raw)
	}
	return c, nil
}

// revocationCheck checks every certificate of the verified chain against the CRLs.
func revocationCheck(crls *pki.CRLStore) func([][]byte, [][]*smx509.Certificate) error {
	return func(_ [][]byte, chains [][]*smx509.Certificate) error {
		for _, chain := range chains {
			for i := 0; i+1 < len(chain); i++ {
				revoked, err := crls.IsRevoked(chain[i], chain[i+1])
				if err != nil {
					return err
				}
				if revoked {
					return fmt.Errorf("%w: serial %s", tlcp.ErrCertificateRevoked, chain[i].SerialNumber.Text(16))
				}
			}
		}
		return nil
	}
}

var clientAuthModes = map[string]tlcp.ClientAuthType{
	"":                   tlcp.NoClientCert,
	"none":               tlcp.NoClientCert,
	"request":            tlcp.RequestClientCert,
	"require":            tlcp.RequireAnyClientCert,
	"verify_if_given":    tlcp.VerifyClientCertIfGiven,
	"require_and_verify": tlcp.RequireAndVerifyClientCert,
}

func parseClientAuth(s string) (tlcp.ClientAuthType, error) {
	m, ok := clientAuthModes[s]
	if !ok {
		return 0, fmt.Errorf("tlcp: unknown client_auth mode %q (none, request, require, verify_if_given, require_and_verify)", s)
	}
	return m, nil
}

func parseSuites(names []string) ([]uint16, error) {
	var out []uint16
	for _, n := range names {
		found := false
		for _, id := range tlcp.CipherSuites() {
			if strings.EqualFold(tlcp.CipherSuiteName(id), n) || strings.EqualFold(tongsuoSuiteName(id), n) ||
				legacySuiteNames[strings.ToUpper(n)] == id {
				out = append(out, id)
				found = true
			}
		}
		if !found {
			var known []string
			for _, id := range tlcp.CipherSuites() {
				known = append(known, tlcp.CipherSuiteName(id))
			}
			return nil, fmt.Errorf("tlcp: unknown cipher suite %q (known: %s, or their Tongsuo names such as ECC-SM2-SM4-GCM-SM3)", n, strings.Join(known, ", "))
		}
	}
	return out, nil
}

// tongsuoSuiteName is the name Tongsuo, Tengine and GmSSL give a suite (ECC-SM2-SM4-GCM-SM3 for
// ECC_SM4_GCM_SM3), accepted wherever gmgate takes a suite name so that a configuration moved
// from those servers keeps its suite list.
func tongsuoSuiteName(id uint16) string {
	n := tlcp.CipherSuiteName(id) // ECC_SM4_GCM_SM3, ECDHE_SM4_CBC_SM3
	kx, rest, ok := strings.Cut(n, "_")
	if !ok {
		return n
	}
	return kx + "-SM2-" + strings.ReplaceAll(rest, "_", "-")
}

// legacySuiteNames are the names older Tongsuo (BabaSSL) builds and Tengine's NTLS documentation
// use for the CBC suites.
var legacySuiteNames = map[string]uint16{
	"ECC-SM2-WITH-SM4-SM3":   tlcp.ECC_SM4_CBC_SM3,
	"ECDHE-SM2-WITH-SM4-SM3": tlcp.ECDHE_SM4_CBC_SM3,
}

// WrapListener wraps ln so that it serves TLCP (and, in dual-stack mode, passes other
// connections on).
func (w *ListenerWrapper) WrapListener(ln net.Listener) net.Listener {
	w.logger.Info("serving TLCP",
		zap.String("address", ln.Addr().String()),
		zap.Bool("dual_stack", w.DualStack),
		zap.String("sign_key", w.SignKey),
		zap.String("enc_key", w.EncKey))
	if !w.DualStack {
		return &tlcpListener{Listener: ln, w: w, stateful: false}
	}
	mux := tlcp.NewMuxConfig(ln, tlcp.MuxConfig{PeekTimeout: time.Duration(w.PeekTimeout),
		MaxPendingPerSource: w.MaxPendingPerSource})
	addr, parked := ln.Addr().String(), &tlcpListener{Listener: mux.TLCP(), w: w, stateful: true}
	joins.parkUntilJoined(addr, parked, parked.Listener, func() {
		w.logger.Error("dual_stack tlcp without tlcp_join after tls: TLCP connections are refused", zap.String("address", addr))
	})
	return mux.Other()
}

// tlcpListener turns accepted connections into TLCP server connections.
type tlcpListener struct {
	net.Listener
	w *ListenerWrapper
	// stateful exposes a crypto/tls ConnectionState: on a dual-stack port (a TLS server to
	// Caddy) Caddy then sets r.TLS itself. A TLCP-only port is an http:// server to Caddy, which
	// warns about such connections, so there tlcp_vars and gm_verify set r.TLS instead.
	stateful bool
}

// Accept returns the next connection as a TLCP server connection; its handshake runs on first
// use, in the connection's own goroutine.
func (l *tlcpListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := newGMConn(tlcp.Server(c, l.w.config), tlcpProtocol, l.w.logger)
	if l.stateful {
		return &gmStateConn{tc}, nil
	}
	return tc, nil
}

// tlcpProtocol is TLCP behind the shared connection wrapper (gmconn.go).
var tlcpProtocol = &gmProtocol{
	name: "TLCP",
	observe: func(c gmProtoConn, err error, elapsed time.Duration) {
		st := c.(*tlcp.Conn).ConnectionState()
		if err != nil {
			suite := "none"
			if st.CipherSuite != 0 {
				suite = tlcp.CipherSuiteName(st.CipherSuite)
			}
			tlcpHandshakes.WithLabelValues(suite, handshakeResult(err)).Inc()
			return
		}
		m := handshakeMetricsFor(st.CipherSuite)
		m.ok.Inc()
		m.seconds[b2i(st.DidResume)].Observe(elapsed.Seconds())
	},
	view:     func(c gmProtoConn) *connView { return tlcpView(c.(*tlcp.Conn).ConnectionState()) },
	tlsState: func(c gmProtoConn) tls.ConnectionState { return tlsConnectionState(c.(*tlcp.Conn).ConnectionState()) },
}

// tlcpView is the handlers' view of an established TLCP connection. PeerSignCertificate is set
// only when the client's chain was verified: an unauthenticated pair (client_auth request or
// require, ECDHE's mandatory client pair) is no identity.
func tlcpView(st tlcp.ConnectionState) *connView {
	cs := tlsConnectionState(st)
	v := &connView{protocol: protoTLCP, tlcp: st, tls: &cs, version: fmt.Sprintf("0x%04x", st.Version),
		suite: tlcp.CipherSuiteName(st.CipherSuite), serverName: st.ServerName, resumed: strconv.FormatBool(st.DidResume)}
	v.setClient(st.PeerSignCertificate)
	return v
}

// tlsConnectionState is a TLCP session in crypto/tls terms (no peer certificates: SM2
// certificates are not crypto/x509 certificates; the gm_verify handler reads them directly).
func tlsConnectionState(st tlcp.ConnectionState) tls.ConnectionState {
	return tls.ConnectionState{
		Version:           st.Version,
		HandshakeComplete: st.HandshakeComplete,
		DidResume:         st.DidResume,
		CipherSuite:       st.CipherSuite,
		ServerName:        st.ServerName,
	}
}

// handshakeResult is the metrics label of a TLCP or RFC 8998 handshake outcome.
func handshakeResult(err error) string {
	if err == nil {
		return "ok"
	}
	var ae *tlcp.AlertError
	var ae13 *tls13sm.AlertError
	switch {
	case errors.As(err, &ae):
		return alertLabel(ae.Alert.String(), ae.Remote)
	case errors.As(err, &ae13):
		return alertLabel(ae13.Alert.String(), ae13.Remote)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "eof"
	}
	return "error"
}

// alertLabel is an alert's label value, in snake_case like the others: "handshake failure"
// -> handshake_failure, remote_ prefixed when the peer sent it.
func alertLabel(name string, remote bool) string {
	name = strings.ToLower(strings.NewReplacer(" ", "_", "(", "_", ")", "").Replace(name))
	if remote {
		return "remote_" + name
	}
	return name
}

// handshakeMetrics are the collectors' children for the successful handshakes of one suite,
// resolved once (not per connection: WithLabelValues hashes and looks up the labels).
type handshakeMetrics struct {
	ok      prometheus.Counter
	seconds [2]prometheus.Observer // by resumed: false, true
}

var handshakeMetricsBySuite sync.Map // uint16 -> *handshakeMetrics

func handshakeMetricsFor(suite uint16) *handshakeMetrics {
	if m, ok := handshakeMetricsBySuite.Load(suite); ok {
		return m.(*handshakeMetrics)
	}
	name := tlcp.CipherSuiteName(suite)
	m := &handshakeMetrics{ok: tlcpHandshakes.WithLabelValues(name, "ok"), seconds: [2]prometheus.Observer{
		tlcpHandshakeSeconds.WithLabelValues(name, "false"), tlcpHandshakeSeconds.WithLabelValues(name, "true")}}
	v, _ := handshakeMetricsBySuite.LoadOrStore(suite, m)
	return v.(*handshakeMetrics)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Interface guards
var (
	_ caddy.Provisioner     = (*ListenerWrapper)(nil)
	_ caddy.CleanerUpper    = (*ListenerWrapper)(nil)
	_ caddy.Validator       = (*ListenerWrapper)(nil)
	_ caddy.ListenerWrapper = (*ListenerWrapper)(nil)
	_ net.Conn              = (*gmConn)(nil)
)
