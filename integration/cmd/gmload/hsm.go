package main

import (
	"crypto/rand"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// hsmPINEnv carries the user PIN of the load test's SoftHSM2 tokens to gmgate.
const hsmPINEnv = "GMLOAD_HSM_PIN"

// hsmKey is one SM2 key imported into a token: its vault name, PEM key and certificate files.
type hsmKey struct {
	name, keyFile, certFile string
}

// hsmToken is a fresh SoftHSM2 token (own softhsm2.conf and token directory) for one gmgate
// process; its keys are imported with the real `gmgate vault init` and `gmgate vault import`.
type hsmToken struct {
	label  string
	module string
	env    []string
}

func pkcs11Module() string {
	if m := os.Getenv("GMGATE_PKCS11_MODULE"); m != "" {
		return m
	}
	return "/usr/lib/softhsm/libsofthsm2.so"
}

func digits(n int) (string, error) {
	var b strings.Builder
	for i := 0; i < n; i++ {
		d, err := rand.Int(rand.Reader, big.NewInt(10))
		if err != nil {
			return "", err
		}
		b.WriteByte(byte('0' + d.Int64()))
	}
	return b.String(), nil
}

// newHSMToken initialises a token under dir and imports keys into it with bin.
func newHSMToken(bin, dir, label string, keys []hsmKey) (*hsmToken, error) {
	util, err := exec.LookPath("softhsm2-util")
	if err != nil {
		return nil, fmt.Errorf("-vault softhsm needs softhsm2-util (apt-get install softhsm2): %w", err)
	}
	tokdir := filepath.Join(dir, "tokens")
	if err := os.MkdirAll(tokdir, 0o700); err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", tokdir)), 0o600); err != nil {
		return nil, err
	}
	pin, err := digits(8)
	if err != nil {
		return nil, err
	}
	so, err := digits(10)
	if err != nil {
		return nil, err
	}
	h := &hsmToken{label: label, module: pkcs11Module(), env: []string{"SOFTHSM2_CONF=" + conf, hsmPINEnv + "=" + pin}}
	cmd := exec.Command(util, "--init-token", "--free", "--label", label, "--so-pin", so, "--pin", pin)
	cmd.Env = append(os.Environ(), h.env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("softhsm2-util --init-token: %v\n%s", err, out)
	}
	admin := filepath.Join(dir, "Caddyfile.vault-admin")
	if err := os.WriteFile(admin, []byte("{\n\tadmin off\n\tgmgate {\n"+h.block(keys, false)+"\t}\n}\n"), 0o600); err != nil {
		return nil, err
	}
	run := func(args ...string) error {
		full := append(append([]string{"vault"}, args...), "--config", admin, "--adapter", "caddyfile")
		c := exec.Command(bin, full...)
		c.Env = append(append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+filepath.Join(dir, "data"),
			"XDG_CONFIG_HOME="+filepath.Join(dir, "config")), h.env...)
		if out, err := c.CombinedOutput(); err != nil {
			return fmt.Errorf("gmgate %s: %v\n%s", strings.Join(full, " "), err, out)
		}
		return nil
	}
	if err := run("init"); err != nil {
		return nil, err
	}
	for _, k := range keys {
		if err := run("import", k.name, k.keyFile); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// block is the `vault { token ... key ... }` block (inside `gmgate { }`) for keys, plus extra
// lines (further keys) verbatim.
func (h *hsmToken) block(keys []hsmKey, withCerts bool, extra ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\t\tvault {\n\t\t\ttoken hsm {\n\t\t\t\tmodule %s\n\t\t\t\tlabel %s\n\t\t\t\tpin_env %s\n\t\t\t\tmode wrapped\n\t\t\t}\n",
		h.module, h.label, hsmPINEnv)
	for _, k := range keys {
		fmt.Fprintf(&b, "\t\t\tkey %s \"pkcs11:token=%s;object=%s\"", k.name, h.label, k.name)
		if withCerts {
			fmt.Fprintf(&b, " {\n\t\t\t\tcertificate %s\n\t\t\t}", k.certFile)
		}
		b.WriteString("\n")
	}
	for _, e := range extra {
		b.WriteString(e)
	}
	b.WriteString("\t\t}\n")
	return b.String()
}

// hsmSigned tells whether the Prometheus text counts a successful sign on token "hsm".
func hsmSigned(prom string) bool {
	for _, line := range strings.Split(prom, "\n") {
		if strings.HasPrefix(line, "gmgate_vault_operations_total{") && strings.Contains(line, `token="hsm"`) &&
			strings.Contains(line, `op="sign"`) && strings.Contains(line, `result="ok"`) && !strings.HasSuffix(line, " 0") {
			return true
		}
	}
	return false
}
