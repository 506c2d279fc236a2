// Package caddymodule adapts gmgate's core packages to Caddy v2: the gmgate app (key vault and
// development PKI), the TLCP listener wrapper, the gm_verify handler, the gm_channel transport,
// their Caddyfile syntax, metrics and the gmgate subcommands. It only translates configuration
// and wires the core packages together.
package caddymodule

import (
	"context"
	"crypto"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/emmansun/gmsm/smx509"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/exp/zapslog"

	"github.com/gmgate/gmgate/audit"
	"github.com/gmgate/gmgate/channel"
	"github.com/gmgate/gmgate/keyvault"
	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/sealstore"
)

func init() {
	caddy.RegisterModule(App{})
}

// Names of the keys the embedded development default provides.
const (
	DevServerSignKey   = "dev-server-sign"
	DevServerEncKey    = "dev-server-enc"
	DevPlatformSignKey = "dev-platform-sign"
	DevClientSignKey   = "dev-client-sign"
	DevClientEncKey    = "dev-client-enc"
	// The demo bank of the development default: its TLCP server pair and the key that signs
	// its replies (for trying the bank-channel side, gm_channel, without a real bank).
	DevBankSignKey         = "dev-bank-sign"
	DevBankEncKey          = "dev-bank-enc"
	DevBankPlatformSignKey = "dev-bank-platform-sign"
	// DevEnrollStoreKey is the development SM4 key that authenticates gm_enroll's store when
	// it names no store_key.
	DevEnrollStoreKey = "dev-enroll-store"
)

// App is the `gmgate` Caddy app: the key vault that holds every gmgate key, and the embedded
// development PKI. Other gmgate modules refer to keys by name through it.
//
// Without a vault, gmgate runs on the embedded development default, in the spirit of Caddy's
// `tls internal`: a development root CA, a TLCP server pair, a platform signing certificate, a
// demo client pair and a demo bank (TLCP server pair and reply-signing certificate) are created on first use under Caddy's data directory and served by a software
// key vault (keys as PEM files). It is loud about it and is not for production.
type App struct {
	// Vault declares the PKCS#11 tokens and the named keys. Keys of the development default
	// (dev-server-sign, dev-server-enc, dev-platform-sign, dev-client-sign, dev-client-enc, and
	// the demo bank's dev-bank-sign, dev-bank-enc, dev-bank-platform-sign, and the SM4 key
	// dev-enroll-store of gm_enroll's store) are always added when the development PKI is enabled.
	Vault keyvault.Config `json:"vault,omitempty"`

	// VaultHealthInterval is how often every PKCS#11 token is probed (a session round trip),
	// which keeps gmgate_vault_token_up current even when no request needs the token (wrapped
	// keys are used from memory). Default 30s; negative: off.
	VaultHealthInterval caddy.Duration `json:"vault_health_interval,omitempty"`

	// DevPKI configures the embedded development PKI. It is enabled when the vault declares no
	// keys, or when this is set.
	DevPKI *DevPKIConfig `json:"dev_pki,omitempty"`

	// Audit configures the tamper-evident audit log that gm_verify and gm_channel share: one
	// hash-chained entry per decision, checkpoints signed with the platform key. Without it no
	// audit log is written.
	Audit *AuditConfig `json:"audit,omitempty"`

	vs       *vaultState      // the key vault: configured at Provision, opened at Start
	audit    *deferredAudit   // the shared audit log, opened at Start
	mu       *sync.Mutex      // guards deferred (a pointer: App is a value in CaddyModule)
	deferred []*deferredAudit // gm_verify's own audit logs, opened at Start
	starts   []func() error   // what modules of this configuration do at Start (onStart)
	releases []func()         // expiry reporting of the vault's certificates
	dev      *pki.DevPKI
	logger   *zap.Logger
}

