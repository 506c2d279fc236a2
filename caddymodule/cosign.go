package caddymodule

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/smx509"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/gmgate/gmgate/cosign"
	"github.com/gmgate/gmgate/cosign/platform"
	"github.com/gmgate/gmgate/enroll"
	"github.com/gmgate/gmgate/gateway"
	"github.com/gmgate/gmgate/internal/abuse"
	"github.com/gmgate/gmgate/internal/lru"
	"github.com/gmgate/gmgate/keyvault"
	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/refusal"
	"github.com/gmgate/gmgate/sealstore"
	"github.com/gmgate/gmgate/sealstore/redisledger"
)

func init() {
	caddy.RegisterModule(Cosign{})
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:      CommandPrefix + "cosign",
		Usage:     "list|destroy|token --config <Caddyfile> ...",
		Short:     "Manages gm_cosign's platform shares (list, destroy) and issues terminal session tokens",
		CobraFunc: cosignCommand,
	})
	shortCommands["cosign"] = true
}

// Cosign is the `http.handlers.gm_cosign` handler: the platform side of collaborative SM2
// (package cosign/platform). POST <path>/keygen, <path>/sign, <path>/decrypt, <path>/rotate and
// <path>/confirm; it answers
// every request itself (the next handler is never called). Each co-operation is written to the
// gmgate app's audit log (required) and counted in gmgate_cosign_operations_total.
type Cosign struct {
	// ShareDir is the directory of sealed platform shares d_2, one record per terminal key
	// (required; created 0700).
	ShareDir string `json:"share_dir,omitempty"`
	// SealKey names the vault SM4 key that seals the shares (required).
	SealKey string `json:"seal_key,omitempty"`
	// Auth is how a terminal session is authenticated: "token" (default, a session token under
	// token_key), "cert" (the TLCP client signing certificate holds the joint key) or
	// "cert_or_token". Key generation always needs a token.
	Auth string `json:"auth,omitempty"`
	// TokenKey names the vault SM4 key whose HMAC-SM3 authenticates session tokens (required
	// unless auth is cert).
	TokenKey string `json:"token_key,omitempty"`
	// MaxTokenLifetime refuses tokens valid for longer than this from now (default 10m).
	MaxTokenLifetime caddy.Duration `json:"max_token_lifetime,omitempty"`
	// RatePerMinute is the sustained co-operations per key and minute (default 60).
	RatePerMinute int `json:"rate_per_minute,omitempty"`
	// Burst is the bucket size of RatePerMinute (default 10).
	Burst int `json:"burst,omitempty"`
	// MaxFailures consecutive failures for a key lock it for Lockout (default 5).
	MaxFailures int `json:"max_failures,omitempty"`
	// Lockout is how long a key stays locked after MaxFailures (default 15m).
	Lockout caddy.Duration `json:"lockout,omitempty"`
	// PointWindow is how long a terminal's ephemeral points (Q_1, T_1) are remembered to refuse
	// a reuse (default 10m).
	PointWindow caddy.Duration `json:"point_window,omitempty"`
	// MaxPoints bounds how many points are remembered at once (default 100000; when full,
	// co-operations are refused with 503).
	MaxPoints int `json:"max_points,omitempty"`
	// BindInstruction requires each sign request to carry the payment instruction and refuses a
	// digest that is not of it (under the joint key and UserID).
	BindInstruction bool `json:"bind_instruction,omitempty"`
	// UserID is the SM2 user ID of bound instructions (default 1234567812345678): the one the
	// gm_verify that checks those instructions uses.
	UserID string `json:"user_id,omitempty"`
	// RotationTimeout is how long a started share rotation may be confirmed (default 10m):
	// until then the old share stays current and a second rotation is refused; after it the
	// pending share is discarded.
	RotationTimeout caddy.Duration `json:"rotation_timeout,omitempty"`
	// EnrollStore is gm_enroll's store directory (its store option; shared storage with
	// several instances). When set, a co-operation (all but keygen) for a joint key whose
	// newest certificate there is revoked, expired or not yet valid is refused
	// (cosign_cert_revoked, cosign_cert_expired), by token and certificate sessions alike; a
	// key with no certificate yet (before its first enrolment) is served. The newest
	// certificate seen for each key is remembered in share_dir (kind cosign-cert): a key once
	// seen certified whose records disappear from enroll_store is refused
	// (cosign_unavailable). Opened at the first
	// co-operation; unreadable: cosign_unavailable. Default none. A certificate session's own
	// certificate is checked for validity at every request either way.
	EnrollStore string `json:"enroll_store,omitempty"`
	// EnrollStoreKey names the vault SM4 key that authenticates enroll_store's records:
	// gm_enroll's store_key (a record without a valid tag fails closed: cosign_unavailable).
	// Required with enroll_store, except with the development PKI (default dev-enroll-store).
	EnrollStoreKey string `json:"enroll_store_key,omitempty"`
	// CRLs are CRL files or URLs of the CA that issues the joint keys' certificates
	// (gm_enroll's crl_file or crl_urls), as gm_verify's crls: when set, the session
	// certificate of a certificate session and, with enroll_store, the key's newest
	// certificate there are checked against them before every co-operation (all but keygen),
	// so that a record of enroll_store deleted or put back from before its revocation does
	// not make a revoked joint key usable again (cosign_cert_revoked). A certificate of no
	// issuer in trusted_roots/intermediates, no CRL of its issuer, a CRL past its nextUpdate
	// or a URL not yet fetched refuses (cosign_unavailable: fail closed). Default none.
	CRLs []string `json:"crls,omitempty"`
	// TrustedRoots are PEM files of the root CAs whose CRLs crls holds (the issuers of the
	// joint keys' certificates), as gm_verify's. Default: the development root with the
	// development PKI. Only with crls.
	TrustedRoots []string `json:"trusted_roots,omitempty"`
	// Intermediates are PEM files of intermediate CAs issuing the joint keys' certificates
	// (gm_enroll's CA certificate), as gm_verify's. Only with crls.
	Intermediates []string `json:"intermediates,omitempty"`

	// Replay says where the abuse-control state lives, with gm_verify's replay options: store
	// "memory" (default: this process; each instance counts alone) or "redis" (shared by every
	// instance: the rate limit is global, a lockout reached through one instance holds on all,
	// a Q_1/T_1 used on one is refused by all), and the redis_* options of gm_verify's replay
	// block (redis_prefix defaults to gmgate:cosign:). window, max_entries and fail_open do not
	// apply (point_window, max_points; a Redis failure always refuses: 503
	// cosign_unavailable).
	Replay *ReplayConfig `json:"replay,omitempty"`

	svc    *platform.Service
	status *keyStatus
	redis  io.Closer // the shared state's Redis client, closed at Cleanup
	// releaseCRLs stops reporting the crls store's expiry (trackCRLs), at Cleanup
	releaseCRLs func()
	logger      *zap.Logger
}

