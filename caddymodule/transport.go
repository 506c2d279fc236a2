package caddymodule

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"github.com/emmansun/gmsm/smx509"
	"go.uber.org/zap"

	"github.com/gmgate/gmgate/channel"
	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/signing"
	"github.com/gmgate/gmgate/tlcp"
	"github.com/gmgate/gmgate/tls13sm"
)

func init() {
	caddy.RegisterModule(ChannelTransport{})
}

// ChannelTransport is the bank-channel side (渠道前置) as a reverse_proxy transport: the legacy
// back end's plain request is encrypted and signed with the platform key under the bank's
// scheme, sent over TLCP with mutual authentication (or HTTPS/HTTP), and the bank's reply is
// passed on only after its signature verifies with the bank's platform certificate; then it is
// decrypted. Any failure becomes a 502 with a JSON {"code","message"} body, an audit entry and a
// metric. Connection reuse, timeouts, load balancing and health checks are Caddy's.
type ChannelTransport struct {
	// Bank names the channel in metrics, audit entries and logs. Required.
	Bank string `json:"bank"`

	// Scheme is the bank's signature scheme and its per-bank settings (see signing.Settings:
	// name, user ID, signature and text encodings, signed-string fields, covered components).
	Scheme signing.Settings `json:"scheme"`

	// PlatformKey names the vault key the platform signs with; its certificate comes from the
	// vault. Default: dev-platform-sign (development PKI).
	PlatformKey string `json:"platform_key,omitempty"`
	// PlatformKeyID overrides the key ID sent to the bank (default: per scheme, from the
	// platform certificate's serial).
	PlatformKeyID string `json:"platform_key_id,omitempty"`
	// MerchantID is the platform's merchant/institution ID at the bank, when the scheme has one.
	MerchantID string `json:"merchant_id,omitempty"`

	// BankCerts are PEM files of the bank's platform signing certificates that replies must be
	// signed with (several during a bank's certificate change-over). Required, except with the
	// development PKI, where the default is its demo bank's certificate (dev-bank-platform-sign).
	BankCerts []string `json:"bank_certs,omitempty"`
	// BankRoots are PEM files of the GM roots the bank's certificates (platform and TLCP server)
	// chain to. Required, except with the development PKI, where the default is its root.
	BankRoots []string `json:"bank_roots,omitempty"`

	// Encryption protects sensitive data toward the bank (none by default).
	Encryption *ChannelEncryption `json:"encryption,omitempty"`

	// TLCP, when set, makes the link to the bank TLCP (GB/T 38636-2020). Otherwise the
	// transport speaks what the inner HTTP transport is configured for.
	TLCP *ChannelTLCP `json:"tlcp,omitempty"`
	// TLS13SM, when set, makes the link to the bank TLS 1.3 with the SM suites of RFC 8998
	// (package tls13sm). It excludes TLCP.
	TLS13SM *ChannelTLS13SM `json:"tls13sm,omitempty"`

	// MaxBodySize bounds the back end's request body and the bank's reply body, in bytes.
	// Default 1 MiB.
	MaxBodySize int `json:"max_body_size,omitempty"`
	// ResponseTimeout bounds one attempt, from sending to the end of the reply. Default 30s.
	ResponseTimeout caddy.Duration `json:"response_timeout,omitempty"`
	// Retries is the number of extra attempts after a transport failure, only for idempotent
	// requests or those with an Idempotency-Key header. Default 0, at most 5.
	Retries int `json:"retries,omitempty"`
	// ReplyWindow is the largest accepted distance between now and the signed time of a bank
	// reply whose scheme carries one. Default 5m; negative (Caddyfile "off"): not checked.
	ReplyWindow caddy.Duration `json:"reply_window,omitempty"`
	// ReplyHeaders are the bank reply headers forwarded to the back end besides Content-Type and
	// Content-Length. Default: Date, Request-Id, X-Request-Id, Cache-Control. Bank headers are
	// not signed: others (Set-Cookie, Location, ...) are dropped.
	ReplyHeaders []string `json:"reply_headers,omitempty"`

	// HTTP is Caddy's HTTP transport underneath (dial timeout, keep-alive, buffers...).
	// Its TLS settings are not used when TLCP is set.
	HTTP *reverseproxy.HTTPTransport `json:"http,omitempty"`

	rt       *channel.Transport
	useTLS   bool
	logger   *zap.Logger
	releases []func() // expiry reporting, stopped at Cleanup
}