// DevPKIConfig configures the embedded development PKI.
type DevPKIConfig struct {
	// Dir holds the development root, server pair, platform and client certificates and keys.
	// Default: "gmgate/devpki" under Caddy's data directory.
	Dir string `json:"dir,omitempty"`
	// Names are the DNS names and IP addresses the development server certificates carry.
	// Default: localhost, 127.0.0.1, ::1.
	Names []string `json:"names,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "gmgate",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision checks the key vault's configuration and reads the keys' certificates (and creates
// the development PKI when it is in use). The vault itself (PKCS#11 modules, logins, keys) opens
// when the configuration starts, so that `gmgate validate` logs in nowhere.
func (a *App) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	a.mu = new(sync.Mutex)
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return err
	}
	cfg := a.Vault
	if len(cfg.Keys) == 0 || a.DevPKI != nil {
		dc := a.DevPKI
		if dc == nil {
			dc = &DevPKIConfig{}
		}
		dir := dc.Dir
		if dir == "" {
			dir = filepath.Join(caddy.AppDataDir(), "gmgate", "devpki")
		}
		names := dc.Names
		if len(names) == 0 {
			names = []string{"localhost", "127.0.0.1", "::1"}
		}
		dev, err := pki.EnsureDevPKI(dir, names)
		if err != nil {
			return fmt.Errorf("development PKI: %w", err)
		}
		a.dev = dev
		if err := ensureDevSM4Key(filepath.Join(dev.Dir, DevEnrollStoreKey+".sm4")); err != nil {
			return fmt.Errorf("development PKI: %w", err)
		}
		cfg.Keys = append(cfg.Keys, devKeys(dev)...)
		a.logger.Warn("gmgate is using the embedded DEVELOPMENT PKI and a software key vault; do not use in production",
			zap.String("root_certificate", dev.RootCertPath),
			zap.String("dir", dev.Dir))
	}
	health := time.Duration(a.VaultHealthInterval)
	switch {
	case health == 0:
		health = 30 * time.Second
	case health < 0:
		health = 0
	}
	if err := keyvault.CheckConfig(cfg); err != nil {
		return fmt.Errorf("key vault: %w", err)
	}
	a.vs = &vaultState{cfg: cfg, certs: map[string][]*smx509.Certificate{}, types: map[string]keyvault.KeyType{},
		opts: []keyvault.Option{keyvault.WithLogger(vaultLogger(a.logger)),
			keyvault.WithObserver(vaultObserver{errorKind: keyvault.ErrorKind}),
			keyvault.WithHealthInterval(health)}}
	for _, kc := range cfg.Keys {
		a.vs.names = append(a.vs.names, kc.Name)
		a.vs.types[kc.Name] = kc.Type
		chain, err := keyvault.KeyCertificates(kc)
		if err != nil {
			return fmt.Errorf("key vault: %w", err)
		}
		if len(chain) > 0 {
			a.vs.certs[kc.Name] = chain
			a.releases = append(a.releases, trackCertificates("gmgate", "key", kc.Name, chain))
		}
	}
	if a.Audit != nil {
		if err := a.openAudit(); err != nil {
			return fmt.Errorf("audit log: %w", err) // Cleanup closes the vault
		}
	}
	return nil
}

// AuditConfig configures the shared audit log (see docs/audit.md).
type AuditConfig struct {
	// Path is the base name of the log; segments are written as Path.000001, Path.000002, ...
	// Default: "gmgate/audit/audit.log" under Caddy's data directory.
	Path string `json:"path,omitempty"`
	// SigningKey names the vault key that signs checkpoints (the platform key).
	// Default: dev-platform-sign (the development PKI's platform key).
	SigningKey string `json:"signing_key,omitempty"`
	// CheckpointEvery writes a signed checkpoint after this many entries. Default 1000.
	CheckpointEvery int `json:"checkpoint_every,omitempty"`
	// CheckpointInterval writes a signed checkpoint this often when entries were added. Default 1m.
	CheckpointInterval caddy.Duration `json:"checkpoint_interval,omitempty"`
	// MaxSegmentSize rotates to a new segment at this size, in bytes. Default 64 MiB.
	MaxSegmentSize int64 `json:"max_segment_size,omitempty"`
	// Fsync is "always" (default: an entry is on stable storage before the decision is
	// acted on), "interval" (every second) or "never" (left to the operating system).
	Fsync string `json:"fsync,omitempty"`
	// WitnessRedis is the address (host:port) of a Redis that receives every checkpoint as a
	// signed head (XADD to the stream gmgate:audit:witness:<log ID>), so that a log cut back on
	// this host shows against it in `gmgate audit verify --witness-redis`. Give the gateway's
	// Redis user only XADD on those keys. Default: none.
	WitnessRedis string `json:"witness_redis,omitempty"`
	// WitnessRedisPasswordEnv names the environment variable holding that Redis's password.
	WitnessRedisPasswordEnv string `json:"witness_redis_password_env,omitempty"`
	// WitnessURL receives every checkpoint as a signed head, POSTed as JSON (a collector on
	// another host; export what it stored as JSON lines for `audit verify --witness-file`).
	WitnessURL string `json:"witness_url,omitempty"`
}

// witness builds the audit witnesses of c (nil when none is configured).
func (c *AuditConfig) witness() audit.Witness {
	var ws multiWitness
	if c.WitnessRedis != "" {
		opts := &redis.Options{Addr: c.WitnessRedis}
		if c.WitnessRedisPasswordEnv != "" {
			opts.Password = os.Getenv(c.WitnessRedisPasswordEnv)
		}
		ws = append(ws, &audit.RedisWitness{Client: redis.NewClient(opts)})
	}
	if c.WitnessURL != "" {
		ws = append(ws, &audit.HTTPWitness{URL: c.WitnessURL})
	}
	if len(ws) == 0 {
		return nil
	}
	return ws
}

// multiWitness publishes to every witness; all must acknowledge.
type multiWitness []audit.Witness

func (m multiWitness) Publish(ctx context.Context, h audit.SignedHead) error {
	var errs []error
	for _, w := range m {
		errs = append(errs, w.Publish(ctx, h))
	}
	return errors.Join(errs...)
}

func (a *App) openAudit() error {
	c := a.Audit
	path := c.Path
	if path == "" {
		path = filepath.Join(caddy.AppDataDir(), "gmgate", "audit", "audit.log")
	}
	keyName := c.SigningKey
	if keyName == "" {
		keyName = DevPlatformSignKey
	}
	signer, err := a.Signer(keyName)
	if err != nil {
		return fmt.Errorf("audit signing key %q: %w", keyName, err)
	}
	opts := audit.Options{
		Path:               path,
		Signer:             signer,
		CheckpointEvery:    c.CheckpointEvery,
		CheckpointInterval: time.Duration(c.CheckpointInterval),
		MaxSegmentSize:     c.MaxSegmentSize,
		OnError: func(err error) {
			a.logger.Error("audit log", zap.Error(err))
		},
		Witness: c.witness(),
	}
	if opts.Fsync, err = fsyncPolicy(c.Fsync); err != nil {
		return err
	}
	a.audit = newDeferredAudit(opts, func() {
		a.logger.Info("audit log open", zap.String("path", path), zap.String("signing_key", keyName))
	})
	return nil
}

// fsyncPolicy reads the audit `fsync` option.
func fsyncPolicy(s string) (audit.FsyncPolicy, error) {
	switch s {
	case "", "always":
		return audit.FsyncAlways, nil
	case "interval":
		return audit.FsyncInterval, nil
	case "never":
		return audit.FsyncNever, nil
	}
	return 0, fmt.Errorf("audit fsync: unknown policy %q (always, interval, never)", s)
}

// Validate checks the configuration without touching keys, tokens or files.
func (a *App) Validate() error {
	if c := a.Audit; c != nil {
		if _, err := fsyncPolicy(c.Fsync); err != nil {
			return err
		}
		if c.CheckpointEvery < 0 || c.MaxSegmentSize < 0 || c.CheckpointInterval < 0 {
			return errors.New("audit: checkpoint_every, checkpoint_interval and max_segment_size must not be negative")
		}
	}
	return nil
}

// deferredAudit is an audit log configured at provisioning and opened when the configuration
// starts (App.Start), so that `gmgate validate` writes nothing: opening writes a segment header
// and a signed checkpoint. Caddy starts its apps in no fixed order, so the first Append opens the
// log too if a server answered before the gmgate app started.
type deferredAudit struct {
	opts    audit.Options
	onOpen  func()
	ready   atomic.Pointer[audit.Log] // set while open: the per-entry path takes no lock of its own
	mu      sync.Mutex
	log     *audit.Log
	release func()
	err     error
}

func newDeferredAudit(opts audit.Options, onOpen func()) *deferredAudit {
	return &deferredAudit{opts: opts, onOpen: onOpen}
}

// open opens the log once; a failure is kept and returned to every later caller (fail closed).
func (d *deferredAudit) open() (*audit.Log, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.log != nil || d.err != nil {
		return d.log, d.err
	}
	if err := os.MkdirAll(filepath.Dir(d.opts.Path), 0o700); err != nil {
		d.err = fmt.Errorf("audit directory: %w", err)
		return nil, d.err
	}
	d.log, d.release, d.err = openSharedAudit(d.opts)
	if d.err == nil {
		d.ready.Store(d.log)
		if d.onOpen != nil {
			d.onOpen()
		}
	}
	return d.log, d.err
}

// Append implements audit.Sink.
func (d *deferredAudit) Append(r audit.Record) error {
	if l := d.ready.Load(); l != nil {
		return l.Append(r)
	}
	l, err := d.open()
	if err != nil {
		return err
	}
	return l.Append(r)
}

// close gives the log back (the last user closes it); a log never opened has nothing to give.
func (d *deferredAudit) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ready.Store(nil)
	if d.release != nil {
		d.release()
		d.release = nil
	}
	d.err = errors.New("audit log closed")
}

// auditLogs holds the open audit logs by path, across configuration reloads: a reload
// provisions the new configuration while the old one still runs, and two writers on one log
// would fork its hash chain. The new configuration takes the open log over; its checkpoints are
// signed through the newest live configuration's handle of the key (its vault); the log closes
// with its last user.
var auditLogs = caddy.NewUsagePool()

// sharedAuditLog is one open audit log and the configurations using it, oldest first.
type sharedAuditLog struct {
	*audit.Log
	mu      sync.Mutex
	holders []*auditHolder
}

type auditHolder struct{ signer crypto.Signer }

func (l *sharedAuditLog) Destruct() error { return l.Close() }

// openSharedAudit opens the audit log at opts.Path, or takes over the one already open there.
// release gives it back: the last release closes it; an earlier one hands the checkpoint key
// back to the newest remaining user (a reload whose new configuration failed).
func openSharedAudit(opts audit.Options) (l *audit.Log, release func(), err error) {
	key, err := filepath.Abs(opts.Path)
	if err != nil {
		return nil, nil, err
	}
	v, loaded, err := auditLogs.LoadOrNew(key, func() (caddy.Destructor, error) {
		l, err := audit.Open(opts)
		if err != nil {
			return nil, err
		}
		return &sharedAuditLog{Log: l}, nil
	})
	if err != nil {
		return nil, nil, err
	}
	shared := v.(*sharedAuditLog)
	me := &auditHolder{signer: opts.Signer}
	shared.mu.Lock()
	if loaded {
		if err := shared.SetSigner(opts.Signer); err != nil {
			shared.mu.Unlock()
			_, _ = auditLogs.Delete(key)
			return nil, nil, fmt.Errorf("%w (a reload cannot switch the key of an open log: restart gmgate)", err)
		}
	}
	shared.holders = append(shared.holders, me)
	shared.mu.Unlock()
	release = func() {
		shared.mu.Lock()
		if i := slices.Index(shared.holders, me); i >= 0 {
			shared.holders = slices.Delete(shared.holders, i, i+1)
			if n := len(shared.holders); n > 0 && i == n {
				_ = shared.SetSigner(shared.holders[n-1].signer) // same key: cannot fail
			}
		}
		shared.mu.Unlock()
		if _, err := auditLogs.Delete(key); err != nil && opts.OnError != nil {
			opts.OnError(fmt.Errorf("closing audit log: %w", err))
		}
	}
	return shared.Log, release, nil
}

// AuditSink returns the shared audit log, or nil when none is configured.
func (a *App) AuditSink() audit.Sink {
	if a.audit == nil {
		return nil
	}
	return a.audit
}

// Start implements caddy.App: it opens what provisioning only configured (the shared audit log
// and the audit logs of gm_verify handlers), so that `gmgate validate` has no side effects.
func (a *App) Start() error {
	if _, err := a.vs.open(); err != nil {
		return err
	}
	var errs []error
	if a.audit != nil {
		if _, err := a.audit.open(); err != nil {
			errs = append(errs, fmt.Errorf("audit log: %w", err))
		}
	}
	for _, d := range a.deferred {
		if _, err := d.open(); err != nil {
			errs = append(errs, fmt.Errorf("audit log %s: %w", d.opts.Path, err))
		}
	}
	a.mu.Lock()
	starts := append([]func() error(nil), a.starts...)
	a.mu.Unlock()
	for _, f := range starts {
		errs = append(errs, f())
	}
	return errors.Join(errs...)
}

// onStart registers what a module of this configuration does when it starts (at Start, after
// the vault and the audit logs opened) rather than at Provision: what writes files or uses a
// key. The module must also do it at its first use, which may come before Start.
func (a *App) onStart(start func() error) {
	a.mu.Lock()
	a.starts = append(a.starts, start)
	a.mu.Unlock()
}

// deferAudit registers an audit log of a module of this configuration to be opened at Start.
func (a *App) deferAudit(d *deferredAudit) {
	a.mu.Lock()
	a.deferred = append(a.deferred, d)
	a.mu.Unlock()
}

// Stop implements caddy.App. The vault and the audit log stay open until Cleanup: other apps
// (the HTTP servers draining their requests) may still sign with them.
func (a *App) Stop() error { return nil }

// Cleanup releases the audit log and closes the vault, which zeroizes key material held in
// memory: at once when gmgate exits, after reloadDrain on a reload. Caddy calls it when the
// configuration is unloaded, or when it failed to load.
func (a *App) Cleanup() error {
	for _, release := range a.releases {
		release()
	}
	a.releases = nil
	if a.audit != nil {
		a.audit.close()
		a.audit = nil
	}
	if caddy.Exiting() {
		if err := sealAuditLogsOnExit(); err != nil {
			a.logger.Error("sealing the audit logs", zap.Error(err))
		}
	}
	v := a.vs.close()
	if v == nil {
		return nil // never opened (gmgate validate, or a start that failed before it)
	}
	if caddy.Exiting() {
		return v.Close()
	}
	// A reload: Caddy has asked the old servers to shut down but does not wait for their
	// requests, which may still sign or decrypt with this vault's handles. Close it once they
	// are done: the same bound as the handlers' own drain (gm_verify keeps its replay store and
	// audit log for them just as long).
	time.AfterFunc(reloadDrain, func() {
		if err := v.Close(); err != nil {
			a.logger.Error("closing the previous configuration's key vault", zap.Error(err))
		}
	})
	return nil
}

// sealAuditLogsOnExit closes every audit log still open when gmgate exits (the HTTP servers
// have drained by then): each ends with a signed checkpoint, even if a reloaded-away
// configuration's drain would still have held it. A log left unsealed reads as an unsealed tail
// (`audit verify` exit 6).
func sealAuditLogsOnExit() error {
	var errs []error
	auditLogs.Range(func(_, v any) bool {
		if l, ok := v.(*sharedAuditLog); ok {
			errs = append(errs, l.Close())
		}
		return true
	})
	return errors.Join(errs...)
}

// reloadDrain is how long a reloaded-away configuration keeps what its in-flight requests use
// (key vault, replay store, audit log): one bound for every gmgate module.
const reloadDrain = 5 * time.Minute

// Signer returns the named SM2 signing key. The handle is usable at once; the vault behind it
// opens when the configuration starts (or at the handle's first use, whichever comes first).
func (a *App) Signer(name string) (crypto.Signer, error) {
	if err := a.declared(name, keyvault.KeyTypeSM2); err != nil {
		return nil, err
	}
	return &vaultKey{vs: a.vs, name: name}, nil
}

// Decrypter returns the named SM2 decryption key (also an SM2 key-agreement key for TLCP ECDHE),
// opened like Signer.
func (a *App) Decrypter(name string) (crypto.Decrypter, error) {
	if err := a.declared(name, keyvault.KeyTypeSM2); err != nil {
		return nil, err
	}
	return &vaultKey{vs: a.vs, name: name, decrypt: true}, nil
}

// DataKey returns the named SM4 key as a channel data key, opened like Signer.
func (a *App) DataKey(name string) (channel.DataKey, error) {
	if err := a.declared(name, keyvault.KeyTypeSM4); err != nil {
		return nil, err
	}
	return &vaultSM4{vs: a.vs, name: name}, nil
}

// SealKeys returns the named SM4 key as the sealing key of a sealstore (every version the vault
// holds opens, the current one seals), opened like Signer.
func (a *App) SealKeys(name string) (sealstore.Keys, error) {
	if err := a.declared(name, keyvault.KeyTypeSM4); err != nil {
		return nil, err
	}
	return vaultSealKeys{vs: a.vs, name: name}, nil
}

// SM4 returns the named SM4 key handle. It opens the vault now if it is not open yet: modules
// that only need the data-key operations use DataKey, which opens it at start.
func (a *App) SM4(name string) (*keyvault.SM4Key, error) {
	if err := a.declared(name, keyvault.KeyTypeSM4); err != nil {
		return nil, err
	}
	v, err := a.vs.open()
	if err != nil {
		return nil, err
	}
	return v.SM4(name)
}

// Certificates returns the certificate chain (leaf first) configured for the named key.
func (a *App) Certificates(name string) ([]*smx509.Certificate, error) {
	if err := a.declared(name, ""); err != nil {
		return nil, err
	}
	base, _, _ := strings.Cut(name, "@")
	c := a.vs.certs[base]
	if len(c) == 0 {
		return nil, fmt.Errorf("key %q has no certificate configured (`certificate <file>` in its vault key block)", base)
	}
	return append([]*smx509.Certificate(nil), c...), nil
}

// declared checks that the configuration declares name (and, when want is set, with that type),
// saying what to fix when it does not.
func (a *App) declared(name string, want keyvault.KeyType) error {
	if a.vs == nil {
		return errVaultClosed
	}
	base, _, _ := strings.Cut(name, "@")
	typ, ok := a.vs.types[base]
	if !ok {
		return fmt.Errorf("key %q is not declared: add `key %s <pkcs11: or file: reference>` to `gmgate { vault { … } }` (declared: %s)",
			base, base, strings.Join(a.vs.names, ", "))
	}
	if want != "" && typ != want {
		return fmt.Errorf("key %q is an %s key; this use needs an %s key", base, typ, want)
	}
	return nil
}

// Dev returns the development PKI, or nil when it is not in use.
func (a *App) Dev() *pki.DevPKI { return a.dev }

var errVaultClosed = errors.New("gmgate: key vault is not open")

// gmgateApp returns the gmgate app of ctx's configuration, provisioning it on first use.
func gmgateApp(ctx caddy.Context) (*App, error) {
	v, err := ctx.App("gmgate")
	if err != nil {
		return nil, fmt.Errorf("loading the gmgate app: %w", err)
	}
	return v.(*App), nil
}

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.Validator    = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)

// devKeys declares the development PKI's keys as file keys of the software vault.
func devKeys(dev *pki.DevPKI) []keyvault.KeyConfig {
	key := func(name, base string) keyvault.KeyConfig {
		return keyvault.KeyConfig{
			Name:        name,
			Ref:         "file:" + filepath.Join(dev.Dir, base+".key"),
			Type:        keyvault.KeyTypeSM2,
			Certificate: filepath.Join(dev.Dir, base+".pem"),
		}
	}
	return []keyvault.KeyConfig{
		key(DevServerSignKey, pki.DevServerSignBase),
		key(DevServerEncKey, pki.DevServerEncBase),
		key(DevPlatformSignKey, pki.DevPlatformBase),
		key(DevClientSignKey, pki.DevClientSignBase),
		key(DevClientEncKey, pki.DevClientEncBase),
		key(DevBankSignKey, pki.DevBankSignBase),
		key(DevBankEncKey, pki.DevBankEncBase),
		key(DevBankPlatformSignKey, pki.DevBankPlatformBase),
		{Name: DevEnrollStoreKey, Ref: "file:" + filepath.Join(dev.Dir, DevEnrollStoreKey+".sm4"), Type: keyvault.KeyTypeSM4},
	}
}

// ensureDevSM4Key creates the development SM4 key file (32 hex digits, 0600) when missing.
func ensureDevSM4Key(path string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	var k [keyvault.SM4KeySize]byte
	if _, err := rand.Read(k[:]); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return nil // another process made it
	}
	if err != nil {
		return err
	}
	_, err = f.WriteString(hex.EncodeToString(k[:]) + "\n")
	clear(k[:])
	return errors.Join(err, f.Close())
}

// vaultLogger hands the vault a slog logger writing to l's core under the logger name
// "<l's name>.keyvault" (zap names are not carried by the core, so without it every vault line
// would be nameless).
func vaultLogger(l *zap.Logger) *slog.Logger {
	name := "keyvault"
	if n := l.Name(); n != "" {
		name = n + ".keyvault"
	}
	return slog.New(zapslog.NewHandler(l.Core(), zapslog.WithName(name)))
}
