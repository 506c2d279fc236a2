package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/client"
	"github.com/gmgate/gmgate/internal/testenv"
	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/signing"
	"github.com/gmgate/gmgate/tlcp"
)

// Keys that need the token on every request: SM2 encryption keys with token_decrypt (the private
// key never leaves the token; each decryption is a C_DeriveKey call, docs/keyvault.md). Two of
// them: the key that opens request envelopes (gm_verify `envelope { decrypt_key }`) and the TLCP
// server's encryption key (each ECC handshake decrypts the pre-master secret with it). The token's
// key objects disappear under the running gateway and come back.

// fltAdaptTokenDecrypt adapts caddyfile to JSON with `gmgate adapt` and sets token_decrypt on the
// named vault keys (a JSON-only key option).
func fltAdaptTokenDecrypt(t *testing.T, dir, caddyfile string, env []string, keys ...string) []byte {
	t.Helper()
	path := filepath.Join(dir, fmt.Sprintf("Caddyfile.adapt%d", time.Now().UnixNano()))
	if err := os.WriteFile(path, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(gmgateBin(t), "adapt", "--config", path, "--adapter", "caddyfile")
	cmd.Env = append(append(os.Environ(), "HOME="+dir), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("gmgate adapt: %v\n%s", err, stderr.String())
	}
	var cfg map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &cfg); err != nil {
		t.Fatal(err)
	}
	apps, _ := cfg["apps"].(map[string]any)
	gm, _ := apps["gmgate"].(map[string]any)
	vault, _ := gm["vault"].(map[string]any)
	list, _ := vault["keys"].([]any)
	n := 0
	for _, k := range list {
		km, _ := k.(map[string]any)
		for _, name := range keys {
			if km != nil && km["name"] == name {
				km["token_decrypt"] = true
				n++
			}
		}
	}
	if n != len(keys) {
		t.Fatalf("adapted vault lacks some of %v: %s", keys, stdout.String())
	}
	gm["vault_health_interval"] = int64(200 * time.Millisecond) // token_up follows the token quickly
	out, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// fltTokenObjects moves the key objects of the one SoftHSM2 token under tokdir to aside, or
// back (testenv.MoveSoftHSMObjects).
func fltTokenObjects(t *testing.T, tokdir, aside string, remove bool) {
	t.Helper()
	ents, err := os.ReadDir(tokdir)
	if err != nil || len(ents) != 1 || !ents[0].IsDir() {
		t.Fatalf("token directory %s: %v %v", tokdir, ents, err)
	}
	testenv.MoveSoftHSMObjects(t, filepath.Join(tokdir, ents[0].Name()), aside, remove)
}

const fltTokenDecryptCaddyfile = `{
	admin {ADMIN}
	skip_install_trust
	auto_https off
	gmgate {
		dev_pki {DIR}/pki
{VAULT}	}
	servers :{TLCP} {
		listener_wrappers {
			tlcp {
				sign_key srv-sign
				enc_key tlcp-enc
				cipher_suites ECC_SM4_GCM_SM3
			}
		}
	}
}

http://127.0.0.1:{PORT} {
	gm_verify {
		scheme wechatpay-v3-sm2
		envelope {
			decrypt_key env-key
		}
		reply_signing {
			key reply-sign
		}
	}
	reverse_proxy {BACKEND}
}

http://:{TLCP} {
	respond "tlcp ok"
}
`

// TestFaultTokenDecryptKeyUnavailable: while the token's key objects are gone, every request
// that needs them is refused: a sealed request gets an unsigned JSON error and never reaches the
// back end, a TLCP ECC handshake fails; the failures are counted in
// gmgate_vault_operations_total; when the objects come back, requests and handshakes succeed
// again, with no restart of gmgate.
func TestFaultTokenDecryptKeyUnavailable(t *testing.T) {
	t.Parallel()
	v := newVaultToken(t, keySpec{Name: "reply-sign", Role: pki.RoleSign, CN: "gmgate platform (token)"},
		keySpec{Name: "srv-sign", Role: pki.RoleSign, CN: "localhost", SANs: []string{"localhost", "127.0.0.1"},
			EKU: []smx509.ExtKeyUsage{smx509.ExtKeyUsageServerAuth}})
	backend := fltStartBackend(t)
	port, tlcpPort := freePort(t), freePort(t)
	inst := startGmgate(t, "{\n\tadmin {ADMIN}\n\tgmgate {\n\t\tdev_pki {DIR}/pki\n\t}\n}\n", v.Env...)
	pid := inst.cmd.Process.Pid

	// The token_decrypt keys: made in the token by `gmgate vault generate`, public keys from
	// `gmgate vault export-public`, certified by the test CA.
	certFile := func(name string) string { return filepath.Join(v.Dir, name+".pem") }
	block := func(withCerts bool) string {
		var b strings.Builder
		b.WriteString(strings.TrimSuffix(v.Block, "}\n"))
		for _, name := range []string{"env-key", "tlcp-enc"} {
			fmt.Fprintf(&b, "\tkey %s \"pkcs11:token=%s;object=%s\"", name, v.Label, name)
			if withCerts {
				fmt.Fprintf(&b, " {\n\t\tcertificate %s\n\t}", certFile(name))
			}
			b.WriteString("\n")
		}
		b.WriteString("}\n")
		return b.String()
	}
	render := func(vaultBlock string) string {
		return strings.NewReplacer("{ADMIN}", inst.admin, "{DIR}", inst.dir, "{PORT}", fmt.Sprint(port),
			"{TLCP}", fmt.Sprint(tlcpPort), "{BACKEND}", backend.addr, "{VAULT}", vaultBlock).Replace(fltTokenDecryptCaddyfile)
	}
	adminJSON := filepath.Join(v.Dir, "admin.json")
	if err := os.WriteFile(adminJSON, fltAdaptTokenDecrypt(t, v.Dir, render(block(false)), v.Env, "env-key", "tlcp-enc"), 0o600); err != nil {
		t.Fatal(err)
	}
	vaultCmd := func(args ...string) []byte {
		t.Helper()
		cmd := exec.Command(gmgateBin(t), append(append([]string{"vault"}, args...), "--config", adminJSON)...)
		cmd.Env = append(append(os.Environ(), "HOME="+v.Dir), v.Env...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("gmgate vault %v: %v\n%s", args, err, stderr.String())
		}
		return stdout.Bytes()
	}
	certs := map[string]*smx509.Certificate{}
	for name, opts := range map[string]pki.IssueOptions{
		"env-key":  {CommonName: "gmgate envelope (token)"},
		"tlcp-enc": {CommonName: "localhost", DNSNames: []string{"localhost"}, ExtKeyUsage: []smx509.ExtKeyUsage{smx509.ExtKeyUsageServerAuth}},
	} {
		vaultCmd("generate", name)
		var exp struct {
			PublicKeyPEM string `json:"public_key_pem"`
		}
		if err := json.Unmarshal(vaultCmd("export-public", name, "--json"), &exp); err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode([]byte(exp.PublicKeyPEM))
		if blk == nil {
			t.Fatalf("export-public %s printed no PEM: %q", name, exp.PublicKeyPEM)
		}
		pub, err := smx509.ParsePKIXPublicKey(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if certs[name], err = v.CA.IssueFor(pub, pki.RoleEnc, opts); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(certFile(name), pki.EncodeCertificatesPEM(certs[name]), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// The full configuration is JSON (token_decrypt has no Caddyfile syntax), loaded through
	// the admin API of the running gmgate.
	full := fltAdaptTokenDecrypt(t, v.Dir, render(block(true)), v.Env, "env-key", "tlcp-enc")
	resp, err := http.Post("http://"+inst.admin+"/load", "application/json", bytes.NewReader(full))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("loading the configuration: %d %s\n%s", resp.StatusCode, body, inst.out)
	}

	pkiDir := filepath.Join(inst.dir, "pki")
	signCert, err := pki.LoadCertificatesFile(filepath.Join(pkiDir, pki.DevClientSignBase+".pem"))
	if err != nil {
		t.Fatal(err)
	}
	signKey, err := pki.LoadPrivateKeyFile(filepath.Join(pkiDir, pki.DevClientSignBase+".key"), nil)
	if err != nil {
		t.Fatal(err)
	}
	replyCert := v.Cert(t, "reply-sign")
	c, err := client.New(client.Config{BaseURL: fmt.Sprintf("http://127.0.0.1:%d", port), Scheme: signing.WechatPayName,
		Key:           signing.Key{Signer: signKey, Cert: signCert[0], MerchantID: "1900000001"},
		PlatformCerts: []*smx509.Certificate{replyCert}, Timeout: 10 * time.Second,
		Envelope: &client.EnvelopeConfig{PlatformEncCert: certs["env-key"]}})
	if err != nil {
		t.Fatal(err)
	}
	const order = `{"mchid":"1900000001","out_trade_no":"GM-TOKEN-1","acct":"6216610000000000001"}`
	sealed := func(what string) error {
		t.Helper()
		before := backend.calls.Load()
		r, err := c.Post(context.Background(), "/v3/pay/transactions/native", "application/json", []byte(order))
		if err != nil {
			if n := backend.calls.Load(); n != before {
				t.Fatalf("%s: refused, yet the back end saw the request", what)
			}
			return err
		}
		_, seen := backend.lastRequest()
		if r.StatusCode != http.StatusOK || !r.Reply.Certificate.Equal(replyCert) || backend.calls.Load() != before+1 || seen != order {
			t.Fatalf("%s: status %d, back end calls %d -> %d, back end body %q", what, r.StatusCode, before, backend.calls.Load(), seen)
		}
		return nil
	}
	pool := smx509.NewCertPool()
	pool.AddCert(v.CA.Cert)
	handshake := func() error {
		conn, err := tlcp.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", tlcpPort), &tlcp.Config{RootCAs: pool, ServerName: "localhost",
			CipherSuites: []uint16{tlcp.ECC_SM4_GCM_SM3}})
		if err != nil {
			return err
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
		got, _ := io.ReadAll(conn)
		if !strings.HasSuffix(string(got), "tlcp ok") {
			return fmt.Errorf("TLCP response %q", got)
		}
		return nil
	}
	decrypts := func(ok bool) float64 {
		all := fltMetric(t, inst.admin, "gmgate_vault_operations_total", "op", "decrypt", "token", "hsm")
		good := fltMetric(t, inst.admin, "gmgate_vault_operations_total", "op", "decrypt", "token", "hsm", "result", "ok")
		if ok {
			return good
		}
		return all - good
	}

	if err := sealed("key objects present"); err != nil {
		t.Fatalf("key objects present: %v\n%s", err, inst.out)
	}
	if err := handshake(); err != nil {
		t.Fatalf("key objects present: TLCP: %v", err)
	}
	if decrypts(true) < 2 {
		t.Fatalf("token decryptions not counted: %v", decrypts(true))
	}

	tokdir := filepath.Join(v.Dir, "tokens")
	aside := t.TempDir()
	fltTokenObjects(t, tokdir, aside, true)
	failedBefore := decrypts(false)
	const tries = 3
	for i := 0; i < tries; i++ {
		err := sealed("key objects gone")
		var re *client.ReplyError
		if err == nil || !errors.As(err, &re) || !errors.Is(err, client.ErrReplyUnsigned) || re.GatewayCode == "" || re.StatusCode < 400 {
			t.Fatalf("key objects gone: %v, want an unsigned JSON refusal", err)
		}
		// Fail closed, and not the client's fault: 503 key_unavailable (may retry).
		if re.StatusCode != http.StatusServiceUnavailable || re.GatewayCode != "key_unavailable" {
			t.Fatalf("key objects gone: sealed request refused with %d %s, want 503 key_unavailable", re.StatusCode, re.GatewayCode)
		}
		if err := handshake(); err == nil {
			t.Fatal("key objects gone: a TLCP ECC handshake succeeded without the token's encryption key")
		} else if !strings.Contains(err.Error(), "internal error") {
			t.Fatalf("key objects gone: TLCP handshake: %v, want the server's internal_error alert", err)
		}
	}
	if got := decrypts(false); got < failedBefore+2*tries {
		t.Fatalf("failed token decryptions counted %v -> %v, want +%d", failedBefore, got, 2*tries)
	}
	tokenUp := func(want float64) {
		t.Helper()
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			got := fltMetric(t, inst.admin, "gmgate_vault_token_up", "token", "hsm")
			if got == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("gmgate_vault_token_up{token=hsm} = %v, want %v", got, want)
			}
		}
	}
	tokenUp(0) // the health probe sees the token's objects gone

	fltTokenObjects(t, tokdir, aside, false)
	tokenUp(1)
	for i := 0; i < tries; i++ {
		if err := sealed("key objects back"); err != nil {
			t.Fatalf("key objects back: %v", err)
		}
		if err := handshake(); err != nil {
			t.Fatalf("key objects back: TLCP: %v", err)
		}
	}
	fltProcessAlive(t, inst)
	if inst.cmd.Process.Pid != pid {
		t.Fatal("gmgate was restarted")
	}
}
