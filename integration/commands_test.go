package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gmgate/gmgate/pki"
)

// run runs the gmgate binary and returns its combined output, failing the test on error.
func run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(gmgateBin(t), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("gmgate %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestPKICommands drives `gmgate pki` end to end and checks its files with package pki.
func TestPKICommands(t *testing.T) {
	dir := t.TempDir()
	run(t, "pki", "init", "--dir", dir, "--cn", "Test Payment Root")
	run(t, "pki", "issue", "server", "--ca-dir", dir, "--cn", "pay.example", "--san", "pay.example,127.0.0.1", "--out", filepath.Join(dir, "gw"))
	run(t, "pki", "issue", "platform", "--ca-dir", dir, "--cn", "platform", "--out", filepath.Join(dir, "platform"))

	roots, err := pki.LoadCertificatesFile(filepath.Join(dir, "root.pem"))
	if err != nil {
		t.Fatal(err)
	}
	v, err := pki.NewVerifier(pki.VerifierOptions{Roots: roots})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		file string
		role pki.Role
	}{{"gw_sign.pem", pki.RoleSign}, {"gw_enc.pem", pki.RoleEnc}, {"platform.pem", pki.RoleSign}} {
		certs, err := pki.LoadCertificatesFile(filepath.Join(dir, tc.file))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(certs[0], nil, tc.role); err != nil {
			t.Errorf("%s as %v: %v", tc.file, tc.role, err)
		}
		if _, err := pki.LoadPrivateKeyFile(filepath.Join(dir, strings.TrimSuffix(tc.file, ".pem")+".key"), nil); err != nil {
			t.Errorf("key of %s: %v", tc.file, err)
		}
	}

	show := run(t, "pki", "show", filepath.Join(dir, "gw_enc.pem"))
	for _, want := range []string{"CN=pay.example", "Role:", "enc", "DNS:pay.example", "IP:127.0.0.1", "SM3 fingerprint"} {
		if !strings.Contains(show, want) {
			t.Errorf("pki show lacks %q:\n%s", want, show)
		}
	}

	// Revoke the server's signing certificate; the CRL must make the verifier refuse it.
	signCerts, _ := pki.LoadCertificatesFile(filepath.Join(dir, "gw_sign.pem"))
	run(t, "pki", "crl", "--ca-dir", dir, "--revoke", signCerts[0].SerialNumber.Text(16))
	crls, err := pki.NewCRLStore([]string{filepath.Join(dir, "crl.pem")}, pki.CRLOptions{Issuers: roots})
	if err != nil {
		t.Fatal(err)
	}
	v2, err := pki.NewVerifier(pki.VerifierOptions{Roots: roots, CRLs: crls})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v2.Verify(signCerts[0], nil, pki.RoleSign); err == nil {
		t.Fatal("revoked certificate still verifies")
	}
	platform, _ := pki.LoadCertificatesFile(filepath.Join(dir, "platform.pem"))
	if _, err := v2.Verify(platform[0], nil, pki.RoleSign); err != nil {
		t.Fatalf("unrevoked certificate refused: %v", err)
	}

	// Refusals are clear errors, not crashes.
	out, err := exec.Command(gmgateBin(t), "pki", "init", "--dir", dir).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "already holds a root CA") {
		t.Fatalf("second init: %v %s", err, out)
	}
	out, err = exec.Command(gmgateBin(t), "pki", "issue", "bogus", "--ca-dir", dir, "--cn", "x").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "unknown kind") {
		t.Fatalf("bogus kind: %v %s", err, out)
	}
	if l := run(t, "list-modules"); !strings.Contains(l, "caddy.listeners.tlcp") || !strings.Contains(l, "http.reverse_proxy.transport.gm_channel") {
		t.Fatalf("list-modules lacks gmgate modules:\n%s", l)
	}
}

// `gmgate version` says gmgate's own version and commit before Caddy's; the help names gmgate.
func TestVersionAndHelpNameGmgate(t *testing.T) {
	out := run(t, "version")
	if !strings.HasPrefix(out, "gmgate ") || !strings.Contains(out, ", Caddy v2.") {
		t.Fatalf("gmgate version: %q", out)
	}
	if want := os.Getenv("GMGATE_EXPECT_COMMIT"); want != "" && !strings.Contains(out, " commit "+want+",") {
		t.Fatalf("gmgate version %q does not name the commit %s", out, want)
	}
	help := run(t, "help")
	if !strings.Contains(help, "gmgate [command]") || !strings.Contains(help, "gmgate is Caddy with Chinese commercial cryptography") {
		t.Fatalf("help does not name gmgate:\n%s", help)
	}
}
