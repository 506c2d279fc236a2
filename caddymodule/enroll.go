package caddymodule

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/emmansun/gmsm/smx509"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/gmgate/gmgate/enroll"
	"github.com/gmgate/gmgate/gateway"
	"github.com/gmgate/gmgate/internal/abuse"
	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/sealstore"
	"github.com/gmgate/gmgate/sealstore/redisledger"
)

func init() {
	caddy.RegisterModule(Enroll{})
}

// Enroll is the `http.handlers.gm_enroll` handler: terminal enrolment of dual SM2 certificates
// (package enroll; docs/enrolment.md). It answers cacerts, simpleenroll, simplereenroll,
// download, revoke, recover and crl (the last path segment) and never passes a request on.
type Enroll struct {
	// CAKey names the vault key of the issuing CA (an HSM key in production). Its certificate
	// (the vault key's certificate) is the issuing CA certificate. Default, only while the
	// development PKI is in use: the development root CA (development only).
	CAKey string `json:"ca_key,omitempty"`
	// CAChain are PEM files of the CA certificates above the issuing CA (intermediates, root),
	// sent in cacerts and in every pair. Default: the vault key's certificate chain.
	CAChain []string `json:"ca_chain,omitempty"`
	// Store is the enrolment directory (tokens, issued pairs, revocations). Default:
	// "gmgate/enroll" under Caddy's data directory. The gmgate enroll commands use it too.
	Store string `json:"store,omitempty"`
	// StoreKey names the vault SM4 key that authenticates every record of Store (tokens,
	// spent markers, issued pairs, revocation markers): a record someone wrote or edited in
	// the directory without the key is refused (enroll_store_integrity). Rotating the key in
	// the vault keeps the older versions verifying. Required, except with the development PKI,
	// whose software vault provides dev-enroll-store (development only).
	StoreKey string `json:"store_key,omitempty"`
	// Profiles are the certificate profiles tokens refer to. At least one.
	Profiles []EnrollProfile `json:"profiles,omitempty"`
	// EscrowKey names the vault SM4 key that seals escrowed encryption keys (package
	// sealstore). Without it encryption keys are not escrowed (and recover answers not found).
	EscrowKey string `json:"escrow_key,omitempty"`
	// EscrowDir is the sealstore directory. Default: "<store>/escrow".
	EscrowDir string `json:"escrow_dir,omitempty"`
	// CRLFile receives the CA's CRL (PEM) whenever it is re-signed; list it in the crls option
	// of gm_verify / tlcp / gm_channel of this instance. Default: "<store>/crl.pem".
	CRLFile string `json:"crl_file,omitempty"`
	// IdentitiesDir receives every issued signing certificate (<serial>.pem; removed on
	// revocation): point gm_verify's identities { dir } at it. Default: none.
	IdentitiesDir string `json:"identities_dir,omitempty"`
	// CRLURLs are written into every issued certificate (cRLDistributionPoints): where other
	// instances and relying parties fetch the CRL (this handler's .../crl).
	CRLURLs []string `json:"crl_urls,omitempty"`
	// CRLValidity is the distance to a CRL's nextUpdate (re-signed at half). Default 24h.
	CRLValidity caddy.Duration `json:"crl_validity,omitempty"`
	// CRLCheckInterval is how often revocations written by the gmgate enroll commands are
	// picked up. Default 10s.
	CRLCheckInterval caddy.Duration `json:"crl_check_interval,omitempty"`
	// MaxBodySize bounds a request body, in bytes. Default 64KiB.
	MaxBodySize int64 `json:"max_body_size,omitempty"`
	// AdminCerts are PEM files of administrator signing certificates; an administrator signs a
	// revoke or recover request with keyid "admin:<certificate common name>".
	AdminCerts []string `json:"admin_certs,omitempty"`
	// AdminRoots are PEM files of the CAs administrator certificates must chain to. Required
	// with AdminCerts.
	AdminRoots []string `json:"admin_roots,omitempty"`
	// Replay configures the nonce store of signed requests, as in gm_verify (window, store
	// memory|redis, redis_*). With store redis, token single use is recorded in Redis too, and
	// so are the limits (rate_per_minute, burst, max_failures, lockout) over the same client,
	// under <redis_prefix>limits: (redis_prefix must then hold no '{' or '}'): every instance
	// shares the rates, failure counts and lockouts, and a Redis error refuses the request
	// (enroll_unavailable). With store memory the limits are per instance.
	Replay *ReplayConfig `json:"replay,omitempty"`
	// ExpiryWarning is the horizon of gmgate_enroll_certificates_expiring. Default 720h (30 days).
	ExpiryWarning caddy.Duration `json:"expiry_warning,omitempty"`
	// RatePerMinute is the sustained enrolment requests per client address and minute (default
	// 60). The client address is Caddy's client IP (it honours the server's trusted_proxies).
	// These rates and MaxFailures/Lockout hold for the whole deployment when replay uses store
	// redis (shared by every instance), else per instance; instances sharing a Redis must
	// configure the same values.
	RatePerMinute int `json:"rate_per_minute,omitempty"`
	// Burst is the bucket size of RatePerMinute (default 20).
	Burst int `json:"burst,omitempty"`
	// MaxFailures consecutive failed attempts (bad, expired or used tokens, signed requests that
	// do not authenticate) lock the client address, and as many failed attempts on one token
	// ID lock that token, for Lockout (default 10): enroll_locked.
	MaxFailures int `json:"max_failures,omitempty"`
	// Lockout is how long a client address or token stays locked after MaxFailures (default 15m).
	Lockout caddy.Duration `json:"lockout,omitempty"`
	// Upstream, when set, makes this handler a registration authority in front of an upstream
	// CA (another gmgate's gm_enroll) instead of issuing with ca_key. Default: none.
	Upstream *EnrollUpstream `json:"upstream,omitempty"`
	// RACerts are PEM files of registration-authority certificates this CA accepts on raenroll
	// and rarevoke (keyid "ra:<certificate common name>"). Default: none (RA operations refused).
	RACerts []string `json:"ra_certs,omitempty"`
	// RARoots are PEM files of the CAs RA certificates must chain to. Required with RACerts.
	RARoots []string `json:"ra_roots,omitempty"`
	// RACRLs are CRL files or URLs of those CAs: a revoked RA certificate is refused (checked on
	// every request; the CRLs reload on change). Default: none.
	RACRLs []string `json:"ra_crls,omitempty"`
	// RAScopes bind each registration authority of RACerts to the profiles it may request and
	// the names it may enrol (and revoke): a request outside its scope is refused
	// (enroll_ra_out_of_scope). Required for every RA of RACerts: a certificate in ra_certs
	// without a scope, or a scope without a certificate, fails provisioning.
	RAScopes []EnrollRAScope `json:"ra_scopes,omitempty"`

	cfg         enroll.Config // checked at Provision; Store and Escrow are added at start
	storeKeys   sealstore.Keys
	escrowKeys  sealstore.Keys
	nonces      gateway.ReplayStore
	storeHolder int
	logger      *zap.Logger

	rt *enrollRuntime // made at Provision: what start builds
}

