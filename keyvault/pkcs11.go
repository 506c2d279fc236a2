package keyvault

import (
	"encoding/hex"
	"errors"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gmgate/gmgate/keyvault/internal/p11"
	"github.com/miekg/pkcs11"
)

// module is one loaded PKCS#11 library, shared by every token (and vault) of the process that
// uses the same path: C_Initialize is process-wide.
type module struct {
	path string
	ctx  *p11.Ctx
	refs int
	info p11.Info // C_GetInfo at load (library-* attributes of key references)
}

var modules = struct {
	sync.Mutex
	m map[string]*module
}{m: map[string]*module{}}

func acquireModule(path string) (*module, error) {
	if path == "" {
		return nil, errorf(ErrConfig, "token module path is empty")
	}
	if !p11.Available {
		return nil, errNoCgo()
	}
	modules.Lock()
	defer modules.Unlock()
	if m, ok := modules.m[path]; ok {
		m.refs++
		return m, nil
	}
	if st, err := os.Stat(path); err != nil || st.IsDir() {
		return nil, errorf(ErrModuleLoad, "module %s does not exist", path)
	}
	ctx := p11.New(path)
	if ctx == nil {
		return nil, errorf(ErrModuleLoad, "module %s cannot be loaded (not a PKCS#11 library?)", path)
	}
	if err := ctx.Initialize(); err != nil && !isRV(err, pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		ctx.Destroy()
		return nil, errorf(ErrModuleLoad, "C_Initialize of %s failed: %v", path, err)
	}
	m := &module{path: path, ctx: ctx, refs: 1}
	if info, err := ctx.GetInfo(); err == nil {
		info.ManufacturerID = trimInfo(info.ManufacturerID)
		info.LibraryDescription = trimInfo(info.LibraryDescription)
		m.info = info
	}
	modules.m[path] = m
	return m, nil
}

// errNoCgo is the refusal of every PKCS#11 token by a build without cgo, where no module can be
// loaded (miekg/pkcs11 needs cgo): Open fails closed with it rather than starting without keys.
func errNoCgo() error {
	return errorf(ErrModuleLoad, "this gmgate was built without cgo (CGO_ENABLED=0): PKCS#11 tokens are unavailable; use file: keys or a cgo build")
}

func releaseModule(m *module) {
	modules.Lock()
	defer modules.Unlock()
	m.refs--
	if m.refs > 0 {
		return
	}
	delete(modules.m, m.path)
	_ = m.ctx.Finalize()
	m.ctx.Destroy()
}

func isRV(err error, rv uint) bool {
	var e p11.Error
	return errors.As(err, &e) && uint(e) == rv
}

func rvOf(err error) (uint, bool) {
	var e p11.Error
	if errors.As(err, &e) {
		return uint(e), true
	}
	return 0, false
}

// failure classes of a token call.
const (
	classOther = iota
	classSessionLost
	classNotLoggedIn
	classTokenGone
	classHandleInvalid
)

func classify(err error) int {
	rv, ok := rvOf(err)
	if !ok {
		return classOther
	}
	switch rv {
	case pkcs11.CKR_SESSION_HANDLE_INVALID, pkcs11.CKR_SESSION_CLOSED:
		return classSessionLost
	case pkcs11.CKR_USER_NOT_LOGGED_IN:
		return classNotLoggedIn
	case pkcs11.CKR_TOKEN_NOT_PRESENT, pkcs11.CKR_DEVICE_REMOVED, pkcs11.CKR_SLOT_ID_INVALID,
		pkcs11.CKR_TOKEN_NOT_RECOGNIZED, pkcs11.CKR_DEVICE_ERROR, pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED:
		return classTokenGone
	case pkcs11.CKR_OBJECT_HANDLE_INVALID, pkcs11.CKR_KEY_HANDLE_INVALID:
		return classHandleInvalid
	}
	return classOther
}

// token is one configured PKCS#11 token with its session pool.
type token struct {
	name     string
	cfg      TokenConfig
	mod      *module
	log      *slog.Logger
	obs      Observer
	kekLabel string
	blobDir  string
	native   *NativeProfile
	// requireKEK makes a missing key-encryption key a health failure (not in admin mode).
	requireKEK bool

	pinMu sync.Mutex
	pin   []byte

	sem chan struct{} // one slot per allowed concurrent session

	mu      sync.Mutex
	closed  bool
	slot    uint
	label   string
	serial  string
	found   tokenFacts // CK_TOKEN_INFO / CK_SLOT_INFO of the slot found at open (or re-found)
	idle    []p11.SessionHandle
	handles map[string]p11.ObjectHandle

	healthy atomic.Bool
	lastErr atomic.Value // string
	checked atomic.Int64 // unix nanos
}