var (
	cosignOps = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "gmgate", Subsystem: "cosign", Name: "operations_total",
		Help: "Collaborative SM2 co-operations by operation (keygen, sign, decrypt, rotate, confirm) and result (ok or the refusal code).",
	}, []string{"op", "code"})
	cosignStateErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "gmgate", Subsystem: "cosign", Name: "state_errors_total",
		Help: "Failures of gm_cosign's shared state in Redis, by state (limits: rate limit and lockout; points: the freshness guard). A failure on admission or on a point refuses the request (503 cosign_unavailable).",
	}, []string{"state"})
	cosignSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "gmgate", Subsystem: "cosign", Name: "operation_duration_seconds",
		Help:    "Duration of collaborative SM2 co-operations by operation, vault and audit included.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 14),
	}, []string{"op"})
)

// CaddyModule returns the Caddy module information.
func (Cosign) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.gm_cosign", New: func() caddy.Module { return new(Cosign) }}
}

// Provision opens the share store and builds the service.
func (h *Cosign) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	if reg := ctx.GetMetricsRegistry(); reg != nil {
		for _, c := range []prometheus.Collector{cosignOps, cosignSeconds, cosignStateErrors} {
			if err := reg.Register(c); err != nil {
				var are prometheus.AlreadyRegisteredError
				if !errors.As(err, &are) {
					return err
				}
			}
		}
	}
	for _, op := range []string{platform.OpKeygen, platform.OpSign, platform.OpDecrypt, platform.OpRotate, platform.OpConfirm} {
		cosignOps.WithLabelValues(op, string(refusal.OK))
	}
	for _, st := range []string{"limits", "points"} {
		cosignStateErrors.WithLabelValues(st)
	}
	app, err := gmgateApp(ctx)
	if err != nil {
		return err
	}
	if h.ShareDir == "" || h.SealKey == "" {
		return errors.New("gm_cosign: share_dir and seal_key are required")
	}
	sealKeys, err := app.SealKeys(h.SealKey)
	if err != nil {
		return fmt.Errorf("gm_cosign: seal_key: %w", err)
	}
	store, err := sealstore.Open(h.ShareDir, sealKeys)
	if err != nil {
		return fmt.Errorf("gm_cosign: share_dir: %w", err)
	}
	sink := app.AuditSink()
	if sink == nil {
		return errors.New("gm_cosign: the gmgate audit log is required (gmgate { audit <path> })")
	}
	h.status = &keyStatus{dir: h.EnrollStore, pins: store}
	if h.EnrollStore != "" {
		name := h.EnrollStoreKey
		if name == "" {
			if app.Dev() == nil {
				return errors.New("gm_cosign: enroll_store_key required with enroll_store (gm_enroll's store_key)")
			}
			name = DevEnrollStoreKey
		}
		if h.status.keys, err = app.SealKeys(name); err != nil {
			return fmt.Errorf("gm_cosign: enroll_store_key %q: %w", name, err)
		}
	}
	if len(h.CRLs) > 0 {
		if err := h.status.loadCRLs(app, h.CRLs, h.TrustedRoots, h.Intermediates); err != nil {
			return fmt.Errorf("gm_cosign: %w", err)
		}
		h.releaseCRLs = trackCRLs("gm_cosign", h.status.crls)
	} else if len(h.TrustedRoots)+len(h.Intermediates) > 0 {
		return errors.New("gm_cosign: trusted_roots and intermediates are the issuers of crls: set crls")
	}
	cfg := platform.Config{
		Shares: store, Audit: sink, Auth: h.Auth,
		PeerCertificate: func(r *http.Request) *smx509.Certificate {
			if st, ok := tlcpState(r); ok {
				return st.PeerSignCertificate
			}
			return nil
		},
		MaxTokenLifetime: time.Duration(h.MaxTokenLifetime), RatePerMinute: h.RatePerMinute, Burst: h.Burst,
		MaxFailures: h.MaxFailures, Lockout: time.Duration(h.Lockout),
		FreshnessWindow: time.Duration(h.PointWindow), FreshnessMax: h.MaxPoints,
		BindInstruction: h.BindInstruction, BindUserID: h.UserID,
		RotationTimeout: time.Duration(h.RotationTimeout),
		CertStatus:      h.status.check,
		RequestID:       func(r *http.Request) string { return r.Header.Get("X-Request-Id") },
		Observe: func(op string, code refusal.Code, d time.Duration) {
			if op == "" {
				op = "unknown"
			}
			cosignOps.WithLabelValues(op, string(code)).Inc()
			cosignSeconds.WithLabelValues(op).Observe(d.Seconds())
		},
	}
	if h.Auth != platform.AuthCert {
		if h.TokenKey == "" {
			return errors.New("gm_cosign: token_key is required unless auth is cert")
		}
		k, err := app.SM4(h.TokenKey)
		if err != nil {
			return fmt.Errorf("gm_cosign: token_key %q: %w", h.TokenKey, err)
		}
		cfg.TokenMAC = k
	}
	if rc := h.Replay; rc != nil && strings.ToLower(rc.Store) == "redis" {
		shared, client, err := cosignSharedState(rc)
		if err != nil {
			return fmt.Errorf("gm_cosign: replay: %w", err)
		}
		cfg.Shared, h.redis = shared, client
		ledger, err := shareLedger(client, rc)
		if err != nil {
			client.Close()
			h.redis = nil
			return fmt.Errorf("gm_cosign: replay: %w", err)
		}
		store.SetLedger(ledger)
		cfg.OnStateError = func(state string, err error) {
			cosignStateErrors.WithLabelValues(state).Inc()
			h.logger.Warn("gm_cosign: shared state", zap.String("state", state), zap.Error(err))
		}
	}
	if h.svc, err = platform.New(cfg); err != nil {
		if h.redis != nil {
			h.redis.Close() // never served: nothing in flight
			h.redis = nil
		}
		return fmt.Errorf("gm_cosign: %w", err)
	}
	return nil
}

