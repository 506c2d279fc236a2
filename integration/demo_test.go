package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gmgate/gmgate/audit"
)

// TestReadmeDemoFlow runs what the README promises a newcomer: Caddyfile.example as it is (only
// its ports moved to free ones) and `gmgate demo pay`, which sends one SM2-signed payment over
// TLCP through the ingress, the demo back end, the egress and the demo bank, and verifies the
// signed reply. The audit log then holds both decisions and verifies.
func TestReadmeDemoFlow(t *testing.T) {
	src, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	ingress, backend, egress, bank := freePort(t), freePort(t), freePort(t), freePort(t)
	caddyfile := strings.NewReplacer(
		"admin localhost:2019", "admin {ADMIN}",
		"8443", fmt.Sprint(ingress),
		"9001", fmt.Sprint(backend),
		"9002", fmt.Sprint(egress),
		"9443", fmt.Sprint(bank),
	).Replace(string(src))
	if !strings.Contains(caddyfile, "admin {ADMIN}") {
		t.Fatal("Caddyfile.example's admin address moved: update this test")
	}
	g := startGmgate(t, caddyfile)
	data := filepath.Join(g.dir, "data", "caddy")

	pay := func(args ...string) (string, error) {
		cmd := exec.Command(gmgateBin(t), append([]string{"demo", "pay", "--url", fmt.Sprintf("https://localhost:%d", ingress),
			"--dir", filepath.Join(data, "gmgate", "devpki")}, args...)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for _, suite := range []string{"ECC_SM4_GCM_SM3", "ECDHE_SM4_CBC_SM3"} {
		out, err := pay("--suite", suite, "--amount", "42")
		if err != nil {
			t.Fatalf("demo pay (%s): %v\n%s\ngateway:\n%s", suite, err, out, g.out)
		}
		for _, want := range []string{
			"TLCP " + suite,
			`reply     200 {"result":"SUCCESS","bank":"demo bank"`, // the bank's reply crossed back
			`for the verified client "CN=gmgate demo client`,       // the back end got the identity
			"verified  the reply is signed by CN=gmgate development platform",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("demo pay (%s) output lacks %q:\n%s", suite, want, out)
			}
		}
	}
	// A configuration reload (the bank's reply changes) keeps one audit chain: the new
	// configuration takes the open log over instead of opening a second writer.
	reloaded := strings.Replace(caddyfile, `"bank":"demo bank"`, `"bank":"demo bank, reloaded"`, 1)
	reloaded = strings.ReplaceAll(reloaded, "{ADMIN}", g.admin)
	cfgPath := filepath.Join(g.dir, "Caddyfile.reloaded")
	if err := os.WriteFile(cfgPath, []byte(reloaded), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(gmgateBin(t), "reload", "--config", cfgPath, "--adapter", "caddyfile", "--address", g.admin).CombinedOutput(); err != nil {
		t.Fatalf("reload: %v\n%s", err, out)
	}
	if out, err := pay(); err != nil || !strings.Contains(out, `"bank":"demo bank, reloaded"`) {
		t.Fatalf("demo pay after reload: %v\n%s", err, out)
	}

	// Bad options fail clearly, before anything is sent.
	if out, err := pay("--suite", "NOPE"); err == nil || !strings.Contains(out, "unknown cipher suite") {
		t.Errorf("bad suite accepted: %v\n%s", err, out)
	}

	// Every decision of the flow is in the audit log: per payment one inbound (terminal) and one
	// outbound (bank reply) accept, on both sides of the demo bank's own gm_verify too.
	g.stop()
	logs, err := filepath.Glob(filepath.Join(data, "gmgate", "audit", "audit.log*"))
	if err != nil || len(logs) == 0 {
		t.Fatalf("no audit log: %v", err)
	}
	out, err := exec.Command(gmgateBin(t), append([]string{"audit", "verify", "--cert",
		filepath.Join(data, "gmgate", "devpki", "platform.pem")}, logs...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("audit verify: %v\n%s", err, out)
	}
	counts := map[string]int{}
	for _, d := range auditDecisions(t, filepath.Join(data, "gmgate", "audit", "audit.log")) {
		parts := strings.SplitN(d, "/", 3)
		counts[parts[0]+"/"+parts[1]]++
	}
	// Three payments: the ingress and the demo bank each accept inbound, the egress accepts the
	// bank's reply outbound.
	if counts[string(audit.DirectionInbound)+"/"+string(audit.VerdictAccept)] != 6 ||
		counts[string(audit.DirectionOutbound)+"/"+string(audit.VerdictAccept)] != 3 || len(counts) != 2 {
		t.Errorf("audit decisions %v, want 6 inbound and 3 outbound accepts and nothing else", counts)
	}
}
