package caddymodule

import (
	"crypto"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/emmansun/gmsm/smx509"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/gmgate/gmgate/cryptosvc"
	"github.com/gmgate/gmgate/gateway"
	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/refusal"
	"github.com/gmgate/gmgate/signing"
)

func init() {
	caddy.RegisterModule(Crypto{})
}

// Defaults of gm_crypto.
const (
	// DefaultCryptoMaxBodySize bounds a request body (1 MiB).
	DefaultCryptoMaxBodySize = 1 << 20
	// CryptoPathPrefix is where the operations live (GM/T 0136-2024's prefix).
	CryptoPathPrefix = "/shf/v1/"
)

// Crypto is the `http.handlers.gm_crypto` handler: the crypto service for the platform's own
// systems (docs/crypto-service.md). It serves POST /shf/v1/<Operation> (Sign, Verify, Encrypt,
// Decrypt, Rewrap, GenerateDataKey, Hmac, VerifyHmac, GenerateRandom, KeyInfo, SignMessage,
// VerifyMessage, VerifySignedData, ValidateCertificate, ParseCertificate, SealEnvelope,
// OpenEnvelope, RotateKey) with the gmgate vault's keys. The caller is the subject of the verified client
// certificate of the connection (TLCP: the `tlcp` listener with client_auth
// require_and_verify; TLS: Caddy's client authentication), matched against Callers; Rules say
// what each caller may do. Every request is an entry of the gmgate app's audit log and counted
// in gmgate_crypto_requests_total. It never calls the next handler.
type Crypto struct {
	// Callers are the internal systems, by the SM3 fingerprint and/or subject CN of their
	// client certificate.
	Callers []cryptosvc.CallerConfig `json:"callers,omitempty"`
	// Rules allow a caller operations on a key (and a minimum key version to decrypt). Nothing
	// else is allowed.
	Rules []cryptosvc.Rule `json:"rules,omitempty"`
	// TrustedRoots are PEM files of the GM roots that signer and recipient certificates must
	// chain to (SignMessage/VerifyMessage, VerifySignedData, ValidateCertificate, SealEnvelope).
	// Default: the development root when the development PKI is in use; without roots those
	// operations refuse every certificate (crypto_cert_untrusted).
	TrustedRoots []string `json:"trusted_roots,omitempty"`
	// Intermediates are PEM files of intermediate CAs used to build chains.
	Intermediates []string `json:"intermediates,omitempty"`
	// CRLs are CRL files (PEM or DER) checked for every certificate of a chain; reloaded on
	// change; a stale CRL fails closed.
	CRLs []string `json:"crls,omitempty"`
	// Certificates are PEM files of signer certificates a request may name by serial or subject
	// DN instead of giving them (GM/T 0029 verification by serial or DN: VerifySignedData,
	// ValidateCertificate with cert_serial/cert_subject); each is verified at every use.
	Certificates []string `json:"certificates,omitempty"`
	// MinVerifyLevel is the lowest GM/T 0029 verify level a request may ask for (0 validity
	// and key usage, 1 + chain, 2 + CRL); lower requests get this level. Default 2: every
	// certificate decision checks chain, validity, usage and CRL.
	MinVerifyLevel *int `json:"min_verify_level,omitempty"`
	// MaxBodySize bounds a request body in bytes (default 1 MiB).
	MaxBodySize int64 `json:"max_body_size,omitempty"`
	// MaxItems bounds the items of a batch (default 256).
	MaxItems int `json:"max_items,omitempty"`
	// MaxItemSize bounds each data field of an item in bytes (default 64 KiB).
	MaxItemSize int64 `json:"max_item_size,omitempty"`
	// SignedRequests lets a caller without a client certificate authenticate by signing its
	// request with its SM2 key (absent: only client certificates identify callers).
	SignedRequests *CryptoSignedRequests `json:"signed_requests,omitempty"`

	svc    *cryptosvc.Service
	signed *gateway.Verifier // nil without signed requests
	inner  *Verify           // the signed-request pipeline's stores, released at Cleanup
	keys   map[string]bool   // the keys the rules name: the only key label values
	logger *zap.Logger
}

