package integration

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
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

	"github.com/gmgate/gmgate/client"
	"github.com/gmgate/gmgate/cosign/platform"
	"github.com/gmgate/gmgate/internal/attack"
	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/signing"
)

// One gateway: gm_enroll (CA key in SoftHSM2), gm_cosign (checking the enrolment store) and
// gm_verify (identities and CRL from gm_enroll).
const cosignEnrollCaddyfile = `{
	admin {ADMIN}
	auto_https off
	skip_install_trust
	gmgate {
		audit {SHARED}/audit/audit.log {
			signing_key platform-sign
		}
{VAULT}
	}
}

http://127.0.0.1:{PORT} {
	route /.well-known/est/* {
		gm_enroll {
			ca_key enroll-ca
			ca_chain {ROOT}
			store {SHARED}/enroll
			store_key enroll-store
			identities_dir {SHARED}/identities
			crl_file {SHARED}/crl.pem
			crl_check_interval 1s
			escrow_key escrow
			escrow_dir {SHARED}/escrow
			profile terminal {
				common_name "POS-[0-9]{4}"
				organization "GM Test Merchant"
				validity 720h
			}
		}
	}
	route /cosign/* {
		gm_cosign {
			share_dir {SHARED}/shares
			seal_key cosign-seal
			token_key cosign-token
			bind_instruction
			rate_per_minute 600
			burst 100
			max_failures 20
			enroll_store {SHARED}/enroll
			enroll_store_key enroll-store
		}
	}
	route /pay/* {
		gm_verify {
			scheme http-sig-sm2
			trusted_roots {ROOT}
			intermediates {SHARED}/enroll-ca.pem
			identities {
				dir {SHARED}/identities
				reload_interval 1s
			}
			crls {SHARED}/crl.pem
			reply_signing {
				key platform-sign
			}
		}
		reverse_proxy {BACKEND}
	}
}
`