func openToken(cfg TokenConfig, o *options) (*token, error) {
	if cfg.Name == "" {
		return nil, errorf(ErrConfig, "token without a name")
	}
	if cfg.TokenLabel == "" && cfg.TokenSerial == "" {
		return nil, opErr("open", "", cfg.Name, ErrConfig, errorf(ErrConfig, "set token_label or token_serial"))
	}
	t := &token{name: cfg.Name, cfg: cfg, log: o.logger, obs: o.observer, handles: map[string]p11.ObjectHandle{}, requireKEK: !o.admin}
	if t.cfg.PoolSize <= 0 {
		t.cfg.PoolSize = 4
	}
	if t.cfg.PoolSize > 256 {
		t.cfg.PoolSize = 256
	}
	if t.cfg.BorrowTimeout <= 0 {
		t.cfg.BorrowTimeout = Duration(2 * time.Second)
	}
	t.kekLabel = cfg.KEKLabel
	if t.kekLabel == "" {
		t.kekLabel = DefaultKEKLabel
	}
	switch cfg.BlobStore {
	case "", "token":
	default:
		t.blobDir = cfg.BlobStore
	}
	switch cfg.Mode {
	case "", ModeWrapped:
		t.cfg.Mode = ModeWrapped
	case ModeNative:
		p, err := ResolveProfile(cfg.Preset, cfg.Mechanisms)
		if err != nil {
			return nil, opErr("open", "", cfg.Name, ErrConfig, err)
		}
		t.native = p
	default:
		return nil, opErr("open", "", cfg.Name, ErrConfig, errorf(ErrConfig, "mode must be wrapped or native"))
	}
	pin, err := readSecret(o, "token "+cfg.Name+" PIN", cfg.PINEnv, cfg.PINFile)
	if err != nil {
		return nil, opErr("open", "", cfg.Name, ErrConfig, err)
	}
	if len(pin) == 0 {
		return nil, opErr("open", "", cfg.Name, ErrConfig, errorf(ErrConfig, "set pin_env or pin_file, or pin-source in a key reference (PINs are never inline)"))
	}
	t.pin = pin
	t.sem = make(chan struct{}, t.cfg.PoolSize)
	m, err := acquireModule(cfg.Module)
	if err != nil {
		zero(t.pin)
		return nil, opErr("open", "", cfg.Name, err, nil)
	}
	t.mod = m
	if err := t.findSlot(); err != nil {
		t.close()
		return nil, err
	}
	// Log in (and prove the PIN) by borrowing one session.
	if err := t.do("login", func(*p11.Ctx, p11.SessionHandle) error { return nil }); err != nil {
		t.close()
		return nil, err
	}
	if t.native != nil {
		if err := t.checkMechanisms(); err != nil {
			t.close()
			return nil, err
		}
	}
	t.setHealth(nil)
	return t, nil
}

// findSlot locates the token by serial or label. Caller must not hold t.mu.
func (t *token) findSlot() error {
	ctx := t.mod.ctx
	slots, err := ctx.GetSlotList(true)
	if err != nil {
		return opErr("find_token", "", t.name, ErrTokenUnavailable, err)
	}
	var found []uint
	var labels, serials []string
	var facts []tokenFacts
	for _, s := range slots {
		ti, err := ctx.GetTokenInfo(s)
		if err != nil {
			continue
		}
		lbl := trimInfo(ti.Label)
		ser := trimInfo(ti.SerialNumber)
		if t.cfg.TokenSerial != "" {
			if ser != t.cfg.TokenSerial {
				continue
			}
		} else if lbl != t.cfg.TokenLabel {
			continue
		}
		found = append(found, s)
		labels = append(labels, lbl)
		serials = append(serials, ser)
		f := tokenFacts{manufacturer: trimInfo(ti.ManufacturerID), model: trimInfo(ti.Model), slot: s}
		if si, err := ctx.GetSlotInfo(s); err == nil {
			f.slotDescription, f.slotManufacturer = trimInfo(si.SlotDescription), trimInfo(si.ManufacturerID)
		}
		facts = append(facts, f)
	}
	switch len(found) {
	case 0:
		return opErr("find_token", "", t.name, ErrTokenUnavailable, errorf(ErrTokenUnavailable, "no token with that label/serial is present"))
	case 1:
	default:
		return opErr("find_token", "", t.name, ErrConfig, errorf(ErrConfig, "%d tokens match label %q; select by token_serial", len(found), t.cfg.TokenLabel))
	}
	t.mu.Lock()
	t.slot, t.label, t.serial, t.found = found[0], labels[0], serials[0], facts[0]
	t.mu.Unlock()
	return nil
}

