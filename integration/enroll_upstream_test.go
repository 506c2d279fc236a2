package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/client"
	"github.com/gmgate/gmgate/enroll"
	"github.com/gmgate/gmgate/internal/attack"
	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/signing"
)

// The CA: gm_enroll with its key in SoftHSM2, accepting the registration authorities of ra_certs.
const upstreamCACaddyfile = `{
	admin {ADMIN}
	auto_https off
	skip_install_trust
	gmgate {
{VAULT}
	}
}

http://127.0.0.1:{CAPORT} {
	route /.well-known/est/* {
		gm_enroll {
			ca_key enroll-ca
			ca_chain {ROOT}
			store {SHARED}/ca-store
			store_key enroll-store
			crl_urls http://127.0.0.1:{CAPORT}/.well-known/est/crl
			crl_check_interval 1s
			escrow_key escrow
			escrow_dir {SHARED}/escrow
			ra_certs {SHARED}/ra-sign.pem {SHARED}/ra-files.pem {SHARED}/ra-revoked.pem
			ra_roots {ROOT}
			ra_crls {SHARED}/ra.crl
			ra_scope ra-shanghai {
				profiles terminal
				common_name "POS-0[0-69][0-9]{2}"
			}
			ra_scope ra-files {
				profiles terminal
				common_name "POS-07[0-9]{2}"
			}
			ra_scope ra-revoked {
				profiles terminal kiosk
				common_name "POS-08[0-9]{2}"
			}
			profile terminal {
				common_name "POS-[0-9]{4}"
				organization "GM Test Merchant"
				validity 720h
			}
			profile kiosk {
				common_name "POS-[0-9]{4}"
			}
		}
	}
}
`

// The RA: gm_enroll forwarding to the CA (through the test's proxy, which passes everything on
// unless a hostile case is set), and gm_verify trusting the CA's CRL as the RA re-publishes it.
const upstreamRACaddyfile = `{
	admin {ADMIN}
	auto_https off
	skip_install_trust
	gmgate {
{VAULT}
	}
}

http://127.0.0.1:{RAPORT} {
	route /.well-known/est/* {
		gm_enroll {
			upstream {PROXY}/.well-known/est {
				ra_key ra-sign
				ca_chain {SHARED}/enroll-ca.pem {ROOT}
				timeout 10s
			}
			store {SHARED}/ra-store
			store_key enroll-store
			identities_dir {SHARED}/ra-identities
			crl_check_interval 1s
			profile terminal {
				common_name "POS-[0-9]{4}"
				organization "GM Test Merchant"
			}
		}
	}
	route /pay/* {
		gm_verify {
			scheme http-sig-sm2
			trusted_roots {ROOT}
			intermediates {SHARED}/enroll-ca.pem
			identities {
				dir {SHARED}/pay-identities
				reload_interval 1s
			}
			crls http://127.0.0.1:{RAPORT}/.well-known/est/crl
			reply_signing {
				key platform-sign
			}
		}
		reverse_proxy {BACKEND}
	}
}
`