// enrollRuntime is what gm_enroll builds when it starts.
type enrollRuntime struct {
	srv     atomic.Pointer[enroll.Server] // set once started
	mu      sync.Mutex
	err     error // the failure to start, kept
	stopped bool
	store   *enroll.FileStore
	cancel  context.CancelFunc
}

// CaddyModule returns the Caddy module information.
func (Enroll) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.gm_enroll", New: func() caddy.Module { return new(Enroll) }}
}

var (
	enrollRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "gmgate", Subsystem: "enroll", Name: "requests_total",
		Help: "Enrolment operations (cacerts, simpleenroll, simplereenroll, download, revoke, recover, crl, raenroll, rarevoke) by result code (ok or the enroll_* code).",
	}, []string{"op", "code"})
	enrollExpiring = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "gmgate", Subsystem: "enroll", Name: "certificates_expiring",
		Help: "Valid terminal signing certificates (not revoked, not renewed) expiring within the warning horizon, by profile.",
	}, []string{"profile"})
	enrollCertificates = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "gmgate", Subsystem: "enroll", Name: "certificates",
		Help: "Terminal signing certificates in the enrolment store by state (valid, expired, revoked, renewed).",
	}, []string{"state"})
	enrollLockouts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "gmgate", Subsystem: "enroll", Name: "lockouts_total",
		Help: "Lockouts after max_failures failed enrolment attempts, by scope (address: a client address; token: a token ID).",
	}, []string{"scope"})
	enrollStoreRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "gmgate", Subsystem: "enroll", Name: "store_records_refused_total",
		Help: "Enrolment store records refused because they failed their integrity check (forged, edited, moved, truncated, or written by an older gmgate), by record kind (token, spent, cert, revoked, ski, crl; crl also counts a CRL refused because it would drop revocations of the last CRL signed: crl_file rolled back).",
	}, []string{"kind"})
)

