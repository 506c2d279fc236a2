package keyvault

import (
	"crypto"
	"errors"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/keyvault/internal/p11"
	"github.com/gmgate/gmgate/pki"
)

// Vault holds named SM2 and SM4 keys resolved from PKCS#11 tokens or (development only) files.
// It is safe for concurrent use.
type Vault struct {
	opts   options
	log    *slog.Logger
	tokens []*token
	byName map[string]*token
	keys   map[string]*keyEntry
	order  []string

	// absent lists tokens that could not be opened at start-up (reported by Health).
	absent []TokenStatus

	closed atomic.Bool
	stop   chan struct{}
	wg     sync.WaitGroup
	rr     atomic.Uint64 // spreads load/native operations over replicas
}

// keyEntry is a configured key with its loaded versions.
type keyEntry struct {
	cfg      KeyConfig
	ref      Ref
	uid      []byte
	replicas []*token

	mu       sync.RWMutex
	versions map[int]*loadedVersion
	current  int
	// inUse is the version whose public key the configured leaf certificate carries (0: no
	// certificate). Signing, decryption and the public key use it, not the newest version:
	// after `gmgate vault rotate` the old key serves until the new certificate is installed.
	inUse  int
	certs  []*smx509.Certificate
	source string // token that served the last load
}

type loadedVersion struct {
	sm2   *SM2Key
	sm4   *SM4Key
	token string
}

func (e *keyEntry) setVersion(v int, lv *loadedVersion) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.versions == nil {
		e.versions = map[int]*loadedVersion{}
	}
	if _, ok := e.versions[v]; ok {
		// Already loaded: keep the existing handle (callers may hold it) and drop the duplicate.
		lv.close()
	} else {
		e.versions[v] = lv
	}
	if v > e.current {
		e.current = v
	}
}

func (lv *loadedVersion) close() {
	if lv.sm2 != nil {
		lv.sm2.close()
	}
	if lv.sm4 != nil {
		lv.sm4.close()
	}
}

// Open opens every configured token and loads every configured key. It fails closed: a bad
// PIN, a module that cannot be loaded, a missing mechanism (native mode) or a key that no
// replica can provide is an error. A token that is merely absent is tolerated when every key it
// holds can be loaded from another replica.
func Open(cfg Config, opts ...Option) (*Vault, error) {
	o := buildOptions(opts)
	v := &Vault{opts: o, log: o.logger, byName: map[string]*token{}, keys: map[string]*keyEntry{}, stop: make(chan struct{})}
	if err := v.validate(cfg); err != nil {
		return nil, err
	}
	tokens, err := applyPINSources(cfg)
	if err != nil {
		return nil, err
	}
	for _, tc := range tokens {
		t, err := openToken(tc, &v.opts)
		if err != nil {
			if errors.Is(err, ErrTokenUnavailable) && len(cfg.Tokens) > 1 {
				v.log.Error("keyvault: token unavailable at start-up; continuing with replicas", "token", tc.Name, "error", err)
				v.opts.observer.ObserveTokenHealth(tc.Name, false)
				v.absent = append(v.absent, TokenStatus{Name: tc.Name, Module: tc.Module, Label: tc.TokenLabel,
					Serial: tc.TokenSerial, Mode: tc.Mode, Error: err.Error(), CheckedAt: time.Now().UTC()})
				continue
			}
			v.closeTokens()
			return nil, err
		}
		v.tokens = append(v.tokens, t)
		v.byName[t.name] = t
	}
	for _, kc := range cfg.Keys {
		e, err := v.newEntry(kc, cfg)
		if err != nil {
			v.Close()
			return nil, err
		}
		v.keys[kc.Name] = e
		v.order = append(v.order, kc.Name)
		if err := v.load(e); err != nil {
			if v.opts.admin && errors.Is(err, ErrKeyNotFound) {
				continue
			}
			v.Close()
			return nil, err
		}
	}
	if o.healthInterval > 0 && len(v.tokens) > 0 {
		v.wg.Add(1)
		go v.healthLoop(o.healthInterval)
	}
	return v, nil
}