// CryptoSignedRequests configures signed requests: the gateway's verification pipeline
// (package gateway: the scheme's parser and SM2 check, the identities verified through pki, the
// timestamp window and the nonce store), with the callers' signing certificates as identities.
// The signature must cover the method, the path (with the query) and the body, so only
// http-sig-sm2 (covering at least @method, @target-uri or @path, and content-digest) and
// wechatpay-v3-sm2 (which always covers them) are accepted.
type CryptoSignedRequests struct {
	// Scheme is "http-sig-sm2" (default) or "wechatpay-v3-sm2".
	Scheme string `json:"scheme,omitempty"`
	// SchemeOptions adjusts the scheme (user ID, encodings, label, covered components).
	SchemeOptions *SchemeOptions `json:"scheme_options,omitempty"`
	// Identities are the callers' signing certificates (files, a reloaded directory, vault
	// keys); a request names one by its key ID (serial). Required.
	Identities *IdentitiesConfig `json:"identities,omitempty"`
	// ClientCA are PEM files of the roots the identities must chain to (chain, validity, sign
	// key usage and CRL are checked through pki at every use, cached briefly). Default: the
	// development root when the development PKI is in use; otherwise required.
	ClientCA []string `json:"client_ca,omitempty"`
	// ClientIntermediates are PEM files of intermediate CAs of the identities.
	ClientIntermediates []string `json:"client_intermediates,omitempty"`
	// ClientCRLs are CRL files (PEM or DER) of the identities' CAs; reloaded on change; a
	// stale CRL fails closed.
	ClientCRLs []string `json:"client_crls,omitempty"`
	// Replay is the timestamp window and the nonce store (as gm_verify's; default: memory,
	// window 5m).
	Replay *ReplayConfig `json:"replay,omitempty"`
}

// signedRequests returns h.SignedRequests, creating it.
func (h *Crypto) signedRequests() *CryptoSignedRequests {
	if h.SignedRequests == nil {
		h.SignedRequests = &CryptoSignedRequests{}
	}
	return h.SignedRequests
}

// verifyConfig maps the signed-request settings to the gm_verify configuration whose builders
// they reuse.
func (sr *CryptoSignedRequests) verifyConfig() *Verify {
	name := sr.Scheme
	if name == "" {
		name = signing.HTTPSigName
	}
	return &Verify{Scheme: name, SchemeOptions: sr.SchemeOptions, TrustedRoots: sr.ClientCA,
		Intermediates: sr.ClientIntermediates, CRLs: sr.ClientCRLs, Identities: sr.Identities, Replay: sr.Replay}
}

// check refuses a scheme whose signature would not cover the method, the path and the body
// (so that no operation or key name can be swapped under a valid signature).
func (sr *CryptoSignedRequests) check() error {
	v := sr.verifyConfig()
	switch v.Scheme {
	case signing.HTTPSigName:
		if o := sr.SchemeOptions; o != nil && len(o.Components) > 0 {
			has := map[string]bool{}
			for _, c := range o.Components {
				has[strings.ToLower(c)] = true
			}
			if !has["@method"] || !(has["@target-uri"] || has["@path"] || has["@request-target"]) || !has["content-digest"] {
				return errors.New("signed requests: http-sig-sm2 components must cover @method, @target-uri (or @path) and content-digest")
			}
		}
	case signing.WechatPayName:
	default:
		return fmt.Errorf("signed requests: scheme %q does not cover the method and path (use http-sig-sm2 or wechatpay-v3-sm2)", v.Scheme)
	}
	if sr.Identities == nil || len(sr.Identities.Files) == 0 && sr.Identities.Dir == "" && len(sr.Identities.Vault) == 0 {
		return errors.New("signed requests: identities (the callers' signing certificates) required")
	}
	if r := sr.Replay; r != nil && r.Window < 0 {
		return errors.New("signed requests: replay window must not be negative")
	}
	if _, err := v.buildScheme(); err != nil {
		return fmt.Errorf("signed requests: %w", err)
	}
	return nil
}

// CaddyModule returns the Caddy module information.
func (Crypto) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.gm_crypto",
		New: func() caddy.Module { return new(Crypto) },
	}
}

