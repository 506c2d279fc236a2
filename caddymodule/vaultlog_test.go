package caddymodule

import (
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gmgate/gmgate/keyvault"
)

// TestVaultLogLinesNamed: every line the vault logs through the app's logger carries a logger
// name (the file backend logs a DEVELOPMENT ONLY warning on every load).
func TestVaultLogLinesNamed(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	appLogger := zap.New(core).Named("gmgate")
	dir := t.TempDir()
	keyPath := filepath.Join(dir, "sym.key")
	if err := os.WriteFile(keyPath, []byte("30313233343536373839616263646566\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := keyvault.Open(keyvault.Config{Keys: []keyvault.KeyConfig{{Name: "sym", Type: keyvault.KeyTypeSM4, Ref: "file:" + keyPath}}},
		keyvault.WithLogger(vaultLogger(appLogger)))
	if err != nil {
		t.Fatal(err)
	}
	v.Close()
	if logs.Len() == 0 {
		t.Fatal("the vault logged nothing; the test cannot see the logger name")
	}
	for _, e := range logs.All() {
		if e.LoggerName != "gmgate.keyvault" {
			t.Errorf("vault log line %q has logger name %q, want gmgate.keyvault", e.Message, e.LoggerName)
		}
	}
	// A logger without a name still gives the vault lines one.
	core2, logs2 := observer.New(zapcore.DebugLevel)
	vaultLogger(zap.New(core2)).Warn("x")
	if e := logs2.All(); len(e) != 1 || e[0].LoggerName != "keyvault" {
		t.Fatalf("unnamed app logger: %+v", e)
	}
}