func (v *Vault) validate(cfg Config) error {
	seen := map[string]bool{}
	for _, t := range cfg.Tokens {
		if t.Name == "" || seen["t:"+t.Name] {
			return errorf(ErrConfig, "token names must be unique and non-empty")
		}
		seen["t:"+t.Name] = true
	}
	for _, k := range cfg.Keys {
		if k.Name == "" || seen["k:"+k.Name] {
			return errorf(ErrConfig, "key names must be unique and non-empty")
		}
		if _, _, err := splitVersion(k.Name); err != nil || len(k.Name) > 128 || containsAt(k.Name) {
			return errorf(ErrConfig, "key name %q must not contain '@' and be at most 128 bytes", k.Name)
		}
		seen["k:"+k.Name] = true
		if k.Type != KeyTypeSM2 && k.Type != KeyTypeSM4 {
			return errorf(ErrConfig, "key %s: type must be sm2 or sm4", k.Name)
		}
		if ref, err := ParseRef(k.Ref); k.TokenDecrypt && (k.Type != KeyTypeSM2 || err == nil && ref.Scheme != "pkcs11") {
			return errorf(ErrConfig, "key %s: token_decrypt needs an sm2 key with a pkcs11: reference", k.Name)
		}
	}
	return checkPKCS11(cfg, p11.Available)
}

// checkPKCS11 refuses, from the configuration alone, a token or a pkcs11: key reference when
// PKCS#11 is not available (a build without cgo), so that a check that opens nothing refuses it
// as Open does.
func checkPKCS11(cfg Config, available bool) error {
	if available {
		return nil
	}
	if len(cfg.Tokens) > 0 {
		return opErr("open", "", cfg.Tokens[0].Name, errNoCgo(), nil)
	}
	for _, k := range cfg.Keys {
		if ref, err := ParseRef(k.Ref); err == nil && ref.Scheme == "pkcs11" {
			return opErr("config", k.Name, "", errNoCgo(), nil)
		}
	}
	return nil
}

func containsAt(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '@' {
			return true
		}
	}
	return false
}

func (v *Vault) newEntry(kc KeyConfig, cfg Config) (*keyEntry, error) {
	ref, uid, err := parseKeyConfig(kc)
	if err != nil {
		return nil, err
	}
	e := &keyEntry{cfg: kc, ref: ref, uid: uid, versions: map[int]*loadedVersion{}}
	if ref.Scheme == "pkcs11" {
		if err := v.selectReplicas(e, cfg); err != nil {
			return nil, err
		}
	}
	if e.certs, err = KeyCertificates(kc); err != nil {
		return nil, err
	}
	return e, nil
}

// parseKeyConfig reads a key's reference and SM2 user ID (default pki.DefaultUserID): the
// checks Open and CheckConfig share.
func parseKeyConfig(kc KeyConfig) (Ref, []byte, error) {
	ref, err := ParseRef(kc.Ref)
	if err != nil {
		return Ref{}, nil, opErr("config", kc.Name, "", ErrBadReference, err)
	}
	uid := []byte(kc.UserID)
	if len(uid) == 0 {
		uid = []byte(pki.DefaultUserID)
	}
	if len(uid) > 8191 {
		return Ref{}, nil, opErr("config", kc.Name, "", ErrConfig, errorf(ErrConfig, "user ID too long"))
	}
	return ref, uid, nil
}

// KeyCertificates reads the certificate chain configured for a key (leaf first; nil when none
// is configured), without opening any token: what a configuration check or a caller that opens
// the vault later needs.
func KeyCertificates(kc KeyConfig) ([]*smx509.Certificate, error) {
	if kc.Certificate == "" {
		return nil, nil
	}
	data, err := readBounded(kc.Certificate)
	if err != nil {
		return nil, opErr("config", kc.Name, "", err, nil)
	}
	certs, err := pki.ParseCertificatesPEM(data) // the one certificate loader, strictest checks
	if err == nil && len(certs) == 0 {
		err = errors.New("no CERTIFICATE block found")
	}
	if err != nil {
		return nil, opErr("config", kc.Name, "", errorf(ErrInvalidInput, "certificate %s: %v", kc.Certificate, err), nil)
	}
	return certs, nil
}