// ChannelEncryption is the channel's confidentiality rule (see docs/channel.md).
type ChannelEncryption struct {
	// Target is "body" or "fields".
	Target string `json:"target"`
	// Cipher is "sm4-gcm" (default), "sm4-cbc" or "sm2-envelope".
	Cipher string `json:"cipher,omitempty"`
	// Fields lists the top-level JSON fields to encrypt (target "fields").
	Fields []string `json:"fields,omitempty"`
	// DataKey names the vault's SM4 key of this channel (sm4-gcm, sm4-cbc).
	DataKey string `json:"data_key,omitempty"`
	// BankEncCert is the PEM file of the bank's encryption certificate (sm2-envelope).
	BankEncCert string `json:"bank_enc_cert,omitempty"`
	// PlatformEncKey names the vault key that opens sm2-envelope replies (its certificate from
	// the vault).
	PlatformEncKey string `json:"platform_enc_key,omitempty"`
	// AllowPlainReply accepts verified replies without the encryption wrapper.
	AllowPlainReply bool `json:"allow_plain_reply,omitempty"`
}

// ChannelTLCP configures the TLCP link to the bank.
type ChannelTLCP struct {
	// SignKey names the vault signing key (with certificate) presented to the bank for mutual
	// authentication, with EncKey. Default: none (no client certificate).
	SignKey string `json:"sign_key,omitempty"`
	// EncKey names the vault encryption key (with certificate) presented with SignKey.
	EncKey string `json:"enc_key,omitempty"`
	// ServerName is checked against the bank's signing certificate and sent as SNI. Default:
	// the upstream's host.
	ServerName string `json:"server_name,omitempty"`
	// CipherSuites in preference order. Default: ECC_SM4_GCM_SM3, ECC_SM4_CBC_SM3,
	// ECDHE_SM4_GCM_SM3, ECDHE_SM4_CBC_SM3.
	CipherSuites []string `json:"cipher_suites,omitempty"`
	// ECDHEParamsAsVector sends the ECDHE ClientKeyExchange with the GB/T 2-byte length prefix
	// (some banks need it; Tongsuo and gotlcp do not).
	ECDHEParamsAsVector bool `json:"ecdhe_params_as_vector,omitempty"`
	// ECCCiphertextRaw sends the ECC pre-master secret as raw C1||C3||C2 (tjfoc-based banks).
	ECCCiphertextRaw bool `json:"ecc_ciphertext_raw,omitempty"`
	// HandshakeTimeout bounds the TLCP handshake. Default 10s.
	HandshakeTimeout caddy.Duration `json:"handshake_timeout,omitempty"`
	// SessionCacheSize is the number of TLCP sessions kept to resume connections to the bank
	// (session-ID resumption: a new connection skips the SM2 operations of a full handshake
	// when the bank still knows the session). Default 64; negative: off.
	SessionCacheSize int `json:"session_cache_size,omitempty"`
	// CRLs are CRL files (PEM or DER) of the bank's CAs, checked for every certificate of the
	// bank's verified chains (signing and encryption) on every full handshake and again before
	// a cached session is resumed (a revoked or expired bank certificate ends resumption too),
	// and for the bank's reply-signing certificates (bank_cert) when a reply names them (at most
	// 30s after the last check); reloaded when they change.
	CRLs []string `json:"crls,omitempty"`

	releases []func() // expiry reporting of its CRLs, stopped at the transport's Cleanup
}

// ChannelTLS13SM configures an RFC 8998 (TLS 1.3 with SM suites) link to the bank.
type ChannelTLS13SM struct {
	// SignKey names the vault SM2 signing key (with certificate) presented to the bank for
	// mutual authentication. Default: none (no client certificate).
	SignKey string `json:"sign_key,omitempty"`
	// ServerName is checked against the bank's certificate and sent as SNI. Default: the
	// upstream's host.
	ServerName string `json:"server_name,omitempty"`
	// CipherSuites in preference order: TLS_SM4_GCM_SM3, TLS_SM4_CCM_SM3 (the default).
	CipherSuites []string `json:"cipher_suites,omitempty"`
	// HandshakeTimeout bounds the handshake. Default 10s.
	HandshakeTimeout caddy.Duration `json:"handshake_timeout,omitempty"`
	// SessionCacheSize is the number of bank tickets kept for resumption. Default 64;
	// negative: off.
	SessionCacheSize int `json:"session_cache_size,omitempty"`
	// CRLs are CRL files of the bank's CAs, checked on every full handshake and before a
	// ticket is used, and for the bank's reply-signing certificates (bank_cert) when a reply
	// names them (at most 30s after the last check); reloaded when they change.
	CRLs []string `json:"crls,omitempty"`
}

