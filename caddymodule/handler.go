package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/emmansun/gmsm/smx509"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/gmgate/gmgate/audit"
	"github.com/gmgate/gmgate/envelope"
	"github.com/gmgate/gmgate/gateway"
	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/signing"
)

func init() {
	caddy.RegisterModule(Verify{})
}

// Default limits of gm_verify.
const (
	// DefaultMaxReplySize bounds a buffered back-end reply (1 MiB).
	DefaultMaxReplySize = 1 << 20
)

// Verify is the `http.handlers.gm_verify` handler: it verifies the SM2 signature of a payment
// instruction (identity, integrity, freshness), opens its envelope, forwards the plain request
// with headers naming the verified identity, and signs the back end's reply with the platform
// key in the scheme the client used. Every decision is written to the audit log and counted.
//
// Placeholders set on success: {gm.client.subject}, {gm.client.serial}, {gm.verify.result},
// {gm.verify.scheme}, and for requests that came over TLCP or RFC 8998 the {gm.tls.*} ones of
// tlcp_vars ({gm.tls.protocol}, {gm.tls.version}, {gm.tls.cipher_suite}, {gm.tls.server_name},
// {gm.tls.resumed}, {gm.tls.client.subject}, {gm.tls.client.serial}, {gm.tls.client.fingerprint};
// over TLCP also under their older {tlcp.*} names).
type Verify struct {
	// Scheme is the signature scheme: wechatpay-v3-sm2 (default), http-sig-sm2, form-sm2 or
	// unionpay-sm2.
	Scheme string `json:"scheme,omitempty"`
	// SchemeOptions adjusts the scheme (user ID, encodings, field names).
	SchemeOptions *SchemeOptions `json:"scheme_options,omitempty"`
	// TrustedRoots are PEM files of the root CAs client certificates must chain to. Default: the
	// development root when the development PKI is in use.
	TrustedRoots []string `json:"trusted_roots,omitempty"`
	// Intermediates are PEM files of intermediate CAs used to build chains.
	Intermediates []string `json:"intermediates,omitempty"`
	// Identities are the client signing certificates.
	Identities *IdentitiesConfig `json:"identities,omitempty"`
	// CRLs are CRL files (PEM or DER) checked for every certificate of a chain; reloaded on change.
	CRLs []string `json:"crls,omitempty"`
	// BindTLSClient ties the signing certificate to the verified client certificate of the
	// connection, TLCP or RFC 8998 (TLS 1.3 with the SM suites) alike: "cert" (same
	// certificate), "subject" (same subject) or "none" (default). A request that came without
	// a verified client certificate fails every binding but none.
	BindTLSClient string `json:"bind_tls_client,omitempty"`
	// BindTLCPClient is the older name of BindTLSClient, with the same meaning (it covers RFC
	// 8998 connections too). Setting both to different values is an error.
	BindTLCPClient string `json:"bind_tlcp_client,omitempty"`
	// Replay configures the timestamp window and nonce store.
	Replay *ReplayConfig `json:"replay,omitempty"`
	// MaxBodySize bounds the request body in bytes (default 1 MiB).
	MaxBodySize int64 `json:"max_body_size,omitempty"`
	// MaxReplySize bounds the buffered back-end reply in bytes (default 1 MiB); larger replies
	// are answered with 502.
	MaxReplySize int64 `json:"max_reply_size,omitempty"`
	// HeaderPrefix prefixes the identity headers sent to the back end (default "X-Gm-"): every
	// client header with this prefix is removed first.
	HeaderPrefix string `json:"header_prefix,omitempty"`
	// Envelope configures the opening of SM2 digital envelopes.
	Envelope *EnvelopeConfig `json:"envelope,omitempty"`
	// ReplySigning configures the signature of replies.
	ReplySigning *ReplySigningConfig `json:"reply_signing,omitempty"`
	// Audit gives this handler its own audit log; without it the gmgate app's shared log is used
	// when configured.
	Audit *VerifyAuditConfig `json:"audit,omitempty"`

	verifier        *gateway.Verifier
	scheme          signing.Scheme
	reply           *gateway.ReplySigner
	sealReply       bool
	store           gateway.ReplayStore
	storeHolder     int                // holder number in memoryReplayStores when store is the shared memory store
	retentionHolder int                // holder number in replayRetentions
	inflight        *atomic.Int64      // requests being served, so that Cleanup does not close what they use
	verifiedOK      prometheus.Counter // verifyResults{scheme, "ok"}, resolved once (not per request)
	ownAudit        *deferredAudit     // gm_verify's own audit log (shared across reloads), or nil
	releases        []func()           // expiry reporting, stopped at Cleanup
	logger          *zap.Logger
}

