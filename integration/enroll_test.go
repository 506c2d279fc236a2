package integration

import (
	"context"
	"crypto/rand"
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
	"github.com/gmgate/gmgate/internal/testenv"
	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/signing"
)

const enrollCaddyfile = `{
	admin {ADMIN}
	auto_https off
	skip_install_trust
	gmgate {
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
			crl_urls http://127.0.0.1:{PORT}/.well-known/est/crl
			crl_check_interval 1s
			escrow_key escrow
			escrow_dir {SHARED}/escrow
			admin_certs {SHARED}/admin.pem
			admin_roots {SHARED}/ops-ca.pem
			profile terminal {
				common_name "POS-[0-9]{4}"
				organization "GM Test Merchant"
				validity 720h
			}
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

// The second gateway: no gm_enroll, the CRL from the first one's URL, its own identities.
const enrollPeerCaddyfile = `{
	admin {ADMIN}
	auto_https off
	skip_install_trust
	gmgate {
{VAULT}
	}
}

http://127.0.0.1:{PORT} {
	route /pay/* {
		gm_verify {
			scheme http-sig-sm2
			trusted_roots {ROOT}
			intermediates {SHARED}/enroll-ca.pem
			identities {
				dir {SHARED}/identities-b
				reload_interval 1s
			}
			crls http://127.0.0.1:{CAPORT}/.well-known/est/crl
			reply_signing {
				key platform-sign
			}
		}
		reverse_proxy {BACKEND}
	}
}
`

// TestEnrolmentEndToEnd: with the terminal CA's key in SoftHSM2 (made by gmgate vault), a
// terminal built on the SDK gets a one-time token from `gmgate enroll token`, enrols through
// the real binary, pays through gm_verify with the new pair (on this gateway and on a second
// one), renews and pays with the renewed pair, has its escrowed key recovered by an
// administrator with `gmgate enroll recover` (audited), revokes the pair and is then refused by
// both gateways (the second one through the CRL it fetches from the first one's /crl URL,
// without restart) and cannot renew. Tongsuo checks the HSM-issued pair and the CRL.
func TestEnrolmentEndToEnd(t *testing.T) {
	v := newVaultToken(t,
		keySpec{Name: "enroll-ca", Role: pki.RoleCA, CN: "gmgate terminal CA"},
		keySpec{Name: "platform-sign", Role: pki.RoleSign, CN: "gmgate platform"},
	)
	shared := t.TempDir()
	copyFile(t, v.CertFile("enroll-ca"), filepath.Join(shared, "enroll-ca.pem"))
	for _, d := range []string{"identities", "identities-b"} {
		if err := os.MkdirAll(filepath.Join(shared, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The escrow key: an SM4 key of the same vault (a file key here; type sm4 in the HSM in production).
	var k [16]byte
	_, _ = rand.Read(k[:])
	escrowFile := filepath.Join(shared, "escrow.sm4")
	if err := os.WriteFile(escrowFile, []byte(hex.EncodeToString(k[:])), 0o600); err != nil {
		t.Fatal(err)
	}
	// The store key authenticates the enrolment store's records (a file key here too).
	_, _ = rand.Read(k[:])
	storeKeyFile := filepath.Join(shared, "enroll-store.sm4")
	if err := os.WriteFile(storeKeyFile, []byte(hex.EncodeToString(k[:])), 0o600); err != nil {
		t.Fatal(err)
	}
	vaultBlock := strings.TrimSuffix(v.Block, "}\n") + fmt.Sprintf("\tkey escrow file:%s {\n\t\ttype sm4\n\t}\n\tkey enroll-store file:%s {\n\t\ttype sm4\n\t}\n}\n", escrowFile, storeKeyFile)
	// The administrator: a certificate of the operations CA, in files.
	opsCA, _, err := pki.NewRootCA(pki.IssueOptions{CommonName: "gmgate ops CA"})
	if err != nil {
		t.Fatal(err)
	}
	admin, err := opsCA.IssuePlatform(pki.IssueOptions{CommonName: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	writeIssuedFiles(t, shared, "admin", admin)
	if err := os.WriteFile(filepath.Join(shared, "ops-ca.pem"), pki.EncodeCertificatesPEM(opsCA.Cert), 0o644); err != nil {
		t.Fatal(err)
	}

	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"result":"SUCCESS","client":%q}`, r.Header.Get("X-Gm-Client-Subject"))
	}))
	defer backend.Close()

	port, portB := freePort(t), freePort(t)
	subst := func(s string, p int) string {
		return strings.NewReplacer("{VAULT}", vaultBlock, "{PORT}", fmt.Sprint(p), "{CAPORT}", fmt.Sprint(port),
			"{ROOT}", v.CAFile, "{SHARED}", shared, "{BACKEND}", strings.TrimPrefix(backend.URL, "http://")).Replace(s)
	}
	a := startGmgate(t, subst(enrollCaddyfile, port), v.Env...)
	b := startGmgate(t, subst(enrollPeerCaddyfile, portB), v.Env...)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	baseB := fmt.Sprintf("http://127.0.0.1:%d", portB)
	env := append(os.Environ(), v.Env...)
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

	// Back office: a one-time token for terminal POS-0001.
	config := filepath.Join(a.dir, "Caddyfile") // the commands read the server's config
	out, err := gm("enroll", "token", "--config", config, "--profile", "terminal", "--cn", "POS-0001", "--ttl", "1h", "--json")
	if err != nil {
		t.Fatalf("gmgate enroll token: %v\n%s", err, out)
	}
	var tok struct{ Token string }
	if err := json.Unmarshal([]byte(out), &tok); err != nil || !strings.HasPrefix(tok.Token, "gmet1.") {
		t.Fatalf("token output %q: %v", out, err)
	}

	// The terminal enrols. Its trust anchor is the root; the pair chains through the HSM CA.
	ctx := context.Background()
	e := &client.Enroller{BaseURL: base + "/.well-known/est", Roots: []*smx509.Certificate{v.CA.Cert}}
	pair, err := e.Enroll(ctx, tok.Token, "POS-0001", nil)
	if err != nil {
		t.Fatalf("enrol: %v\n%s", err, a.out)
	}
	caCert := v.Cert(t, "enroll-ca")
	if err := pair.Sign.Certificate.CheckSignatureFrom(caCert); err != nil {
		t.Fatalf("the signing certificate is not signed by the HSM CA key: %v", err)
	}
	if _, err := e.Enroll(ctx, tok.Token, "POS-0001", nil); !enrolCode(err, "enroll_token_used") {
		t.Fatalf("token reused: %v", err)
	}
	// Another name with a fresh token is refused by the profile.
	out, _ = gm("enroll", "token", "--config", config, "--profile", "terminal", "--json")
	_ = json.Unmarshal([]byte(out), &tok)
	if _, err := e.Enroll(ctx, tok.Token, "ATM-1", nil); !enrolCode(err, "enroll_name_forbidden") {
		t.Fatalf("forbidden name: %v", err)
	}

	platform := v.Cert(t, "platform-sign")
	pay := func(p *client.EnrolledPair, url string) (int, string) {
		c, err := client.New(client.Config{BaseURL: url, Scheme: signing.HTTPSigName,
			Key: signing.Key{Signer: p.Sign.Key.(*sm2.PrivateKey), Cert: p.Sign.Certificate}, PlatformCerts: []*smx509.Certificate{platform}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseIdleConnections()
		resp, err := c.Post(ctx, "/pay/order", "application/json", []byte(`{"amount":100,"order":"`+hex.EncodeToString(enrollRandBytes(6))+`"}`))
		if err != nil {
			var re *client.ReplyError
			if errors.As(err, &re) && re.StatusCode != 0 {
				return re.StatusCode, re.GatewayCode
			}
			t.Fatal(err)
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
				t.Fatalf("%s: last answer %s\ngateway A:\n%s\ngateway B:\n%s", what, last, a.out, b.out)
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	copyFile(t, filepath.Join(shared, "identities", pair.Serial+".pem"), filepath.Join(shared, "identities-b", pair.Serial+".pem"))
	eventually("payment with the enrolled pair (A)", 15*time.Second, func() (bool, string) {
		st, body := pay(pair, base)
		return st == 200 && strings.Contains(body, "POS-0001"), fmt.Sprint(st, " ", body)
	})
	eventually("payment with the enrolled pair (B, CRL by URL)", 30*time.Second, func() (bool, string) {
		st, body := pay(pair, baseB)
		return st == 200, fmt.Sprint(st, " ", body)
	})

	// Renewal: a new pair, the old one kept until the new one works.
	pair2, err := e.Reenroll(ctx, pair)
	if err != nil {
		t.Fatal(err)
	}
	copyFile(t, filepath.Join(shared, "identities", pair2.Serial+".pem"), filepath.Join(shared, "identities-b", pair2.Serial+".pem"))
	eventually("payment with the renewed pair", 15*time.Second, func() (bool, string) {
		st, body := pay(pair2, base)
		return st == 200, fmt.Sprint(st, " ", body)
	})
	if _, err := e.Reenroll(ctx, pair); !enrolCode(err, "enroll_already_renewed") {
		t.Fatalf("second renewal of the same certificate: %v", err)
	}

	// Recovery of the escrowed encryption key by the administrator (audited at the server).
	keyOut := filepath.Join(t.TempDir(), "recovered.pem")
	if out, err := gm("enroll", "recover", "--url", base+"/.well-known/est", "--admin-cert", filepath.Join(shared, "admin.pem"),
		"--admin-key", filepath.Join(shared, "admin.key"), "--serial", pair2.Serial, "--out", keyOut); err != nil {
		t.Fatalf("gmgate enroll recover: %v\n%s", err, out)
	}
	rec, err := pki.LoadPrivateKeyFile(keyOut, nil)
	if err != nil || !rec.PublicKey.Equal(pair2.Enc.Certificate.PublicKey) {
		t.Fatalf("recovered key: %v", err)
	}

	// Tongsuo: the HSM-issued pair parses with the key-usage split and verifies to the root.
	bin := testenv.TongsuoBin(t)
	tdir := t.TempDir()
	chainFile := filepath.Join(tdir, "chain.pem")
	if err := os.WriteFile(chainFile, pki.EncodeCertificatesPEM(caCert, v.CA.Cert), 0o644); err != nil {
		t.Fatal(err)
	}
	tongsuo := func(args ...string) (string, error) {
		out, err := exec.Command(bin, args...).CombinedOutput()
		return string(out), err
	}
	for _, c := range []struct {
		cert *smx509.Certificate
		want string
	}{{pair2.Sign.Certificate, "Digital Signature, Non Repudiation"}, {pair2.Enc.Certificate, "Key Encipherment, Data Encipherment, Key Agreement"}} {
		f := filepath.Join(tdir, "c.pem")
		if err := os.WriteFile(f, pki.EncodeCertificatesPEM(c.cert), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := tongsuo("x509", "-in", f, "-noout", "-text"); err != nil || !strings.Contains(out, c.want) {
			t.Fatalf("tongsuo x509: %v\n%s", err, out)
		}
		if out, err := tongsuo("verify", "-CAfile", chainFile, f); err != nil || !strings.Contains(out, "OK") {
			t.Fatalf("tongsuo verify: %v\n%s", err, out)
		}
	}

	// The terminal revokes the renewed pair; both gateways refuse it without a restart.
	if err := e.Revoke(ctx, pair2); err != nil {
		t.Fatal(err)
	}
	eventually("gateway A refuses the revoked pair", 60*time.Second, func() (bool, string) {
		st, body := pay(pair2, base)
		return st == 401 && (body == "unknown_key" || body == "cert_revoked"), fmt.Sprint(st, " ", body)
	})
	// Bound: B's CRL check interval (10s) plus twice gm_verify's identity cache (30s): the
	// fetch is started by a verification and used by the next one.
	eventually("gateway B refuses the revoked pair (CRL fetched from A)", 100*time.Second, func() (bool, string) {
		st, body := pay(pair2, baseB)
		return st == 401 && body == "cert_revoked", fmt.Sprint(st, " ", body)
	})
	if st, body := pay(pair, baseB); st != 200 {
		t.Fatalf("the unrevoked pair is refused by B: %d %s", st, body)
	}
	if _, err := e.Reenroll(ctx, pair2); !enrolCode(err, "enroll_cert_revoked") {
		t.Fatalf("renewal with the revoked pair: %v", err)
	}
	crlResp, err := http.Get(base + "/.well-known/est/crl")
	if err != nil {
		t.Fatal(err)
	}
	defer crlResp.Body.Close()
	var der []byte
	buf := make([]byte, 4096)
	for {
		n, rerr := crlResp.Body.Read(buf)
		der = append(der, buf[:n]...)
		if rerr != nil {
			break
		}
	}
	crlFile := filepath.Join(tdir, "crl.pem")
	_ = os.WriteFile(crlFile, pki.EncodeCRLPEM(der), 0o644)
	caFile := filepath.Join(tdir, "ca.pem")
	_ = os.WriteFile(caFile, pki.EncodeCertificatesPEM(caCert), 0o644)
	if out, err := tongsuo("crl", "-in", crlFile, "-CAfile", caFile, "-noout"); err != nil || !strings.Contains(out, "verify OK") {
		t.Fatalf("tongsuo crl -verify of the HSM-signed CRL: %v\n%s", err, out)
	}

	if m := a.p.Metrics(); !strings.Contains(m, `gmgate_enroll_requests_total{code="ok",op="simpleenroll"} 1`) ||
		!strings.Contains(m, `gmgate_enroll_requests_total{code="enroll_token_used",op="simpleenroll"} 1`) ||
		!strings.Contains(m, `gmgate_enroll_requests_total{code="ok",op="recover"} 1`) {
		t.Errorf("enrolment metrics missing:\n%s", grepLines(m, "gmgate_enroll"))
	}
	// The store gauges (updated every crl_check_interval): pair renewed, pair2 revoked.
	eventually("certificate gauges", 10*time.Second, func() (bool, string) {
		m := a.p.Metrics()
		return strings.Contains(m, `gmgate_enroll_certificates{state="revoked"} 1`) && strings.Contains(m, `gmgate_enroll_certificates{state="renewed"} 1`) &&
			strings.Contains(m, `gmgate_enroll_certificates_expiring{profile="terminal"} 0`), grepLines(m, "gmgate_enroll_certificates")
	})
	out, err = gm("enroll", "list", "--config", config)
	if err != nil || !strings.Contains(out, pair2.Serial) || !strings.Contains(out, "revoked") || !strings.Contains(out, "renewed") {
		t.Fatalf("gmgate enroll list: %v\n%s", err, out)
	}
}

func enrolCode(err error, code string) bool {
	var ee *client.EnrolError
	return errors.As(err, &ee) && ee.Code == code
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func enrollRandBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
