package integration

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/audit"
	"github.com/gmgate/gmgate/client"
	"github.com/gmgate/gmgate/cosign"
	"github.com/gmgate/gmgate/cosign/platform"
	"github.com/gmgate/gmgate/internal/attack"
	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/refusal"
	"github.com/gmgate/gmgate/signing"
)

const cosignCaddyfile = `{
	admin {ADMIN}
	skip_install_trust
	auto_https off
	gmgate {
		dev_pki {DIR}/pki
		audit {DIR}/audit/audit.log
		vault {
			key cosign-seal file:{DIR}/seal.sm4 {
				type sm4
			}
			key cosign-token file:{DIR}/token.sm4 {
				type sm4
			}
		}
	}
}

http://:{PORT} {
	handle /cosign/* {
		gm_cosign {
			share_dir {DIR}/shares
			seal_key cosign-seal
			token_key cosign-token
			max_failures 10
			lockout 10m
			rate_per_minute 600
			burst 100
			bind_instruction
		}
	}
	handle {
		gm_verify {
			scheme wechatpay-v3-sm2
			identities {
				files {DIR}/terminal.pem
			}
		}
		reverse_proxy {BACKEND}
	}
}
`

// TestCosignRealBinary: a terminal enrols a collaborative key through gm_cosign in the real
// binary, gets a certificate for the joint key, and its SDK signs payment instructions through
// gm_cosign (bound to the instruction) that gm_verify then accepts; collaborative decryption
// works; the refusals table is answered with its codes; every co-operation is audited and
// counted.
func TestCosignRealBinary(t *testing.T) {
	dir := t.TempDir()
	tokenKey := make([]byte, 16)
	rand.Read(tokenKey)
	for name, k := range map[string][]byte{"seal.sm4": randBytes(16), "token.sm4": tokenKey} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(hex.EncodeToString(k)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	dev, err := pki.EnsureDevPKI(filepath.Join(dir, "pki"), nil)
	if err != nil {
		t.Fatal(err)
	}
	var seenBody []byte
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seenBody, _ = io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"code":"SUCCESS"}`))
	}))
	defer backend.Close()
	mac := attack.HMACSM3Key(tokenKey)
	issue := func(keyID string) func(op string) (string, error) {
		return func(op string) (string, error) {
			return platform.IssueToken(mac, keyID, []string{op}, time.Now().Add(2*time.Minute))
		}
	}

	// 1. Enrol the terminal's collaborative key before gm_verify needs its certificate: a first
	// instance serves gm_cosign only, the certificate is issued, then the full configuration runs.
	// Each instance gets a fresh port (a port just released may be taken by a parallel test).
	var port int
	var base string
	enrolOnly := strings.Replace(cosignCaddyfile, "files {DIR}/terminal.pem", "files {DIR}/pki/"+pki.DevClientSignBase+".pem", 1)
	cf := func(src string) string {
		return strings.NewReplacer("{DIR}", dir, "{PORT}", fmt.Sprint(port), "{BACKEND}", backend.URL).Replace(src)
	}
	start := func(src string) *instance {
		port = freePort(t)
		base = fmt.Sprintf("http://127.0.0.1:%d", port)
		return startGmgate(t, cf(src))
	}
	inst := start(enrolOnly)
	ccfg := client.CoSignConfig{URL: base + "/cosign", Token: issue("terminal-0042"), SendInstruction: true}
	cs, err := client.EnrollCoSigner(ccfg, "terminal-0042")
	if err != nil {
		t.Fatalf("enrol: %v", err)
	}
	sealed, err := cs.SealWithIterations([]byte("246810"), client.MinPINIterations)
	if err != nil {
		t.Fatal(err)
	}
	other, err := client.EnrollCoSigner(client.CoSignConfig{URL: base + "/cosign", Token: issue("terminal-0043")}, "terminal-0043")
	if err != nil {
		t.Fatal(err)
	}
	otherSealed, err := other.SealWithIterations([]byte("1357"), client.MinPINIterations)
	if err != nil {
		t.Fatal(err)
	}
	inst.stop()

	cert, err := dev.Root.IssueFor(cs.Public(), pki.RoleSign, pki.IssueOptions{CommonName: "terminal-0042"})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "terminal.pem"), pki.EncodeCertificatesPEM(cert), 0o644); err != nil {
		t.Fatal(err)
	}
	inst = start(cosignCaddyfile)

	// 2. The reopened (PIN) key signs payment instructions through the unchanged SDK; gm_verify accepts.
	ccfg.URL = base + "/cosign"
	cs, err = client.OpenCoSigner(ccfg, sealed, []byte("246810"))
	if err != nil {
		t.Fatal(err)
	}
	other, err = client.OpenCoSigner(client.CoSignConfig{URL: base + "/cosign", Token: issue("terminal-0043")}, otherSealed, []byte("1357"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(client.Config{BaseURL: base, Scheme: signing.WechatPayName,
		Key:           signing.Key{Signer: cs, Cert: cert, MerchantID: "1900000001"},
		PlatformCerts: []*smx509.Certificate{dev.Platform.Cert}, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		order := fmt.Sprintf(`{"mchid":"1900000001","out_trade_no":"GM-COSIGN-%d","amount":{"total":%d}}`, i, 100+i)
		resp, err := c.Post(context.Background(), "/v3/pay/transactions/native", "application/json", []byte(order))
		if err != nil {
			t.Fatalf("payment %d: %v", i, err)
		}
		if resp.StatusCode != http.StatusOK || string(seenBody) != order {
			t.Fatalf("payment %d: status %d, back end saw %q", i, resp.StatusCode, seenBody)
		}
	}

	// 3. Collaborative decryption through the binary.
	ct, _ := sm2.EncryptASN1(rand.Reader, cs.Public().(*ecdsa.PublicKey), []byte("card data"))
	if pt, err := cs.Decrypt(nil, ct, nil); err != nil || string(pt) != "card data" {
		t.Fatalf("decrypt: %q %v", pt, err)
	}

	// 4. The refusals table, raw on the wire.
	post := func(op, token string, body any) (int, string) {
		t.Helper()
		b, _ := json.Marshal(body)
		req, _ := http.NewRequest(http.MethodPost, base+"/cosign/"+op, bytes.NewReader(b))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		code, _, _ := refusal.ParseBody(data)
		if resp.StatusCode == http.StatusOK {
			code = string(refusal.OK)
		}
		return resp.StatusCode, code
	}
	pub := cs.Public().(*ecdsa.PublicKey)
	instr := []byte("POST\n/v3/pay/transactions/native\n1764800000\nNONCE\n{}\n")
	e, _ := cosign.Digest(pub, nil, instr)
	q1 := func() []byte {
		sg, _ := cosign.StartSign(rand.Reader, pub, e)
		return sg.Q1()
	}
	signTok := func(id string) string { tok, _ := issue(id)("sign"); return tok }
	reused := q1()
	sreq := func(q []byte) map[string]any {
		return map[string]any{"key_id": "terminal-0042", "e": e, "q1": q, "instruction": instr}
	}
	g := attack.SM2Generator()
	cases := []struct {
		name   string
		op     string
		token  string
		body   any
		status int
		code   refusal.Code
	}{
		{"fresh Q1", "sign", signTok("terminal-0042"), sreq(reused), 200, refusal.OK},
		{"reused Q1", "sign", signTok("terminal-0042"), sreq(reused), 409, platform.CodeReusedPoint},
		{"identity Q1", "sign", signTok("terminal-0042"), sreq(attack.SM2Identity()), 400, platform.CodeInvalidPoint},
		{"off-curve Q1", "sign", signTok("terminal-0042"), sreq(attack.SM2OffCurve(g)), 400, platform.CodeInvalidPoint},
		{"malformed scalar e", "sign", signTok("terminal-0042"), map[string]any{"key_id": "terminal-0042", "e": e[:20], "q1": q1()}, 400, platform.CodeInvalidScalar},
		{"digest of another instruction", "sign", signTok("terminal-0042"), map[string]any{"key_id": "terminal-0042", "e": e, "q1": q1(), "instruction": []byte("other")}, 400, platform.CodeBindingMismatch},
		{"wrong terminal", "sign", signTok("terminal-0043"), sreq(q1()), 403, platform.CodeWrongTerminal},
		{"no session", "sign", "", sreq(q1()), 401, platform.CodeUnauthenticated},
		{"malformed T1", "decrypt", signTokOp(t, issue, "terminal-0042", "decrypt"), map[string]any{"key_id": "terminal-0042", "t1": []byte{4, 1, 2}}, 400, platform.CodeInvalidPoint},
		{"keygen over an existing key", "keygen", signTokOp(t, issue, "terminal-0042", "keygen"), map[string]any{"key_id": "terminal-0042", "p1": g}, 409, platform.CodeKeyExists},
	}
	for _, tc := range cases {
		status, code := post(tc.op, tc.token, tc.body)
		if status != tc.status || code != string(tc.code) {
			t.Errorf("%s: %d %s, want %d %s", tc.name, status, code, tc.status, tc.code)
		}
	}
	// Lockout: terminal-0043 fails ten times (max_failures 10), then even a valid session is refused.
	for range 10 {
		post("sign", "", map[string]any{"key_id": "terminal-0043", "e": e, "q1": q1()})
	}
	if st, code := post("sign", signTok("terminal-0043"), map[string]any{"key_id": "terminal-0043", "e": e, "q1": q1(), "instruction": instr}); st != 423 || code != string(platform.CodeLocked) {
		t.Errorf("locked out: %d %s", st, code)
	}
	var ce *client.CoSignError
	if _, err := signing.SignSM2(other, instr, nil, signing.DER); !errors.As(err, &ce) || ce.Code != string(platform.CodeLocked) {
		t.Errorf("locked terminal's SDK: %v", err)
	}
	// A lost d_2 (another platform's share) cannot help a thief: covered in package cosign; a lost
	// d_1 alone cannot produce a signature without a session (above).

	// 5. `gmgate cosign token` issues a session token the running handler accepts, and
	// `gmgate cosign list|destroy` manage the sealed shares.
	cfgFile := filepath.Join(dir, "Caddyfile.cli")
	if err := os.WriteFile(cfgFile, []byte(strings.ReplaceAll(cf(cosignCaddyfile), "{ADMIN}", "off")), 0o600); err != nil {
		t.Fatal(err)
	}
	cli := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(gmgateBin(t), append([]string{"cosign"}, append(args, "--config", cfgFile)...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("gmgate cosign %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out[bytes.LastIndexByte(bytes.TrimSpace(out), '\n')+1:]))
	}
	cliTok := cli("token", "terminal-0042", "--token-key", "cosign-token", "--ops", "sign", "--ttl", "1m")
	if st, code := post("sign", cliTok, sreq(q1())); st != 200 {
		t.Errorf("token from gmgate cosign token: %d %s", st, code)
	}

	// 6. Every co-operation is audited and counted.
	m := scrapeMetrics(t, inst.admin)
	for _, want := range []map[string]string{
		{"op": "sign", "code": "ok"}, {"op": "decrypt", "code": "ok"},
		{"op": "sign", "code": string(platform.CodeReusedPoint)}, {"op": "sign", "code": string(platform.CodeLocked)},
	} {
		if n, ok := m.sum("gmgate_cosign_operations_total", want); !ok || n < 1 {
			t.Errorf("metric gmgate_cosign_operations_total%v = %v", want, n)
		}
	}
	// keygen ran on the first instance only: this one exports it at zero.
	if n, ok := m.sum("gmgate_cosign_operations_total", map[string]string{"op": "keygen", "code": "ok"}); !ok || n != 0 {
		t.Errorf("keygen counter not exported at zero: %v %v", n, ok)
	}
	inst.stop()
	decisions := strings.Join(auditDecisions(t, filepath.Join(dir, "audit", "audit.log")), "\n")
	for _, want := range []string{
		"inbound/accept/ok/cosign-keygen/", "inbound/accept/ok/cosign-sign/", "inbound/accept/ok/cosign-decrypt/",
		"inbound/reject/" + string(platform.CodeReusedPoint) + "/cosign-sign/",
		"inbound/reject/" + string(platform.CodeLocked) + "/cosign-sign/",
		"inbound/accept/ok/wechatpay-v3-sm2/", // gm_verify accepted the co-signed instructions
	} {
		if !strings.Contains(decisions, want) {
			t.Errorf("audit log lacks %q", want)
		}
	}
	shareArgs := []string{"--share-dir", filepath.Join(dir, "shares"), "--seal-key", "cosign-seal"}
	if got := cli(append([]string{"list"}, shareArgs...)...); !strings.Contains(got, "terminal-0043") {
		t.Errorf("gmgate cosign list: %q", got)
	}
	cli(append([]string{"destroy", "terminal-0042"}, shareArgs...)...)
	inst = start(cosignCaddyfile)
	ccfg.URL = base + "/cosign"
	if cs, err = client.OpenCoSigner(ccfg, sealed, []byte("246810")); err != nil {
		t.Fatal(err)
	}
	var gone *client.CoSignError
	if _, err := signing.SignSM2(cs, instr, nil, signing.DER); !errors.As(err, &gone) || gone.Code != string(platform.CodeUnknownKey) {
		t.Errorf("after destroy, the SDK: %v", err)
	}
	if st, code := post("sign", signTok("terminal-0042"), sreq(q1())); st != 404 || code != string(platform.CodeUnknownKey) {
		t.Errorf("after destroy: %d %s", st, code)
	}
	inst.stop()

	// Binding: each accepted co-signature's entry carries SM3 of the instruction, the same value
	// gm_verify's entry for that payment carries, so the evidence joins.
	cosigned, verified := cosignAuditSM3(t, filepath.Join(dir, "audit", "audit.log"))
	if len(cosigned) < 3 {
		t.Fatalf("only %d accepted co-signatures in the audit log", len(cosigned))
	}
	for _, h := range cosigned[:3] {
		if !verified[h] {
			t.Errorf("co-signature over instruction SM3 %s has no gm_verify entry with the same SM3", h)
		}
	}
}

// cosignAuditSM3 returns the signed SM3 of accepted cosign-sign entries, in order, and the set
// of signed SM3 values of accepted gm_verify entries.
func cosignAuditSM3(t *testing.T, base string) ([]string, map[string]bool) {
	segs, err := audit.Segments(base)
	if err != nil {
		t.Fatal(err)
	}
	var cosigned []string
	verified := map[string]bool{}
	for _, s := range segs {
		data, err := os.ReadFile(s)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range bytes.Split(data, []byte("\n")) {
			var e struct {
				Verdict, Scheme string
				SignedSM3       string `json:"signed_sm3"`
			}
			if json.Unmarshal(line, &e) != nil || e.Verdict != "accept" || e.SignedSM3 == "" {
				continue
			}
			switch e.Scheme {
			case "cosign-sign":
				cosigned = append(cosigned, e.SignedSM3)
			case signing.WechatPayName:
				verified[e.SignedSM3] = true
			}
		}
	}
	return cosigned, verified
}

func signTokOp(t *testing.T, issue func(string) func(string) (string, error), id, op string) string {
	tok, err := issue(id)(op)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}
