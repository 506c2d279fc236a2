package keyvault

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/emmansun/gmsm/sm2"
	"github.com/gmgate/gmgate/keyvault/internal/p11"
	"github.com/miekg/pkcs11"
)

// helperCtx is a second handle on the SoftHSM2 module, used to break things behind the
// vault's back. It shares the process-wide C_Initialize with the vault and never finalizes.
func helperCtx(t testing.TB) *p11.Ctx {
	t.Helper()
	ctx := p11.New(softhsmModule)
	if ctx == nil {
		t.Fatal("cannot load SoftHSM2 module")
	}
	if err := ctx.Initialize(); err != nil && !isRV(err, pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		t.Fatal(err)
	}
	t.Cleanup(ctx.Destroy)
	return ctx
}

// destroyObjects deletes every object with the given class and label from a slot.
func destroyObjects(t testing.TB, ctx *p11.Ctx, slot uint, class uint, label string) int {
	t.Helper()
	s, err := ctx.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		t.Fatal(err)
	}
	defer ctx.CloseSession(s)
	if err := ctx.Login(s, pkcs11.CKU_USER, testPIN); err != nil && !isRV(err, pkcs11.CKR_USER_ALREADY_LOGGED_IN) {
		t.Fatal(err)
	}
	hs, err := findAll(ctx, s, []*p11.Attribute{p11.NewAttribute(pkcs11.CKA_CLASS, class), p11.NewAttribute(pkcs11.CKA_LABEL, label)}, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hs {
		if err := ctx.DestroyObject(s, h); err != nil {
			t.Fatal(err)
		}
	}
	return len(hs)
}

func TestOpenFaults(t *testing.T) {
	needHSM(t)
	// A key that exists on kv-main, for the cases that need one.
	good := openWith(t, "wrapped", newSM2(t), make([]byte, 16), "")
	goodRef := good.keys["sign"].cfg.Ref
	notLib := filepath.Join(t.TempDir(), "notalib.so")
	os.WriteFile(notLib, []byte("not an ELF file"), 0o600)
	pinFile := filepath.Join(t.TempDir(), "pin")
	os.WriteFile(pinFile, []byte("999999\n"), 0o600)

	key := func(ref string) []KeyConfig { return []KeyConfig{{Name: "k", Type: KeyTypeSM2, Ref: ref}} }
	cases := []struct {
		name  string
		cfg   Config
		errIs error
	}{
		{"wrong PIN", Config{Tokens: []TokenConfig{func() TokenConfig { c := tokenCfg("p", tokPIN); c.PINEnv = badPINEnv; return c }()}}, ErrBadPIN},
		{"wrong PIN from file", Config{Tokens: []TokenConfig{func() TokenConfig { c := tokenCfg("p", tokPIN); c.PINEnv = ""; c.PINFile = pinFile; return c }()}}, ErrBadPIN},
		{"PIN env unset", Config{Tokens: []TokenConfig{func() TokenConfig { c := tokenCfg("p", tokPIN); c.PINEnv = "KV_NO_SUCH_ENV"; return c }()}}, ErrConfig},
		{"no PIN source", Config{Tokens: []TokenConfig{func() TokenConfig { c := tokenCfg("p", tokPIN); c.PINEnv = ""; return c }()}}, ErrConfig},
		{"module path missing", Config{Tokens: []TokenConfig{func() TokenConfig { c := tokenCfg("m", tokMain); c.Module = "/nonexistent/libpkcs11.so"; return c }()}}, ErrModuleLoad},
		{"module not a library", Config{Tokens: []TokenConfig{func() TokenConfig { c := tokenCfg("m", tokMain); c.Module = notLib; return c }()}}, ErrModuleLoad},
		{"token absent", Config{Tokens: []TokenConfig{tokenCfg("x", "no-such-token")}}, ErrTokenUnavailable},
		{"ambiguous label", Config{Tokens: []TokenConfig{tokenCfg("x", tokPair)}}, ErrConfig},
		{"missing object", Config{Tokens: []TokenConfig{tokenCfg("main", tokMain)}, Keys: key("pkcs11:token=" + tokMain + ";object=does-not-exist")}, ErrKeyNotFound},
		{"ref to unknown token", Config{Tokens: []TokenConfig{tokenCfg("main", tokMain)}, Keys: key("pkcs11:token=elsewhere;object=x")}, ErrConfig},
		{"inline PIN in ref", Config{Tokens: []TokenConfig{tokenCfg("main", tokMain)}, Keys: key(goodRef + "?pin-value=123456")}, ErrBadReference},
		{"bad scheme", Config{Keys: key("http://x")}, ErrBadReference},
		{"missing file", Config{Keys: key("file:/nonexistent/key.pem")}, ErrKeyNotFound},
		{"duplicate key names", Config{Keys: append(key("file:/a"), key("file:/b")...)}, ErrConfig},
		{"bad type", Config{Keys: []KeyConfig{{Name: "k", Type: "rsa", Ref: "file:/a"}}}, ErrConfig},
		{"native preset without GM mechanisms", Config{Tokens: []TokenConfig{func() TokenConfig {
			c := tokenCfg("n", tokMain)
			c.Mode, c.Preset = ModeNative, "gmt0016"
			return c
		}()}}, ErrMechanismMissing},
		{"native unknown preset", Config{Tokens: []TokenConfig{func() TokenConfig {
			c := tokenCfg("n", tokMain)
			c.Mode, c.Preset = ModeNative, "acme"
			return c
		}()}}, ErrConfig},
		{"native luna without sign mechanisms", Config{Tokens: []TokenConfig{func() TokenConfig {
			c := tokenCfg("n", tokMain)
			c.Mode, c.Preset = ModeNative, "luna"
			return c
		}()}}, ErrConfig},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v, err := Open(c.cfg)
			if err == nil {
				v.Close()
			}
			mustKind(t, err, c.errIs)
			if strings.Contains(err.Error(), testPIN) || strings.Contains(err.Error(), "999999") {
				t.Fatalf("PIN leaked into error: %v", err)
			}
		})
	}
	// The good vault still works after all of that (shared module stayed initialised).
	s, _ := good.Signer("sign")
	if _, err := s.Sign(rand.Reader, []byte("m"), nil); err != nil {
		t.Fatal(err)
	}
	if h := good.Health(); len(h) != 1 || !h[0].Healthy {
		t.Fatalf("health: %+v", h)
	}
}

