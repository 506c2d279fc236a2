package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/client"
	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/tlcp"
)

// The key token becomes unavailable. The token is a SoftHSM2 token made with `gmgate vault`
// (newVaultToken) in wrapped mode, the only mode SoftHSM2 supports (it has no SM2 mechanisms):
// the token holds the AES key-encryption key and each SM2 key is unwrapped into memory once,
// when the vault is opened (keyvault/sm2key.go, docs/keyvault.md). So a running gateway needs the
// token only to open a vault, i.e. at start and at a reload that opens a new vault; reply
// signatures and TLCP handshakes use the in-memory keys.

const fltTokenCaddyfile = `{
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
				enc_key srv-enc
			}
		}
	}
}

http://127.0.0.1:{PORT} {
	header X-Config-Generation "{GEN}"
	gm_verify {
		scheme wechatpay-v3-sm2
		reply_signing {
			key reply-sign
		}
	}
	reverse_proxy {BACKEND}
}

http://:{TLCP} {
	respond "tlcp {GEN}"
}
`

// TestFaultTokenUnavailable removes the token (its directory disappears) under a running gmgate:
//   - signed requests keep being answered with replies signed by the token's key, and TLCP
//     handshakes with the token's server keys keep working (keys unwrapped in memory);
//   - `gmgate reload` with a changed vault configuration is refused (token unavailable) and the
//     running configuration keeps serving; a fresh `gmgate run` refuses to start (fail closed:
//     never running without its keys);
//   - once the token is back, a fresh gmgate starts and serves with it.
func TestFaultTokenUnavailable(t *testing.T) {
	t.Parallel()
	srv := func(name string, role pki.Role) keySpec {
		return keySpec{Name: name, Role: role, CN: "localhost", SANs: []string{"localhost", "127.0.0.1"},
			EKU: []smx509.ExtKeyUsage{smx509.ExtKeyUsageServerAuth}}
	}
	v := newVaultToken(t, keySpec{Name: "reply-sign", Role: pki.RoleSign, CN: "gmgate platform (token)"},
		srv("srv-sign", pki.RoleSign), srv("srv-enc", pki.RoleEnc))
	backend := fltStartBackend(t)
	render := func(port, tlcpPort, gen int, vaultBlock string) string {
		return strings.NewReplacer("{PORT}", strconv.Itoa(port), "{TLCP}", strconv.Itoa(tlcpPort), "{BACKEND}", backend.addr,
			"{GEN}", strconv.Itoa(gen), "{VAULT}", vaultBlock).Replace(fltTokenCaddyfile)
	}
	port, tlcpPort := freePort(t), freePort(t)
	inst := startGmgate(t, render(port, tlcpPort, 1, v.Block), v.Env...)
	pkiDir := filepath.Join(inst.dir, "pki")

	replyCert := v.Cert(t, "reply-sign")
	newClient := func(port int) *client.Client {
		return fltClient(t, pkiDir, fmt.Sprintf("http://127.0.0.1:%d", port), replyCert)
	}
	// signedExchange: a signed request reaches the back end once and its reply verifies with
	// the token key's certificate, served by configuration generation gen.
	signedExchange := func(c *client.Client, gen int, what string) {
		t.Helper()
		before := backend.calls.Load()
		r, err := c.Post(context.Background(), "/v3/pay/transactions/native", "application/json", []byte(`{"mchid":"1900000001"}`))
		if err != nil {
			t.Fatalf("%s: %v\n%s", what, err, inst.out)
		}
		if r.StatusCode != http.StatusOK || r.Reply == nil || r.Reply.Certificate == nil || !r.Reply.Certificate.Equal(replyCert) ||
			r.Header.Get("X-Config-Generation") != strconv.Itoa(gen) || backend.calls.Load() != before+1 {
			t.Fatalf("%s: status %d generation %q reply %+v, back end calls %d -> %d", what, r.StatusCode,
				r.Header.Get("X-Config-Generation"), r.Reply, before, backend.calls.Load())
		}
	}
	pool := smx509.NewCertPool()
	pool.AddCert(v.CA.Cert)
	tlcpExchange := func(port, gen int, what string) {
		t.Helper()
		conn, err := tlcp.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port), &tlcp.Config{RootCAs: pool, ServerName: "localhost",
			CipherSuites: []uint16{tlcp.ECC_SM4_GCM_SM3}})
		if err != nil {
			t.Fatalf("%s: TLCP handshake with the token's server keys: %v", what, err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		if st := conn.ConnectionState(); !st.PeerSignCertificate.Equal(v.Cert(t, "srv-sign")) {
			t.Fatalf("%s: the server did not present the token key's certificate", what)
		}
		fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
		resp, _ := io.ReadAll(conn)
		if !strings.HasSuffix(string(resp), "tlcp "+strconv.Itoa(gen)) {
			t.Fatalf("%s: TLCP response %q", what, resp)
		}
	}
	signOK := func() float64 {
		return fltMetric(t, inst.admin, "gmgate_vault_operations_total", "key", "reply-sign", "op", "sign", "result", "ok")
	}

	c := newClient(port)
	signedExchange(c, 1, "token present")
	tlcpExchange(tlcpPort, 1, "token present")
	signs := signOK()
	if signs < 1 {
		t.Fatalf("gmgate_vault_operations_total{key=reply-sign,op=sign,result=ok} = %v after a signed reply", signs)
	}

	// The token disappears.
	tokdir := filepath.Join(v.Dir, "tokens")
	if err := os.Rename(tokdir, tokdir+".gone"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		signedExchange(c, 1, "token gone")
		tlcpExchange(tlcpPort, 1, "token gone")
	}
	if got := signOK(); got != signs+3 {
		t.Fatalf("reply signatures counted %v -> %v, want +3", signs, got)
	}

	// A reload that opens a new vault (its token configuration changed) is refused; the running
	// configuration keeps serving.
	changed := strings.Replace(v.Block, "\t\tmode wrapped\n", "\t\tmode wrapped\n\t\tpool_size 2\n", 1)
	if changed == v.Block {
		t.Fatalf("vault block has no `mode wrapped` line to extend:\n%s", v.Block)
	}
	out, err := fltReload(t, inst, render(port, tlcpPort, 2, changed), "gen2", v.Env...)
	if err == nil || !strings.Contains(string(out), "token unavailable") {
		t.Fatalf("gmgate reload with the token gone: %v, want a refusal naming the unavailable token\n%s", err, out)
	}
	signedExchange(c, 1, "after the refused reload")
	tlcpExchange(tlcpPort, 1, "after the refused reload")

	// A fresh gmgate refuses to start.
	port2, tlcp2 := freePort(t), freePort(t)
	dir2 := t.TempDir()
	cfPath := filepath.Join(dir2, "Caddyfile")
	cf := strings.NewReplacer("{ADMIN}", fmt.Sprintf("127.0.0.1:%d", freePort(t)), "{DIR}", inst.dir).Replace(render(port2, tlcp2, 3, v.Block))
	if err := os.WriteFile(cfPath, []byte(cf), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	run := exec.CommandContext(ctx, gmgateBin(t), "run", "--config", cfPath, "--adapter", "caddyfile")
	run.Env = append(append(os.Environ(), "HOME="+dir2, "XDG_DATA_HOME="+filepath.Join(dir2, "data"),
		"XDG_CONFIG_HOME="+filepath.Join(dir2, "config")), v.Env...)
	startOut, err := run.CombinedOutput()
	// (SoftHSM2's C_Initialize itself fails when its token directory is missing, so the error
	// is the module's, not "token unavailable".)
	if ctx.Err() != nil || err == nil || !strings.Contains(string(startOut), "opening key vault") {
		t.Fatalf("gmgate run with the token gone: %v (context %v), want an exit because the vault cannot be opened\n%s", err, ctx.Err(), startOut)
	}
	for _, e := range v.Env {
		if pin, ok := strings.CutPrefix(e, vaultPINEnv+"="); ok && (strings.Contains(string(startOut), pin) || strings.Contains(inst.out.String(), pin)) {
			t.Fatal("the token PIN appears in gmgate's output")
		}
	}

	// The token comes back: the running gateway never stopped; a fresh gmgate starts and serves.
	if err := os.Rename(tokdir+".gone", tokdir); err != nil {
		t.Fatal(err)
	}
	signedExchange(c, 1, "token back")
	startGmgate(t, strings.ReplaceAll(render(port2, tlcp2, 3, v.Block), "{DIR}/pki", inst.dir+"/pki"), v.Env...)
	signedExchange(newClient(port2), 3, "fresh gmgate with the token back")
	tlcpExchange(tlcp2, 3, "fresh gmgate with the token back")
}
