package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/client"
	"github.com/gmgate/gmgate/internal/attack"
	"github.com/gmgate/gmgate/pki"
)

const enrollStoreCaddyfile = `{
	admin {ADMIN}
	auto_https off
	skip_install_trust
	gmgate
}

http://127.0.0.1:{PORT} {
	route /.well-known/est/* {
		gm_enroll {
			store {DIR}/enroll
			crl_check_interval 1s
			max_failures 3
			profile terminal {
				common_name "POS-[0-9]{4}"
				validity 720h
			}
		}
	}
}
`

// TestEnrolmentStoreTamperRefused: through the real binary (development PKI: the store is
// authenticated with dev-enroll-store), someone who writes the store directory plants a token
// whose secret they chose, edits a genuine token's common name, and puts a spent token back
// from a copy of the directory. Each is refused (enroll_store_integrity, enroll_token_used),
// counted in gmgate_enroll_store_records_refused_total, and `gmgate enroll list` fails naming
// the refused records; the genuine path (a token from `gmgate enroll token --config`) works;
// max_failures failed attempts lock the client address out (enroll_locked).
func TestEnrolmentStoreTamperRefused(t *testing.T) {
	port := freePort(t)
	a := startGmgate(t, strings.ReplaceAll(enrollStoreCaddyfile, "{PORT}", fmt.Sprint(port)))
	store := filepath.Join(a.dir, "enroll")
	env := append(os.Environ(), "XDG_DATA_HOME="+filepath.Join(a.dir, "data"), "XDG_CONFIG_HOME="+filepath.Join(a.dir, "config"), "HOME="+a.dir)
	gm := func(args ...string) (string, error) {
		cmd := exec.Command(gmgateBin(t), args...)
		cmd.Env = env
		var stderr strings.Builder
		cmd.Stderr = &stderr // the config loader logs there; stdout is the answer
		out, err := cmd.Output()
		if err != nil {
			return string(out) + stderr.String(), err
		}
		return string(out), nil
	}
	config := filepath.Join(a.dir, "Caddyfile")
	token := func(cn string) string {
		t.Helper()
		out, err := gm("enroll", "token", "--config", config, "--profile", "terminal", "--cn", cn, "--json")
		if err != nil {
			t.Fatalf("gmgate enroll token: %v\n%s", err, out)
		}
		var tok struct{ Token, ID string }
		if err := json.Unmarshal([]byte(out), &tok); err != nil {
			t.Fatalf("%q: %v", out, err)
		}
		return tok.Token
	}
	root, err := pki.LoadCertificatesFiles(filepath.Join(a.dir, "data", "caddy", "gmgate", "devpki", pki.DevRootBase+".pem"))
	if err != nil {
		t.Fatal(err)
	}
	e := &client.Enroller{BaseURL: fmt.Sprintf("http://127.0.0.1:%d/.well-known/est", port), Roots: []*smx509.Certificate{root[0]}}
	ctx := context.Background()

	// The genuine path.
	if _, err := e.Enroll(ctx, token("POS-0001"), "POS-0001", nil); err != nil {
		t.Fatalf("genuine enrolment: %v\n%s", err, a.out)
	}
	// A token record planted in the directory.
	forged, err := attack.ForgeToken(store, "terminal", "POS-6666", time.Now().Add(time.Hour), false, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Enroll(ctx, forged.Token, "POS-6666", nil); !enrolCode(err, "enroll_store_integrity") {
		t.Fatalf("forged token: %v", err)
	}
	// A genuine token's common name edited.
	tok := token("POS-0002")
	id := strings.Split(tok, ".")[1]
	if err := attack.EditRecord(filepath.Join(store, "tokens", id+".json"), func(r map[string]any) { r["common_name"] = "POS-6667" }); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Enroll(ctx, tok, "POS-6667", nil); !enrolCode(err, "enroll_store_integrity") {
		t.Fatalf("edited token: %v", err)
	}
	// A spent token put back from a copy of the directory.
	tok = token("POS-0003")
	snap, err := attack.TakeSnapshot(store)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Enroll(ctx, tok, "POS-0003", nil); err != nil {
		t.Fatal(err)
	}
	if err := snap.Restore(store, true); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Enroll(ctx, tok, "POS-0003", nil); !enrolCode(err, "enroll_token_used") {
		t.Fatalf("restored spent token: %v", err)
	}
	if m := a.p.Metrics(); !strings.Contains(m, `gmgate_enroll_store_records_refused_total{kind="token"} 2`) ||
		!strings.Contains(m, `gmgate_enroll_requests_total{code="enroll_store_integrity",op="simpleenroll"} 2`) {
		t.Errorf("metrics:\n%s", grepLines(m, "gmgate_enroll"))
	}
	out, err := gm("enroll", "list", "--config", config)
	if err == nil || !strings.Contains(out, forged.ID) || !strings.Contains(out, id) || !strings.Contains(out, "integrity") {
		t.Fatalf("gmgate enroll list over a tampered store: %v\n%s", err, out)
	}
	// migrate does not vouch for a record whose tag does not verify, nor for a planted one
	// that is not a complete older record... but a planted older-format token is exactly what
	// migrate would tag: it lists it and waits for --yes.
	out, _ = gm("enroll", "migrate", "--config", config)
	if !strings.Contains(out, "would tag tokens/"+forged.ID) || !strings.Contains(out, "refused tokens/"+id) {
		t.Fatalf("gmgate enroll migrate (dry run):\n%s", out)
	}
	if _, err := e.Enroll(ctx, forged.Token, "POS-6666", nil); !enrolCode(err, "enroll_store_integrity") {
		t.Fatalf("the dry run tagged the forged token: %v", err)
	}
	// max_failures 3: the third consecutive failed attempt from this address locks it out; a
	// genuine token is then refused too, and the lockout is counted.
	if _, err := e.Enroll(ctx, forged.Token, "POS-6666", nil); !enrolCode(err, "enroll_store_integrity") {
		t.Fatalf("third failure: %v", err)
	}
	if _, err := e.Enroll(ctx, token("POS-0004"), "POS-0004", nil); !enrolCode(err, "enroll_locked") {
		t.Fatalf("genuine token from a locked-out address: %v", err)
	}
	if m := a.p.Metrics(); !strings.Contains(m, `gmgate_enroll_lockouts_total{scope="address"} 1`) {
		t.Errorf("lockout metric:\n%s", grepLines(m, "gmgate_enroll_lockouts"))
	}
}

const enrollRedisCaddyfile = `{
	admin {ADMIN}
	auto_https off
	skip_install_trust
	gmgate {
		dev_pki {SHARED}/pki
	}
}

http://127.0.0.1:{PORT} {
	route /.well-known/est/* {
		gm_enroll {
			store {SHARED}/enroll
			replay {
				store redis
				redis_address {REDIS}
				redis_prefix {PREFIX}
			}
			profile terminal {
				common_name "POS-[0-9]{4}"
			}
		}
	}
}
`

// TestEnrolmentRollbackAcrossRestartRedis: with the Redis replay store, a spent token put back
// by restoring the whole store directory stays spent even after gmgate restarts (the ledger is
// outside the directory): enroll_token_used.
func TestEnrolmentRollbackAcrossRestartRedis(t *testing.T) {
	redis := redisAddr(t)
	shared := t.TempDir()
	port := freePort(t)
	cf := strings.NewReplacer("{SHARED}", shared, "{PORT}", fmt.Sprint(port), "{REDIS}", redis,
		"{PREFIX}", fmt.Sprintf("enroll-rollback-%d:", time.Now().UnixNano())).Replace(enrollRedisCaddyfile)
	a := startGmgate(t, cf)
	store := filepath.Join(shared, "enroll")
	cmd := exec.Command(gmgateBin(t), "enroll", "token", "--config", filepath.Join(a.dir, "Caddyfile"), "--profile", "terminal", "--cn", "POS-0200")
	cmd.Env = append(os.Environ(), "HOME="+a.dir)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("gmgate enroll token: %v", err)
	}
	tok := strings.TrimSpace(string(out))
	root, err := pki.LoadCertificatesFiles(filepath.Join(shared, "pki", pki.DevRootBase+".pem"))
	if err != nil {
		t.Fatal(err)
	}
	e := &client.Enroller{BaseURL: fmt.Sprintf("http://127.0.0.1:%d/.well-known/est", port), Roots: root}
	snap, err := attack.TakeSnapshot(store)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := e.Enroll(ctx, tok, "POS-0200", nil); err != nil {
		t.Fatalf("enrol: %v\n%s", err, a.out)
	}
	a.stop()
	if err := snap.Restore(store, true); err != nil {
		t.Fatal(err)
	}
	b := startGmgate(t, cf)
	if _, err := e.Enroll(ctx, tok, "POS-0200", nil); !enrolCode(err, "enroll_token_used") {
		t.Fatalf("token restored with the directory, after a restart: %v\n%s", err, b.out)
	}
}

