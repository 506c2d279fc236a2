package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gmgate/gmgate/pki"
)

// noCgoRefusal is what a gmgate built with CGO_ENABLED=0 answers to any PKCS#11 token.
const noCgoRefusal = "cannot load PKCS#11 module: this gmgate was built without cgo (CGO_ENABLED=0): " +
	"PKCS#11 tokens are unavailable; use file: keys or a cgo build"

// TestBuildWithoutCgo builds gmgate with CGO_ENABLED=0 (as the README's Install section does for
// a static binary) and runs it: `version` works; the development default (Caddyfile.example)
// and a vault of file: keys validate, and `vault list` loads the file key; a configuration
// declaring a PKCS#11 token fails closed in `validate` and `vault list` with the refusal naming
// cgo, where the cgo binary reports its own reason (the module does not exist) instead.
func TestBuildWithoutCgo(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "gmgate-nocgo")
	build := exec.Command("go", "build", "-o", bin, "../cmd/gmgate")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("CGO_ENABLED=0 go build ./cmd/gmgate: %v\n%s", err, out)
	}
	if out, err := exec.Command("go", "version", "-m", bin).CombinedOutput(); err != nil ||
		!strings.Contains(string(out), "CGO_ENABLED=0") {
		t.Fatalf("go version -m: the binary does not record CGO_ENABLED=0: %v\n%s", err, out)
	}

	env := append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+filepath.Join(dir, "data"),
		"XDG_CONFIG_HOME="+filepath.Join(dir, "config"))
	run := func(bin string, args ...string) (string, error) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = env
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	write := func(name, text string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}

	if out, err := run(bin, "version"); err != nil || !strings.Contains(out, "v2.11.9") {
		t.Fatalf("version: %v\n%s", err, out)
	}

	// The development default: development PKI and software vault, every listener and handler
	// of the example provisioned.
	example, err := filepath.Abs("../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := run(bin, "validate", "--config", example, "--adapter", "caddyfile"); err != nil ||
		!strings.Contains(out, "Valid configuration") {
		t.Fatalf("validate Caddyfile.example without cgo: %v\n%s", err, out)
	}

	// A vault of file: keys (the development PKI's platform pair, written by the run above).
	devDir := filepath.Join(dir, "data", "caddy", "gmgate", "devpki")
	fileCfg := write("Caddyfile.file", fmt.Sprintf(`{
	admin off
	gmgate {
		vault {
			key platform-sign "file:%s" {
				certificate %s
			}
		}
	}
}
`, filepath.Join(devDir, pki.DevPlatformBase+".key"), filepath.Join(devDir, pki.DevPlatformBase+".pem")))
	if out, err := run(bin, "validate", "--config", fileCfg, "--adapter", "caddyfile"); err != nil {
		t.Fatalf("validate a vault of file: keys without cgo: %v\n%s", err, out)
	}
	if out, err := run(bin, "vault", "list", "--config", fileCfg, "--adapter", "caddyfile"); err != nil ||
		!strings.Contains(out, "platform-sign (sm2, file)") || !strings.Contains(out, "+certificate") {
		t.Fatalf("vault list of file: keys without cgo: %v\n%s", err, out)
	}

	// A PKCS#11 token: refused, whatever the token, module or PIN.
	pin := write("pin", "123456\n")
	hsmCfg := write("Caddyfile.hsm", fmt.Sprintf(`{
	admin off
	gmgate {
		vault {
			token hsm1 {
				module %s
				label gmgate
				pin_file %s
				mode wrapped
			}
			key platform-sign "pkcs11:token=gmgate;object=platform-sign"
		}
	}
}
`, filepath.Join(dir, "no-such-libpkcs11.so"), pin))
	for _, args := range [][]string{{"validate"}, {"vault", "list"}} {
		args = append(args, "--config", hsmCfg, "--adapter", "caddyfile")
		out, err := run(bin, args...)
		if err == nil || !strings.Contains(out, noCgoRefusal) || !strings.Contains(out, "token=hsm1") {
			t.Fatalf("%s with a PKCS#11 token without cgo: err=%v, want the refusal %q\n%s", args[0], err, noCgoRefusal, out)
		}
		if strings.Contains(out, "Valid configuration") {
			t.Fatalf("%s: refused and called valid\n%s", args[0], out)
		}
	}
	// The refusal is this build's: the cgo binary goes on to the module, which does not exist.
	out, err := run(gmgateBin(t), "validate", "--config", hsmCfg, "--adapter", "caddyfile")
	if err == nil || strings.Contains(out, "without cgo") || !strings.Contains(out, "does not exist") {
		t.Fatalf("cgo gmgate validate with a missing module: err=%v\n%s", err, out)
	}
}
