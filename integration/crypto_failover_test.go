package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/client"
	"github.com/gmgate/gmgate/envelope"
	"github.com/gmgate/gmgate/internal/testenv"
	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/signing"
)

// cryptoFailoverCaddyfile: gm_crypto with an SM2 key kept inside two SoftHSM2 tokens of one
// label (the vault's replicas a and b; token_decrypt is set in the adapted JSON), callers
// authenticated by signed requests.
const cryptoFailoverCaddyfile = `{
	admin {ADMIN}
	skip_install_trust
	auto_https off
	metrics
	gmgate {
		vault {
			token a {
				module {MODULE}
				label gmgate-fo
				serial {SERIALA}
				pin_env ` + vaultPINEnv + `
				mode wrapped
			}
			token b {
				module {MODULE}
				label gmgate-fo
				serial {SERIALB}
				pin_env ` + vaultPINEnv + `
				mode wrapped
			}
			key platform-enc "pkcs11:token=gmgate-fo;object=platform-enc"{CERT}
		}
	}
}

http://127.0.0.1:{PORT} {
	handle /shf/v1/* {
		gm_crypto {
			caller settlement subject_cn settlement
			allow settlement open_envelope platform-enc
			scheme http-sig-sm2
			identities {
				file {IDS}
			}
			client_ca {CA}
		}
	}
	respond 404
}
`