// SchemeOptions are the settings of a signature scheme (each scheme ignores those it does not use).
type SchemeOptions struct {
	// UserID is a fixed SM2 user ID (default 1234567812345678).
	UserID string `json:"user_id,omitempty"`
	// UserIDMode is "default" or "key_id" (the user ID is the key ID, e.g. the certificate serial).
	UserIDMode string `json:"user_id_mode,omitempty"`
	// SignatureEncoding is "der" or "raw" (r||s).
	SignatureEncoding string `json:"signature_encoding,omitempty"`
	// TextEncoding is "base64" or "hex".
	TextEncoding string `json:"text_encoding,omitempty"`
	// Label is the RFC 9421 signature label (http-sig-sm2).
	Label string `json:"label,omitempty"`
	// Components are the covered request components required (http-sig-sm2).
	Components []string `json:"components,omitempty"`
	// SignField names the field carrying the signature (form-sm2, unionpay-sm2).
	SignField string `json:"sign_field,omitempty"`
	// KeyIDField names the field naming the signing certificate (form-sm2, unionpay-sm2).
	KeyIDField string `json:"key_id_field,omitempty"`
	// MerchantField names the merchant field (form-sm2, unionpay-sm2).
	MerchantField string `json:"merchant_field,omitempty"`
	// NonceField names the field used as the replay nonce (form-sm2, unionpay-sm2).
	NonceField string `json:"nonce_field,omitempty"`
	// TimestampField names the timestamp field (form-sm2, unionpay-sm2).
	TimestampField string `json:"timestamp_field,omitempty"`
	// TimestampLayout is the layout of TimestampField: "unix", "unixms" or a Go layout read in
	// UTC+8.
	TimestampLayout string `json:"timestamp_layout,omitempty"`
}

// IdentitiesConfig lists client signing certificates.
type IdentitiesConfig struct {
	// Files are PEM/DER certificate files.
	Files []string `json:"files,omitempty"`
	// Dir is a directory of certificate files, reloaded when it changes.
	Dir string `json:"dir,omitempty"`
	// Vault names keys of the gmgate vault whose certificates are identities.
	Vault []string `json:"vault,omitempty"`
	// ReloadInterval is the minimum time between two checks of Dir (default 5s).
	ReloadInterval caddy.Duration `json:"reload_interval,omitempty"`
}