// Collectors of gm_crypto (registered by registerMetrics with the others).
var (
	cryptoRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "gmgate", Subsystem: "crypto", Name: "requests_total",
		Help: "Crypto service requests by caller, operation, key and result code (ok or the crypto_* refusal code).",
	}, []string{"caller", "op", "key", "code"})
	cryptoItems = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "gmgate", Subsystem: "crypto", Name: "items_total",
		Help: "Items processed by the crypto service (one per batch entry) by operation, key and result code.",
	}, []string{"op", "key", "code"})
	cryptoSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "gmgate", Subsystem: "crypto", Name: "request_duration_seconds",
		Help:    "Time to serve a crypto service request (body read to response written) by operation.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 12),
	}, []string{"op"})
)

// Provision builds the policy, the certificate verifier and the service.
func (h *Crypto) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return err
	}
	app, err := gmgateApp(ctx)
	if err != nil {
		return err
	}
	if app.vs == nil {
		return errors.New("gm_crypto: the gmgate key vault is not configured")
	}
	policy, err := cryptosvc.NewPolicy(cryptosvc.PolicyConfig{Callers: h.Callers, Rules: h.Rules})
	if err != nil {
		return fmt.Errorf("gm_crypto: %w", err)
	}
	roots, err := pki.LoadCertificatesFiles(h.TrustedRoots...)
	if err != nil {
		return fmt.Errorf("gm_crypto: trusted_roots: %w", err)
	}
	if len(roots) == 0 && app.Dev() != nil {
		roots = []*smx509.Certificate{app.Dev().Root.Cert}
	}
	inters, err := pki.LoadCertificatesFiles(h.Intermediates...)
	if err != nil {
		return fmt.Errorf("gm_crypto: intermediates: %w", err)
	}
	var verifier, chainOnly *pki.Verifier
	var crlDER [][]byte
	if len(roots) > 0 {
		var crls *pki.CRLStore
		if len(h.CRLs) > 0 {
			if crls, err = pki.NewCRLStore(h.CRLs, withEnrollCRLs(h.CRLs, pki.CRLOptions{Issuers: append(append([]*smx509.Certificate(nil), roots...), inters...)})); err != nil {
				return fmt.Errorf("gm_crypto: crls: %w", err)
			}
		}
		if verifier, err = pki.NewVerifier(pki.VerifierOptions{Roots: roots, Intermediates: inters, CRLs: crls}); err != nil {
			return fmt.Errorf("gm_crypto: %w", err)
		}
		if chainOnly, err = pki.NewVerifier(pki.VerifierOptions{Roots: roots, Intermediates: inters}); err != nil {
			return fmt.Errorf("gm_crypto: %w", err)
		}
		for _, f := range h.CRLs { // SignMessage include_crl: the CRLs as loaded now
			data, err := os.ReadFile(f)
			if err != nil {
				return fmt.Errorf("gm_crypto: crls: %w", err)
			}
			rl, err := pki.ParseCRL(data)
			if err != nil {
				return fmt.Errorf("gm_crypto: crls: %s: %w", f, err)
			}
			crlDER = append(crlDER, rl.Raw)
		}
	} else if len(h.CRLs) > 0 {
		return errors.New("gm_crypto: crls without trusted_roots")
	}
	set, err := pki.LoadCertificatesFiles(h.Certificates...)
	if err != nil {
		return fmt.Errorf("gm_crypto: certificates: %w", err)
	}
	o := cryptosvc.Options{Keys: lazyKeys{app.vs}, Policy: policy, Certificates: verifier, ChainCertificates: chainOnly,
		MinVerifyLevel: h.MinVerifyLevel, CertificateSet: set, CRLs: crlDER,
		MaxItems: h.MaxItems, MaxItemSize: int(h.MaxItemSize)}
	if sink := app.AuditSink(); sink != nil {
		o.Audit = sink
	} else {
		h.logger.Warn("gm_crypto: no audit log configured (gmgate { audit … }): operations are not recorded")
	}
	if h.svc, err = cryptosvc.New(o); err != nil {
		return fmt.Errorf("gm_crypto: %w", err)
	}
	if sr := h.SignedRequests; sr != nil {
		if err := h.provisionSigned(app, sr); err != nil {
			_ = h.Cleanup()
			return fmt.Errorf("gm_crypto: %w", err)
		}
	}
	h.keys = map[string]bool{}
	for _, r := range h.Rules {
		h.keys[r.Key] = true
	}
	for _, c := range h.Callers {
		for _, op := range cryptosvc.Ops() {
			cryptoRequests.WithLabelValues(c.Name, string(op), "", string(refusal.OK)).Add(0)
		}
	}
	return nil
}