// borrow takes a logged-in session from the pool, opening one if needed, waiting at most
// BorrowTimeout for a free slot.
func (t *token) borrow() (p11.SessionHandle, error) {
	start := time.Now()
	select {
	case t.sem <- struct{}{}:
	default:
		timer := time.NewTimer(time.Duration(t.cfg.BorrowTimeout))
		select {
		case t.sem <- struct{}{}:
			timer.Stop()
		case <-timer.C:
			t.obs.ObservePoolWait(t.name, time.Since(start))
			return 0, opErr("borrow", "", t.name, ErrPoolTimeout, nil)
		}
		t.obs.ObservePoolWait(t.name, time.Since(start))
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		<-t.sem
		return 0, opErr("borrow", "", t.name, ErrClosed, nil)
	}
	if n := len(t.idle); n > 0 {
		s := t.idle[n-1]
		t.idle = t.idle[:n-1]
		t.mu.Unlock()
		return s, nil
	}
	slot := t.slot
	t.mu.Unlock()
	s, err := t.mod.ctx.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		<-t.sem
		return 0, t.wrapErr("open_session", err)
	}
	if err := t.ensureLogin(s); err != nil {
		_ = t.mod.ctx.CloseSession(s)
		<-t.sem
		return 0, err
	}
	return s, nil
}

func (t *token) giveBack(s p11.SessionHandle) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		_ = t.mod.ctx.CloseSession(s)
	} else {
		t.idle = append(t.idle, s)
		t.mu.Unlock()
	}
	<-t.sem
}

func (t *token) discard(s p11.SessionHandle) {
	_ = t.mod.ctx.CloseSession(s)
	<-t.sem
}

// ensureLogin logs the user in if the session is public. Login state is per application and
// token, so one login serves every session; CKR_USER_ALREADY_LOGGED_IN is fine.
func (t *token) ensureLogin(s p11.SessionHandle) error {
	info, err := t.mod.ctx.GetSessionInfo(s)
	if err != nil {
		return t.wrapErr("session_info", err)
	}
	if info.State == pkcs11.CKS_RO_USER_FUNCTIONS || info.State == pkcs11.CKS_RW_USER_FUNCTIONS {
		return nil
	}
	return t.login(s)
}

func (t *token) login(s p11.SessionHandle) error {
	t.pinMu.Lock()
	pin := string(t.pin)
	t.pinMu.Unlock()
	err := t.mod.ctx.Login(s, pkcs11.CKU_USER, pin)
	if err == nil || isRV(err, pkcs11.CKR_USER_ALREADY_LOGGED_IN) {
		return nil
	}
	if rv, ok := rvOf(err); ok {
		switch rv {
		case pkcs11.CKR_PIN_INCORRECT, pkcs11.CKR_PIN_INVALID, pkcs11.CKR_PIN_LEN_RANGE,
			pkcs11.CKR_PIN_LOCKED, pkcs11.CKR_PIN_EXPIRED, pkcs11.CKR_USER_PIN_NOT_INITIALIZED:
			return opErr("login", "", t.name, ErrBadPIN, p11.Error(rv))
		}
	}
	return t.wrapErr("login", err)
}

// wrapErr maps a PKCS#11 error onto the vault's error kinds.
func (t *token) wrapErr(op string, err error) error {
	var oe *OpError
	if errors.As(err, &oe) {
		return err
	}
	switch classify(err) {
	case classTokenGone, classSessionLost:
		return opErr(op, "", t.name, ErrTokenUnavailable, err)
	}
	if rv, ok := rvOf(err); ok {
		switch rv {
		case pkcs11.CKR_ENCRYPTED_DATA_INVALID, pkcs11.CKR_ENCRYPTED_DATA_LEN_RANGE:
			return opErr(op, "", t.name, ErrIntegrity, err)
		case pkcs11.CKR_MECHANISM_INVALID, pkcs11.CKR_MECHANISM_PARAM_INVALID:
			return opErr(op, "", t.name, ErrMechanismMissing, err)
		}
	}
	return opErr(op, "", t.name, ErrToken, err)
}