// cosignSharedState builds the Redis shared state from gm_verify's replay options: one client
// for the rate/lockout scripts and for gm_verify's replay store, which remembers the points
// under <redis_prefix>pt:.
func cosignSharedState(rc *ReplayConfig) (*platform.SharedState, redis.UniversalClient, error) {
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
	prefix := rc.RedisPrefix
	if prefix == "" {
		prefix = platform.DefaultRedisPrefix
	}
	points, err := gateway.NewRedisReplayStore(gateway.RedisReplayOptions{Client: client,
		Prefix: prefix + "pt:", Timeout: conn.Timeout, ReplicaAcks: acks})
	if err != nil {
		client.Close()
		return nil, nil, err
	}
	shared, err := platform.NewSharedState(platform.SharedStateOptions{Client: client, Prefix: prefix,
		Timeout: conn.Timeout, Points: cosignPoints{points}})
	if err != nil {
		client.Close()
		return nil, nil, err
	}
	return shared, client, nil
}

// shareLedger is the Redis ledger of gm_cosign's share records (sealstore.Ledger): a share
// file rolled back to before a rotation or a destroy is refused. Keys:
// <redis_prefix>ledger:<record>.
func shareLedger(client redis.UniversalClient, rc *ReplayConfig) (redisledger.Ledger, error) {
	prefix := rc.RedisPrefix
	if prefix == "" {
		prefix = platform.DefaultRedisPrefix
	}
	return redisledger.New(abuse.RedisStore{Client: client, Prefix: prefix + "ledger:", Timeout: rc.redisConfig().Timeout})
}