// provisionSigned builds the signed-request verifier with gm_verify's builders (scheme,
// identities through pki, replay guard). It writes no audit entries of its own: the request's
// one entry is the service's (an unauthenticated one when the signature fails).
func (h *Crypto) provisionSigned(app *App, sr *CryptoSignedRequests) error {
	if err := sr.check(); err != nil {
		return err
	}
	v := sr.verifyConfig()
	v.logger = h.logger
	h.inner = v
	var err error
	if v.scheme, err = v.buildScheme(); err != nil {
		return err
	}
	ids, err := v.identityStore(app, "gm_crypto")
	if err != nil {
		return err
	}
	guard, err := v.replayGuard()
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	max := h.MaxBodySize
	if max <= 0 {
		max = DefaultCryptoMaxBodySize
	}
	h.signed, err = gateway.NewVerifier(gateway.VerifierOptions{Scheme: v.scheme, Identities: ids, Replay: guard,
		MaxBodySize: max})
	return err
}

// Validate checks the configuration without side effects.
func (h *Crypto) Validate() error {
	if sr := h.SignedRequests; sr != nil {
		if err := sr.check(); err != nil {
			return fmt.Errorf("gm_crypto: %w", err)
		}
	}
	if _, err := cryptosvc.NewPolicy(cryptosvc.PolicyConfig{Callers: h.Callers, Rules: h.Rules}); err != nil {
		return fmt.Errorf("gm_crypto: %w", err)
	}
	if l := h.MinVerifyLevel; l != nil && (*l < 0 || *l > 2) {
		return errors.New("gm_crypto: min_verify_level must be 0, 1 or 2")
	}
	if h.MaxBodySize < 0 || h.MaxItems < 0 || h.MaxItemSize < 0 {
		return errors.New("gm_crypto: negative max_body_size, max_items or max_item_size")
	}
	if h.MaxItemSize > 0 && h.MaxBodySize > 0 && h.MaxItemSize > h.MaxBodySize {
		return errors.New("gm_crypto: max_item_size larger than max_body_size")
	}
	return nil
}

// Cleanup releases the signed-request replay store (the vault and the audit log belong to the
// gmgate app).
func (h *Crypto) Cleanup() error {
	if h.inner == nil {
		return nil
	}
	v := h.inner
	h.inner = nil
	for _, release := range v.releases {
		release()
	}
	return v.release()
}

// caller returns the verified client certificate's caller (an empty Caller when there is none).
func (h *Crypto) caller(r *http.Request) (cryptosvc.Caller, string) {
	var der []byte
	var subject pkix.Name
	var serial string
	if st, ok := setTLCPPlaceholders(r); ok {
		if c := st.PeerSignCertificate; c != nil { // set only when the chain was verified
			der, subject, serial = c.Raw, c.Subject, signing.SerialHex(c.SerialNumber)
		}
	} else if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
		c := r.TLS.VerifiedChains[0][0]
		der, subject, serial = c.Raw, c.Subject, signing.SerialHex(c.SerialNumber)
	}
	name, ok := h.svc.Policy().Identify(der, subject)
	if !ok {
		return cryptosvc.Caller{Serial: serial}, "-"
	}
	return cryptosvc.Caller{Name: name, Serial: serial}, name
}

