package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gmgate/gmgate/pki"
)

// TestVaultReferencesRFC7512: `gmgate vault list` on key references written as p11-kit and
// OpenSC users write them: an upper-case scheme, module-name, and the token PIN from
// pin-source=file: (the token block has no pin_env); a reference whose module-path contradicts
// the token's module fails naming the contradiction, and pin-value is refused.
func TestVaultReferencesRFC7512(t *testing.T) {
	v := newVaultToken(t, keySpec{Name: "platform-sign", Role: pki.RoleSign})
	var pin string
	for _, e := range v.Env {
		if p, ok := strings.CutPrefix(e, vaultPINEnv+"="); ok {
			pin = p
		}
	}
	pinFile := filepath.Join(v.Dir, "hsm pin")
	if err := os.WriteFile(pinFile, []byte(pin+"\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	run := func(name, ref string, withPINEnv bool) (string, string, error) {
		tok := fmt.Sprintf("\t\ttoken hsm {\n\t\t\tmodule %s\n\t\t\tlabel %s\n\t\t\tmode wrapped\n", pkcs11Module(), v.Label)
		if withPINEnv {
			tok += "\t\t\tpin_env " + vaultPINEnv + "\n"
		}
		tok += "\t\t}\n"
		cf := fmt.Sprintf("{\n\tadmin off\n\tgmgate {\n\t\tvault {\n%s\t\t\tkey platform-sign %q\n\t\t}\n\t}\n}\n", tok, ref)
		p := filepath.Join(v.Dir, name)
		if err := os.WriteFile(p, []byte(cf), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(gmgateBin(t), "vault", "list", "--json", "--config", p, "--adapter", "caddyfile")
		env := []string{"HOME=" + v.Dir, "XDG_DATA_HOME=" + filepath.Join(v.Dir, "data"), "XDG_CONFIG_HOME=" + filepath.Join(v.Dir, "config"), "SOFTHSM2_CONF=" + v.Conf}
		if withPINEnv {
			env = append(env, v.Env...)
		}
		cmd.Env = append(os.Environ(), env...)
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		return stdout.String(), stderr.String(), err
	}

	ref := "PKCS11:token=" + v.Label + ";object=platform-sign;type=private?module-name=softhsm2&pin-source=file:" + strings.ReplaceAll(pinFile, " ", "%20")
	out, errOut, err := run("Caddyfile.pinsource", ref, false)
	if err != nil {
		t.Fatalf("gmgate vault list with pin-source: %v\n%s\n%s", err, out, errOut)
	}
	var list []vaultKeyInfo
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("vault list --json: %v: %q", err, out)
	}
	if len(list) != 1 || !list[0].Loaded || list[0].Fingerprint != v.List[0].Fingerprint {
		t.Fatalf("key not loaded through the RFC 7512 reference: %+v (want fingerprint %s)", list, v.List[0].Fingerprint)
	}

	for _, c := range []struct{ ref, want string }{
		{"pkcs11:token=" + v.Label + ";object=platform-sign?module-path=/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so", "module-path=/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so, but the token's module is " + pkcs11Module()},
		{"pkcs11:token=" + v.Label + ";object=platform-sign;manufacturer=Thales", `manufacturer="Thales", but the token's is "SoftHSM project"`},
		{"pkcs11:token=" + v.Label + ";object=platform-sign?pin-value=" + pin, "pin-value is refused"},
	} {
		out, errOut, err := run("Caddyfile.bad", c.ref, true)
		if err == nil {
			t.Fatalf("%s: accepted: %s", c.ref, out)
		}
		if !strings.Contains(errOut, c.want) {
			t.Fatalf("%s: error does not say %q:\n%s", c.ref, c.want, errOut)
		}
		if strings.Contains(errOut+out, pin) {
			t.Fatalf("%s: the PIN appears in the output", c.ref)
		}
	}
}