// cosignPoints adapts gm_verify's replay store to platform.PointStore.
type cosignPoints struct{ gateway.ReplayStore }

func (p cosignPoints) CheckAndStore(ctx context.Context, keyID, nonce string, ttl time.Duration) error {
	err := p.ReplayStore.CheckAndStore(ctx, keyID, nonce, ttl)
	if errors.Is(err, gateway.ErrReplay) {
		return fmt.Errorf("%w: %v", cosign.ErrReused, err)
	}
	return err
}

// Cleanup closes the shared state's Redis client: at once when gmgate exits, after reloadDrain
// on a reload (the old configuration's requests may still be running).
func (h *Cosign) Cleanup() error {
	if h.releaseCRLs != nil {
		h.releaseCRLs()
		h.releaseCRLs = nil
	}
	c := h.redis
	h.redis = nil
	if c == nil {
		return nil
	}
	if caddy.Exiting() {
		return c.Close()
	}
	time.AfterFunc(reloadDrain, func() { c.Close() })
	return nil
}

// Validate checks the configuration without side effects.
func (h *Cosign) Validate() error {
	switch h.Auth {
	case "", platform.AuthToken, platform.AuthCert, platform.AuthCertOrToken:
	default:
		return fmt.Errorf("gm_cosign: auth %q: want token, cert or cert_or_token", h.Auth)
	}
	if h.RatePerMinute < 0 || h.Burst < 0 || h.MaxFailures < 0 || h.MaxPoints < 0 || h.RotationTimeout < 0 {
		return errors.New("gm_cosign: negative limit")
	}
	if rc := h.Replay; rc != nil {
		switch {
		case rc.Window != 0:
			return errors.New("gm_cosign: replay window: use point_window")
		case rc.MaxEntries != 0:
			return errors.New("gm_cosign: replay max_entries: use max_points")
		case rc.FailOpen:
			return errors.New("gm_cosign: replay fail_open: gm_cosign always fails closed")
		}
		switch strings.ToLower(rc.Store) {
		case "", "memory":
		case "redis":
			if len(rc.RedisAddress) == 0 {
				return errors.New("gm_cosign: replay: redis_address required for the redis store")
			}
			if err := rc.redisConfig().Validate(); err != nil {
				return fmt.Errorf("gm_cosign: replay: %w", err)
			}
		default:
			return fmt.Errorf("gm_cosign: replay: unknown store %q (memory, redis)", rc.Store)
		}
	}
	return nil
}

// ServeHTTP serves one co-operation.
func (h *Cosign) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	setTLCPPlaceholders(r)
	h.svc.ServeHTTP(w, r)
	return nil
}