// signedCaller authenticates a request by its signature (when signed requests are configured
// and the connection named no caller): the gateway's pipeline verifies the signature over the
// request as received (method, target, body), the identity's chain, validity, usage and CRL,
// the timestamp window and the nonce, and installs the verified body. The policy then matches
// the signing certificate exactly as a client certificate. It returns the caller and label, or
// the refusal code (crypto_unauthenticated, crypto_too_large, or crypto_replay_unavailable
// when the nonce store cannot answer).
func (h *Crypto) signedCaller(r *http.Request) (cryptosvc.Caller, string, refusal.Code, error) {
	res, err := h.signed.Verify(receivedContext(r), r, nil)
	if err != nil {
		switch gateway.CodeOf(err) {
		case gateway.CodeBodyTooLarge:
			return cryptosvc.Caller{}, "-", cryptosvc.CodeTooLarge, err
		case gateway.CodeReplayStoreUnavailable:
			return cryptosvc.Caller{}, "-", cryptosvc.CodeReplayUnavailable, err
		}
		return cryptosvc.Caller{}, "-", cryptosvc.CodeUnauthenticated, err
	}
	c := res.Identity.Cert
	serial := signing.SerialHex(c.SerialNumber)
	name, ok := h.svc.Policy().Identify(c.Raw, c.Subject)
	if !ok {
		return cryptosvc.Caller{Serial: serial}, "-", cryptosvc.CodeUnauthenticated, errors.New("signing certificate of no configured caller")
	}
	return cryptosvc.Caller{Name: name, Serial: serial}, name, refusal.OK, nil
}

// ServeHTTP serves one operation.
func (h *Crypto) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	start := time.Now()
	caller, label := h.caller(r)
	path, _ := strings.CutPrefix(r.URL.Path, CryptoPathPrefix)
	op, ok := cryptosvc.OpForPath(path)
	// Operations only at their literal path: a percent-encoded spelling (/shf/v1/Rotate%4Bey)
	// would pass a proxy or route that refuses /shf/v1/RotateKey by its path.
	if r.URL.RawPath != "" {
		ok = false
	}
	if !ok || r.Method != http.MethodPost {
		h.refuse(w, label, "unknown", "", cryptosvc.CodeUnknownOperation, start, nil)
		return nil
	}
	// A browser's request (a page of another site driving a browser that holds a caller's
	// client certificate) is refused before the caller, a signature or the body is judged.
	if err := cryptosvc.CheckNotBrowser(r.Header); err != nil {
		if aerr := h.svc.Refused(caller, op, cryptosvc.CodeForbidden, r.Header.Get("X-Request-Id")); aerr != nil {
			h.logger.Error("gm_crypto: audit write failed", zap.Error(aerr))
		}
		h.refuse(w, label, string(op), "", cryptosvc.CodeForbidden, start, err)
		return nil
	}
	if caller.Name == "" && h.signed != nil {
		var c refusal.Code
		var err error
		if caller, label, c, err = h.signedCaller(r); c != refusal.OK {
			// One audit entry for the refused request, as for any other.
			if aerr := h.svc.Refused(caller, op, c, r.Header.Get("X-Request-Id")); aerr != nil {
				h.logger.Error("gm_crypto: audit write failed", zap.Error(aerr))
			}
			h.refuse(w, label, string(op), "", c, start, err)
			return nil
		}
	}
	max := h.MaxBodySize
	if max <= 0 {
		max = DefaultCryptoMaxBodySize
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			h.refuse(w, label, string(op), "", cryptosvc.CodeTooLarge, start, err)
			return nil
		}
		h.refuse(w, label, string(op), "", cryptosvc.CodeMalformed, start, err)
		return nil
	}
	// GM/T 0136 Name/Type/Value items: translated, answered alike. Only for an identified
	// caller: an unidentified one is refused crypto_unauthenticated before its body is judged.
	ntv := caller.Name != "" && cryptosvc.IsNTV(body)
	if ntv {
		native, err := cryptosvc.DecodeNTV(op, body)
		clear(body)
		if err != nil {
			if aerr := h.svc.Refused(caller, op, cryptosvc.CodeOf(err), r.Header.Get("X-Request-Id")); aerr != nil {
				h.logger.Error("gm_crypto: audit write failed", zap.Error(aerr))
			}
			h.refuse(w, label, string(op), "", cryptosvc.CodeOf(err), start, err)
			return nil
		}
		body = native
	}
	resp, err := h.svc.Do(r.Context(), caller, op, body, r.Header.Get("X-Request-Id"))
	if err != nil {
		h.refuse(w, label, string(op), h.keyOf(body), cryptosvc.CodeOf(err), start, err)
		return nil
	}
	defer resp.Wipe()
	var out []byte
	if ntv {
		out, err = cryptosvc.EncodeNTV(resp)
	} else {
		out, err = json.Marshal(resp)
	}
	if err != nil {
		h.refuse(w, label, string(op), resp.Key, cryptosvc.CodeInternal, start, err)
		return nil
	}
	defer clear(out)
	code := refusal.OK
	for _, res := range resp.Results {
		c := res.Code
		if c == "" {
			c = refusal.OK
		} else if code == refusal.OK {
			code = c
		}
		cryptoItems.WithLabelValues(string(op), resp.Key, string(c)).Inc()
	}
	hd := w.Header()
	hd.Set("Content-Type", "application/json; charset=utf-8")
	hd.Set("Content-Length", strconv.Itoa(len(out)))
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(out)
	cryptoRequests.WithLabelValues(label, string(op), resp.Key, string(code)).Inc()
	cryptoSeconds.WithLabelValues(string(op)).Observe(time.Since(start).Seconds())
	return nil
}