func (c *ChannelTLS13SM) config(app *App, roots []*smx509.Certificate) (*tls13sm.Config, error) {
	cfg := &tls13sm.Config{ServerName: c.ServerName, RootCAs: smx509.NewCertPool()}
	switch size := c.SessionCacheSize; {
	case size == 0:
		cfg.ClientSessionCache = tls13sm.NewLRUClientSessionCache(64)
	case size > 0:
		cfg.ClientSessionCache = tls13sm.NewLRUClientSessionCache(size)
	}
	for _, r := range roots {
		cfg.RootCAs.AddCert(r)
	}
	if len(c.CRLs) > 0 {
		crls, err := pki.NewCRLStore(c.CRLs, withEnrollCRLs(c.CRLs, pki.CRLOptions{}))
		if err != nil {
			return nil, fmt.Errorf("tls13sm: loading CRLs: %w", err)
		}
		cfg.VerifyPeerCertificate = revocationCheck(crls)
	}
	var err error
	if cfg.CipherSuites, err = parseTLS13SMSuites(c.CipherSuites); err != nil {
		return nil, err
	}
	if c.SignKey != "" {
		chain, err := app.Certificates(c.SignKey)
		if err != nil || len(chain) == 0 {
			return nil, fmt.Errorf("tls13sm: key %q has no certificate configured", c.SignKey)
		}
		signer, err := app.Signer(c.SignKey)
		if err != nil {
			return nil, fmt.Errorf("tls13sm: key %q: %w", c.SignKey, err)
		}
		cert := &tls13sm.Certificate{PrivateKey: signer, Leaf: chain[0]}
		for _, ch := range chain {
			cert.Certificate = append(cert.Certificate, ch.Raw)
		}
		cfg.Certificate = cert
	}
	return cfg, nil
}

// CaddyModule returns the Caddy module information.
func (ChannelTransport) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.reverse_proxy.transport.gm_channel",
		New: func() caddy.Module { return new(ChannelTransport) },
	}
}

