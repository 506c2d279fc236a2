package keyvault

import (
	"errors"
	"strings"
	"testing"

	"github.com/gmgate/gmgate/keyvault/internal/p11"
)

// A build without cgo (p11.Available false) cannot load a PKCS#11 module: it refuses, from the
// configuration alone, every token and every pkcs11: key reference with ErrModuleLoad and a
// message naming the cause, and accepts file: keys. With cgo nothing is refused here.
// integration/nocgo_test.go runs the same through a CGO_ENABLED=0 gmgate binary.
func TestCheckPKCS11WithoutCgo(t *testing.T) {
	token := TokenConfig{Name: "hsm1", Module: "/usr/lib/softhsm/libsofthsm2.so", TokenLabel: "gmgate"}
	hsmKey := KeyConfig{Name: "server-sign", Type: KeyTypeSM2, Ref: "pkcs11:token=gmgate;object=server-sign"}
	fileKey := KeyConfig{Name: "platform-sign", Type: KeyTypeSM2, Ref: "file:/etc/gmgate/platform.key"}
	const msg = "this gmgate was built without cgo (CGO_ENABLED=0): PKCS#11 tokens are unavailable; use file: keys or a cgo build"
	for _, tc := range []struct {
		name    string
		cfg     Config
		refused string // "" when accepted without cgo
	}{
		{"token and its key", Config{Tokens: []TokenConfig{token}, Keys: []KeyConfig{hsmKey, fileKey}}, "token=hsm1"},
		{"token without keys", Config{Tokens: []TokenConfig{token}}, "token=hsm1"},
		{"pkcs11 reference without a token", Config{Keys: []KeyConfig{fileKey, hsmKey}}, "key=server-sign"},
		{"upper-case scheme", Config{Keys: []KeyConfig{{Name: "k", Type: KeyTypeSM2, Ref: "PKCS11:object=k"}}}, "key=k"},
		{"file keys only", Config{Keys: []KeyConfig{fileKey}}, ""},
		{"empty", Config{}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := checkPKCS11(tc.cfg, true); err != nil {
				t.Fatalf("with cgo: %v", err)
			}
			err := checkPKCS11(tc.cfg, false)
			if tc.refused == "" {
				if err != nil {
					t.Fatalf("without cgo: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("without cgo: accepted")
			}
			if !errors.Is(err, ErrModuleLoad) || ErrorKind(err) != "module_load" {
				t.Fatalf("without cgo: %v is not ErrModuleLoad", err)
			}
			if s := err.Error(); !strings.Contains(s, msg) || !strings.Contains(s, tc.refused) {
				t.Fatalf("without cgo: %q does not name %q and the cause", s, tc.refused)
			}
		})
	}
}

// The vault applies the check of this build: a cgo build refuses no token for want of cgo (the
// SoftHSM2 tests open real ones), a build without cgo refuses them at Open before any module,
// PIN or key file is touched.
func TestOpenWithoutCgoRefusesTokens(t *testing.T) {
	cfg := Config{Tokens: []TokenConfig{{Name: "hsm1", Module: "/nonexistent/libpkcs11.so", TokenLabel: "gmgate", PINEnv: "GMGATE_TEST_NO_SUCH_PIN"}}}
	_, err := Open(cfg)
	if err == nil {
		t.Fatal("Open accepted a token whose module does not exist")
	}
	nocgo := strings.Contains(err.Error(), "built without cgo")
	switch {
	case p11.Available && nocgo:
		t.Fatalf("a cgo build refused the token for want of cgo: %v", err)
	case !p11.Available && (!nocgo || !errors.Is(err, ErrModuleLoad)):
		t.Fatalf("a build without cgo: Open: %v, want ErrModuleLoad naming cgo", err)
	}
}
