// Package testenv finds what gmgate's tests need from outside the repository: the independent
// interop data in ../shared/interop and the Tongsuo binary in ../shared/tools/tongsuo. When one
// is missing a test skips on a developer machine, and fails when GMGATE_REQUIRE_SERVICES=1 (the
// test script and CI), so that an interop result can never be lost silently.
package testenv

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// Required reports whether missing services and data must fail the tests
// (GMGATE_REQUIRE_SERVICES=1).
func Required() bool { return os.Getenv("GMGATE_REQUIRE_SERVICES") == "1" }

// Missing fails the test under Required, and skips it otherwise.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if Required() {
		t.Fatalf("GMGATE_REQUIRE_SERVICES=1: "+format, args...)
	}
	t.Skipf(format, args...)
}

// RepoRoot is the repository root (the directory holding go.mod).
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// SharedDir is ../shared beside the repository (GMGATE_SHARED_DIR overrides it).
func SharedDir() string {
	if d := os.Getenv("GMGATE_SHARED_DIR"); d != "" {
		return d
	}
	return filepath.Join(RepoRoot(), "..", "shared")
}

// InteropDir returns ../shared/interop/<sub...>, or fails/skips when it is absent.
func InteropDir(t testing.TB, sub ...string) string {
	t.Helper()
	dir := filepath.Join(append([]string{SharedDir(), "interop"}, sub...)...)
	if _, err := os.Stat(dir); err != nil {
		Missing(t, "interop data %s is absent: %v", dir, err)
	}
	return dir
}

// TongsuoBin returns the Tongsuo binary and sets OPENSSL_CONF for its commands, or fails/skips
// when it is absent.
func TongsuoBin(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(SharedDir(), "tools", "tongsuo")
	bin := filepath.Join(dir, "tongsuo")
	if st, err := os.Stat(bin); err != nil || st.Mode()&0o111 == 0 {
		Missing(t, "Tongsuo binary %s is absent or not executable: %v", bin, err)
	}
	t.Setenv("OPENSSL_CONF", filepath.Join(dir, "openssl.cnf"))
	return bin
}