// cosignCommand: `gmgate cosign list|destroy|token`, on the vault the config declares.
func cosignCommand(cmd *cobra.Command) {
	cmd.PersistentFlags().StringP("config", "c", "Caddyfile", "config declaring the vault (gmgate { vault { ... } })")
	cmd.PersistentFlags().StringP("adapter", "a", "", "config adapter (default: by file name)")
	cmd.PersistentFlags().Bool("json", false, "print JSON for scripts")
	shares := func(c *cobra.Command, v *keyvault.Vault) (*sealstore.Store, error) {
		dir, _ := c.Flags().GetString("share-dir")
		key, _ := c.Flags().GetString("seal-key")
		if dir == "" || key == "" {
			return nil, errors.New("--share-dir and --seal-key are required (gm_cosign's share_dir and seal_key)")
		}
		st, err := sealstore.Open(dir, sealstore.VaultKey(v, key))
		if err != nil {
			return nil, err
		}
		// gm_cosign's share ledger (replay { store redis }): destroy must record it there too
		if addrs, _ := c.Flags().GetStringSlice("redis-address"); len(addrs) > 0 {
			prefix, _ := c.Flags().GetString("redis-prefix")
			rc := &ReplayConfig{Store: "redis", RedisAddress: addrs, RedisPrefix: prefix}
			client, err := rc.redisConfig().NewClient()
			if err != nil {
				return nil, err
			}
			ledger, err := shareLedger(client, rc)
			if err != nil {
				client.Close()
				return nil, err
			}
			st.SetLedger(ledger) // the client lives as long as the command
		}
		return st, nil
	}
	withVault := func(do func(c *cobra.Command, v *keyvault.Vault, args []string) (any, error)) func(*cobra.Command, []string) error {
		return func(c *cobra.Command, args []string) error {
			v, err := openVaultFromConfig(c)
			if err != nil {
				return err
			}
			defer v.Close()
			out, err := do(c, v, args)
			if err != nil {
				return err
			}
			return printResult(c, out)
		}
	}
	list := &cobra.Command{Use: "list --share-dir <dir> --seal-key <vault SM4 key>", Short: "Lists the terminal keys that have a platform share",
		Args: cobra.NoArgs, RunE: withVault(func(c *cobra.Command, v *keyvault.Vault, _ []string) (any, error) {
			st, err := shares(c, v)
			if err != nil {
				return nil, err
			}
			ids, err := st.List(platform.ShareKind)
			out := make([]string, 0, len(ids))
			for _, id := range ids {
				out = append(out, string(id))
			}
			slices.Sort(out)
			return strings.Join(out, "\n"), err
		})}
	destroy := &cobra.Command{Use: "destroy <key ID>... --share-dir <dir> --seal-key <vault SM4 key>",
		Short: "Destroys the platform share of terminal keys: they can never sign or decrypt again",
		Args:  cobra.MinimumNArgs(1), RunE: withVault(func(c *cobra.Command, v *keyvault.Vault, args []string) (any, error) {
			st, err := shares(c, v)
			if err != nil {
				return nil, err
			}
			for _, id := range args {
				if err := st.Destroy(platform.ShareKind, []byte(id)); err != nil {
					if errors.Is(err, sealstore.ErrLedgerRequired) {
						return nil, fmt.Errorf("%s: %w (gm_cosign keeps its share ledger in Redis: pass --redis-address and --redis-prefix as in its replay block)", id, err)
					}
					return nil, fmt.Errorf("%s: %w", id, err)
				}
			}
			return fmt.Sprintf("destroyed %d platform share(s)", len(args)), nil
		})}
	token := &cobra.Command{Use: "token <key ID> --token-key <vault SM4 key> [--ops sign,decrypt] [--ttl 5m]",
		Short: "Prints a session token for a terminal key (what the operator's login service issues)",
		Args:  cobra.ExactArgs(1), RunE: withVault(func(c *cobra.Command, v *keyvault.Vault, args []string) (any, error) {
			name, _ := c.Flags().GetString("token-key")
			ops, _ := c.Flags().GetStringSlice("ops")
			ttl, _ := c.Flags().GetDuration("ttl")
			k, err := v.SM4(name)
			if err != nil {
				return nil, err
			}
			return platform.IssueToken(k, args[0], ops, time.Now().Add(ttl))
		})}
	for _, sc := range []*cobra.Command{list, destroy} {
		sc.Flags().String("share-dir", "", "gm_cosign's share_dir")
		sc.Flags().String("seal-key", "", "gm_cosign's seal_key")
		sc.Flags().StringSlice("redis-address", nil, "gm_cosign's replay redis_address (with replay { store redis }: the share ledger; required then for destroy)")
		sc.Flags().String("redis-prefix", "", "gm_cosign's replay redis_prefix (default gmgate:cosign:)")
	}
	token.Flags().String("token-key", "", "gm_cosign's token_key")
	token.Flags().StringSlice("ops", []string{platform.OpSign, platform.OpDecrypt}, "operations allowed: keygen, sign, decrypt, rotate (rotate and confirm a share rotation)")
	token.Flags().Duration("ttl", 5*time.Minute, "validity (at most gm_cosign's max_token_lifetime)")
	cmd.AddCommand(list, destroy, token)
}

