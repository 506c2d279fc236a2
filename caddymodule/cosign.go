package caddymodule

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/emmansun/gmsm/smx509"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/gmgate/gmgate/cosign/platform"
	"github.com/gmgate/gmgate/refusal"
	"github.com/gmgate/gmgate/sealstore"
)

func init() {
	caddy.RegisterModule(Cosign{})
}

// Cosign is the `http.handlers.gm_cosign` handler: the platform side of collaborative SM2
// (package cosign/platform). POST <path>/keygen, <path>/sign and <path>/decrypt; it answers
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
	// RatePerMinute is the sustained co-operations per key and minute (default 60); Burst the
	// bucket size (default 10).
	RatePerMinute int `json:"rate_per_minute,omitempty"`
	Burst         int `json:"burst,omitempty"`
	// MaxFailures consecutive failures for a key lock it for Lockout (defaults 5 and 15m).
	MaxFailures int            `json:"max_failures,omitempty"`
	Lockout     caddy.Duration `json:"lockout,omitempty"`
	// PointWindow is how long a terminal's ephemeral points (Q_1, T_1) are remembered to refuse
	// a reuse (default 10m); MaxPoints bounds how many are remembered at once (default 100000;
	// when full, co-operations are refused with 503).
	PointWindow caddy.Duration `json:"point_window,omitempty"`
	MaxPoints   int            `json:"max_points,omitempty"`
	// BindInstruction requires each sign request to carry the payment instruction and refuses a
	// digest that is not of it (under the joint key and UserID).
	BindInstruction bool `json:"bind_instruction,omitempty"`
	// UserID is the SM2 user ID of bound instructions (default 1234567812345678): the one the
	// gm_verify that checks those instructions uses.
	UserID string `json:"user_id,omitempty"`

	svc    *platform.Service
	logger *zap.Logger
}

var (
	cosignOps = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "gmgate", Subsystem: "cosign", Name: "operations_total",
		Help: "Collaborative SM2 co-operations by operation (keygen, sign, decrypt) and result (ok or the refusal code).",
	}, []string{"op", "code"})
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
		for _, c := range []prometheus.Collector{cosignOps, cosignSeconds} {
			if err := reg.Register(c); err != nil {
				var are prometheus.AlreadyRegisteredError
				if !errors.As(err, &are) {
					return err
				}
			}
		}
	}
	for _, op := range []string{platform.OpKeygen, platform.OpSign, platform.OpDecrypt} {
		cosignOps.WithLabelValues(op, string(refusal.OK))
	}
	app, err := gmgateApp(ctx)
	if err != nil {
		return err
	}
	if h.ShareDir == "" || h.SealKey == "" {
		return errors.New("gm_cosign: share_dir and seal_key are required")
	}
	if app.vault == nil {
		return errors.New("gm_cosign: the gmgate key vault is not open")
	}
	store, err := sealstore.Open(h.ShareDir, sealstore.VaultKey(app.vault, h.SealKey))
	if err != nil {
		return fmt.Errorf("gm_cosign: share_dir: %w", err)
	}
	sink := auditSink(app)
	if sink == nil {
		return errors.New("gm_cosign: the gmgate audit log is required (gmgate { audit <path> })")
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
		RequestID: func(r *http.Request) string { return r.Header.Get("X-Request-Id") },
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
	if h.svc, err = platform.New(cfg); err != nil {
		return fmt.Errorf("gm_cosign: %w", err)
	}
	return nil
}

// Validate checks the configuration without side effects.
func (h *Cosign) Validate() error {
	switch h.Auth {
	case "", platform.AuthToken, platform.AuthCert, platform.AuthCertOrToken:
	default:
		return fmt.Errorf("gm_cosign: auth %q: want token, cert or cert_or_token", h.Auth)
	}
	if h.RatePerMinute < 0 || h.Burst < 0 || h.MaxFailures < 0 || h.MaxPoints < 0 {
		return errors.New("gm_cosign: negative limit")
	}
	return nil
}

// ServeHTTP serves one co-operation.
func (h *Cosign) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	setTLCPPlaceholders(r)
	h.svc.ServeHTTP(w, r)
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Cosign)(nil)
	_ caddy.Validator             = (*Cosign)(nil)
	_ caddyhttp.MiddlewareHandler = (*Cosign)(nil)
	_ caddyfile.Unmarshaler       = (*Cosign)(nil)
)