// do runs f on a pooled session. Lost sessions are reopened, a logged-out token is logged in
// again, a removed and re-inserted token is found again, and stale object handles are dropped;
// f is retried (at most twice) after each recovery. f must be safe to repeat.
func (t *token) do(op string, f func(ctx *p11.Ctx, s p11.SessionHandle) error) error {
	var last error
	for attempt := 0; attempt < 3; attempt++ {
		s, err := t.borrow()
		if err != nil {
			last = err
			if errors.Is(err, ErrTokenUnavailable) && attempt < 2 {
				t.reset()
				if t.findSlot() == nil {
					continue
				}
			}
			break
		}
		err = f(t.mod.ctx, s)
		if err == nil {
			t.giveBack(s)
			return nil
		}
		last = err
		switch classify(err) {
		case classSessionLost:
			t.log.Warn("keyvault: token session lost; reopening", "token", t.name, "op", op)
			t.discard(s)
			t.reset()
			continue
		case classNotLoggedIn:
			t.log.Warn("keyvault: token logged out; logging in again", "token", t.name, "op", op)
			lerr := t.login(s)
			t.giveBack(s)
			if lerr != nil {
				return lerr
			}
			continue
		case classTokenGone:
			t.log.Warn("keyvault: token removed or failing; searching again", "token", t.name, "op", op)
			t.discard(s)
			t.reset()
			if ferr := t.findSlot(); ferr != nil {
				last = ferr
				if attempt < 2 {
					continue
				}
			}
			continue
		case classHandleInvalid:
			t.giveBack(s)
			t.dropHandles()
			continue
		}
		t.giveBack(s)
		return t.wrapErr(op, err)
	}
	return t.wrapErr(op, last)
}

// reset closes idle sessions (they are probably dead) and forgets cached object handles.
func (t *token) reset() {
	t.mu.Lock()
	idle := t.idle
	t.idle = nil
	t.handles = map[string]p11.ObjectHandle{}
	t.mu.Unlock()
	for _, s := range idle {
		_ = t.mod.ctx.CloseSession(s)
	}
}

func (t *token) dropHandles() {
	t.mu.Lock()
	t.handles = map[string]p11.ObjectHandle{}
	t.mu.Unlock()
}

// objSel selects one token object of a class: by CKA_LABEL, by CKA_ID, or by both.
type objSel struct {
	label string
	id    []byte // nil: any CKA_ID
	byID  bool   // label == "" and id set: the label is not part of the selection
}

func (o objSel) template(class uint) []*p11.Attribute {
	tmpl := []*p11.Attribute{p11.NewAttribute(pkcs11.CKA_CLASS, class)}
	if !o.byID {
		tmpl = append(tmpl, p11.NewAttribute(pkcs11.CKA_LABEL, o.label))
	}
	if len(o.id) > 0 {
		tmpl = append(tmpl, p11.NewAttribute(pkcs11.CKA_ID, o.id))
	}
	return tmpl
}

// name is how the selection appears in errors (the label, else the ID in hex).
func (o objSel) name() string {
	if o.byID {
		return "id=" + hex.EncodeToString(o.id)
	}
	return o.label
}

// findObject returns the handle of the single object with the given class and label, from the
// cache when possible. It returns ErrKeyNotFound if there is none.
func (t *token) findObject(ctx *p11.Ctx, s p11.SessionHandle, class uint, label string) (p11.ObjectHandle, error) {
	return t.findSel(ctx, s, class, objSel{label: label})
}

// findSel returns the handle of the single object of the class that the selection names, from
// the cache when possible: ErrKeyNotFound if there is none, ErrConfig if several match.
func (t *token) findSel(ctx *p11.Ctx, s p11.SessionHandle, class uint, sel objSel) (p11.ObjectHandle, error) {
	key := strconv.FormatUint(uint64(class), 16) + "/" + strconv.FormatBool(sel.byID) + "/" + hex.EncodeToString(sel.id) + "/" + sel.label
	t.mu.Lock()
	h, ok := t.handles[key]
	t.mu.Unlock()
	if ok {
		return h, nil
	}
	hs, err := findAll(ctx, s, sel.template(class), 2)
	if err != nil {
		return 0, err
	}
	switch len(hs) {
	case 0:
		return 0, opErr("find", sel.name(), t.name, ErrKeyNotFound, nil)
	case 1:
	default:
		return 0, opErr("find", sel.name(), t.name, ErrConfig, errorf(ErrConfig, "several objects match the label and id"))
	}
	t.mu.Lock()
	t.handles[key] = hs[0]
	t.mu.Unlock()
	return hs[0], nil
}