// CheckConfig checks cfg as Open would before touching a token: unique names, key types, key
// references, user IDs and the configured certificates. It opens no token, logs in nowhere and
// reads no PIN: `gmgate validate` uses it.
func CheckConfig(cfg Config) error {
	v := &Vault{}
	if err := v.validate(cfg); err != nil {
		return err
	}
	for _, tc := range cfg.Tokens {
		if tc.Module == "" {
			continue // module-name / module-path in a key's pkcs11: URI, checked at open
		}
		if st, err := os.Stat(tc.Module); err != nil || st.IsDir() {
			return opErr("config", "", tc.Name, ErrModuleLoad, errorf(ErrModuleLoad, "PKCS#11 module %s does not exist or is not a file", tc.Module))
		}
	}
	for _, kc := range cfg.Keys {
		if _, _, err := parseKeyConfig(kc); err != nil {
			return err
		}
		if _, err := KeyCertificates(kc); err != nil {
			return err
		}
	}
	return nil
}

// selectReplicas finds the open tokens the key's reference selects. A token named in the key's
// tokens list must agree with every token, slot, library and module attribute of the reference
// (ErrConfig naming the contradiction otherwise); without a list, the replicas are the open
// tokens that agree. No configured token that could agree is ErrConfig; only absent ones,
// ErrTokenUnavailable. id= and type= must be honourable on every replica.
func (v *Vault) selectReplicas(e *keyEntry, cfg Config) error {
	kc, ref := e.cfg, e.ref
	configured := map[string]TokenConfig{}
	for _, tc := range cfg.Tokens {
		configured[tc.Name] = tc
	}
	if len(kc.Tokens) > 0 {
		for _, n := range kc.Tokens {
			tc, ok := configured[n]
			if !ok {
				return opErr("config", kc.Name, n, ErrConfig, errorf(ErrConfig, "unknown token"))
			}
			t := v.byName[n]
			why := ref.configMismatch(tc)
			if t != nil && why == "" {
				why = ref.tokenMismatch(t)
			}
			if why != "" {
				return opErr("config", kc.Name, n, ErrConfig, errorf(ErrConfig, "the key's reference contradicts its token: %s", why))
			}
			if t != nil {
				e.replicas = append(e.replicas, t)
			}
		}
	} else {
		var whys []string
		for _, t := range v.tokens {
			if why := ref.tokenMismatch(t); why != "" {
				whys = append(whys, t.name+": "+why)
				continue
			}
			e.replicas = append(e.replicas, t)
		}
		if len(e.replicas) == 0 {
			for _, a := range v.absent {
				if ref.configMismatch(configured[a.Name]) == "" {
					return opErr("config", kc.Name, "", ErrTokenUnavailable, errorf(ErrTokenUnavailable, "no available token matches %s", ref.String()))
				}
			}
			return opErr("config", kc.Name, "", ErrConfig, errorf(ErrConfig, "no configured token matches %s (%s)", ref.String(), strings.Join(whys, "; ")))
		}
	}
	if len(e.replicas) == 0 {
		return opErr("config", kc.Name, "", ErrTokenUnavailable, errorf(ErrTokenUnavailable, "no available token matches %s", ref.String()))
	}
	for _, t := range e.replicas {
		if err := ref.checkObjectAttrs(kc, t); err != nil {
			return opErr("config", kc.Name, t.name, ErrBadReference, err)
		}
	}
	return nil
}

// replicaOrder returns the replicas to try: healthy ones first, rotating the starting point.
func (v *Vault) replicaOrder(e *keyEntry) []*token {
	n := len(e.replicas)
	out := make([]*token, 0, n)
	start := int(v.rr.Add(1) % uint64(max(n, 1)))
	var unhealthy []*token
	for i := 0; i < n; i++ {
		t := e.replicas[(start+i)%n]
		if t.healthy.Load() {
			out = append(out, t)
		} else {
			unhealthy = append(unhealthy, t)
		}
	}
	return append(out, unhealthy...)
}

// failoverWorthy reports whether an error on one replica should make us try the next one.
func failoverWorthy(err error) bool {
	for _, k := range []error{ErrTokenUnavailable, ErrPoolTimeout, ErrToken, ErrKeyNotFound, ErrIntegrity, ErrClosed} {
		if errors.Is(err, k) {
			return true
		}
	}
	return false
}

// load loads every stored version of a key (from the first replica that can serve it).
func (v *Vault) load(e *keyEntry) error {
	start := time.Now()
	var err error
	var tok string
	if e.ref.Scheme == "file" {
		tok = "file"
		err = v.loadFileKey(e)
	} else {
		tok, err = v.loadFromTokens(e)
	}
	if err == nil {
		err = v.checkCertificate(e)
	}
	v.opts.observer.ObserveOperation(tok, e.cfg.Name, "load", time.Since(start), err)
	return err
}