// keyOf reads the key name of a refused body for the metric label, only when a rule names that
// key: a refused body is untrusted, and its free text must not grow the label set.
func (h *Crypto) keyOf(body []byte) string {
	var k struct {
		Key string `json:"key"`
	}
	if json.Unmarshal(body, &k) != nil || !h.keys[k.Key] {
		return ""
	}
	return k.Key
}

func (h *Crypto) refuse(w http.ResponseWriter, caller, op, key string, c refusal.Code, start time.Time, err error) {
	cryptosvc.WriteError(w, c)
	cryptoRequests.WithLabelValues(caller, op, key, string(c)).Inc()
	cryptoSeconds.WithLabelValues(op).Observe(time.Since(start).Seconds())
	if err != nil {
		h.logger.Debug("gm_crypto: request refused", zap.String("code", string(c)), zap.String("caller", caller), zap.Error(err))
	}
}

// lazyKeys gives the service the gmgate app's vault, which opens when the configuration starts
// (or at the first key use): every call fails closed with the vault's error if it cannot open.
type lazyKeys struct{ vs *vaultState }

func (k lazyKeys) keys() (cryptosvc.Keys, error) {
	v, err := k.vs.open()
	if err != nil {
		return nil, err
	}
	return cryptosvc.VaultKeys(v), nil
}

func (k lazyKeys) Signer(name string) (crypto.Signer, error) {
	ks, err := k.keys()
	if err != nil {
		return nil, err
	}
	return ks.Signer(name)
}

func (k lazyKeys) PublicKey(name string) (crypto.PublicKey, error) {
	ks, err := k.keys()
	if err != nil {
		return nil, err
	}
	return ks.PublicKey(name)
}

func (k lazyKeys) Decrypter(name string) (crypto.Decrypter, error) {
	ks, err := k.keys()
	if err != nil {
		return nil, err
	}
	return ks.Decrypter(name)
}

func (k lazyKeys) Certificate(name string) ([]*smx509.Certificate, error) {
	ks, err := k.keys()
	if err != nil {
		return nil, err
	}
	return ks.Certificate(name)
}

func (k lazyKeys) SymmetricKey(name string) (cryptosvc.SymmetricKey, error) {
	ks, err := k.keys()
	if err != nil {
		return nil, err
	}
	return ks.SymmetricKey(name)
}

func (k lazyKeys) Rotate(name string) (int, error) {
	ks, err := k.keys()
	if err != nil {
		return 0, err
	}
	return ks.Rotate(name)
}

func (k lazyKeys) Versions(name string) ([]int, int, error) {
	ks, err := k.keys()
	if err != nil {
		return nil, 0, err
	}
	return ks.Versions(name)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Crypto)(nil)
	_ caddy.Validator             = (*Crypto)(nil)
	_ caddy.CleanerUpper          = (*Crypto)(nil)
	_ caddyhttp.MiddlewareHandler = (*Crypto)(nil)
	_ caddyfile.Unmarshaler       = (*Crypto)(nil)
)