// TestNativeMechanismCheckPasses uses a custom native profile naming mechanisms SoftHSM2 does
// have, proving the C_GetMechanismList path accepts a complete token; no SM2 objects exist so
// loading a key then reports ErrKeyNotFound (never a wrong key).
func TestNativeMechanismCheckPasses(t *testing.T) {
	needHSM(t)
	c := tokenCfg("n", tokMain)
	c.Mode = ModeNative
	c.Mechanisms = &MechanismConfig{KeyTypeSM2: 0x80000004, SM2SignDigest: pkcs11.CKM_ECDSA, SM2Decrypt: pkcs11.CKM_AES_GCM}
	v, err := Open(Config{Tokens: []TokenConfig{c}})
	if err != nil {
		t.Fatalf("mechanism check rejected a complete profile: %v", err)
	}
	v.Close()
	_, err = Open(Config{Tokens: []TokenConfig{c}, Keys: []KeyConfig{{Name: "k", Type: KeyTypeSM2, Ref: "pkcs11:token=" + tokMain + ";object=none"}}})
	mustKind(t, err, ErrKeyNotFound)
}

// TestBlobIntegrity tampers with directory-stored blobs: a flipped bit and a blob moved to
// another version's name (the additional data binds name, version and purpose) both fail.
func TestBlobIntegrity(t *testing.T) {
	needHSM(t)
	dir := t.TempDir()
	tc := tokenCfg("main", tokMain)
	tc.BlobStore = dir
	obj := uniqueObject("integ")
	cfg := Config{Tokens: []TokenConfig{tc}, Keys: []KeyConfig{{Name: "k", Type: KeyTypeSM2, Ref: "pkcs11:token=" + tokMain + ";object=" + obj}}}
	admin, err := Open(cfg, WithAdmin())
	if err != nil {
		t.Fatal(err)
	}
	admin.Init("")
	if _, err := admin.Generate("k"); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Rotate("k"); err != nil {
		t.Fatal(err)
	}
	admin.Close()
	p1 := filepath.Join(dir, "main", obj+"@1.blob")
	p2 := filepath.Join(dir, "main", obj+"@2.blob")
	orig1, _ := os.ReadFile(p1)
	orig2, _ := os.ReadFile(p2)
	if bytes.Contains(orig1, []byte("PRIVATE")) || len(orig1) != 5+12+32+16 {
		t.Fatalf("unexpected blob layout (%d bytes)", len(orig1))
	}
	cases := []struct {
		name string
		b1   []byte
	}{
		{"flipped ciphertext bit", func() []byte { b := bytes.Clone(orig1); b[len(b)-20] ^= 1; return b }()},
		{"flipped IV bit", func() []byte { b := bytes.Clone(orig1); b[6] ^= 1; return b }()},
		{"version swapped", orig2},
		{"truncated", orig1[:20]},
		{"bad magic", append([]byte("XXXX"), orig1[4:]...)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			os.WriteFile(p1, c.b1, 0o600)
			defer os.WriteFile(p1, orig1, 0o600)
			_, err := Open(cfg)
			mustKind(t, err, ErrIntegrity)
		})
	}
	v, err := Open(cfg)
	if err != nil {
		t.Fatalf("restored blobs: %v", err)
	}
	v.Close()
}