// keyStatus is gm_cosign's certificate check (platform.Config.CertStatus): the session
// certificate's validity, and with enroll_store the joint key's newest pair in gm_enroll's
// store (enroll.KeyStatus), and with crls both certificates against the CA's CRLs. The store
// is opened at the first use (validate writes nothing).
type keyStatus struct {
	dir   string
	keys  sealstore.Keys
	mu    sync.Mutex
	store *enroll.FileStore
	// crls, when set, holds the CRLs of issuers (the CAs of the joint keys' certificates).
	crls    *pki.CRLStore
	issuers []*smx509.Certificate
	// issuerOf remembers, by SM3 of a certificate, which of issuers signed it: the signature
	// is verified once per certificate, not on every co-operation (up to three checks each).
	issuerOf *lru.Cache[*smx509.Certificate]
	// pins, when set (the share store), remembers the newest certificate seen for each joint
	// key (kind certPinKind, id its subject key identifier): once a key is certified, its
	// records missing from enroll_store refuse instead of looking "not yet certified", and the
	// remembered certificate is checked against crls. With the share ledger (Redis) the pin
	// itself cannot be rolled back or deleted unnoticed.
	pins *sealstore.Store
}

// certPinKind is the share store's kind of gm_cosign's certificate pins (keyStatus.pins).
const certPinKind = "cosign-cert"

// ErrCertRecordMissing: the joint key was certified (gm_cosign remembers its certificate) but
// enroll_store has no record of it any more (deleted): fail closed.
var errCertRecordMissing = errors.New("gm_cosign: the key's certificate records are missing from enroll_store (deleted?)")