// ReplayConfig configures replay protection.
type ReplayConfig struct {
	// Window is the accepted clock difference (default 5m).
	Window caddy.Duration `json:"window,omitempty"`
	// Store is "memory" (default, one instance) or "redis" (shared by every instance).
	Store string `json:"store,omitempty"`
	// RedisAddress is where Redis is, as host:port: the server (redis_mode standalone, one
	// address), Cluster seed nodes (cluster) or the Sentinels (sentinel). JSON: one string or a
	// list.
	RedisAddress RedisAddresses `json:"redis_address,omitempty"`
	// RedisMode is how Redis runs: "standalone" (default), "cluster" or "sentinel".
	RedisMode string `json:"redis_mode,omitempty"`
	// RedisSentinelMaster is the master name the Sentinels monitor (sentinel mode, required).
	RedisSentinelMaster string `json:"redis_sentinel_master,omitempty"`
	// RedisUsername is the Redis ACL user (Redis 6+). Default: none (the "default" user).
	RedisUsername string `json:"redis_username,omitempty"`
	// RedisPasswordEnv names the environment variable holding the Redis password (of
	// RedisUsername, or requirepass).
	RedisPasswordEnv string `json:"redis_password_env,omitempty"`
	// RedisSentinelUsername is the Sentinels' own ACL user (sentinel mode). Default: none.
	RedisSentinelUsername string `json:"redis_sentinel_username,omitempty"`
	// RedisSentinelPasswordEnv names the environment variable holding the Sentinels' own
	// password (their requirepass; sentinel mode). Default: none.
	RedisSentinelPasswordEnv string `json:"redis_sentinel_password_env,omitempty"`
	// RedisPrefix prefixes nonce keys (default gmgate:replay:; no '{' or '}' with a Cluster).
	RedisPrefix string `json:"redis_prefix,omitempty"`
	// RedisDB is the Redis database number (default 0; a Cluster has only 0).
	RedisDB int `json:"redis_db,omitempty"`
	// RedisTLS, when present, connects to Redis (and the Sentinels) with TLS 1.2 or later.
	RedisTLS *RedisTLSConfig `json:"redis_tls,omitempty"`
	// RedisTimeout bounds a dial and each round trip to Redis (default 250ms); a check with
	// RedisReplicaAcks takes up to two round trips.
	RedisTimeout caddy.Duration `json:"redis_timeout,omitempty"`
	// RedisReplicaAcks is the number of replicas that must acknowledge each nonce (Redis WAIT)
	// before a request is accepted; fewer within redis_timeout refuse it (503
	// replay_store_unavailable). Default 1 in sentinel mode (a failover then cannot lose an
	// accepted nonce), 0 otherwise; 0 turns the wait off.
	RedisReplicaAcks *int `json:"redis_replica_acks,omitempty"`
	// FailOpen accepts requests when the store is unreachable (default: fail closed, 503).
	FailOpen bool `json:"fail_open,omitempty"`
	// MaxEntries bounds the memory store (default 1e6).
	MaxEntries int `json:"max_entries,omitempty"`
}

// RedisTLSConfig is the TLS configuration of the Redis connection. Files are PEM.
type RedisTLSConfig struct {
	// TrustedRoots are the CA certificates the Redis server certificate must chain to.
	// Default: the system roots.
	TrustedRoots []string `json:"trusted_roots,omitempty"`
	// ClientCert is gmgate's client certificate (PEM file), for a Redis with tls-auth-clients.
	// Default: none.
	ClientCert string `json:"client_cert,omitempty"`
	// ClientKey is the PEM file of ClientCert's private key.
	ClientKey string `json:"client_key,omitempty"`
	// ServerName is the name the server certificate must carry. Default: the host of the
	// address dialled.
	ServerName string `json:"server_name,omitempty"`
}

// RedisAddresses is one or more host:port addresses; in JSON a string or a list of strings.
type RedisAddresses []string

// MarshalJSON writes one address as a string (the historical form), several as a list.
func (a RedisAddresses) MarshalJSON() ([]byte, error) {
	if len(a) == 1 {
		return json.Marshal(a[0])
	}
	return json.Marshal([]string(a))
}

// UnmarshalJSON reads a string or a list of strings.
func (a *RedisAddresses) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*a = RedisAddresses{one}
		return nil
	}
	var list []string
	if err := json.Unmarshal(b, &list); err != nil {
		return errors.New("redis_address: want a host:port string or a list of them")
	}
	*a = list
	return nil
}

// redisConfig maps the redis_* options to the gateway's Redis configuration, reading the
// passwords from the environment.
func (rc *ReplayConfig) redisConfig() *gateway.RedisConfig {
	c := &gateway.RedisConfig{
		Mode:             rc.RedisMode,
		Addrs:            rc.RedisAddress,
		SentinelMaster:   rc.RedisSentinelMaster,
		Username:         rc.RedisUsername,
		SentinelUsername: rc.RedisSentinelUsername,
		DB:               rc.RedisDB,
		Timeout:          time.Duration(rc.RedisTimeout),
	}
	if rc.RedisPasswordEnv != "" {
		c.Password = os.Getenv(rc.RedisPasswordEnv)
	}
	if rc.RedisSentinelPasswordEnv != "" {
		c.SentinelPassword = os.Getenv(rc.RedisSentinelPasswordEnv)
	}
	if t := rc.RedisTLS; t != nil {
		c.TLS = &gateway.RedisTLS{RootFiles: t.TrustedRoots, CertFile: t.ClientCert, KeyFile: t.ClientKey, ServerName: t.ServerName}
	}
	return c
}