// TestSessionInvalidated closes every session of the slot behind the pool's back (which also
// logs the application out), then uses the vault: the pool reopens and logs in again.
func TestSessionInvalidated(t *testing.T) {
	needHSM(t)
	obs := newRecObserver()
	obj := uniqueObject("sess")
	cfg := Config{Tokens: []TokenConfig{tokenCfg("sess", tokSess)}, Keys: []KeyConfig{
		{Name: "k", Type: KeyTypeSM2, Ref: "pkcs11:token=" + tokSess + ";object=" + obj}}}
	admin, err := Open(cfg, WithAdmin())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	admin.Init("")
	if _, err := admin.Generate("k"); err != nil {
		t.Fatal(err)
	}
	v, err := Open(cfg, WithObserver(obs))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	slot := v.tokens[0].slot
	ctx := helperCtx(t)
	signer, _ := v.Signer("k")
	pub := signer.Public().(*ecdsa.PublicKey)

	for round := 0; round < 3; round++ {
		if err := ctx.CloseAllSessions(slot); err != nil {
			t.Fatal(err)
		}
		// Token round trips recover: health, rotate (list + wrap + store), reload (unwrap).
		if h := v.Health(); !h[0].Healthy {
			t.Fatalf("round %d: health after invalidation: %+v", round, h[0])
		}
		ctx.CloseAllSessions(slot)
		if _, err := admin.Rotate("k"); err != nil {
			t.Fatalf("round %d: rotate after invalidation: %v", round, err)
		}
		ctx.CloseAllSessions(slot)
		if err := v.Reload(); err != nil {
			t.Fatalf("round %d: reload after invalidation: %v", round, err)
		}
		// And the in-memory key keeps signing correctly throughout.
		sig, err := signer.Sign(rand.Reader, []byte("after"), nil)
		if err != nil || !sm2.VerifyASN1WithSM2(pub, nil, []byte("after"), sig) {
			t.Fatalf("sign after invalidation: %v", err)
		}
	}
	if _, cur, _ := v.Versions("k"); cur != 4 {
		t.Fatalf("current version %d, want 4", cur)
	}

	// Invalidation followed by many goroutines hitting the dead pool at once: every one
	// recovers. (Closing sessions *while* another thread is inside a call on them crashes
	// SoftHSM2 2.6 itself, so invalidation happens between bursts, as a real HSM reset would.)
	for round := 0; round < 5; round++ {
		if err := ctx.CloseAllSessions(slot); err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		var failures []error
		var workers sync.WaitGroup
		for g := 0; g < 8; g++ {
			workers.Add(1)
			go func() {
				defer workers.Done()
				if err := v.Reload(); err != nil {
					mu.Lock()
					failures = append(failures, err)
					mu.Unlock()
				}
				v.Health()
			}()
		}
		workers.Wait()
		if len(failures) > 0 {
			t.Fatalf("round %d: %d reloads failed after invalidation: %v", round, len(failures), failures[0])
		}
	}
	if h := v.Health(); !h[0].Healthy {
		t.Fatalf("not healthy after the bursts: %+v", h[0])
	}
}