// TestEnrolmentCRLRollbackAcrossRestartRedis: a pair is revoked; while gmgate is stopped the
// whole store directory is restored from before the revocation and crl_file is replaced by the
// CRL signed before it (genuine, same CA). Redis remembers the last CRL signed: a fresh
// gmgate refuses to start rather than sign a CRL without the revocation. Putting the newest
// CRL back (the recovery) starts it, and the pair stays revoked (enroll_cert_revoked).
func TestEnrolmentCRLRollbackAcrossRestartRedis(t *testing.T) {
	redis := redisAddr(t)
	shared := t.TempDir()
	port := freePort(t)
	tmpl := strings.Replace(enrollRedisCaddyfile, "store {SHARED}/enroll\n", "store {SHARED}/enroll\n\t\t\tcrl_file {SHARED}/crl.pem\n", 1)
	cf := strings.NewReplacer("{SHARED}", shared, "{PORT}", fmt.Sprint(port), "{REDIS}", redis,
		"{PREFIX}", fmt.Sprintf("enroll-crlrollback-%d:", time.Now().UnixNano())).Replace(tmpl)
	a := startGmgate(t, cf)
	store, crlFile := filepath.Join(shared, "enroll"), filepath.Join(shared, "crl.pem")
	cmd := exec.Command(gmgateBin(t), "enroll", "token", "--config", filepath.Join(a.dir, "Caddyfile"), "--profile", "terminal", "--cn", "POS-0300")
	cmd.Env = append(os.Environ(), "HOME="+a.dir)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("gmgate enroll token: %v", err)
	}
	root, err := pki.LoadCertificatesFiles(filepath.Join(shared, "pki", pki.DevRootBase+".pem"))
	if err != nil {
		t.Fatal(err)
	}
	e := &client.Enroller{BaseURL: fmt.Sprintf("http://127.0.0.1:%d/.well-known/est", port), Roots: root}
	ctx := context.Background()
	pair, err := e.Enroll(ctx, strings.TrimSpace(string(out)), "POS-0300", nil)
	if err != nil {
		t.Fatalf("enrol: %v\n%s", err, a.out)
	}
	snap, err := attack.TakeSnapshot(store)
	if err != nil {
		t.Fatal(err)
	}
	older, err := os.ReadFile(crlFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Revoke(ctx, pair); err != nil {
		t.Fatalf("revoke: %v\n%s", err, a.out)
	}
	newest, err := os.ReadFile(crlFile)
	if err != nil {
		t.Fatal(err)
	}
	a.stop()
	if err := snap.Restore(store, true); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(crlFile, older, 0o600); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	cfPath := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(cfPath, []byte(strings.ReplaceAll(cf, "{ADMIN}", fmt.Sprintf("127.0.0.1:%d", freePort(t)))), 0o600); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	run := exec.CommandContext(rctx, gmgateBin(t), "run", "--config", cfPath, "--adapter", "caddyfile")
	run.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+filepath.Join(dir, "data"), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"))
	startOut, err := run.CombinedOutput()
	if rctx.Err() != nil || err == nil || !strings.Contains(string(startOut), "fewer revocations than the last CRL") {
		t.Fatalf("gmgate started over a rolled-back crl_file and store: %v (context %v)\n%s", err, rctx.Err(), startOut)
	}
	if !strings.Contains(string(startOut), "CRL rollback") {
		t.Fatalf("the rollback is not logged:\n%s", startOut)
	}

	// Recovery: the newest CRL (any copy: it is signed) back in place.
	if err := os.WriteFile(crlFile, newest, 0o600); err != nil {
		t.Fatal(err)
	}
	b := startGmgate(t, cf)
	if _, err := e.Reenroll(ctx, pair); !enrolCode(err, "enroll_cert_revoked") {
		t.Fatalf("the revoked pair after the recovery: %v\n%s", err, b.out)
	}
}
