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
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/client"
	"github.com/gmgate/gmgate/cosign"
	"github.com/gmgate/gmgate/cosign/platform"
	"github.com/gmgate/gmgate/internal/attack"
	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/refusal"
	"github.com/gmgate/gmgate/signing"
)

// TestCosignRotateRealBinary: a terminal enrols a collaborative key, gets its certificate and
// pays; it rotates the shares through the real binary (SDK Rotate: rotate, co-signature of the
// challenge with the pending share, confirm, PIN file re-sealed) and pays again: gm_verify accepts
// the new signatures under the SAME certificate. A copy of the old PIN file cannot sign any more;
// the rotation refusals answer with their codes; rotate and confirm are audited and counted.
func TestCosignRotateRealBinary(t *testing.T) {
	dir := t.TempDir()
	tokenKey := randBytes(16)
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
	const keyID = "terminal-0050"
	tokenFor := func(op string) (string, error) {
		return platform.IssueToken(mac, keyID, []string{op}, time.Now().Add(2*time.Minute))
	}
	var port int
	var base string
	start := func(src string) *instance {
		port = freePort(t)
		base = fmt.Sprintf("http://127.0.0.1:%d", port)
		return startGmgate(t, strings.NewReplacer("{DIR}", dir, "{PORT}", fmt.Sprint(port), "{BACKEND}", backend.URL).Replace(src))
	}

	// 1. Enrol, seal under the PIN, certify the joint key.
	inst := start(strings.Replace(cosignCaddyfile, "files {DIR}/terminal.pem", "files {DIR}/pki/"+pki.DevClientSignBase+".pem", 1))
	ccfg := client.CoSignConfig{URL: base + "/cosign", Token: tokenFor, SendInstruction: true}
	cs, err := client.EnrollCoSigner(ccfg, keyID)
	if err != nil {
		t.Fatalf("enrol: %v", err)
	}
	pin := []byte("864209")
	oldSealed, err := cs.SealWithIterations(pin, client.MinPINIterations)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, keyID+".key")
	if err := os.WriteFile(keyFile, oldSealed, 0o600); err != nil {
		t.Fatal(err)
	}
	inst.stop()
	cert, err := dev.Root.IssueFor(cs.Public(), pki.RoleSign, pki.IssueOptions{CommonName: keyID})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "terminal.pem"), pki.EncodeCertificatesPEM(cert), 0o644); err != nil {
		t.Fatal(err)
	}
	inst = start(cosignCaddyfile)
	ccfg.URL = base + "/cosign"

	open := func(sealed []byte) *client.CoSigner {
		t.Helper()
		s, err := client.OpenCoSigner(ccfg, sealed, pin)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	pay := func(s *client.CoSigner, n int) {
		t.Helper()
		c, err := client.New(client.Config{BaseURL: base, Scheme: signing.WechatPayName,
			Key:           signing.Key{Signer: s, Cert: cert, MerchantID: "1900000001"},
			PlatformCerts: []*smx509.Certificate{dev.Platform.Cert}, Timeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		order := fmt.Sprintf(`{"mchid":"1900000001","out_trade_no":"GM-ROT-%d","amount":{"total":%d}}`, n, 100+n)
		resp, err := c.Post(context.Background(), "/v3/pay/transactions/native", "application/json", []byte(order))
		if err != nil {
			t.Fatalf("payment %d: %v", n, err)
		}
		if resp.StatusCode != http.StatusOK || string(seenBody) != order {
			t.Fatalf("payment %d: status %d, back end saw %q", n, resp.StatusCode, seenBody)
		}
	}

	// 2. Pay, rotate, pay again with the re-sealed file under the same certificate.
	cs = open(oldSealed)
	pay(cs, 1)
	if err := cs.Rotate(context.Background(), keyFile, pin); err != nil {
		t.Fatalf("rotate: %v", err)
	}
	pay(cs, 2)
	newSealed, err := os.ReadFile(keyFile)
	if err != nil || bytes.Equal(newSealed, oldSealed) {
		t.Fatalf("key file not re-sealed: %v", err)
	}
	reopened := open(newSealed)
	if !reopened.Public().(*ecdsa.PublicKey).Equal(cert.PublicKey) {
		t.Fatal("joint key changed by the rotation")
	}
	pay(reopened, 3)

	// 3. The old PIN file (a backup, a thief's copy) cannot produce a signature any more.
	stale := open(oldSealed)
	instr := []byte("POST\n/v3/pay/transactions/native\n1764800000\nNONCE\n{}\n")
	if _, err := signing.SignSM2(stale, instr, nil, signing.DER); !errors.Is(err, cosign.ErrVerify) {
		t.Fatalf("old share after rotation: %v", err)
	}

	// 4. Rotation refusals on the wire.
	post := func(op, token string, body any) (int, string, map[string][]byte) {
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
		if resp.StatusCode == http.StatusOK {
			var out map[string][]byte
			json.Unmarshal(data, &out)
			return resp.StatusCode, string(refusal.OK), out
		}
		code, _, _ := refusal.ParseBody(data)
		return resp.StatusCode, code, nil
	}
	tok := func(op string) string { s, _ := tokenFor(op); return s }
	if st, code, _ := post("rotate", "", map[string]any{"key_id": keyID}); st != 401 || code != string(platform.CodeUnauthenticated) {
		t.Errorf("rotate without a session: %d %s", st, code)
	}
	if st, code, _ := post("rotate", tok("sign"), map[string]any{"key_id": keyID}); st != 401 || code != string(platform.CodeUnauthenticated) {
		t.Errorf("rotate with a sign-only session: %d %s", st, code)
	}
	st, code, started := post("rotate", tok("rotate"), map[string]any{"key_id": keyID})
	if st != 200 || len(started["rho"]) != 32 || len(started["rotation_id"]) != 16 {
		t.Fatalf("raw rotate: %d %s", st, code)
	}
	if st, code, _ := post("rotate", tok("rotate"), map[string]any{"key_id": keyID}); st != 409 || code != string(platform.CodeRotationPending) {
		t.Errorf("concurrent rotation: %d %s", st, code)
	}
	// a valid co-signature of something else (a payment) does not confirm
	paySig, err := signing.SignSM2(reopened, instr, nil, signing.DER)
	if err != nil {
		t.Fatal(err)
	}
	if st, code, _ := post("confirm", tok("rotate"), map[string]any{"key_id": keyID, "rotation_id": started["rotation_id"], "signature": paySig}); st != 400 || code != string(platform.CodeRotationMismatch) {
		t.Errorf("confirm with a wrong signature: %d %s", st, code)
	}
	// the current pair cannot sign the rotation challenge
	pub := cert.PublicKey.(*ecdsa.PublicKey)
	challenge, _ := cosign.RotationChallengeDigest(pub, keyID, started["rotation_id"])
	sg, err := cosign.StartSign(rand.Reader, pub, challenge)
	if err != nil {
		t.Fatal(err)
	}
	if st, code, _ := post("sign", tok("sign"), map[string]any{"key_id": keyID, "e": challenge, "q1": sg.Q1()}); st != 400 || code != string(platform.CodeRotationMismatch) {
		t.Errorf("challenge with the current share: %d %s", st, code)
	}
	// while that rotation is pending, the current share keeps signing
	pay(reopened, 4)
	if !sm2.VerifyASN1WithSM2(pub, nil, instr, paySig) {
		t.Error("co-signature does not verify")
	}

	// 5. Audited and counted.
	m := scrapeMetrics(t, inst.admin)
	for _, want := range []map[string]string{
		{"op": "rotate", "code": "ok"}, {"op": "confirm", "code": "ok"},
		{"op": "rotate", "code": string(platform.CodeRotationPending)}, {"op": "confirm", "code": string(platform.CodeRotationMismatch)},
	} {
		if n, ok := m.sum("gmgate_cosign_operations_total", want); !ok || n < 1 {
			t.Errorf("metric gmgate_cosign_operations_total%v = %v", want, n)
		}
	}
	inst.stop()
	decisions := strings.Join(auditDecisions(t, filepath.Join(dir, "audit", "audit.log")), "\n")
	for _, want := range []string{
		"inbound/accept/ok/cosign-rotate/", "inbound/accept/ok/cosign-confirm/",
		"inbound/reject/" + string(platform.CodeRotationPending) + "/cosign-rotate/",
		"inbound/reject/" + string(platform.CodeRotationMismatch) + "/cosign-confirm/",
	} {
		if !strings.Contains(decisions, want) {
			t.Errorf("audit log lacks %q", want)
		}
	}
}