// EnrollProfile is a certificate profile of gm_enroll (enroll.Profile).
type EnrollProfile struct {
	// Name identifies the profile in tokens. Required.
	Name string `json:"name"`
	// CommonName is an anchored regular expression for the subject CN when the token fixes
	// none. Default [A-Za-z0-9][A-Za-z0-9._-]{0,63}.
	CommonName string `json:"common_name,omitempty"`
	// Organization is written by the CA into both certificates' subject (O).
	Organization []string `json:"organization,omitempty"`
	// OrganizationalUnit is written by the CA into both certificates' subject (OU).
	OrganizationalUnit []string `json:"organizational_unit,omitempty"`
	// DNSNames are the DNS names a request may carry: exact or "*.suffix". Default: none.
	DNSNames []string `json:"dns_names,omitempty"`
	// Validity of both certificates. Default 8760h (365 days).
	Validity caddy.Duration `json:"validity,omitempty"`
}

func (p EnrollProfile) core() enroll.Profile {
	return enroll.Profile{Name: p.Name, CommonName: p.CommonName, Organization: p.Organization,
		OrganizationalUnit: p.OrganizationalUnit, DNSNames: p.DNSNames, Validity: time.Duration(p.Validity)}
}

// EnrollRAScope is the scope of one registration authority of gm_enroll (enroll.RAScope): what
// it may ask this CA for on raenroll, and revoke on rarevoke. Every request is also checked
// against its profile.
type EnrollRAScope struct {
	// Name is the RA's name: the common name of its certificate in ra_certs (its keyid is
	// "ra:<name>"). Required.
	Name string `json:"name"`
	// Profiles are the names of the profiles the RA may request. At least one.
	Profiles []string `json:"profiles,omitempty"`
	// CommonName is an anchored regular expression every subject CN the RA asks for must match.
	// Required (no default: ".*" allows any CN its profiles allow).
	CommonName string `json:"common_name,omitempty"`
	// DNSNames are the DNS names the RA may ask for: exact or "*.suffix", as a profile's.
	// Default: none (a request with a DNS name is refused).
	DNSNames []string `json:"dns_names,omitempty"`
}

// raScopes returns the scopes keyed by RA name, refusing a name given twice.
func (h *Enroll) raScopes() (map[string]enroll.RAScope, error) {
	out := make(map[string]enroll.RAScope, len(h.RAScopes))
	for _, sc := range h.RAScopes {
		if _, dup := out[sc.Name]; dup {
			return nil, fmt.Errorf("gm_enroll: ra_scope %q given twice", sc.Name)
		}
		out[sc.Name] = enroll.RAScope{Profiles: sc.Profiles, CommonName: sc.CommonName, DNSNames: sc.DNSNames}
	}
	return out, nil
}

// enrollNonces adapts gm_verify's replay store to enroll.NonceStore.
type enrollNonces struct{ gateway.ReplayStore }

func (n enrollNonces) CheckAndStore(ctx context.Context, keyID, nonce string, ttl time.Duration) error {
	err := n.ReplayStore.CheckAndStore(ctx, keyID, nonce, ttl)
	if errors.Is(err, gateway.ErrReplay) {
		return fmt.Errorf("%w: %v", enroll.ErrSeen, err)
	}
	return err
}

// sealEscrow keeps escrowed keys in a sealstore (kind "enroll-enc", id = encryption serial).
type sealEscrow struct{ st *sealstore.Store }

// EscrowKind is the sealstore kind of escrowed encryption keys.
const EscrowKind = "enroll-enc"

func (e sealEscrow) Put(id string, secret []byte) error {
	_, err := e.st.Put(EscrowKind, []byte(id), secret)
	return err
}

func (e sealEscrow) Get(id string) ([]byte, error) {
	b, _, err := e.st.Get(EscrowKind, []byte(id))
	return b, err
}

// enrollDefaults fills the directory defaults.
func (h *Enroll) enrollDefaults() {
	if h.Store == "" {
		h.Store = filepath.Join(caddy.AppDataDir(), "gmgate", "enroll")
	}
	if h.CRLFile == "" {
		h.CRLFile = filepath.Join(h.Store, "crl.pem")
	}
	if h.EscrowDir == "" {
		h.EscrowDir = filepath.Join(h.Store, "escrow")
	}
}