func (v *Vault) loadFromTokens(e *keyEntry) (string, error) {
	var errs []error
	var prev string
	for _, t := range v.freshestFirst(e, v.replicaOrder(e)) {
		if prev != "" {
			v.opts.observer.ObserveFailover(e.cfg.Name, prev, t.name)
			v.log.Warn("keyvault: failing over", "key", e.cfg.Name, "from", prev, "to", t.name)
		}
		err := v.loadFromToken(e, t)
		if err == nil {
			e.mu.Lock()
			e.source = t.name
			e.mu.Unlock()
			return t.name, nil
		}
		if errors.Is(err, ErrTokenUnavailable) || errors.Is(err, ErrPoolTimeout) {
			t.setHealth(err)
		}
		errs = append(errs, err)
		if !failoverWorthy(err) {
			return t.name, err
		}
		prev = t.name
	}
	kind := ErrTokenUnavailable
	allMissing := len(errs) > 0
	for _, err := range errs {
		if !errors.Is(err, ErrKeyNotFound) {
			allMissing = false
		}
	}
	if allMissing {
		kind = ErrKeyNotFound
	}
	return prev, opErr("load", e.cfg.Name, "", kind, errors.Join(errs...))
}

// freshestFirst reorders wrapped-mode replicas so that the one holding the highest version is
// tried first (replicas can diverge if a rotation reached only some of them). Unreachable
// replicas keep their place at the end; the listing is cheap and happens only at load time.
func (v *Vault) freshestFirst(e *keyEntry, order []*token) []*token {
	if len(order) < 2 {
		return order
	}
	best, bestVer := -1, 0
	for i, t := range order {
		if t.native != nil || e.cfg.TokenDecrypt {
			return order
		}
		vs, err := t.blobVersions(e.ref.Object)
		if err != nil || len(vs) == 0 {
			continue
		}
		if vs[len(vs)-1] > bestVer {
			best, bestVer = i, vs[len(vs)-1]
		}
	}
	if best <= 0 {
		return order
	}
	out := append([]*token{order[best]}, order[:best]...)
	return append(out, order[best+1:]...)
}

func (v *Vault) loadFromToken(e *keyEntry, t *token) error {
	if e.cfg.TokenDecrypt {
		return v.loadDerive(e, t)
	}
	if t.native != nil {
		return v.loadNative(e, t)
	}
	return v.loadWrapped(e, t)
}

func (v *Vault) loadWrapped(e *keyEntry, t *token) error {
	vs, err := t.blobVersions(e.ref.Object)
	if err != nil {
		return err
	}
	if len(vs) == 0 {
		return opErr("load", e.cfg.Name, t.name, ErrKeyNotFound, nil)
	}
	loaded := map[int]*loadedVersion{}
	for _, ver := range vs {
		e.mu.RLock()
		_, have := e.versions[ver]
		e.mu.RUnlock()
		if have {
			continue
		}
		lv, err := v.unwrapVersion(e, t, ver)
		if err != nil {
			for _, l := range loaded {
				l.close()
			}
			return err
		}
		loaded[ver] = lv
	}
	for ver, lv := range loaded {
		e.setVersion(ver, lv)
	}
	return nil
}

func (v *Vault) unwrapVersion(e *keyEntry, t *token, ver int) (*loadedVersion, error) {
	label := blobLabel(e.ref.Object, ver)
	blob, err := t.getBlob(label)
	if err != nil {
		return nil, err
	}
	pt, err := t.unseal(blobAAD(e.ref.Object, ver, purposeFor(e.cfg.Type)), blob)
	if err != nil {
		return nil, opErr("load", e.cfg.Name, t.name, ErrIntegrity, err)
	}
	defer zero(pt)
	return v.materialize(e, t.name, ver, pt)
}