// TestEnrolmentThroughUpstreamCA: two gmgate processes. The CA (its key in SoftHSM2) accepts
// registration authorities by certificate; the RA (its key in SoftHSM2 too) fronts it. A
// terminal built on the client SDK enrols through the RA (the CA generates, escrows and
// envelopes the encryption key: the RA never holds it), pays through the RA's gm_verify, renews
// through the RA, revokes through the RA (forwarded to the CA) and is then refused by gm_verify,
// which reads the CA's CRL re-published at the RA's crl URL, without restart. The attack table:
// RA credential missing, unknown or revoked RA certificate, replayed RA request, an RA revoking
// another RA's terminal, an RA asking for a name or a profile outside its ra_scope, a CA whose
// RA certificate has no ra_scope (gmgate validate fails, naming the fix), and hostile upstream
// answers (another terminal's pair, a replayed
// answer, swapped usages, a rogue CA's pair) refused by the RA.
func TestEnrolmentThroughUpstreamCA(t *testing.T) {
	v := newVaultToken(t,
		keySpec{Name: "enroll-ca", Role: pki.RoleCA, CN: "gmgate terminal CA"},
		keySpec{Name: "platform-sign", Role: pki.RoleSign, CN: "gmgate platform"},
		keySpec{Name: "ra-sign", Role: pki.RoleSign, CN: "ra-shanghai"},
	)
	shared := t.TempDir()
	copyFile(t, v.CertFile("enroll-ca"), filepath.Join(shared, "enroll-ca.pem"))
	copyFile(t, v.CertFile("ra-sign"), filepath.Join(shared, "ra-sign.pem"))
	for _, d := range []string{"ra-identities", "pay-identities"} {
		if err := os.MkdirAll(filepath.Join(shared, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var k [16]byte
	_, _ = rand.Read(k[:])
	escrowFile := filepath.Join(shared, "escrow.sm4")
	if err := os.WriteFile(escrowFile, []byte(hex.EncodeToString(k[:])), 0o600); err != nil {
		t.Fatal(err)
	}
	// The store key authenticates each enrolment store's records (a file key here too).
	_, _ = rand.Read(k[:])
	storeKeyFile := filepath.Join(shared, "enroll-store.sm4")
	if err := os.WriteFile(storeKeyFile, []byte(hex.EncodeToString(k[:])), 0o600); err != nil {
		t.Fatal(err)
	}
	vaultBlock := strings.TrimSuffix(v.Block, "}\n") + fmt.Sprintf("\tkey escrow file:%s {\n\t\ttype sm4\n\t}\n\tkey enroll-store file:%s {\n\t\ttype sm4\n\t}\n}\n", escrowFile, storeKeyFile)
	// Two more registration authorities with file keys (the test signs as them): ra-files is
	// authorised, ra-revoked is listed but its certificate is revoked by the root's CRL, and
	// ra-unknown is certified by the same root but not listed.
	raFiles, err := v.CA.IssuePlatform(pki.IssueOptions{CommonName: "ra-files"})
	if err != nil {
		t.Fatal(err)
	}
	raRevoked, _ := v.CA.IssuePlatform(pki.IssueOptions{CommonName: "ra-revoked"})
	raUnknown, _ := v.CA.IssuePlatform(pki.IssueOptions{CommonName: "ra-unknown"})
	writeIssuedFiles(t, shared, "ra-files", raFiles)
	writeIssuedFiles(t, shared, "ra-revoked", raRevoked)
	crl, err := v.CA.CreateCRL([]smx509.RevocationListEntry{{SerialNumber: raRevoked.Cert.SerialNumber, RevocationTime: time.Now()}}, big.NewInt(1), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(shared, "ra.crl"), pki.EncodeCRLPEM(crl), 0o644); err != nil {
		t.Fatal(err)
	}

	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"result":"SUCCESS","client":%q}`, r.Header.Get("X-Gm-Client-Subject"))
	}))
	defer backend.Close()
	caPort, raPort := freePort(t), freePort(t)
	caBase := fmt.Sprintf("http://127.0.0.1:%d/.well-known/est", caPort)
	proxy := &attack.UpstreamCA{To: fmt.Sprintf("http://127.0.0.1:%d", caPort), Record: "/" + enroll.OpRAEnroll}
	px := httptest.NewServer(proxy)
	defer px.Close()
	subst := func(s string) string {
		return strings.NewReplacer("{VAULT}", vaultBlock, "{CAPORT}", fmt.Sprint(caPort), "{RAPORT}", fmt.Sprint(raPort),
			"{PROXY}", px.URL, "{ROOT}", v.CAFile, "{SHARED}", shared, "{BACKEND}", strings.TrimPrefix(backend.URL, "http://")).Replace(s)
	}
	ca := startGmgate(t, subst(upstreamCACaddyfile), v.Env...)
	ra := startGmgate(t, subst(upstreamRACaddyfile), v.Env...)
	raBase := fmt.Sprintf("http://127.0.0.1:%d", raPort)
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
	caConfig, raConfig := filepath.Join(ca.dir, "Caddyfile"), filepath.Join(ra.dir, "Caddyfile") // the commands read the server's config
	token := func(cn string) string {
		t.Helper()
		out, err := gm("enroll", "token", "--config", raConfig, "--profile", "terminal", "--cn", cn, "--ttl", "1h", "--json")
		if err != nil {
			t.Fatalf("gmgate enroll token: %v\n%s", err, out)
		}
		var tok struct{ Token string }
		if err := json.Unmarshal([]byte(out), &tok); err != nil {
			t.Fatal(err)
		}
		return tok.Token
	}
	type listed struct {
		Certificates []struct{ Serial, State, Via string }
	}
	list := func(config string) listed {
		t.Helper()
		out, err := gm("enroll", "list", "--config", config, "--json")
		if err != nil {
			t.Fatalf("gmgate enroll list: %v\n%s", err, out)
		}
		var l listed
		if err := json.Unmarshal([]byte(out), &l); err != nil {
			t.Fatal(err)
		}
		return l
	}
	stateOf := func(l listed, serial string) (string, string) {
		for _, c := range l.Certificates {
			if c.Serial == serial {
				return c.State, c.Via
			}
		}
		return "", ""
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
				t.Fatalf("%s: last answer %s\nCA:\n%s\nRA:\n%s", what, last, ca.out, ra.out)
			}
			time.Sleep(250 * time.Millisecond)
		}
	}

	// The terminal enrols through the RA. Its trust anchor is the root.
	ctx := context.Background()
	e := &client.Enroller{BaseURL: raBase + "/.well-known/est", Roots: []*smx509.Certificate{v.CA.Cert}}
	pair, err := e.Enroll(ctx, token("POS-0001"), "POS-0001", nil)
	if err != nil {
		t.Fatalf("enrol through the RA: %v\nCA:\n%s\nRA:\n%s", err, ca.out, ra.out)
	}
	caCert := v.Cert(t, "enroll-ca")
	if err := pair.Sign.Certificate.CheckSignatureFrom(caCert); err != nil {
		t.Fatalf("the pair is not signed by the CA's HSM key: %v", err)
	}
	if st, via := stateOf(list(caConfig), pair.Serial); st != "valid" || via != "ra:ra-shanghai" {
		t.Fatalf("the CA's record of the pair: %q %q", st, via)
	}
	if ents, _ := os.ReadDir(filepath.Join(shared, "escrow")); len(ents) == 0 {
		t.Fatal("the CA escrowed nothing")
	}
	if _, err := os.Stat(filepath.Join(shared, "ra-store", "escrow")); err == nil {
		if ents, _ := os.ReadDir(filepath.Join(shared, "ra-store", "escrow")); len(ents) > 0 {
			t.Fatal("the RA escrowed (so held) an encryption key")
		}
	}

	platform := v.Cert(t, "platform-sign")
	pay := func(p *client.EnrolledPair) (int, string) {
		c, err := client.New(client.Config{BaseURL: raBase, Scheme: signing.HTTPSigName,
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
	publish := func(p *client.EnrolledPair) {
		copyFile(t, filepath.Join(shared, "ra-identities", p.Serial+".pem"), filepath.Join(shared, "pay-identities", p.Serial+".pem"))
	}
	publish(pair)
	// gm_verify's CRL source (the RA's own crl URL) is pending until its first fetch after the
	// RA started serving; a verification failed meanwhile is cached for the identity cache
	// (30s). Bound: 10s + 2 x 30s.
	eventually("payment with the pair enrolled through the RA", 80*time.Second, func() (bool, string) {
		st, body := pay(pair)
		return st == 200 && strings.Contains(body, "POS-0001"), fmt.Sprint(st, " ", body)
	})

	// Renewal through the RA.
	pair2, err := e.Reenroll(ctx, pair)
	if err != nil {
		t.Fatalf("renew through the RA: %v\nRA:\n%s", err, ra.out)
	}
	publish(pair2)
	eventually("payment with the renewed pair", 15*time.Second, func() (bool, string) {
		st, body := pay(pair2)
		return st == 200, fmt.Sprint(st, " ", body)
	})

	// The attack table against the CA's RA operations (signed in the test as the file-key RAs).
	signedRA := func(op string, body []byte, key *sm2.PrivateKey, keyID, nonce string) *http.Request {
		req, _ := http.NewRequest(http.MethodPost, caBase+"/"+op, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if key != nil {
			m := &signing.Message{Kind: signing.Request, Method: req.Method, Target: req.URL.RequestURI(), Authority: req.URL.Host,
				Scheme: "http", Header: req.Header, Body: body}
			if err := enroll.RequestScheme().Sign(m, signing.Key{Signer: key, KeyID: keyID}, time.Now(), nonce); err != nil {
				t.Fatal(err)
			}
		}
		return req
	}
	csrKey, _ := sm2.GenerateKey(rand.Reader)
	csr, _ := smx509.CreateCertificateRequest(rand.Reader, &smx509.CertificateRequest{Subject: pkix.Name{CommonName: "POS-0777"}}, csrKey)
	raBody, _ := json.Marshal(enroll.RAEnrollRequest{CSR: csr, Profile: "terminal", CommonName: "POS-0777"})
	// ra-files (scope: terminal, POS-07xx) asks for ra-shanghai's name, and for a profile of
	// the CA outside its scope.
	otherCSR, _ := smx509.CreateCertificateRequest(rand.Reader, &smx509.CertificateRequest{Subject: pkix.Name{CommonName: "POS-0042"}}, csrKey)
	otherName, _ := json.Marshal(enroll.RAEnrollRequest{CSR: otherCSR, Profile: "terminal", CommonName: "POS-0042"})
	kioskCSR, _ := smx509.CreateCertificateRequest(rand.Reader, &smx509.CertificateRequest{Subject: pkix.Name{CommonName: "POS-0778"}}, csrKey)
	otherProfile, _ := json.Marshal(enroll.RAEnrollRequest{CSR: kioskCSR, Profile: "kiosk", CommonName: "POS-0778"})
	nonce := hex.EncodeToString(enrollRandBytes(8))
	revBody, _ := json.Marshal(enroll.RevokeRequest{Serial: pair.Serial})
	for _, c := range []struct {
		name string
		req  *http.Request
		want string
	}{
		{"authorised RA", signedRA(enroll.OpRAEnroll, raBody, raFiles.Key, "ra:ra-files", nonce), "ok"},
		{"replayed RA request", signedRA(enroll.OpRAEnroll, raBody, raFiles.Key, "ra:ra-files", nonce), "enroll_replay"},
		{"RA credential missing", signedRA(enroll.OpRAEnroll, raBody, nil, "", ""), "enroll_auth_invalid"},
		{"unknown RA certificate", signedRA(enroll.OpRAEnroll, raBody, raUnknown.Key, "ra:ra-unknown", hex.EncodeToString(enrollRandBytes(8))), "enroll_auth_invalid"},
		{"revoked RA certificate", signedRA(enroll.OpRAEnroll, raBody, raRevoked.Key, "ra:ra-revoked", hex.EncodeToString(enrollRandBytes(8))), "enroll_auth_invalid"},
		{"RA name with another RA's key", signedRA(enroll.OpRAEnroll, raBody, raFiles.Key, "ra:ra-shanghai", hex.EncodeToString(enrollRandBytes(8))), "enroll_auth_invalid"},
		{"RA revokes another RA's terminal", signedRA(enroll.OpRARevoke, revBody, raFiles.Key, "ra:ra-files", hex.EncodeToString(enrollRandBytes(8))), "enroll_auth_invalid"},
		{"RA key on the holder's revoke", signedRA(enroll.OpRevoke, revBody, raFiles.Key, "ra:ra-files", hex.EncodeToString(enrollRandBytes(8))), "enroll_auth_invalid"},
		{"RA asks for another RA's name", signedRA(enroll.OpRAEnroll, otherName, raFiles.Key, "ra:ra-files", hex.EncodeToString(enrollRandBytes(8))), "enroll_ra_out_of_scope"},
		{"RA asks for a profile outside its scope", signedRA(enroll.OpRAEnroll, otherProfile, raFiles.Key, "ra:ra-files", hex.EncodeToString(enrollRandBytes(8))), "enroll_ra_out_of_scope"},
	} {
		resp, err := http.DefaultClient.Do(c.req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got := "ok"
		if resp.StatusCode != http.StatusOK {
			var rb struct{ Code string }
			_ = json.Unmarshal(b, &rb)
			got = rb.Code
		}
		if got != c.want {
			t.Errorf("%s: got %d %s, want %s", c.name, resp.StatusCode, b, c.want)
		}
	}
	if m := ca.p.Metrics(); !strings.Contains(m, `gmgate_enroll_requests_total{code="enroll_ra_out_of_scope",op="raenroll"} 2`) {
		t.Error("the CA did not count the out-of-scope RA requests")
	}
	// A CA listing an RA certificate without an ra_scope does not start: the error names the RA
	// and the block to add.
	noScope := filepath.Join(shared, "ca-noscope.Caddyfile")
	cfg, _ := os.ReadFile(caConfig)
	cut := regexp.MustCompile(`(?s)\s*ra_scope ra-revoked \{.*?\n\s*\}`).ReplaceAll(cfg, nil)
	if bytes.Equal(cut, cfg) {
		t.Fatal("test bug: the ra-revoked scope was not cut")
	}
	if err := os.WriteFile(noScope, cut, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := gm("validate", "--config", noScope, "--adapter", "caddyfile"); err == nil ||
		!strings.Contains(out, `registration authority \"ra-revoked\" (ra_certs) has no scope`) && !strings.Contains(out, `registration authority "ra-revoked" (ra_certs) has no scope`) {
		t.Errorf("CA with an unscoped RA: %v\n%s", err, out)
	}
	// (The renewal is the RA's business: at the CA the first pair is simply valid.)
	if st, _ := stateOf(list(caConfig), pair.Serial); st != "valid" {
		t.Fatalf("a refused RA request changed the pair: %s", st)
	}

	// Hostile upstream answers: the RA refuses them all (enroll_upstream_invalid), stores nothing.
	if answers := proxy.Answers(); len(answers) < 2 {
		t.Fatalf("the proxy saw %d answers", len(answers))
	}
	rogue, _, _ := pki.NewRootCA(pki.IssueOptions{CommonName: "gmgate terminal CA"})
	rewrite := func(f func(r *enroll.Response)) func([]byte, [][]byte) (int, []byte) {
		return func(_ []byte, genuine [][]byte) (int, []byte) {
			var r enroll.Response
			_ = json.Unmarshal(genuine[0], &r)
			f(&r)
			b, _ := json.Marshal(r)
			return http.StatusOK, b
		}
	}
	before := len(list(raConfig).Certificates)
	for i, c := range []struct {
		name string
		hook func([]byte, [][]byte) (int, []byte)
	}{
		{"another terminal's pair (the CA's, another key and subject)", rewrite(func(*enroll.Response) {})},
		{"usages swapped", rewrite(func(r *enroll.Response) { r.SignCert, r.EncCert = r.EncCert, r.SignCert })},
		{"a rogue CA's pair of the same name", func([]byte, [][]byte) (int, []byte) {
			p, _ := rogue.IssueClientPair(pki.IssueOptions{CommonName: "POS-0902"})
			b, _ := json.Marshal(enroll.Response{SignCert: p.Sign.Cert.Raw, EncCert: p.Enc.Cert.Raw})
			return http.StatusOK, b
		}},
	} {
		proxy.SetAnswer(c.hook)
		cn := fmt.Sprintf("POS-09%02d", i)
		_, err := e.Enroll(ctx, token(cn), cn, nil)
		if !enrolCode(err, "enroll_upstream_invalid") {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	proxy.SetAnswer(nil)
	if n := len(list(raConfig).Certificates); n != before {
		t.Fatalf("hostile answers were stored: %d records, before %d", n, before)
	}

	// The terminal revokes the renewed pair through the RA: forwarded to the CA, and gm_verify,
	// reading the CRL at the RA's URL, refuses it without restart.
	if err := e.Revoke(ctx, pair2); err != nil {
		t.Fatalf("revoke through the RA: %v\nRA:\n%s", err, ra.out)
	}
	if st, _ := stateOf(list(caConfig), pair2.Serial); st != "revoked" {
		t.Fatalf("the revocation did not reach the CA: %s", st)
	}
	// Bound: the RA's CRL check (1s; the revocation refreshes it at once), gm_verify's CRL check
	// interval (10s) plus twice its identity cache (30s).
	eventually("gm_verify refuses the revoked pair (CRL re-published by the RA)", 100*time.Second, func() (bool, string) {
		st, body := pay(pair2)
		return st == 401 && body == "cert_revoked", fmt.Sprint(st, " ", body)
	})
	if _, err := e.Reenroll(ctx, pair2); !enrolCode(err, "enroll_cert_revoked") {
		t.Fatalf("renewal of the revoked pair: %v", err)
	}
	// The RA's CRL is the CA's, signed by the HSM key.
	resp, err := http.Get(raBase + "/.well-known/est/crl")
	if err != nil {
		t.Fatal(err)
	}
	der, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	rl, err := smx509.ParseRevocationList(der)
	if err != nil || rl.CheckSignatureFrom(caCert) != nil {
		t.Fatalf("the RA's CRL is not the CA's: %v", err)
	}
	if m := ca.p.Metrics(); !strings.Contains(m, `gmgate_enroll_requests_total{code="ok",op="raenroll"}`) ||
		!strings.Contains(m, `gmgate_enroll_requests_total{code="enroll_replay",op="raenroll"} 1`) ||
		!strings.Contains(m, `gmgate_enroll_requests_total{code="ok",op="rarevoke"} 1`) {
		t.Errorf("CA metrics:\n%s", grepLines(m, "gmgate_enroll_requests"))
	}
	if m := ra.p.Metrics(); !strings.Contains(m, `gmgate_enroll_requests_total{code="enroll_upstream_invalid",op="simpleenroll"} 3`) {
		t.Errorf("RA metrics:\n%s", grepLines(m, "gmgate_enroll_requests"))
	}
}