// Provision builds the CA from the vault key, the store, the escrow, the nonce store and the
// enrolment server, and starts the CRL and metrics loop.
func (h *Enroll) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return err
	}
	app, err := gmgateApp(ctx)
	if err != nil {
		return err
	}
	h.enrollDefaults()
	// Before anything can fail: a CRL store provisioned after this handler may list crl_file.
	enrollCRLFiles.Store(filepath.Clean(h.CRLFile), struct{}{})
	var (
		signer crypto.Signer
		chain  []*smx509.Certificate
		issuer enroll.Issuer
	)
	switch {
	case h.Upstream != nil:
		if issuer, err = h.upstreamIssuer(app); err != nil {
			return err
		}
	case h.CAKey != "":
		if signer, err = app.Signer(h.CAKey); err != nil {
			return fmt.Errorf("gm_enroll: ca_key %q: %w", h.CAKey, err)
		}
		if chain, err = app.Certificates(h.CAKey); err != nil || len(chain) == 0 {
			return fmt.Errorf("gm_enroll: ca_key %q has no certificate", h.CAKey)
		}
	case app.Dev() != nil:
		signer, chain = app.Dev().Root.Key, []*smx509.Certificate{app.Dev().Root.Cert}
		h.logger.Warn("gm_enroll: no ca_key: issuing terminal certificates with the DEVELOPMENT root CA; do not use in production")
	default:
		return errors.New("gm_enroll: ca_key required (no development PKI in use)")
	}
	if len(h.CAChain) > 0 && issuer == nil {
		more, err := pki.LoadCertificatesFiles(h.CAChain...)
		if err != nil {
			return fmt.Errorf("gm_enroll: ca_chain: %w", err)
		}
		chain = append(chain[:1:1], more...)
	}
	if issuer == nil {
		ca, err := enroll.NewLocalCA(chain, signer, h.CRLURLs)
		if err != nil {
			return fmt.Errorf("gm_enroll: %w", err)
		}
		issuer = ca
	}
	h.storeKeys, err = h.resolveStoreKeys(app)
	if err != nil {
		return err
	}
	for _, k := range enroll.RecordKinds() {
		enrollStoreRefused.WithLabelValues(k)
	}
	var profiles []enroll.Profile
	for _, p := range h.Profiles {
		profiles = append(profiles, p.core())
	}
	if err := enroll.CheckProfiles(profiles); err != nil {
		return fmt.Errorf("gm_enroll: %w", err)
	}
	for _, scope := range []string{"address", "token"} {
		enrollLockouts.WithLabelValues(scope)
	}
	cfg := enroll.Config{Issuer: issuer, Profiles: profiles, CRLFile: h.CRLFile, IdentityDir: h.IdentitiesDir,
		Limits: enroll.Limits{RatePerMinute: h.RatePerMinute, Burst: h.Burst, MaxFailures: h.MaxFailures, Lockout: time.Duration(h.Lockout)},
		ClientAddress: func(r *http.Request) string {
			ip, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
			return ip
		},
		OnLockout:   func(scope string) { enrollLockouts.WithLabelValues(scope).Inc() },
		CRLValidity: time.Duration(h.CRLValidity), MaxRequestSize: h.MaxBodySize, RequestIDHeader: "X-Request-Id",
		Observe: func(op string, code enroll.Code) { enrollRequests.WithLabelValues(op, string(code)).Inc() }}
	if h.EscrowKey != "" {
		if h.escrowKeys, err = app.SealKeys(h.EscrowKey); err != nil {
			return fmt.Errorf("gm_enroll: escrow_key %q: %w", h.EscrowKey, err)
		}
	} else if h.Upstream == nil {
		h.logger.Warn("gm_enroll: no escrow_key: encryption keys are not escrowed and cannot be recovered")
	}
	rc := h.Replay
	if rc == nil {
		rc = &ReplayConfig{}
	}
	cfg.Window = time.Duration(rc.Window)
	switch strings.ToLower(rc.Store) {
	case "", "memory":
		st, holder, err := acquireMemoryReplayStore(rc.MaxEntries)
		if err != nil {
			return err
		}
		h.nonces, h.storeHolder = st, holder
	case "redis":
		st, shared, err := enrollRedis(rc)
		if err != nil {
			return fmt.Errorf("gm_enroll: replay: %w", err)
		}
		h.nonces = st
		cfg.Limits.Shared = shared
		// The mark of every CRL the CA signs, where a writer of the store directory and the
		// CRL file cannot roll it back: <redis_prefix>enroll-crl:<CA>.
		crl := *shared
		crl.Prefix = strings.TrimSuffix(shared.Prefix, enrollLimitsSuffix) + "enroll-crl:"
		cfg.CRLLedger = enroll.RedisCRLLedger{RedisStore: crl}
		cfg.OnLimitError = func(scope string, err error) {
			h.logger.Warn("gm_enroll: shared limits unavailable: request refused", zap.String("scope", scope), zap.Error(err))
		}
	default:
		return fmt.Errorf("gm_enroll: replay: unknown store %q (memory, redis)", rc.Store)
	}
	cfg.Nonces = enrollNonces{h.nonces}
	// simplereenroll may be authorised by the TLCP client authentication of the connection
	// (a tlcp listener wrapper with client authentication in front of this site).
	cfg.PeerCertificate = func(r *http.Request) *smx509.Certificate {
		st, ok := setTLCPPlaceholders(r)
		if !ok {
			return nil
		}
		return st.PeerSignCertificate
	}
	// Spent tokens and renewals go to the replay store as well as to the store directory:
	// Redis outlives a restore of the directory; memory, the process.
	cfg.TokenLedger = enrollNonces{h.nonces}
	// A CRL that would drop revocations of the last one signed (crl_file and store rolled
	// back) is refused; counted as a refused store record of kind crl.
	cfg.OnCRLRollback = func() {
		enrollStoreRefused.WithLabelValues("crl").Inc()
		h.logger.Error("gm_enroll: CRL rollback: the CRL would drop revocations of the last CRL this CA signed; CRL signing stopped (docs/enrolment.md, CRL rollback)")
	}
	if len(h.AdminCerts) > 0 {
		auth, err := adminAuthorizer(h.AdminCerts, h.AdminRoots)
		if err != nil {
			return fmt.Errorf("gm_enroll: %w", err)
		}
		cfg.Admin = auth
	}
	if len(h.RACerts) > 0 {
		auth, names, err := certAuthorizer(h.RACerts, h.RARoots, h.RACRLs)
		if err != nil {
			return fmt.Errorf("gm_enroll: ra_certs: %w", err)
		}
		cfg.RA = auth
		if cfg.RAScopes, err = h.raScopes(); err != nil {
			return err
		}
		if err := checkRAScopeNames(names, cfg.RAScopes); err != nil {
			return err
		}
		if err := enroll.CheckRAScopes(cfg.RAScopes, profiles); err != nil {
			return fmt.Errorf("gm_enroll: ra_scope: %w", err)
		}
	}
	if sink := app.AuditSink(); sink != nil {
		cfg.Audit = sink
	}
	h.cfg = cfg
	h.rt = &enrollRuntime{}
	// The store, the escrow directory, the first CRL (a signature with the CA key, the CRL
	// file) and the loops wait for the configuration to start (or the first request), so that
	// `gmgate validate` and `adapt` write nothing and log into no HSM.
	app.onStart(func() error { _, err := h.start(); return err })
	return nil
}