// materialize builds an in-memory key version from raw key bytes (32-byte SM2 scalar or
// 16-byte SM4 key).
func (v *Vault) materialize(e *keyEntry, tok string, ver int, raw []byte) (*loadedVersion, error) {
	switch e.cfg.Type {
	case KeyTypeSM2:
		if len(raw) != 32 {
			return nil, opErr("load", e.cfg.Name, tok, ErrIntegrity, errorf(ErrIntegrity, "SM2 scalar must be 32 bytes"))
		}
		priv, err := sm2.NewPrivateKey(raw)
		if err != nil {
			return nil, opErr("load", e.cfg.Name, tok, ErrIntegrity, errorf(ErrIntegrity, "invalid SM2 scalar"))
		}
		k, err := newSoftSM2Key(e.cfg.Name, ver, tok, v.opts.observer, priv, e.uid)
		if err != nil {
			return nil, opErr("load", e.cfg.Name, tok, err, nil)
		}
		return &loadedVersion{sm2: k, token: tok}, nil
	default:
		k, err := newSM4Key(e.cfg.Name, ver, tok, v.opts.observer, raw)
		if err != nil {
			return nil, opErr("load", e.cfg.Name, tok, err, nil)
		}
		return &loadedVersion{sm4: k, token: tok}, nil
	}
}

// checkCertificate makes sure a configured leaf certificate matches a version of the SM2 key,
// and pins that version as the one in use.
func (v *Vault) checkCertificate(e *keyEntry) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.certs) == 0 || e.cfg.Type != KeyTypeSM2 {
		return nil
	}
	lv := e.versions[e.current]
	if lv == nil || lv.sm2 == nil {
		return nil
	}
	for n, lv := range e.versions {
		if lv.sm2 != nil && pubEqual(e.certs[0].PublicKey, lv.sm2.pub) {
			e.inUse = n
			if n != e.current {
				v.log.Warn("keyvault: the certificate carries an older version of the key; that version stays in use until the certificate of the current one is installed",
					"key", e.cfg.Name, "in_use", n, "current", e.current)
			}
			return nil
		}
	}
	return opErr("load", e.cfg.Name, "", ErrConfig, errorf(ErrConfig, "certificate public key matches no version of the key"))
}

func pubEqual(a any, b crypto.PublicKey) bool {
	type eq interface{ Equal(crypto.PublicKey) bool }
	if x, ok := a.(eq); ok {
		return x.Equal(b)
	}
	return false
}

// entry resolves "name" or "name@N" to its entry and version (0 = current).
func (v *Vault) entry(op, ref string) (*keyEntry, int, error) {
	if v.closed.Load() {
		return nil, 0, opErr(op, ref, "", ErrClosed, nil)
	}
	name, ver, err := splitVersion(ref)
	if err != nil {
		return nil, 0, opErr(op, ref, "", ErrInvalidInput, err)
	}
	e, ok := v.keys[name]
	if !ok {
		return nil, 0, opErr(op, name, "", ErrKeyNotFound, nil)
	}
	return e, ver, nil
}