// TestCryptoReplicaFailoverRealBinary: the real binary serves OpenEnvelope with a key that lives
// in two SoftHSM2 tokens (every decryption is a token operation); token a loses its key objects
// while gmgate runs; every following request still succeeds, served by b, and
// gmgate_vault_failovers_total{key="platform-enc",from="a",to="b"} counts the moves.
func TestCryptoReplicaFailoverRealBinary(t *testing.T) {
	util := needSoftHSM(t)
	dir := t.TempDir()
	tokdir := filepath.Join(dir, "tokens")
	if err := os.Mkdir(tokdir, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	if err := os.WriteFile(conf, []byte("directories.tokendir = "+tokdir+"\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pin := randomDigits(t, 8)
	env := []string{"SOFTHSM2_CONF=" + conf, vaultPINEnv + "=" + pin}
	softhsm := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(util, args...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("softhsm2-util %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	for i := 0; i < 2; i++ {
		softhsm("--init-token", "--free", "--label", "gmgate-fo", "--so-pin", randomDigits(t, 10), "--pin", pin)
	}
	var serials []string
	var serial string
	for _, line := range strings.Split(softhsm("--show-slots"), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		switch v = strings.TrimSpace(v); {
		case !ok:
		case k == "Serial number":
			serial = v
		case k == "Label" && v == "gmgate-fo" && serial != "":
			serials = append(serials, serial)
		}
	}
	if len(serials) != 2 {
		t.Fatalf("want two tokens labelled gmgate-fo, got %v", serials)
	}

	ca, _, err := pki.NewRootCA(pki.IssueOptions{CommonName: "failover CA"})
	if err != nil {
		t.Fatal(err)
	}
	settlement, err := ca.IssueClientPair(pki.IssueOptions{CommonName: "settlement", SerialNumber: big.NewInt(0x5e7)})
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caFile := write("ca.pem", pki.EncodeCertificatesPEM(ca.Cert))
	idsFile := write("callers.pem", pki.EncodeCertificatesPEM(settlement.Sign.Cert))
	certFile := filepath.Join(dir, "platform-enc.pem")

	inst := startGmgate(t, "{\n\tadmin {ADMIN}\n}\n", env...)
	port := freePort(t)
	render := func(withCert bool) string {
		cert := ""
		if withCert {
			cert = " {\n\t\t\t\tcertificate " + certFile + "\n\t\t\t}"
		}
		return strings.NewReplacer("{ADMIN}", inst.admin, "{MODULE}", pkcs11Module(), "{SERIALA}", serials[0], "{SERIALB}", serials[1],
			"{CERT}", cert, "{PORT}", fmt.Sprint(port), "{IDS}", idsFile, "{CA}", caFile).Replace(cryptoFailoverCaddyfile)
	}
	adminJSON := write("admin.json", fltAdaptTokenDecrypt(t, dir, render(false), env, "platform-enc"))
	vaultCmd := func(args ...string) []byte {
		t.Helper()
		cmd := exec.Command(gmgateBin(t), append(append([]string{"vault"}, args...), "--config", adminJSON)...)
		cmd.Env = append(append(os.Environ(), "HOME="+dir), env...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("gmgate vault %v: %v\n%s", args, err, stderr.String())
		}
		return stdout.Bytes()
	}
	vaultCmd("init")
	vaultCmd("generate", "platform-enc")
	var exp struct {
		PublicKeyPEM string `json:"public_key_pem"`
	}
	if err := json.Unmarshal(vaultCmd("export-public", "platform-enc", "--json"), &exp); err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode([]byte(exp.PublicKeyPEM))
	if blk == nil {
		t.Fatalf("export-public printed no PEM: %q", exp.PublicKeyPEM)
	}
	pub, err := smx509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	encCert, err := ca.IssueFor(pub, pki.RoleEnc, pki.IssueOptions{CommonName: "gmgate platform (replicated)"})
	if err != nil {
		t.Fatal(err)
	}
	write("platform-enc.pem", pki.EncodeCertificatesPEM(encCert))
	// Both replicas hold the key: the vault stored it on each.
	var list []vaultKeyInfo
	if err := json.Unmarshal(vaultCmd("list", "--json"), &list); err != nil || len(list) != 1 || len(list[0].Tokens) != 2 {
		t.Fatalf("vault list: %+v %v", list, err)
	}

	full := fltAdaptTokenDecrypt(t, dir, render(true), env, "platform-enc")
	resp, err := http.Post("http://"+inst.admin+"/load", "application/json", bytes.NewReader(full))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("loading the configuration: %d %s\n%s", resp.StatusCode, body, inst.out)
	}

	svc, err := client.NewCryptoService(fmt.Sprintf("http://127.0.0.1:%d", port), client.Config{Scheme: signing.HTTPSigName,
		Key: signing.Key{Signer: settlement.Sign.Key, Cert: settlement.Sign.Cert}, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	open := func(what string, n int) {
		t.Helper()
		for i := 0; i < n; i++ {
			secret := make([]byte, 24)
			rand.Read(secret)
			env, err := envelope.Seal(secret, encCert, envelope.SealOptions{GCM: true})
			if err != nil {
				t.Fatal(err)
			}
			r, err := svc.One(context.Background(), "OpenEnvelope", "platform-enc", client.CryptoItem{Envelope: env})
			if err != nil || !bytes.Equal(r.Plaintext, secret) {
				t.Fatalf("%s: request %d: %v\n%s", what, i, err, inst.out)
			}
		}
	}
	failovers := func() float64 {
		return fltMetric(t, inst.admin, "gmgate_vault_failovers_total", "key", "platform-enc", "from", "a", "to", "b")
	}
	open("both replicas", 4)
	if n := failovers(); n != 0 {
		t.Fatalf("failovers with both replicas healthy: %v", n)
	}

	// Token a's key objects disappear under the running gmgate (a wiped or replaced HSM).
	testenv.MoveSoftHSMObjects(t, testenv.SoftHSMTokenDir(t, tokdir, serials[0]), t.TempDir(), true)
	open("replica a broken", 6)
	if n := failovers(); n < 2 {
		t.Fatalf("gmgate_vault_failovers_total a->b = %v, want one per request that tried a first", n)
	}
	if n := fltMetric(t, inst.admin, "gmgate_crypto_requests_total", "caller", "settlement", "op", "open_envelope", "key", "platform-enc", "code", "ok"); n != 10 {
		t.Fatalf("served OpenEnvelope requests: %v, want 10", n)
	}
}