// EnvelopeConfig configures envelopes.
type EnvelopeConfig struct {
	// DecryptKey is the vault name of the platform encryption key (with its certificate) that
	// opens request envelopes.
	DecryptKey string `json:"decrypt_key,omitempty"`
	// SealReply envelopes replies for the TLCP client's encryption certificate.
	SealReply bool `json:"seal_reply,omitempty"`
	// Order is "auto" (default: seal_then_sign for wechatpay-v3-sm2 and http-sig-sm2,
	// sign_then_seal for form-sm2 and unionpay-sm2, as the client SDK), "seal_then_sign" (the
	// signature covers the envelope: verify, then open; replies are sealed, then signed) or
	// "sign_then_seal" (the signature covers the plaintext: open, then verify; replies are
	// signed, then sealed).
	Order string `json:"order,omitempty"`
	// AllowCBC accepts SM4-CBC request envelopes in sign_then_seal order, where the envelope is
	// decrypted before its signature can be checked. Off (default): only SM4-GCM is opened there,
	// and a CBC envelope is refused (envelope_invalid) before anything is decrypted, because CBC
	// decrypted before authentication is a padding oracle for captured envelopes. On: every
	// failure from opening through signature verification answers the same envelope_invalid after
	// the same work. seal_then_sign (signature over the envelope) opens CBC and GCM either way.
	AllowCBC bool `json:"allow_cbc,omitempty"`
}

// ReplySigningConfig configures reply signatures.
type ReplySigningConfig struct {
	// Key is the vault name of the platform signing key (default dev-platform-sign).
	Key string `json:"key,omitempty"`
	// Disabled forwards replies unsigned.
	Disabled bool `json:"disabled,omitempty"`
}