func (v *Vault) version(op, ref string, want KeyType) (*keyEntry, *loadedVersion, bool, error) {
	e, ver, err := v.entry(op, ref)
	if err != nil {
		return nil, nil, false, err
	}
	if e.cfg.Type != want {
		return nil, nil, false, opErr(op, e.cfg.Name, "", ErrWrongKeyType, nil)
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	active := e.active()
	if ver == 0 {
		ver = active
	}
	lv := e.versions[ver]
	if lv == nil {
		return nil, nil, false, opErr(op, ref, "", ErrKeyNotFound, nil)
	}
	return e, lv, ver != active && ver != e.current, nil
}

// active is the version that signs and decrypts by default: the one the certificate carries,
// else the newest. The caller holds e.mu.
func (e *keyEntry) active() int {
	if e.inUse != 0 {
		if _, ok := e.versions[e.inUse]; ok {
			return e.inUse
		}
	}
	return e.current
}

// Signer returns an SM2 key as a crypto.Signer (an *SM2Key): the version its configured
// certificate carries, else the newest. "name@N" selects version N, which must be that one or
// the newest: retired versions only decrypt and verify.
func (v *Vault) Signer(name string) (crypto.Signer, error) {
	k, err := v.SM2Key(name)
	if err != nil {
		return nil, err
	}
	return k, nil
}

// SM2Key is Signer with the concrete type (which also offers SM2MQV and ECDH).
func (v *Vault) SM2Key(name string) (*SM2Key, error) {
	_, lv, retired, err := v.version("signer", name, KeyTypeSM2)
	if err != nil {
		return nil, err
	}
	if retired {
		return nil, opErr("signer", name, "", ErrVersionRetired, nil)
	}
	if _, ok := lv.sm2.remote.(*deriveRemote); ok {
		return nil, opErr("signer", name, "", ErrUnsupported, errorf(ErrUnsupported, "token_decrypt keys decrypt only"))
	}
	return lv.sm2, nil
}

// Decrypter returns an SM2 key (any version: "name" is the version in use, see Signer;
// "name@N" version N) as a crypto.Decrypter (an *SM2Key).
func (v *Vault) Decrypter(name string) (crypto.Decrypter, error) {
	_, lv, _, err := v.version("decrypter", name, KeyTypeSM2)
	if err != nil {
		return nil, err
	}
	return lv.sm2, nil
}

// PublicKey returns the public key of any version of an SM2 key (for verification).
func (v *Vault) PublicKey(name string) (crypto.PublicKey, error) {
	_, lv, _, err := v.version("public", name, KeyTypeSM2)
	if err != nil {
		return nil, err
	}
	return lv.sm2.Public(), nil
}

// SM4 returns an SM4 key handle. The current version does everything; "name@N" for an older
// version returns a handle that only opens, decrypts and verifies.
func (v *Vault) SM4(name string) (*SM4Key, error) {
	_, lv, retired, err := v.version("sm4", name, KeyTypeSM4)
	if err != nil {
		return nil, err
	}
	return lv.sm4.handle(retired), nil
}

// Versions lists the loaded versions of a key (ascending) and the current one.
func (v *Vault) Versions(name string) (versions []int, current int, err error) {
	e, _, err := v.entry("versions", name)
	if err != nil {
		return nil, 0, err
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	for n := range e.versions {
		versions = append(versions, n)
	}
	sort.Ints(versions)
	return versions, e.current, nil
}

// Certificate returns the configured certificate chain of a key (leaf first).
func (v *Vault) Certificate(name string) ([]*smx509.Certificate, error) {
	e, _, err := v.entry("certificate", name)
	if err != nil {
		return nil, err
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	if len(e.certs) == 0 {
		return nil, opErr("certificate", name, "", ErrKeyNotFound, errorf(ErrKeyNotFound, "no certificate configured"))
	}
	return append([]*smx509.Certificate(nil), e.certs...), nil
}

// Keys lists the configured key names in configuration order.
func (v *Vault) Keys() []string { return append([]string(nil), v.order...) }

// Health probes every token (session round trip, re-login if needed) and returns its status.
func (v *Vault) Health() []TokenStatus {
	out := make([]TokenStatus, 0, len(v.tokens))
	for _, t := range v.tokens {
		if !v.closed.Load() {
			_ = t.ping()
		}
		out = append(out, t.status())
	}
	return append(out, v.absent...)
}

func (v *Vault) healthLoop(d time.Duration) {
	defer v.wg.Done()
	tick := time.NewTicker(d)
	defer tick.Stop()
	for {
		select {
		case <-v.stop:
			return
		case <-tick.C:
			for _, t := range v.tokens {
				_ = t.ping()
			}
		}
	}
}

// Close zeroizes all in-memory key material, closes the vault's token sessions and releases
// the modules. Key handles obtained earlier fail with ErrClosed afterwards.
func (v *Vault) Close() error {
	if v.closed.Swap(true) {
		return nil
	}
	close(v.stop)
	v.wg.Wait()
	for _, e := range v.keys {
		e.mu.Lock()
		for _, lv := range e.versions {
			lv.close()
		}
		e.mu.Unlock()
	}
	v.closeTokens()
	return nil
}

func (v *Vault) closeTokens() {
	for _, t := range v.tokens {
		t.close()
	}
}

// Reload re-reads every token-backed key from its replicas (failing over between them), so
// versions added by another process (e.g. `gmgate vault rotate`) become visible. Handles obtained
// earlier stay valid.
func (v *Vault) Reload() error {
	if v.closed.Load() {
		return opErr("reload", "", "", ErrClosed, nil)
	}
	var errs []error
	for _, n := range v.order {
		e := v.keys[n]
		if e.ref.Scheme != "pkcs11" {
			continue
		}
		if err := v.load(e); err != nil {
			if v.opts.admin && errors.Is(err, ErrKeyNotFound) {
				continue
			}
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