// Provision loads the bank's certificates and the platform keys and builds the channel.
func (t *ChannelTransport) Provision(ctx caddy.Context) error {
	t.logger = ctx.Logger()
	if err := t.Validate(); err != nil { // Provision names series and logs by bank
		return err
	}
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return err
	}
	app, err := gmgateApp(ctx)
	if err != nil {
		return err
	}
	keyName := t.PlatformKey
	if keyName == "" {
		keyName = DevPlatformSignKey
	}
	signer, err := app.Signer(keyName)
	if err != nil {
		return fmt.Errorf("gm_channel %s: platform key: %w", t.Bank, err)
	}
	platformChain, err := app.Certificates(keyName)
	if err != nil || len(platformChain) == 0 {
		return fmt.Errorf("gm_channel %s: platform key %q has no certificate", t.Bank, keyName)
	}
	bankCerts, err := pki.LoadCertificatesFiles(t.BankCerts...)
	if err != nil {
		return fmt.Errorf("gm_channel %s: %w", t.Bank, err)
	}
	bankRoots, err := pki.LoadCertificatesFiles(t.BankRoots...)
	if err != nil {
		return fmt.Errorf("gm_channel %s: %w", t.Bank, err)
	}
	if dev := app.Dev(); dev != nil {
		// The development default's demo bank, like tls internal: never a production default.
		if len(t.BankCerts) == 0 {
			bankCerts = []*smx509.Certificate{dev.BankPlatform.Cert}
			t.logger.Warn("gm_channel: no bank_cert; trusting the development PKI's demo bank", zap.String("bank", t.Bank))
		}
		if len(t.BankRoots) == 0 {
			bankRoots = []*smx509.Certificate{dev.Root.Cert}
		}
	}
	zeroChannelMetrics(t.Bank, codeStrings(channel.Codes()))
	t.releases = append(t.releases,
		trackCertificates("gm_channel", "bank", t.Bank, bankCerts),
		trackCertificates("gm_channel", "bank_root", t.Bank, bankRoots))
	// The link's CRLs (tlcp/tls13sm crls, the bank's CAs) also cover the bank's reply-signing
	// certificates: the channel verifies them again when a reply names them.
	var bankCRLFiles []string
	if t.TLCP != nil {
		bankCRLFiles = append(bankCRLFiles, t.TLCP.CRLs...)
	}
	if t.TLS13SM != nil {
		bankCRLFiles = append(bankCRLFiles, t.TLS13SM.CRLs...)
	}
	var bankVerifier *pki.Verifier
	if len(bankCRLFiles) > 0 && len(bankRoots) > 0 {
		crls, err := pki.NewCRLStore(bankCRLFiles, pki.CRLOptions{})
		if err != nil {
			return fmt.Errorf("gm_channel %s: loading CRLs: %w", t.Bank, err)
		}
		if bankVerifier, err = pki.NewVerifier(pki.VerifierOptions{Roots: bankRoots, CRLs: crls}); err != nil {
			return fmt.Errorf("gm_channel %s: bank roots: %w", t.Bank, err)
		}
	}
	cfg := channel.Config{
		Name:           t.Bank,
		Scheme:         t.Scheme,
		PlatformSigner: signer,
		PlatformCert:   platformChain[0],
		PlatformKeyID:  t.PlatformKeyID,
		MerchantID:     t.MerchantID,
		BankCerts:      bankCerts,
		BankRoots:      bankRoots,
		Verifier:       bankVerifier,
		ReplyWindow:    time.Duration(t.ReplyWindow),
	}
	if e := t.Encryption; e != nil {
		enc := channel.Encryption{Target: e.Target, Cipher: e.Cipher, Fields: e.Fields, AllowPlainReply: e.AllowPlainReply}
		if e.DataKey != "" {
			k, err := app.DataKey(e.DataKey)
			if err != nil {
				return fmt.Errorf("gm_channel %s: data key: %w", t.Bank, err)
			}
			enc.Key = k
		}
		if e.BankEncCert != "" {
			certs, err := pki.LoadCertificatesFile(e.BankEncCert)
			if err != nil {
				return fmt.Errorf("gm_channel %s: bank encryption certificate: %w", t.Bank, err)
			}
			enc.BankEncCert = certs[0]
		}
		if e.PlatformEncKey != "" {
			dec, err := app.Decrypter(e.PlatformEncKey)
			if err != nil {
				return fmt.Errorf("gm_channel %s: platform encryption key: %w", t.Bank, err)
			}
			chain, err := app.Certificates(e.PlatformEncKey)
			if err != nil || len(chain) == 0 {
				return fmt.Errorf("gm_channel %s: platform encryption key %q has no certificate", t.Bank, e.PlatformEncKey)
			}
			enc.PlatformDecrypter, enc.PlatformEncCert = dec, chain[0]
		}
		cfg.Encryption = enc
	}
	ch, err := channel.New(cfg)
	if err != nil {
		return err
	}

	// Caddy's HTTP transport underneath; TLCP replaces its TLS dialing.
	inner := t.HTTP
	if inner == nil {
		inner = new(reverseproxy.HTTPTransport)
	}
	inner.Versions = []string{"1.1"} // HTTP/2 needs crypto/tls; banks speak HTTP/1.1 over TLCP
	if err := inner.Provision(ctx); err != nil {
		return fmt.Errorf("gm_channel %s: HTTP transport: %w", t.Bank, err)
	}
	t.useTLS = inner.TLSEnabled()
	// The bank signs the body it sends: never let the transport decompress it.
	inner.Transport.DisableCompression = true
	if t.TLCP != nil {
		tc, err := t.TLCP.config(app, bankRoots)
		if err != nil {
			return fmt.Errorf("gm_channel %s: %w", t.Bank, err)
		}
		err = channel.UseTLCP(inner.Transport, channel.TLCPTransportConfig{
			TLCP:             tc,
			HandshakeTimeout: time.Duration(t.TLCP.HandshakeTimeout),
		})
		if err != nil {
			return err
		}
		t.useTLS = true
	}
	if t.TLS13SM != nil {
		if t.TLCP != nil {
			return fmt.Errorf("gm_channel %s: tlcp and tls13sm exclude each other", t.Bank)
		}
		tc, err := t.TLS13SM.config(app, bankRoots)
		if err != nil {
			return fmt.Errorf("gm_channel %s: %w", t.Bank, err)
		}
		err = channel.UseTLS13SM(inner.Transport, channel.TLS13SMTransportConfig{
			Config:           tc,
			HandshakeTimeout: time.Duration(t.TLS13SM.HandshakeTimeout),
		})
		if err != nil {
			return err
		}
		t.useTLS = true
	}
	t.rt, err = channel.NewTransport(ch, channel.TransportOptions{
		Inner:           inner.Transport,
		Audit:           app.AuditSink(),
		Metrics:         channelMetrics{},
		MaxBody:         t.MaxBodySize,
		ResponseTimeout: time.Duration(t.ResponseTimeout),
		Retries:         t.Retries,
		// A mutually authenticated TLCP (or RFC 8998) link vouches for the bank's status and headers.
		TrustedLink:  t.TLCP != nil && t.TLCP.SignKey != "" || t.TLS13SM != nil && t.TLS13SM.SignKey != "",
		ReplyHeaders: t.ReplyHeaders,
		OnError: func(bank string, code channel.Code, err error) {
			t.logger.Warn("bank channel failure", zap.String("bank", bank), zap.String("code", string(code)), zap.Error(err))
		},
	})
	return err
}

