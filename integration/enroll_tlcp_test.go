package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/client"
	"github.com/gmgate/gmgate/enroll"
	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/tlcp"
)

const enrollTLCPCaddyfile = `{
	admin {ADMIN}
	skip_install_trust
	auto_https disable_redirects
	gmgate {
		dev_pki {DIR}/pki
	}
	servers :{TLCP} {
		listener_wrappers {
			tlcp {
				client_auth verify_if_given
			}
		}
	}
}

http://:{TLCP} {
	gm_enroll {
		store {DIR}/enroll
		profile terminal {
			common_name "POS-[0-9]{4}"
			validity 720h
		}
	}
}
`

// TestEnrolmentRenewOverTLCP: through the real binary, a terminal re-enrols with no signed
// request, authorised by its current signing certificate in the TLCP handshake (client_auth
// verify_if_given). A request naming another subject, a second renewal, a connection without a
// client certificate or with a certificate this CA did not issue to the store, and a revoked
// certificate are refused.
func TestEnrolmentRenewOverTLCP(t *testing.T) {
	dir := t.TempDir()
	port := freePort(t)
	a := startGmgate(t, strings.NewReplacer("{DIR}", dir, "{TLCP}", fmt.Sprint(port)).Replace(enrollTLCPCaddyfile))
	dev, err := pki.EnsureDevPKI(filepath.Join(dir, "pki"), []string{"localhost", "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	pool := smx509.NewCertPool()
	pool.AddCert(dev.Root.Cert)
	overTLCP := func(sign, enc *client.Identity) *http.Client {
		cfg := &tlcp.Config{RootCAs: pool, ServerName: "localhost", CipherSuites: []uint16{tlcp.ECC_SM4_GCM_SM3}}
		if sign != nil {
			cfg.SignCertificate, cfg.EncCertificate = sign.TLCPCertificate(), enc.TLCPCertificate()
		}
		return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
			DialContext: func(_ context.Context, network, addr string) (net.Conn, error) {
				return tlcp.Dial(network, addr, cfg)
			}}}
	}
	base := fmt.Sprintf("http://127.0.0.1:%d/.well-known/est", port)
	cmd := exec.Command(gmgateBin(t), "enroll", "token", "--config", filepath.Join(a.dir, "Caddyfile"), "--profile", "terminal", "--cn", "POS-0100")
	cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+filepath.Join(a.dir, "data"), "HOME="+a.dir)
	tok, err := cmd.Output()
	if err != nil {
		t.Fatalf("gmgate enroll token: %v", err)
	}
	e := &client.Enroller{BaseURL: base, Roots: []*smx509.Certificate{dev.Root.Cert}, HTTP: overTLCP(nil, nil)}
	ctx := context.Background()
	pair, err := e.Enroll(ctx, strings.TrimSpace(string(tok)), "POS-0100", nil)
	if err != nil {
		t.Fatalf("enrol over TLCP: %v\n%s", err, a.out)
	}
	reenrol := func(hc *http.Client, cn string) (int, []byte) {
		t.Helper()
		key, err := sm2.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		csr, err := smx509.CreateCertificateRequest(rand.Reader, &smx509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, key)
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest(http.MethodPost, base+"/"+enroll.OpSimpleReenroll, strings.NewReader(base64.StdEncoding.EncodeToString(csr)))
		req.Header.Set("Content-Type", enroll.MediaPKCS10)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, body
	}
	code := func(body []byte) string {
		var r struct{ Code string }
		_ = json.Unmarshal(body, &r)
		return r.Code
	}
	if st, body := reenrol(overTLCP(nil, nil), "POS-0100"); st != 401 || code(body) != "enroll_auth_invalid" {
		t.Fatalf("no client certificate: %d %s", st, body)
	}
	devClient := &client.Identity{Certificate: dev.Client.Sign.Cert, Key: dev.Client.Sign.Key}
	devEnc := &client.Identity{Certificate: dev.Client.Enc.Cert, Key: dev.Client.Enc.Key}
	if st, body := reenrol(overTLCP(devClient, devEnc), "POS-0100"); st != 401 || code(body) != "enroll_auth_invalid" {
		t.Fatalf("a certificate not in the store: %d %s", st, body)
	}
	hc := overTLCP(pair.Sign, pair.Enc)
	if st, body := reenrol(hc, "POS-0101"); st != 403 || code(body) != "enroll_name_forbidden" {
		t.Fatalf("another subject: %d %s", st, body)
	}
	st, body := reenrol(hc, "POS-0100")
	if st != 200 {
		t.Fatalf("re-enrolment over TLCP: %d %s\n%s", st, body, a.out)
	}
	var r enroll.Response
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatal(err)
	}
	renewed, err := smx509.ParseCertificate(r.SignCert)
	if err != nil || renewed.CheckSignatureFrom(dev.Root.Cert) != nil || renewed.Subject.CommonName != "POS-0100" || r.Serial == pair.Serial {
		t.Fatalf("renewed certificate: %v", err)
	}
	if st, body := reenrol(hc, "POS-0100"); st != 409 || code(body) != "enroll_already_renewed" {
		t.Fatalf("second renewal: %d %s", st, body)
	}
	// The renewed pair's key is not what we hold (the CSR key was thrown away): revoke the
	// original through a signed request, then present it again.
	if err := e.Revoke(ctx, pair); err != nil {
		t.Fatal(err)
	}
	if st, body := reenrol(overTLCP(pair.Sign, pair.Enc), "POS-0100"); st != 401 || code(body) != "enroll_cert_revoked" {
		t.Fatalf("revoked certificate: %d %s", st, body)
	}
	if m := a.p.Metrics(); !bytes.Contains([]byte(m), []byte(`gmgate_enroll_requests_total{code="ok",op="simplereenroll"} 1`)) {
		t.Errorf("metrics:\n%s", grepLines(m, "gmgate_enroll_requests"))
	}

	// The SDK: Renewer{OverTLCP} renews through Enroller.ReenrollTLCP, no signed request.
	cmd = exec.Command(gmgateBin(t), "enroll", "token", "--config", filepath.Join(a.dir, "Caddyfile"), "--profile", "terminal", "--cn", "POS-0102")
	cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+filepath.Join(a.dir, "data"), "HOME="+a.dir)
	if tok, err = cmd.Output(); err != nil {
		t.Fatalf("gmgate enroll token: %v", err)
	}
	sdk := &client.Enroller{BaseURL: fmt.Sprintf("https://localhost:%d/.well-known/est", port), Roots: []*smx509.Certificate{dev.Root.Cert},
		HTTP: &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
			DialTLSContext: func(_ context.Context, network, addr string) (net.Conn, error) {
				return tlcp.Dial(network, addr, &tlcp.Config{RootCAs: pool, ServerName: "localhost", CipherSuites: []uint16{tlcp.ECC_SM4_GCM_SM3}})
			}}},
		TLCP: &client.TLCPConfig{RootCAs: pool, CipherSuites: []uint16{tlcp.ECC_SM4_GCM_SM3}}}
	first, err := sdk.Enroll(ctx, strings.TrimSpace(string(tok)), "POS-0102", nil)
	if err != nil {
		t.Fatalf("SDK enrolment: %v", err)
	}
	renewer := &client.Renewer{Enroller: sdk, OverTLCP: true, RenewBefore: 10000 * time.Hour}
	renewer.SetCurrent(first)
	if renewed, err := renewer.RenewIfDue(ctx); err != nil || !renewed {
		t.Fatalf("Renewer over TLCP: %v %v\n%s", renewed, err, a.out)
	}
	second := renewer.Current()
	if second.Serial == first.Serial || second.Sign.Certificate.Subject.CommonName != "POS-0102" {
		t.Fatalf("renewed pair: %s", second.Serial)
	}
	var ee *client.EnrolError
	if _, err := sdk.ReenrollTLCP(ctx, first, nil); !errors.As(err, &ee) || ee.Code != "enroll_already_renewed" {
		t.Fatalf("SDK second renewal of one pair: %v", err)
	}
	if err := sdk.Revoke(ctx, second); err != nil {
		t.Fatal(err)
	}
	if _, err := sdk.ReenrollTLCP(ctx, second, nil); !errors.As(err, &ee) || ee.Code != "enroll_cert_revoked" {
		t.Fatalf("SDK renewal of a revoked pair: %v", err)
	}
	plain := *sdk
	plain.BaseURL = base
	if _, err := plain.ReenrollTLCP(ctx, first, nil); err == nil || !strings.Contains(err.Error(), "https") {
		t.Fatalf("http BaseURL: %v", err)
	}
}