// start opens the store and the escrow, builds the server, signs the first CRL and starts the
// CRL and metrics loops, once; a failure is kept and returned to every later call (requests
// are then refused, fail closed).
func (h *Enroll) start() (*enroll.Server, error) {
	rt := h.rt
	if rt == nil {
		return nil, errors.New("gm_enroll: not provisioned")
	}
	if srv := rt.srv.Load(); srv != nil {
		return srv, nil
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if srv := rt.srv.Load(); srv != nil || rt.err != nil {
		return srv, rt.err
	}
	if rt.stopped {
		return nil, errors.New("gm_enroll: stopped")
	}
	srv, err := h.build()
	if err != nil {
		rt.err = fmt.Errorf("gm_enroll: %w", err)
		return nil, rt.err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	rt.cancel = cancel
	interval := time.Duration(h.CRLCheckInterval)
	go srv.Run(runCtx, interval, func(err error) { h.logger.Error("gm_enroll: CRL", zap.Error(err)) })
	go h.gaugeLoop(runCtx, interval)
	rt.srv.Store(srv)
	return srv, nil
}

func (h *Enroll) build() (*enroll.Server, error) {
	if h.IdentitiesDir != "" {
		if err := os.MkdirAll(h.IdentitiesDir, 0o755); err != nil {
			return nil, fmt.Errorf("identities_dir: %w", err)
		}
	}
	st, err := enroll.OpenFileStore(h.Store, h.storeKeys)
	if err != nil {
		return nil, err
	}
	logger := h.logger
	st.OnIntegrityFailure(func(kind, id string, err error) {
		enrollStoreRefused.WithLabelValues(kind).Inc()
		logger.Error("gm_enroll: store record refused", zap.String("kind", kind), zap.String("id", id), zap.Error(err))
	})
	cfg := h.cfg
	cfg.Store = st
	if h.escrowKeys != nil {
		ss, err := sealstore.Open(h.EscrowDir, h.escrowKeys)
		if err != nil {
			return nil, fmt.Errorf("escrow: %w", err)
		}
		if sh := cfg.Limits.Shared; sh != nil {
			// escrow records rolled back or put back after a destroy are refused:
			// <redis_prefix>escrow-ledger:<record>
			l, err := redisledger.New(abuse.RedisStore{Client: sh.Client, Timeout: sh.Timeout,
				Prefix: strings.TrimSuffix(sh.Prefix, enrollLimitsSuffix) + "escrow-ledger:"})
			if err != nil {
				return nil, fmt.Errorf("escrow: ledger: %w", err)
			}
			ss.SetLedger(l)
		}
		cfg.Escrow = sealEscrow{ss}
	}
	srv, err := enroll.NewServer(cfg)
	if err != nil {
		return nil, err
	}
	if err := srv.RefreshCRL(context.Background()); err != nil {
		return nil, err
	}
	h.rt.store = st
	return srv, nil
}

// enrollCRLFiles are the crl_file paths of the gm_enroll handlers provisioned in this process:
// written when the handler starts, so a CRL store of the same configuration that lists one
// (gm_verify, tlcp, gm_channel crls) takes it as pending until then (withEnrollCRLs).
var enrollCRLFiles sync.Map // cleaned path -> struct{}

// withEnrollCRLs returns opts with PendingFiles set to those of paths a gm_enroll writes.
func withEnrollCRLs(paths []string, opts pki.CRLOptions) pki.CRLOptions {
	for _, p := range paths {
		if _, ok := enrollCRLFiles.Load(filepath.Clean(p)); ok {
			opts.PendingFiles = append(opts.PendingFiles, p)
		}
	}
	return opts
}

// resolveStoreKeys resolves store_key (dev-enroll-store with the development PKI) without
// opening the vault.
func (h *Enroll) resolveStoreKeys(app *App) (sealstore.Keys, error) {
	name := h.StoreKey
	if name == "" {
		if app.Dev() == nil {
			return nil, errors.New("gm_enroll: store_key required: a vault SM4 key that authenticates the enrolment store's records")
		}
		name = DevEnrollStoreKey
		h.logger.Warn("gm_enroll: no store_key: authenticating the enrolment store with the DEVELOPMENT key dev-enroll-store; do not use in production")
	}
	keys, err := app.SealKeys(name)
	if err != nil {
		return nil, fmt.Errorf("gm_enroll: store_key %q: %w", name, err)
	}
	return keys, nil
}

// gaugeLoop keeps the certificate gauges current.
func (h *Enroll) gaugeLoop(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = 10 * time.Second
	}
	horizon := time.Duration(h.ExpiryWarning)
	if horizon <= 0 {
		horizon = 30 * 24 * time.Hour
	}
	update := func() {
		all, err := h.rt.store.Certs()
		if err != nil && !errors.Is(err, enroll.ErrIntegrity) {
			h.logger.Warn("gm_enroll: listing certificates", zap.Error(err))
			return
		}
		now := time.Now()
		states := map[string]float64{"valid": 0, "expired": 0, "revoked": 0, "renewed": 0}
		expiring := map[string]float64{}
		for _, p := range h.Profiles {
			expiring[p.Name] = 0
		}
		for _, c := range all {
			switch {
			case c.Revoked:
				states["revoked"]++
			case c.RenewedBy != "":
				states["renewed"]++
			case !now.Before(c.NotAfter):
				states["expired"]++
			default:
				states["valid"]++
				if c.NotAfter.Sub(now) <= horizon {
					expiring[c.Profile]++
				}
			}
		}
		for k, v := range states {
			enrollCertificates.WithLabelValues(k).Set(v)
		}
		for k, v := range expiring {
			enrollExpiring.WithLabelValues(k).Set(v)
		}
	}
	update()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			update()
		}
	}
}