// VerifyAuditConfig gives gm_verify its own audit log.
type VerifyAuditConfig struct {
	// Path is the log base name (segments Path.000001, ...).
	Path string `json:"path,omitempty"`
	// CheckpointEvery writes a signed checkpoint after this many entries (default 1000).
	CheckpointEvery int `json:"checkpoint_every,omitempty"`
	// MaxSize rotates segments at this size in bytes (default 64 MiB).
	MaxSize int64 `json:"max_size,omitempty"`
	// Key is the vault name of the checkpoint signing key (default: the reply signing key).
	Key string `json:"key,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (Verify) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.gm_verify",
		New: func() caddy.Module { return new(Verify) },
	}
}

// buildScheme returns the configured scheme (signing.Settings is the one builder).
func (h *Verify) buildScheme() (signing.Scheme, error) {
	st := signing.Settings{Name: h.Scheme}
	if st.Name == "" {
		st.Name = signing.WechatPayName
	}
	if o := h.SchemeOptions; o != nil {
		switch strings.ToLower(o.UserIDMode) {
		case "", "default":
		case "key_id", "keyid", "serial":
			st.UserIDFromKeyID = true
		default:
			return nil, fmt.Errorf("unknown user_id_mode %q (default, key_id)", o.UserIDMode)
		}
		st.UserID, st.SignatureEncoding, st.TextEncoding = o.UserID, o.SignatureEncoding, o.TextEncoding
		st.Label, st.Components = o.Label, o.Components
		st.SignField, st.KeyIDField, st.MerchantIDField, st.NonceField = o.SignField, o.KeyIDField, o.MerchantField, o.NonceField
		st.TimestampField, st.TimestampLayout = o.TimestampField, o.TimestampLayout
	}
	return st.Build()
}

// Provision wires the core packages: scheme, pki verifier (roots, CRLs), identities, replay
// store, envelope opener, reply signer and audit log, with keys from the gmgate vault.
func (h *Verify) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	h.inflight = new(atomic.Int64)
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return err
	}
	app, err := gmgateApp(ctx)
	if err != nil {
		return err
	}
	if h.scheme, err = h.buildScheme(); err != nil {
		return fmt.Errorf("gm_verify: %w", err)
	}
	zeroVerifyMetrics(h.scheme.Name(), codeStrings(gateway.Codes()))
	h.verifiedOK = verifyResults.WithLabelValues(h.scheme.Name(), string(gateway.CodeOK))
	ids, err := h.identityStore(app, "gm_verify")
	if err != nil {
		return err
	}
	bind, err := h.binding()
	if err != nil {
		return err
	}
	guard, err := h.replayGuard()
	if err != nil {
		return fmt.Errorf("gm_verify: replay: %w", err)
	}
	vo := gateway.VerifierOptions{Scheme: h.scheme, Identities: ids, Replay: guard, MaxBodySize: h.MaxBodySize,
		Binding: bind, HeaderPrefix: h.HeaderPrefix, RequestIDHeader: "X-Request-Id",
		OnAuditError: func(err error) { h.logger.Error("gm_verify: audit write failed", zap.Error(err)) }}
	var order envelope.Order
	if e := h.Envelope; e != nil {
		if order, err = envelope.ParseOrder(e.Order); err != nil {
			return fmt.Errorf("gm_verify: envelope: %w", err)
		}
		if _, err := envelope.Resolve(order, signing.SignsInHeader(h.scheme.Name())); err != nil {
			return fmt.Errorf("gm_verify: envelope: %w", err)
		}
		vo.EnvelopeOrder = order
		vo.AllowCBC = e.AllowCBC
		if e.DecryptKey != "" {
			dec, err := app.Decrypter(e.DecryptKey)
			if err != nil {
				return fmt.Errorf("gm_verify: envelope key %q: %w", e.DecryptKey, err)
			}
			cs, err := app.Certificates(e.DecryptKey)
			if err != nil || len(cs) == 0 {
				return fmt.Errorf("gm_verify: envelope key %q has no certificate", e.DecryptKey)
			}
			max := int(h.MaxBodySize)
			vo.Opener = &envelope.Opener{Cert: cs[0], Key: dec, MaxSize: max}
		}
		h.sealReply = e.SealReply
	}
	rs := h.ReplySigning
	if rs == nil {
		rs = &ReplySigningConfig{}
	}
	replyKey := rs.Key
	if replyKey == "" {
		replyKey = DevPlatformSignKey
	}
	if !rs.Disabled {
		signer, err := app.Signer(replyKey)
		if err != nil {
			return fmt.Errorf("gm_verify: reply signing key %q: %w", replyKey, err)
		}
		var cert *smx509.Certificate
		if cs, err := app.Certificates(replyKey); err == nil && len(cs) > 0 {
			cert = cs[0]
		}
		h.reply = &gateway.ReplySigner{Signer: signer, Cert: cert, Order: order}
		resolved, _ := envelope.Resolve(order, signing.SignsInHeader(h.scheme.Name()))
		if h.sealReply {
			h.reply.Seal = func(plain []byte, enc *smx509.Certificate) ([]byte, error) {
				// Sign-then-seal replies are opened before their signature is checked: GCM.
				return envelope.Seal(plain, enc, envelope.SealOptions{GCM: resolved == envelope.SignThenSeal})
			}
		}
	}
	if a := h.Audit; a != nil {
		key := a.Key
		if key == "" {
			key = replyKey
		}
		signer, err := app.Signer(key)
		if err != nil {
			return fmt.Errorf("gm_verify: audit key %q: %w", key, err)
		}
		if a.Path == "" {
			return errors.New("gm_verify: audit path required")
		}
		d := newDeferredAudit(audit.Options{Path: a.Path, Signer: signer,
			CheckpointEvery: a.CheckpointEvery, MaxSegmentSize: a.MaxSize,
			OnError: func(err error) { h.logger.Error("gm_verify: audit", zap.Error(err)) }}, nil)
		app.deferAudit(d) // opened when the configuration starts, not by `gmgate validate`
		h.ownAudit = d
		vo.Audit = d
	} else if s := app.AuditSink(); s != nil {
		vo.Audit = s
	}
	if h.verifier, err = gateway.NewVerifier(vo); err != nil {
		return fmt.Errorf("gm_verify: %w", err)
	}
	return nil
}

// identityStore builds the client signing identities and their pki verifier (roots,
// intermediates, CRLs) from TrustedRoots, Intermediates, CRLs and Identities: gm_verify's and
// gm_crypto's signed requests (who names the handler in errors and metrics).
func (h *Verify) identityStore(app *App, who string) (*gateway.IdentityStore, error) {
	roots, err := pki.LoadCertificatesFiles(h.TrustedRoots...)
	if err != nil {
		return nil, fmt.Errorf("%s: trusted_roots: %w", who, err)
	}
	if len(roots) == 0 && app.Dev() != nil {
		roots = []*smx509.Certificate{app.Dev().Root.Cert}
	}
	if len(roots) == 0 {
		return nil, fmt.Errorf("%s: trusted_roots required (no development PKI in use)", who)
	}
	inters, err := pki.LoadCertificatesFiles(h.Intermediates...)
	if err != nil {
		return nil, fmt.Errorf("%s: intermediates: %w", who, err)
	}
	var crls *pki.CRLStore
	if len(h.CRLs) > 0 {
		if crls, err = pki.NewCRLStore(h.CRLs, withEnrollCRLs(h.CRLs, pki.CRLOptions{Issuers: append(append([]*smx509.Certificate(nil), roots...), inters...)})); err != nil {
			return nil, fmt.Errorf("%s: crls: %w", who, err)
		}
	}
	h.releases = append(h.releases, trackCertificates(who, "client_root", h.scheme.Name(), roots), trackCRLs(who, crls))
	pv, err := pki.NewVerifier(pki.VerifierOptions{Roots: roots, Intermediates: inters, CRLs: crls})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", who, err)
	}
	idOpts := gateway.IdentityOptions{Verifier: pv}
	if ic := h.Identities; ic != nil {
		idOpts.Files, idOpts.Dir, idOpts.ReloadInterval = ic.Files, ic.Dir, time.Duration(ic.ReloadInterval)
		for _, name := range ic.Vault {
			cs, err := app.Certificates(name)
			if err != nil || len(cs) == 0 {
				return nil, fmt.Errorf("%s: identity %q from the vault: no certificate (%v)", who, name, err)
			}
			idOpts.Certificates = append(idOpts.Certificates, cs[0])
		}
	}
	if len(idOpts.Files) == 0 && idOpts.Dir == "" && len(idOpts.Certificates) == 0 && app.Dev() != nil && who == "gm_verify" {
		idOpts.Certificates = []*smx509.Certificate{app.Dev().Client.Sign.Cert}
		h.logger.Warn(who + ": no identities configured; accepting the development client certificate only")
	}
	ids, err := gateway.NewIdentityStore(idOpts)
	if err != nil {
		return nil, fmt.Errorf("%s: identities: %w", who, err)
	}
	return ids, nil
}

func (h *Verify) replayGuard() (*gateway.ReplayGuard, error) {
	rc := h.Replay
	if rc == nil {
		rc = &ReplayConfig{}
	}
	g := &gateway.ReplayGuard{Window: time.Duration(rc.Window), FailOpen: rc.FailOpen,
		OnStoreError: func(err error) {
			outcome := "refused"
			if rc.FailOpen && !errors.Is(err, gateway.ErrReplayStoreFull) {
				outcome = "fail_open" // accepted without a replay check: watch this
			}
			replayStoreErrors.WithLabelValues(h.scheme.Name(), outcome).Inc()
			h.logger.Warn("gm_verify: replay store", zap.String("outcome", outcome), zap.Error(err))
		}}
	switch strings.ToLower(rc.Store) {
	case "", "memory":
		st, key, err := acquireMemoryReplayStore(rc.MaxEntries)
		if err != nil {
			return nil, err
		}
		h.store, h.storeHolder = st, key
	case "redis":
		if len(rc.RedisAddress) == 0 {
			return nil, errors.New("redis_address required for the redis store")
		}
		conn := rc.redisConfig()
		acks := conn.DefaultReplicaAcks()
		if rc.RedisReplicaAcks != nil {
			acks = *rc.RedisReplicaAcks
		}
		client, err := conn.NewClient()
		if err != nil {
			return nil, err
		}
		st, err := gateway.NewRedisReplayStore(gateway.RedisReplayOptions{Client: client,
			Prefix: rc.RedisPrefix, Timeout: conn.Timeout, ReplicaAcks: acks, CloseClient: true})
		if err != nil {
			client.Close()
			return nil, err
		}
		h.store = st
	default:
		return nil, fmt.Errorf("unknown store %q (memory, redis)", rc.Store)
	}
	g.Store = h.store
	w := g.Window
	if w <= 0 {
		w = gateway.DefaultReplayWindow
	}
	h.retentionHolder = holdRetention(2*w + gateway.DefaultClockSkew)
	g.MinRetention = minRetention
	return g, nil
}

// Cleanup releases the replay store and the handler's own audit log. On a configuration reload
// Caddy cleans the old handlers up while the old servers may still be finishing requests (the
// http app does not wait for them unless the process exits), so when requests are in flight the
// release waits, in the background, until they are done (at most reloadDrain): a request
// accepted by the old configuration must not fail with replay_store_unavailable because its
// Redis client was closed under it.
func (h *Verify) Cleanup() error {
	for _, release := range h.releases {
		release()
	}
	h.releases = nil
	if h.inflight == nil || h.inflight.Load() == 0 || caddy.Exiting() {
		err := h.release()
		if caddy.Exiting() {
			err = errors.Join(err, sealAuditLogsOnExit())
		}
		return err
	}
	go func() {
		deadline := time.Now().Add(reloadDrain)
		for h.inflight.Load() > 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if err := h.release(); err != nil && h.logger != nil {
			h.logger.Warn("gm_verify: releasing the replay store or audit log", zap.Error(err))
		}
	}()
	return nil
}

// release lets go of the replay store and the handler's own audit log.
func (h *Verify) release() error {
	var errs []error
	if h.retentionHolder != 0 {
		releaseRetention(h.retentionHolder)
		h.retentionHolder = 0
	}
	switch {
	case h.storeHolder != 0:
		ms, _ := h.store.(*gateway.MemoryReplayStore)
		errs = append(errs, releaseMemoryReplayStore(h.storeHolder, ms))
	case h.store != nil:
		errs = append(errs, h.store.Close())
	}
	if h.ownAudit != nil {
		h.ownAudit.close()
		h.ownAudit = nil
	}
	return errors.Join(errs...)
}

// Validate checks the configuration without touching keys, stores or files.
func (h *Verify) Validate() error {
	if h.MaxBodySize < 0 || h.MaxReplySize < 0 {
		return errors.New("gm_verify: max_body_size and max_reply_size must not be negative")
	}
	if e := h.Envelope; e != nil {
		if _, err := envelope.ParseOrder(e.Order); err != nil {
			return fmt.Errorf("gm_verify: envelope: %w", err)
		}
	}
	if _, err := h.binding(); err != nil {
		return err
	}
	if r := h.Replay; r != nil && r.Window < 0 {
		return errors.New("gm_verify: replay window must not be negative")
	}
	if a := h.Audit; a != nil && a.Path == "" {
		return errors.New("gm_verify: audit path required")
	}
	return nil
}

// binding is the binding of bind_tls_client (or its older name bind_tlcp_client).
func (h *Verify) binding() (gateway.Binding, error) {
	tls, tlcp := strings.TrimSpace(h.BindTLSClient), strings.TrimSpace(h.BindTLCPClient)
	b, err := gateway.ParseBinding(tls)
	if err != nil {
		return b, fmt.Errorf("gm_verify: bind_tls_client: %w", err)
	}
	old, err := gateway.ParseBinding(tlcp)
	if err != nil {
		return b, fmt.Errorf("gm_verify: bind_tlcp_client: %w", err)
	}
	switch {
	case tls == "":
		return old, nil
	case tlcp != "" && old != b:
		return b, fmt.Errorf("gm_verify: bind_tls_client %q and its older name bind_tlcp_client %q disagree", tls, tlcp)
	}
	return b, nil
}

// ServeHTTP verifies the request, forwards it to next and signs the reply.
func (h *Verify) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	h.inflight.Add(1)
	defer h.inflight.Add(-1)
	repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	var peerSign, peerEnc *smx509.Certificate // the verified client certificates of the connection
	if v, ok := setGMTLSPlaceholders(r); ok {
		peerSign = v.client
		if v.protocol == protoTLCP {
			peerEnc = v.tlcp.PeerEncCertificate
		}
	}
	name := h.scheme.Name()
	res, err := h.verifier.Verify(receivedContext(r), r, peerSign)
	if err != nil {
		code := gateway.CodeOf(err)
		verifyResults.WithLabelValues(name, string(code)).Inc()
		if code == gateway.CodeReplay || code == gateway.CodeTimestampOutOfWindow {
			replayRejections.WithLabelValues(name).Inc()
		}
		if repl != nil {
			repl.Set("gm.verify.result", string(code))
			repl.Set("gm.verify.scheme", name)
		}
		h.logger.Debug("gm_verify: request rejected", zap.String("code", string(code)), zap.Error(err))
		gateway.WriteError(w, code)
		return nil
	}
	if h.verifiedOK != nil {
		h.verifiedOK.Inc()
	} else {
		verifyResults.WithLabelValues(name, string(gateway.CodeOK)).Inc()
	}
	if repl != nil {
		repl.Set("gm.client.subject", res.Subject)
		repl.Set("gm.client.serial", res.Serial)
		repl.Set("gm.verify.result", string(gateway.CodeOK))
		repl.Set("gm.verify.scheme", res.Scheme)
		// Caddy's identity, as its authentication handlers set it: the access log's user_id
		// and {http.auth.user.*} in later handlers.
		repl.Set("http.auth.user.id", res.Subject)
		repl.Set("http.auth.user.serial", res.Serial)
		repl.Set("http.auth.user.key_id", res.KeyID)
		repl.Set("http.auth.user.scheme", res.Scheme)
	}
	if h.reply == nil {
		return next.ServeHTTP(w, r)
	}
	max := h.MaxReplySize
	if max <= 0 {
		max = DefaultMaxReplySize
	}
	rec := &replyRecorder{header: http.Header{}, max: max}
	if err := next.ServeHTTP(rec, r); err != nil {
		return err
	}
	if rec.overflow {
		h.logger.Error("gm_verify: back-end reply larger than max_reply_size", zap.Int64("max_reply_size", max))
		return caddyhttp.Error(http.StatusBadGateway, errors.New("reply too large"))
	}
	status := rec.status
	if status == 0 {
		status = http.StatusOK
	}
	var enc *smx509.Certificate
	if h.sealReply {
		enc = peerEnc
	}
	body, err := h.reply.Sign(h.scheme, status, rec.header, rec.buf, enc)
	if err != nil {
		h.logger.Error("gm_verify: signing the reply", zap.Error(err))
		return caddyhttp.Error(http.StatusBadGateway, errors.New("reply cannot be signed"))
	}
	dst := w.Header()
	for k, vs := range rec.header {
		dst[k] = vs
	}
	dst.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
	return nil
}

// receivedContext returns r's context carrying the request line as the client sent it: a uri,
// rewrite, handle_path or method handler that ran before gm_verify changed r, not what the client
// signed. Caddy keeps the original in the request context.
func receivedContext(r *http.Request) context.Context {
	ctx := r.Context()
	or, ok := ctx.Value(caddyhttp.OriginalRequestCtxKey).(http.Request)
	if !ok || or.RequestURI == "" || (or.RequestURI == r.RequestURI && or.Method == r.Method) {
		return ctx
	}
	return gateway.AsReceived(ctx, or.Method, or.RequestURI)
}

// replyRecorder buffers a reply up to max bytes.
type replyRecorder struct {
	header   http.Header
	status   int
	buf      []byte
	max      int64
	overflow bool
}

func (r *replyRecorder) Header() http.Header { return r.header }

func (r *replyRecorder) WriteHeader(code int) {
	if r.status != 0 || (code >= 100 && code < 200) {
		return // informational replies are not forwarded; later calls are ignored
	}
	r.status = code
}

func (r *replyRecorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	if int64(len(r.buf))+int64(len(p)) > r.max {
		r.overflow = true
		return 0, errors.New("gm_verify: reply too large")
	}
	r.buf = append(r.buf, p...)
	return len(p), nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Verify)(nil)
	_ caddy.Validator             = (*Verify)(nil)
	_ caddy.CleanerUpper          = (*Verify)(nil)
	_ caddyhttp.MiddlewareHandler = (*Verify)(nil)
	_ caddyfile.Unmarshaler       = (*Verify)(nil)
)
