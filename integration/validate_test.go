package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/gmgate/gmgate/pki"
)

// `gmgate validate` and `gmgate adapt` have no side effects: the audit logs a configuration
// declares (the shared one and gm_verify's own) are opened when it starts, not when it is
// validated (opening writes a segment header and a signed checkpoint); gm_enroll creates its
// store and identities directories and signs its first CRL (with the CA key: an HSM login)
// when it starts too; and adapt emits no null fields. `gmgate run` on the same file then opens
// and writes them all.
func TestValidateAndAdaptHaveNoSideEffects(t *testing.T) {
	dir := t.TempDir()
	pkiDir := filepath.Join(dir, "pki")
	cf := strings.NewReplacer("{DIR}", dir, "{PKI}", pkiDir, "{PORT}", "{PORT}").Replace(`{
	admin {ADMIN}
	skip_install_trust
	auto_https off
	gmgate {
		dev_pki {PKI}
		audit {DIR}/shared-audit/audit.log
	}
}

http://127.0.0.1:{PORT} {
	route /est/* {
		gm_enroll {
			store {DIR}/enroll-store
			identities_dir {DIR}/enroll-ids
			crl_file {DIR}/enroll-crl.pem
			profile terminal
		}
	}
	gm_verify {
		scheme wechatpay-v3-sm2
		audit {DIR}/verify-audit/verify.log
	}
	respond "ok"
}
`)
	port := freePort(t)
	cfPath := filepath.Join(dir, "Caddyfile")
	write := func(admin string) {
		c := strings.NewReplacer("{ADMIN}", admin, "{PORT}", strconv.Itoa(port)).Replace(cf)
		if err := os.WriteFile(cfPath, []byte(c), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("off")
	env := append(os.Environ(), "XDG_DATA_HOME="+filepath.Join(dir, "data"), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"))
	for _, args := range [][]string{{"validate", "--config", cfPath}, {"adapt", "--config", cfPath, "--validate"}} {
		cmd := exec.Command(gmgateBin(t), args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("gmgate %s: %v\n%s", args[0], err, out)
		}
		// gm_enroll: no store directory, no identities directory, no CRL signed or written.
		for _, sub := range []string{"shared-audit", "verify-audit", "enroll-store", "enroll-ids", "enroll-crl.pem"} {
			if _, err := os.Stat(filepath.Join(dir, sub)); !os.IsNotExist(err) {
				t.Fatalf("gmgate %s created %s (%v)", args[0], sub, err)
			}
		}
		if args[0] == "adapt" && strings.Contains(string(out), ":null") {
			t.Fatalf("adapt emitted null fields:\n%s", out)
		}
	}
	// Caddyfile.example adapts without null fields either.
	cmd := exec.Command(gmgateBin(t), "adapt", "--config", "../Caddyfile.example")
	cmd.Env = env
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("adapt Caddyfile.example: %v", err)
	}
	if strings.Contains(string(out), ":null") {
		t.Fatalf("adapt Caddyfile.example emitted null fields:\n%s", out)
	}

	// A PKCS#11 token is not logged into by validate: a token that does not exist (and a PIN
	// variable that is not set) validates, and fails only when the configuration runs.
	// gm_enroll's CA key and store key are in that token too: validate signs no CRL with it.
	ca, _, err := pki.NewRootCA(pki.IssueOptions{CommonName: "validate test CA"})
	if err != nil {
		t.Fatal(err)
	}
	caCert := filepath.Join(dir, "enroll-ca.pem")
	if err := os.WriteFile(caCert, pki.EncodeCertificatesPEM(ca.Cert), 0o644); err != nil {
		t.Fatal(err)
	}
	hsm := strings.NewReplacer("{MODULE}", pkcs11Module(), "{PORT}", strconv.Itoa(freePort(t)), "{CACERT}", caCert,
		"{STORE}", filepath.Join(dir, "hsm-enroll-store")).Replace(`{
	admin off
	gmgate {
		vault {
			token hsm {
				module {MODULE}
				label gmgate-no-such-token
				pin_env GMGATE_TEST_UNSET_PIN
			}
			key platform-sign "pkcs11:token=gmgate-no-such-token;object=platform-sign"
			key enroll-ca "pkcs11:token=gmgate-no-such-token;object=enroll-ca" {
				certificate {CACERT}
			}
			key enroll-store "pkcs11:token=gmgate-no-such-token;object=enroll-store" {
				type sm4
			}
		}
	}
}
http://127.0.0.1:{PORT} {
	route /est/* {
		gm_enroll {
			ca_key enroll-ca
			store_key enroll-store
			store {STORE}
			profile terminal
		}
	}
	respond "ok"
}
`)
	needSoftHSM(t)
	hsmPath := filepath.Join(dir, "hsm.Caddyfile")
	if err := os.WriteFile(hsmPath, []byte(hsm), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd = exec.Command(gmgateBin(t), "validate", "--config", hsmPath)
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("validate logged into (or looked for) the token: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "hsm-enroll-store")); !os.IsNotExist(err) {
		t.Fatalf("validate created gm_enroll's store (%v)", err)
	}
	cmd = exec.Command(gmgateBin(t), "run", "--config", hsmPath)
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "opening key vault") {
		t.Fatalf("run with a missing token: %v\n%s", err, out)
	}
	// A module path that does not exist is a configuration error validate reports.
	bad := strings.Replace(hsm, pkcs11Module(), "/nonexistent/libpkcs11.so", 1)
	if err := os.WriteFile(hsmPath, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd = exec.Command(gmgateBin(t), "validate", "--config", hsmPath)
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "/nonexistent/libpkcs11.so") {
		t.Fatalf("validate with a missing module: %v\n%s", err, out)
	}

	// Running the configuration opens both logs.
	data, _ := os.ReadFile(cfPath)
	startGmgate(t, strings.Replace(string(data), "admin off", "admin {ADMIN}", 1))
	for _, f := range []string{"shared-audit/audit.log.000001", "verify-audit/verify.log.000001", "enroll-crl.pem", "enroll-store/tokens", "enroll-ids"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Fatalf("gmgate run did not open %s: %v", f, err)
		}
	}
}