// adminAuthorizer names administrators by their certificate's common name (certAuthorizer:
// chain to admin_roots, validity and signing usage, at load and on every use).
func adminAuthorizer(certFiles, rootFiles []string) (enroll.AdminAuthorizer, error) {
	if len(rootFiles) == 0 {
		return nil, errors.New("admin_roots required with admin_certs")
	}
	auth, _, err := certAuthorizer(certFiles, rootFiles, nil)
	if err != nil {
		return nil, fmt.Errorf("admin_certs: %w", err)
	}
	return auth, nil
}

// enrollLimitsSuffix follows redis_prefix in the keys of gm_enroll's shared limits.
const enrollLimitsSuffix = "limits:"

// enrollRedis builds gm_enroll's Redis state from its replay block: one client for the nonce
// and token ledger store (under redis_prefix) and for the limits, which every instance then
// shares (under <redis_prefix>limits:). Closing the store closes the client.
func enrollRedis(rc *ReplayConfig) (*gateway.RedisReplayStore, *abuse.RedisStore, error) {
	if len(rc.RedisAddress) == 0 {
		return nil, nil, errors.New("redis_address required for the redis store")
	}
	conn := rc.redisConfig()
	acks := conn.DefaultReplicaAcks()
	if rc.RedisReplicaAcks != nil {
		acks = *rc.RedisReplicaAcks
	}
	client, err := conn.NewClient()
	if err != nil {
		return nil, nil, err
	}
	st, err := gateway.NewRedisReplayStore(gateway.RedisReplayOptions{Client: client,
		Prefix: rc.RedisPrefix, Timeout: conn.Timeout, ReplicaAcks: acks, CloseClient: true})
	if err != nil {
		client.Close()
		return nil, nil, err
	}
	prefix := rc.RedisPrefix
	if prefix == "" {
		prefix = gateway.DefaultRedisReplayPrefix
	}
	shared := &abuse.RedisStore{Client: client, Prefix: prefix + enrollLimitsSuffix, Timeout: conn.Timeout}
	if err := shared.Check(); err != nil {
		st.Close()
		return nil, nil, fmt.Errorf("limits in Redis: %w", err)
	}
	return st, shared, nil
}