// TestFailover stores the same keys on two tokens, breaks one, and checks that loading fails
// over to the other with the same key material, and that a token absent at start-up does not
// stop the vault.
func TestFailover(t *testing.T) {
	needHSM(t)
	serials := hsm.serials[tokPair]
	ta := tokenCfg("a", "")
	ta.TokenSerial = serials[0]
	tb := tokenCfg("b", "")
	tb.TokenSerial = serials[1]
	ta.KEKLabel, tb.KEKLabel = "kek-fo-"+randHex(3), "kek-fo-"+randHex(3)
	o2, o4 := uniqueObject("fo2"), uniqueObject("fo4")
	cfg := Config{Tokens: []TokenConfig{ta, tb}, Keys: []KeyConfig{
		{Name: "sign", Type: KeyTypeSM2, Ref: "pkcs11:token=" + tokPair + ";object=" + o2},
		{Name: "sym", Type: KeyTypeSM4, Ref: "pkcs11:token=" + tokPair + ";object=" + o4},
	}}
	admin, err := Open(cfg, WithAdmin())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if res, err := admin.Init(""); err != nil || len(res) != 2 {
		t.Fatalf("init both: %v %v", res, err)
	}
	info, err := admin.Generate("sign")
	if err != nil || len(info.Tokens) != 2 {
		t.Fatalf("generate on both: %+v %v", info, err)
	}
	if _, err := admin.Generate("sym"); err != nil {
		t.Fatal(err)
	}
	wantPub, _ := admin.PublicKey("sign")
	s4, _ := admin.SM4("sym")
	sealed, _ := s4.SealGCM([]byte("replicated"), nil)

	check := func(t *testing.T, v *Vault) {
		t.Helper()
		signer, err := v.Signer("sign")
		if err != nil {
			t.Fatal(err)
		}
		if !signer.Public().(*ecdsa.PublicKey).Equal(wantPub) {
			t.Fatal("failover produced a different key")
		}
		sig, err := signer.Sign(rand.Reader, []byte("m"), nil)
		if err != nil || !sm2.VerifyASN1WithSM2(wantPub.(*ecdsa.PublicKey), nil, []byte("m"), sig) {
			t.Fatalf("sign: %v", err)
		}
		k4, _ := v.SM4("sym")
		if pt, err := k4.OpenGCM(sealed, nil); err != nil || string(pt) != "replicated" {
			t.Fatalf("sm4 after failover: %v", err)
		}
	}

	// Both healthy: every key loads and health reports both.
	obs := newRecObserver()
	v, err := Open(cfg, WithObserver(obs))
	if err != nil {
		t.Fatal(err)
	}
	check(t, v)
	if h := v.Health(); len(h) != 2 || !h[0].Healthy || !h[1].Healthy {
		t.Fatalf("health: %+v", h)
	}
	v.Close()

	// Token a loses its KEK (a failed or wiped HSM): loading fails over to b.
	ctx := helperCtx(t)
	if n := destroyObjects(t, ctx, admin.byName["a"].slot, pkcs11.CKO_SECRET_KEY, ta.KEKLabel); n != 1 {
		t.Fatalf("destroyed %d KEKs", n)
	}
	admin.byName["a"].dropHandles()
	for i := 0; i < 2; i++ {
		obs := newRecObserver()
		v, err := Open(cfg, WithObserver(obs))
		if err != nil {
			t.Fatalf("open with one broken replica: %v", err)
		}
		check(t, v)
		if obs.failoverCount() == 0 {
			t.Fatal("no failover observed although token a cannot unwrap")
		}
		h := v.Health()
		if h[0].Healthy || !h[1].Healthy {
			t.Fatalf("health should flag a only: %+v", h)
		}
		if !obs.health["b"] || obs.health["a"] {
			t.Fatalf("observer health: %v", obs.health)
		}
		v.Close()
	}

	// Rotation with a broken replica reports the partial store; the new version lives on b and a
	// fresh vault loads the freshest replica.
	_, err = admin.Rotate("sign")
	mustKind(t, err, ErrTokenUnavailable)
	if !strings.Contains(err.Error(), "[b]") {
		t.Fatalf("partial-store error should name b: %v", err)
	}

	// Token a absent at start-up (serial no longer present): the vault runs on b.
	tgone := ta
	tgone.TokenSerial = "0000000000000000"
	cfg2 := cfg
	cfg2.Tokens = []TokenConfig{tgone, tb}
	v, err = Open(cfg2)
	if err != nil {
		t.Fatalf("open with one token absent: %v", err)
	}
	defer v.Close()
	signer, _ := v.Signer("sign")
	sig, err := signer.Sign(rand.Reader, []byte("m"), nil)
	if err != nil || !sm2.VerifyASN1WithSM2(signer.Public().(*ecdsa.PublicKey), nil, []byte("m"), sig) {
		t.Fatalf("sign with one token absent: %v", err)
	}
	if _, cur, _ := v.Versions("sign"); cur != 2 {
		t.Fatalf("expected the rotated version from b, current=%d", cur)
	}
	h := v.Health()
	if len(h) != 2 || h[0].Name != "b" || !h[0].Healthy || h[1].Name != "a" || h[1].Healthy {
		t.Fatalf("health with absent token: %+v", h)
	}

	// Both replicas unusable: a clear error, never a key.
	cfg3 := cfg
	cfg3.Tokens = []TokenConfig{tgone, func() TokenConfig { c := tb; c.TokenSerial = "1111111111111111"; return c }()}
	_, err = Open(cfg3)
	mustKind(t, err, ErrTokenUnavailable)
}

func privTemplate(label string) []*p11.Attribute {
	return []*p11.Attribute{p11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY), p11.NewAttribute(pkcs11.CKA_LABEL, label)}
}

func valueTemplate() []*p11.Attribute {
	return []*p11.Attribute{p11.NewAttribute(pkcs11.CKA_VALUE, nil)}
}