// TestCosignEnrolmentRealBinary: the joint key gets its certificate through the enrolment issue,
// end to end through one real gmgate with gm_cosign, gm_enroll and gm_verify (CA and platform
// keys in SoftHSM2). A software terminal generates its joint key through gm_cosign, enrols with
// a one-time token from `gmgate enroll token` (its PKCS#10 request co-signed, bound to the
// request), opens its enveloped encryption key by collaborative decryption, pays through
// gm_verify with co-signed requests (plain SM2 signatures under its certificate), renews for
// the same joint key through client.Renewer (switching once a payment with the new pair
// passes), and after revoking its certificate is refused by gm_verify (requests co-signed
// before the revocation) and by gm_cosign (cosign_cert_revoked: no more co-signatures,
// co-decryptions or re-enrolment). A single share's request for the joint key is refused by
// gm_enroll. A second terminal whose d_2 is destroyed with `gmgate cosign destroy` can no
// longer sign with its d_1.
func TestCosignEnrolmentRealBinary(t *testing.T) {
	v := newVaultToken(t,
		keySpec{Name: "enroll-ca", Role: pki.RoleCA, CN: "gmgate terminal CA"},
		keySpec{Name: "platform-sign", Role: pki.RoleSign, CN: "gmgate platform"},
	)
	shared := t.TempDir()
	copyFile(t, v.CertFile("enroll-ca"), filepath.Join(shared, "enroll-ca.pem"))
	if err := os.MkdirAll(filepath.Join(shared, "identities"), 0o755); err != nil {
		t.Fatal(err)
	}
	tokenKey := randBytes(16)
	vaultBlock := strings.TrimSuffix(v.Block, "}\n")
	for name, k := range map[string][]byte{"escrow": randBytes(16), "enroll-store": randBytes(16), "cosign-seal": randBytes(16), "cosign-token": tokenKey} {
		f := filepath.Join(shared, name+".sm4")
		if err := os.WriteFile(f, []byte(hex.EncodeToString(k)), 0o600); err != nil {
			t.Fatal(err)
		}
		vaultBlock += fmt.Sprintf("\tkey %s file:%s {\n\t\ttype sm4\n\t}\n", name, f)
	}
	vaultBlock += "}\n"
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"result":"SUCCESS","client":%q}`, r.Header.Get("X-Gm-Client-Subject"))
	}))
	defer backend.Close()
	port := freePort(t)
	cfgText := strings.NewReplacer("{VAULT}", vaultBlock, "{PORT}", fmt.Sprint(port), "{ROOT}", v.CAFile, "{SHARED}", shared,
		"{BACKEND}", strings.TrimPrefix(backend.URL, "http://")).Replace(cosignEnrollCaddyfile)
	a := startGmgate(t, cfgText, v.Env...)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	env := append(os.Environ(), v.Env...)
	cfgFile := filepath.Join(shared, "Caddyfile.cli")
	if err := os.WriteFile(cfgFile, []byte(strings.ReplaceAll(cfgText, "{ADMIN}", "off")), 0o600); err != nil {
		t.Fatal(err)
	}
	gm := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(gmgateBin(t), args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("gmgate %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	enrolToken := func(cn string) string {
		t.Helper()
		cmd := exec.Command(gmgateBin(t), "enroll", "token", "--config", cfgFile, "--profile", "terminal", "--cn", cn, "--ttl", "1h", "--json")
		cmd.Env = env
		out, err := cmd.Output() // the JSON on stdout; logs go to stderr
		var tok struct{ Token string }
		if err != nil || json.Unmarshal(out, &tok) != nil || tok.Token == "" {
			t.Fatalf("gmgate enroll token: %v: %q", err, out)
		}
		return tok.Token
	}
	mac := attack.HMACSM3Key(tokenKey)
	cosignCfg := func(keyID string) client.CoSignConfig {
		return client.CoSignConfig{URL: base + "/cosign", SendInstruction: true, Token: func(op string) (string, error) {
			return platform.IssueToken(mac, keyID, []string{op}, time.Now().Add(2*time.Minute))
		}}
	}
	ctx := context.Background()
	e := &client.Enroller{BaseURL: base + "/.well-known/est", Roots: []*smx509.Certificate{v.CA.Cert}}
	platformCert := v.Cert(t, "platform-sign")
	pay := func(p *client.EnrolledPair) (int, string) {
		c, err := client.New(client.Config{BaseURL: base, Scheme: signing.HTTPSigName,
			Key: signing.Key{Signer: p.Sign.Key.(*client.CoSigner), Cert: p.Sign.Certificate}, PlatformCerts: []*smx509.Certificate{platformCert}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseIdleConnections()
		resp, err := c.Post(ctx, "/pay/order", "application/json", []byte(`{"amount":100,"order":"`+hex.EncodeToString(randBytes(6))+`"}`))
		if err != nil {
			var re *client.ReplyError
			if errors.As(err, &re) && re.StatusCode != 0 {
				return re.StatusCode, re.GatewayCode
			}
			return 0, err.Error() // not sent: the request could not be co-signed
		}
		return resp.StatusCode, string(resp.Body)
	}
	eventually := func(what string, d time.Duration, ok func() (bool, string)) {
		t.Helper()
		deadline := time.Now().Add(d)
		for {
			good, last := ok()
			if good {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: last answer %s\n%s", what, last, a.out)
			}
			time.Sleep(250 * time.Millisecond)
		}
	}

	// 1. The joint key, made through gm_cosign, and its enrolment: CSR co-signed, envelope co-decrypted.
	cs, err := client.EnrollCoSigner(cosignCfg("pos-0042"), "pos-0042")
	if err != nil {
		t.Fatalf("keygen: %v\n%s", err, a.out)
	}
	joint := cs.Public().(*ecdsa.PublicKey)
	pair, err := e.EnrollKey(ctx, enrolToken("POS-0042"), "POS-0042", nil, cs)
	if err != nil {
		t.Fatalf("enrol the joint key: %v\n%s", err, a.out)
	}
	if !joint.Equal(pair.Sign.Certificate.PublicKey) || pair.Sign.Certificate.Subject.CommonName != "POS-0042" {
		t.Fatal("the signing certificate is not the joint key's")
	}
	if err := pair.Sign.Certificate.CheckSignatureFrom(v.Cert(t, "enroll-ca")); err != nil {
		t.Fatalf("not issued by the HSM CA key: %v", err)
	}
	if k := pair.Enc.Key.(*sm2.PrivateKey); !k.PublicKey.Equal(pair.Enc.Certificate.PublicKey) {
		t.Fatal("the co-decrypted encryption key does not match its certificate")
	}

	// 2. Payments with co-signed requests; a co-signature is a plain SM2 signature under the certificate.
	eventually("payment with the joint key's pair", 15*time.Second, func() (bool, string) {
		st, body := pay(pair)
		return st == 200 && strings.Contains(body, "POS-0042"), fmt.Sprint(st, " ", body)
	})
	msg := []byte("POST\n/pay/order\nplain SM2 check\n")
	sig, err := signing.SignSM2(cs, msg, nil, signing.DER)
	if err != nil || !sm2.VerifyASN1WithSM2(pair.Sign.Certificate.PublicKey.(*ecdsa.PublicKey), nil, msg, sig) {
		t.Fatalf("co-signature does not verify under the certificate: %v", err)
	}

	// 3. Renewal through client.Renewer: the same joint key, current only once a payment passes.
	var stored *client.EnrolledPair
	r := &client.Renewer{Enroller: e, RenewBefore: 721 * time.Hour,
		Check: func(_ context.Context, p *client.EnrolledPair) error {
			if st, body := pay(p); st != 200 {
				return fmt.Errorf("payment with the new pair: %d %s", st, body)
			}
			return nil
		},
		OnRenew: func(p *client.EnrolledPair) error { stored = p; return nil }}
	r.SetCurrent(pair)
	eventually("renewal switched after a passing payment", 20*time.Second, func() (bool, string) {
		changed, err := r.RenewIfDue(ctx)
		return changed && err == nil, fmt.Sprint(changed, " ", err)
	})
	pair2 := r.Current()
	if pair2 == pair || stored != pair2 || pair2.Serial == pair.Serial || !joint.Equal(pair2.Sign.Certificate.PublicKey) {
		t.Fatal("the renewal is not a new certificate for the same joint key")
	}

	// 4. The proof of possession with one share: the phone thief's d_1 (PIN file and PIN) signing
	// a request for the joint key as if it were the whole key.
	csr, err := smx509.CreateCertificateRequest(rand.Reader, &smx509.CertificateRequest{}, cs)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := cs.SealWithIterations([]byte("2468"), client.MinPINIterations)
	if err != nil {
		t.Fatal(err)
	}
	d1, err := attack.OpenCoSignerShare(sealed, []byte("2468"))
	if err != nil {
		t.Fatal(err)
	}
	k1, err := attack.ShareAsKey(d1)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := attack.ResignCSR(csr, k1)
	if err != nil {
		t.Fatal(err)
	}
	if st, code := postCSR(t, base, enrolToken("POS-0042"), forged); st != 400 || code != "enroll_csr_invalid" {
		t.Errorf("d1 alone: %d %s, want 400 enroll_csr_invalid", st, code)
	}

	// 5. Revocation: gm_verify refuses the pair and gm_cosign refuses the key. Requests co-signed
	// before the revocation (captured, not yet sent) are what can still reach gm_verify after it.
	var presigned []*http.Request
	for range 60 {
		presigned = append(presigned, signedPayment(t, base, cs, pair2.Sign.Certificate))
	}
	if err := e.Revoke(ctx, pair2); err != nil {
		t.Fatal(err)
	}
	eventually("gm_verify refuses the revoked pair", 30*time.Second, func() (bool, string) {
		if len(presigned) == 0 {
			return false, "out of pre-signed requests"
		}
		req := presigned[0]
		presigned = presigned[1:]
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body struct{ Code string }
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode == 401 && (body.Code == "unknown_key" || body.Code == "cert_revoked"), fmt.Sprint(resp.StatusCode, " ", body.Code)
	})
	var ce *client.CoSignError
	if _, err := signing.SignSM2(cs, msg, nil, signing.DER); !errors.As(err, &ce) || ce.Code != string(platform.CodeCertRevoked) || ce.Status != 403 {
		t.Fatalf("gm_cosign co-signed for a revoked terminal: %v", err)
	}
	ct, _ := sm2.EncryptASN1(rand.Reader, joint, []byte("card data"))
	if _, err := cs.Decrypt(rand.Reader, ct, nil); !errors.As(err, &ce) || ce.Code != string(platform.CodeCertRevoked) {
		t.Fatalf("gm_cosign co-decrypted for a revoked terminal: %v", err)
	}
	if _, err := e.EnrollKey(ctx, enrolToken("POS-0042"), "POS-0042", nil, cs); !errors.As(err, &ce) || ce.Code != string(platform.CodeCertRevoked) {
		t.Fatalf("a revoked joint key re-enrolled: %v", err)
	}
	if st, body := pay(pair2); st != 0 || !strings.Contains(body, string(platform.CodeCertRevoked)) {
		t.Fatalf("payment of the revoked terminal: %d %s", st, body)
	}

	// 6. Destruction of d_2 (gmgate cosign destroy): a second, valid terminal can no longer sign with d_1.
	cs2, err := client.EnrollCoSigner(cosignCfg("pos-0043"), "pos-0043")
	if err != nil {
		t.Fatal(err)
	}
	pairB, err := e.EnrollKey(ctx, enrolToken("POS-0043"), "POS-0043", nil, cs2)
	if err != nil {
		t.Fatal(err)
	}
	eventually("payment of the second terminal", 15*time.Second, func() (bool, string) {
		st, body := pay(pairB)
		return st == 200, fmt.Sprint(st, " ", body)
	})
	gm("cosign", "destroy", "pos-0043", "--config", cfgFile, "--share-dir", filepath.Join(shared, "shares"), "--seal-key", "cosign-seal")
	if _, err := signing.SignSM2(cs2, msg, nil, signing.DER); !errors.As(err, &ce) || ce.Code != string(platform.CodeUnknownKey) {
		t.Fatalf("co-signature after destroying d_2: %v, want %s", err, platform.CodeUnknownKey)
	}
	if st, body := pay(pairB); st != 0 || !strings.Contains(body, string(platform.CodeUnknownKey)) {
		t.Fatalf("payment after destroying d_2: %d %s", st, body)
	}

	// Evidence: the co-operations and the refusals are audited and counted.
	m := a.p.Metrics()
	for _, want := range []string{`gmgate_cosign_operations_total{code="cosign_cert_revoked",op="sign"}`, `gmgate_cosign_operations_total{code="ok",op="decrypt"}`} {
		if !strings.Contains(m, want) {
			t.Errorf("metric %s missing:\n%s", want, grepLines(m, "gmgate_cosign_operations_total"))
		}
	}
	a.stop()
	decisions := strings.Join(auditDecisions(t, filepath.Join(shared, "audit", "audit.log")), "\n")
	for _, want := range []string{
		"inbound/accept/ok/cosign-sign/", "inbound/accept/ok/cosign-decrypt/",
		"inbound/reject/" + string(platform.CodeCertRevoked) + "/cosign-sign/",
		"inbound/reject/" + string(platform.CodeCertRevoked) + "/cosign-decrypt/",
	} {
		if !strings.Contains(decisions, want) {
			t.Errorf("audit log lacks %q", want)
		}
	}
}

// signedPayment is a payment request signed (http-sig-sm2, keyid = the certificate's serial)
// through the CoSigner, ready to send.
func signedPayment(t *testing.T, base string, cs *client.CoSigner, cert *smx509.Certificate) *http.Request {
	t.Helper()
	body := []byte(`{"amount":100,"order":"` + hex.EncodeToString(randBytes(6)) + `"}`)
	req, _ := http.NewRequest(http.MethodPost, base+"/pay/order", strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	m := &signing.Message{Kind: signing.Request, Method: req.Method, Target: req.URL.RequestURI(), Authority: req.URL.Host,
		Scheme: req.URL.Scheme, Header: req.Header, Body: body}
	if err := signing.NewHTTPSig().Sign(m, signing.Key{Signer: cs, Cert: cert, KeyID: signing.SerialHex(cert.SerialNumber)}, time.Now(), hex.EncodeToString(randBytes(16))); err != nil {
		t.Fatal(err)
	}
	return req
}

// postCSR posts a raw PKCS#10 request to simpleenroll and returns the status and refusal code.
func postCSR(t *testing.T, base, token string, csr []byte) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/.well-known/est/simpleenroll", strings.NewReader(base64.StdEncoding.EncodeToString(csr)))
	req.Header.Set("Content-Type", "application/pkcs10")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct{ Code string }
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body.Code
}