// Validate checks the configuration without side effects.
func (h *Enroll) Validate() error {
	if len(h.Profiles) == 0 {
		return errors.New("gm_enroll: at least one profile required")
	}
	if len(h.AdminCerts) > 0 && len(h.AdminRoots) == 0 {
		return errors.New("gm_enroll: admin_roots required with admin_certs")
	}
	if h.MaxBodySize < 0 {
		return errors.New("gm_enroll: negative max_body_size")
	}
	if h.RatePerMinute < 0 || h.Burst < 0 || h.MaxFailures < 0 || h.Lockout < 0 {
		return errors.New("gm_enroll: negative limit")
	}
	return h.validateUpstream()
}

// ServeHTTP answers the enrolment operations; it never calls next. A request that arrives
// before the configuration started starts the handler.
func (h *Enroll) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	srv, err := h.start()
	if err != nil {
		h.logger.Error("gm_enroll: not started", zap.Error(err))
		enrollRequests.WithLabelValues("unknown", string(enroll.CodeUnavailable)).Inc()
		enroll.WriteError(w, enroll.CodeUnavailable)
		return nil
	}
	srv.ServeHTTP(w, r)
	return nil
}

// Cleanup stops the loops and releases the nonce store.
func (h *Enroll) Cleanup() error {
	if rt := h.rt; rt != nil {
		rt.mu.Lock()
		rt.stopped = true
		if rt.cancel != nil {
			rt.cancel()
		}
		rt.mu.Unlock()
	}
	switch {
	case h.storeHolder != 0:
		ms, _ := h.nonces.(*gateway.MemoryReplayStore)
		return releaseMemoryReplayStore(h.storeHolder, ms)
	case h.nonces != nil:
		return h.nonces.Close()
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Enroll)(nil)
	_ caddy.Validator             = (*Enroll)(nil)
	_ caddy.CleanerUpper          = (*Enroll)(nil)
	_ caddyhttp.MiddlewareHandler = (*Enroll)(nil)
)