func findAll(ctx *p11.Ctx, s p11.SessionHandle, tmpl []*p11.Attribute, max int) ([]p11.ObjectHandle, error) {
	if err := ctx.FindObjectsInit(s, tmpl); err != nil {
		return nil, err
	}
	var out []p11.ObjectHandle
	for len(out) < max {
		hs, _, err := ctx.FindObjects(s, 64)
		if err != nil {
			_ = ctx.FindObjectsFinal(s)
			return nil, err
		}
		if len(hs) == 0 {
			break
		}
		out = append(out, hs...)
	}
	if err := ctx.FindObjectsFinal(s); err != nil {
		return nil, err
	}
	if len(out) > max {
		out = out[:max]
	}
	return out, nil
}

func (t *token) setHealth(err error) {
	healthy := err == nil
	prev := t.healthy.Swap(healthy)
	if err != nil {
		t.lastErr.Store(err.Error())
	} else {
		t.lastErr.Store("")
	}
	t.checked.Store(time.Now().UnixNano())
	if prev != healthy {
		if healthy {
			t.log.Info("keyvault: token healthy", "token", t.name)
		} else {
			t.log.Error("keyvault: token unhealthy", "token", t.name, "error", err)
		}
	}
	t.obs.ObserveTokenHealth(t.name, healthy)
}

// ping checks the token: token info plus one session round trip (with re-login/reopen).
func (t *token) ping() error {
	err := t.do("health", func(ctx *p11.Ctx, s p11.SessionHandle) error {
		info, err := ctx.GetSessionInfo(s)
		if err != nil {
			return err
		}
		if info.State != pkcs11.CKS_RO_USER_FUNCTIONS && info.State != pkcs11.CKS_RW_USER_FUNCTIONS {
			return p11.Error(pkcs11.CKR_USER_NOT_LOGGED_IN)
		}
		if t.native == nil && t.blobDir == "" {
			// Wrapped mode needs the KEK: make sure it is still there.
			if _, err := t.findObject(ctx, s, pkcs11.CKO_SECRET_KEY, t.kekLabel); err != nil && (t.requireKEK || !errors.Is(err, ErrKeyNotFound)) {
				return err
			}
		}
		return nil
	})
	t.setHealth(err)
	return err
}

func (t *token) status() TokenStatus {
	t.mu.Lock()
	st := TokenStatus{Name: t.name, Module: t.cfg.Module, Label: t.label, Serial: t.serial, Slot: t.slot,
		Mode: t.cfg.Mode, IdleSessions: len(t.idle)}
	t.mu.Unlock()
	st.InUseSessions = len(t.sem)
	st.Healthy = t.healthy.Load()
	if s, ok := t.lastErr.Load().(string); ok {
		st.Error = s
	}
	if n := t.checked.Load(); n != 0 {
		st.CheckedAt = time.Unix(0, n).UTC()
	}
	return st
}

// close closes the pooled sessions (never C_Logout or C_CloseAllSessions: another vault of the
// same process, e.g. during a Caddy reload, may share the login), zeroizes the PIN and releases
// the module.
func (t *token) close() {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	t.closed = true
	idle := t.idle
	t.idle = nil
	t.mu.Unlock()
	if t.mod != nil {
		for _, s := range idle {
			_ = t.mod.ctx.CloseSession(s)
		}
	}
	t.pinMu.Lock()
	zero(t.pin)
	t.pinMu.Unlock()
	if t.mod != nil {
		// Wait briefly for borrowed sessions to come back before unloading the module.
		deadline := time.Now().Add(time.Duration(t.cfg.BorrowTimeout))
		for len(t.sem) > 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		releaseModule(t.mod)
	}
}

// TokenStatus is the health of one token.
type TokenStatus struct {
	Name          string    `json:"name"`
	Module        string    `json:"module"`
	Label         string    `json:"label"`
	Serial        string    `json:"serial"`
	Slot          uint      `json:"slot"`
	Mode          string    `json:"mode"`
	Healthy       bool      `json:"healthy"`
	Error         string    `json:"error,omitempty"`
	CheckedAt     time.Time `json:"checked_at"`
	IdleSessions  int       `json:"idle_sessions"`
	InUseSessions int       `json:"in_use_sessions"`
}

// String renders the status for people.
func (s TokenStatus) String() string {
	state := "healthy"
	if !s.Healthy {
		state = "UNHEALTHY: " + s.Error
	}
	return s.Name + " (label " + s.Label + ", serial " + s.Serial + ", " + s.Mode + "): " + state
}

// trimInfo drops the blank padding of a CK_*_INFO text field.
func trimInfo(s string) string { return strings.TrimRight(s, " \x00") }