// pinned returns the certificate remembered for ski, or nil.
func (k *keyStatus) pinned(ski string) (*smx509.Certificate, error) {
	if k.pins == nil {
		return nil, nil
	}
	der, _, err := k.pins.Get(certPinKind, []byte(ski))
	switch {
	case errors.Is(err, sealstore.ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, err
	}
	return smx509.ParseCertificate(der)
}

// pin remembers cert as the newest certificate of ski (the older pin's version destroyed).
func (k *keyStatus) pin(ski string, cert *smx509.Certificate, old *smx509.Certificate) error {
	if k.pins == nil || (old != nil && bytes.Equal(old.Raw, cert.Raw)) {
		return nil
	}
	if old != nil && !cert.NotBefore.After(old.NotBefore) {
		return nil // an older certificate (a record rolled back): keep the newer pin
	}
	n, err := k.pins.Put(certPinKind, []byte(ski), cert.Raw)
	if err != nil {
		return err
	}
	if n > 1 {
		if vs, err := k.pins.Versions(certPinKind, []byte(ski)); err == nil {
			for _, v := range vs {
				if v.Version != n {
					_ = k.pins.DestroyVersion(certPinKind, []byte(ski), v.Version)
				}
			}
		}
	}
	return nil
}

// loadCRLs sets up the CRL check: the CRL sources and the CAs they are of.
func (k *keyStatus) loadCRLs(app *App, sources, rootFiles, interFiles []string) error {
	roots, err := pki.LoadCertificatesFiles(rootFiles...)
	if err != nil {
		return fmt.Errorf("trusted_roots: %w", err)
	}
	inters, err := pki.LoadCertificatesFiles(interFiles...)
	if err != nil {
		return fmt.Errorf("intermediates: %w", err)
	}
	if len(roots) == 0 && app != nil && app.Dev() != nil {
		roots = []*smx509.Certificate{app.Dev().Root.Cert}
	}
	if len(roots)+len(inters) == 0 {
		return errors.New("crls: trusted_roots required (the CAs whose CRLs they are; no development PKI in use)")
	}
	k.issuers = append(roots, inters...)
	k.issuerOf = lru.New[*smx509.Certificate](4096, nil)
	if k.crls, err = pki.NewCRLStore(sources, withEnrollCRLs(sources, pki.CRLOptions{Issuers: k.issuers})); err != nil {
		return fmt.Errorf("crls: %w", err)
	}
	return nil
}

// checkCRL refuses cert when the CRL of its issuer lists it (platform.ErrCertRevoked), and
// fails closed (any other error: cosign_unavailable) when its issuer is none of the
// configured CAs, no CRL of the issuer is loaded, or that CRL is stale or not yet fetched.
func (k *keyStatus) checkCRL(cert *smx509.Certificate) error {
	if k.crls == nil {
		return nil
	}
	sum := sm3.Sum(cert.Raw)
	issuer, _ := k.issuerOf.Get(string(sum[:]))
	if issuer == nil {
		for _, c := range k.issuers {
			if bytes.Equal(cert.RawIssuer, c.RawSubject) && cert.CheckSignatureFrom(c) == nil {
				issuer = c
				k.issuerOf.Put(string(sum[:]), c)
				break
			}
		}
	}
	if issuer == nil {
		return fmt.Errorf("gm_cosign: certificate %s: its issuer is none of the CAs of crls", cert.SerialNumber.Text(16))
	}
	if _, err := k.crls.Latest(issuer); err != nil {
		return err // no CRL of the issuer, or a URL never fetched: no decision possible
	}
	revoked, err := k.crls.IsRevoked(cert, issuer)
	switch {
	case err != nil:
		return err
	case revoked:
		return fmt.Errorf("%w: serial %s is on the CA's CRL", platform.ErrCertRevoked, cert.SerialNumber.Text(16))
	}
	return nil
}

func (k *keyStatus) check(pub *ecdsa.PublicKey, peer *smx509.Certificate) error {
	now := time.Now()
	if peer != nil && (now.Before(peer.NotBefore) || now.After(peer.NotAfter)) {
		return platform.ErrCertExpired
	}
	if peer != nil {
		if err := k.checkCRL(peer); err != nil {
			return err
		}
	}
	if k.dir == "" {
		return nil
	}
	k.mu.Lock()
	if k.store == nil {
		st, err := enroll.OpenFileStore(k.dir, k.keys)
		if err != nil {
			k.mu.Unlock()
			return err
		}
		k.store = st
	}
	st := k.store
	k.mu.Unlock()
	if peer != nil {
		switch rec, err := st.Cert(strings.ToLower(peer.SerialNumber.Text(16))); {
		case err == nil && rec.Revoked:
			return platform.ErrCertRevoked
		case err != nil && !errors.Is(err, enroll.ErrNotFound):
			return err
		}
	}
	ski, err := enroll.KeySKI(pub)
	if err != nil {
		return err
	}
	pinned, err := k.pinned(ski)
	if err != nil {
		return err
	}
	if pinned != nil {
		if err := k.checkCRL(pinned); err != nil {
			return err
		}
	}
	rec, err := enroll.KeyStatus(st, pub, now)
	switch {
	case err == nil:
		// the record may have been put back from before a revocation: the CRL decides
		cert, perr := smx509.ParseCertificate(rec.SignCert)
		if perr != nil {
			return perr
		}
		if err := k.checkCRL(cert); err != nil {
			return err
		}
		return k.pin(ski, cert, pinned)
	case errors.Is(err, enroll.ErrNotFound):
		if pinned != nil {
			return errCertRecordMissing
		}
		return nil // no certificate yet (the key's first enrolment is co-signed)
	case errors.Is(err, enroll.ErrKeyRevoked), errors.Is(err, enroll.ErrKeyExpired):
		// remembered too: deleting the records later does not make the key look uncertified
		if cert, perr := smx509.ParseCertificate(rec.SignCert); perr == nil {
			if perr := k.pin(ski, cert, pinned); perr != nil {
				return perr
			}
		}
		if errors.Is(err, enroll.ErrKeyRevoked) {
			return fmt.Errorf("%w: %v", platform.ErrCertRevoked, err)
		}
		return fmt.Errorf("%w: %v", platform.ErrCertExpired, err)
	default:
		return err
	}
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Cosign)(nil)
	_ caddy.Validator             = (*Cosign)(nil)
	_ caddy.CleanerUpper          = (*Cosign)(nil)
	_ caddyhttp.MiddlewareHandler = (*Cosign)(nil)
	_ caddyfile.Unmarshaler       = (*Cosign)(nil)
)