func (c *ChannelTLCP) config(app *App, roots []*smx509.Certificate) (*tlcp.Config, error) {
	cfg := &tlcp.Config{
		ServerName:          c.ServerName,
		ECDHEParamsAsVector: c.ECDHEParamsAsVector,
		ECCCiphertextRaw:    c.ECCCiphertextRaw,
		RootCAs:             smx509.NewCertPool(),
	}
	switch size := c.SessionCacheSize; {
	case size == 0:
		cfg.SessionCache = tlcp.NewLRUSessionCache(64, time.Hour)
	case size > 0:
		cfg.SessionCache = tlcp.NewLRUSessionCache(size, time.Hour)
	}
	for _, r := range roots {
		cfg.RootCAs.AddCert(r)
	}
	if len(c.CRLs) > 0 {
		crls, err := pki.NewCRLStore(c.CRLs, withEnrollCRLs(c.CRLs, pki.CRLOptions{}))
		if err != nil {
			return nil, fmt.Errorf("tlcp: loading CRLs: %w", err)
		}
		cfg.VerifyPeerCertificate = revocationCheck(crls)
		c.releases = append(c.releases, trackCRLs("gm_channel", crls))
	}
	var err error
	if cfg.CipherSuites, err = parseSuites(c.CipherSuites); err != nil {
		return nil, err
	}
	if (c.SignKey == "") != (c.EncKey == "") {
		return nil, fmt.Errorf("tlcp: mutual authentication needs both sign_key and enc_key")
	}
	if c.SignKey != "" {
		if cfg.SignCertificate, err = vaultCertificate(app, c.SignKey, true); err != nil {
			return nil, err
		}
		if cfg.EncCertificate, err = vaultCertificate(app, c.EncKey, false); err != nil {
			return nil, err
		}
	}
	return cfg, nil
}

// channelMetrics feeds channel exchanges into the collectors.
type channelMetrics struct{}

func (channelMetrics) ObserveChannel(bank, result string, d time.Duration) {
	channelRequests.WithLabelValues(bank, result).Inc()
	channelSeconds.WithLabelValues(bank).Observe(d.Seconds())
}

// RoundTrip sends the request through the bank channel.
func (t *ChannelTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	t.SetScheme(req)
	return t.rt.RoundTrip(req)
}

// SetScheme sets https for TLCP (or TLS) banks and http otherwise.
func (t *ChannelTransport) SetScheme(req *http.Request) {
	if req.URL.Scheme != "" {
		return
	}
	if t.useTLS {
		req.URL.Scheme = "https"
	} else {
		req.URL.Scheme = "http"
	}
}

// Validate checks the configuration without touching keys or the bank.
func (t *ChannelTransport) Validate() error {
	if t.Bank == "" {
		return errors.New("gm_channel: bank name required")
	}
	if t.MaxBodySize < 0 || t.Retries < 0 || t.Retries > channel.MaxRetries {
		return fmt.Errorf("gm_channel %s: max_body_size must not be negative and retries must be 0..%d", t.Bank, channel.MaxRetries)
	}
	if c := t.TLCP; c != nil {
		if _, err := parseSuites(c.CipherSuites); err != nil {
			return fmt.Errorf("gm_channel %s: %w", t.Bank, err)
		}
		if (c.SignKey == "") != (c.EncKey == "") {
			return fmt.Errorf("gm_channel %s: tlcp sign_key and enc_key go together", t.Bank)
		}
	}
	return nil
}

// Cleanup closes idle bank connections.
func (t *ChannelTransport) Cleanup() error {
	for _, release := range t.releases {
		release()
	}
	t.releases = nil
	if t.TLCP != nil {
		for _, release := range t.TLCP.releases {
			release()
		}
		t.TLCP.releases = nil
	}
	if t.rt != nil {
		t.rt.CloseIdleConnections()
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner  = (*ChannelTransport)(nil)
	_ caddy.Validator    = (*ChannelTransport)(nil)
	_ caddy.CleanerUpper = (*ChannelTransport)(nil)
	_ http.RoundTripper  = (*ChannelTransport)(nil)
	_ channel.Metrics    = channelMetrics{}
)
