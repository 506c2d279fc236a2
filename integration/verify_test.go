package integration

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gmgate/gmgate/internal/wechatsdk"

	"github.com/emmansun/gmsm/sm2"
	"github.com/wechatpay-apiv3/wechatpay-go/core"
	"github.com/wechatpay-apiv3/wechatpay-go/core/option"

	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/signing"
)

// The independent client is the official WeChat Pay Go SDK, github.com/wechatpay-apiv3/wechatpay-go
// v0.2.21. It has no SM2 of its own: these adapters plug gmsm into its auth.Signer and
// auth.Verifier; the SDK builds the signed string and the Authorization header and validates the
// signed reply itself.

const verifyCaddyfile = `{
	admin {ADMIN}
	skip_install_trust
	auto_https off
	gmgate {
		dev_pki {DIR}/pki
	}
}

http://:{PORT} {
	reverse_proxy {BACKEND} {
		header_up X-Placeholder-Subject {gm.client.subject}
		header_up X-Placeholder-Result {gm.verify.result}
	}
	gm_verify {
		scheme wechatpay-v3-sm2
		replay {
			window 5m
		}
		audit {DIR}/audit/verify.log {
			checkpoint_every 2
		}
	}
}
`

type seen struct {
	body    string
	header  http.Header
	auth    string
	ctype   string
	forged  bool
	subject string
}

// TestVerifyRealBinaryWechatPaySDK sends requests signed by the WeChat Pay SDK through the real
// gmgate binary (gm_verify + reverse_proxy) to a plain back end, and lets the SDK validate the
// signed replies.
func TestVerifyRealBinaryWechatPaySDK(t *testing.T) {
	var mu sync.Mutex
	var got []seen
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, seen{body: string(b), header: r.Header.Clone(), auth: r.Header.Get("Authorization"),
			ctype: r.Header.Get("Content-Type"), forged: r.Header.Get("X-Gm-Forged") != "",
			subject: r.Header.Get("X-Gm-Client-Subject")})
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Wechatpay-Signature", "set-by-backend-must-be-replaced")
		fmt.Fprintf(w, `{"code_url":"weixin://wxpay/bizpayurl?pr=gm","path":%q}`, r.URL.Path)
	}))
	defer backend.Close()

	port := freePort(t)
	cf := strings.NewReplacer("{PORT}", fmt.Sprint(port), "{BACKEND}", backend.Listener.Addr().String()).Replace(verifyCaddyfile)
	inst := startGmgate(t, cf)
	pkiDir := filepath.Join(inst.dir, "pki")

	load := func(base string) (*ecdsa.PublicKey, string, *sm2.PrivateKey) {
		certs, err := pki.LoadCertificatesFile(filepath.Join(pkiDir, base+".pem"))
		if err != nil {
			t.Fatal(err)
		}
		var key *sm2.PrivateKey
		if base == pki.DevClientSignBase {
			if key, err = pki.LoadPrivateKeyFile(filepath.Join(pkiDir, base+".key"), nil); err != nil {
				t.Fatal(err)
			}
		}
		return certs[0].PublicKey.(*ecdsa.PublicKey), signing.SerialHex(certs[0].SerialNumber), key
	}
	_, clientSerial, clientKey := load(pki.DevClientSignBase)
	platPub, platSerial, _ := load(pki.DevPlatformBase)

	ctx := context.Background()
	const mchID = "1900000001"
	client, err := core.NewClient(ctx,
		option.WithSigner(&wechatsdk.Signer{MchID: mchID, Serial: clientSerial, Key: clientKey}),
		option.WithVerifier(&wechatsdk.Verifier{Serial: platSerial, Pub: platPub}),
		// A transport adding identity headers a client must not be able to set.
		option.WithHTTPClient(&http.Client{Timeout: 10 * time.Second, Transport: forgeHeaders{http.DefaultTransport}}),
	)
	if err != nil {
		t.Fatal(err)
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	order := map[string]any{"mchid": mchID, "out_trade_no": "GM20251125000001", "amount": map[string]any{"total": 100, "currency": "CNY"}}
	res, err := client.Post(ctx, base+"/v3/pay/transactions/native?sub=1", order)
	if err != nil {
		t.Fatalf("SDK POST through gmgate: %v\n%s", err, inst.out)
	}
	body, _ := io.ReadAll(res.Response.Body)
	if !strings.Contains(string(body), "weixin://wxpay") || res.Response.Header.Get("Wechatpay-Serial") != platSerial {
		t.Fatalf("reply %s %v", body, res.Response.Header)
	}
	if _, err := client.Get(ctx, base+"/v3/certificates"); err != nil {
		t.Fatalf("SDK GET through gmgate: %v", err)
	}

	mu.Lock()
	calls := append([]seen(nil), got...)
	mu.Unlock()
	if len(calls) != 2 {
		t.Fatalf("back end saw %d requests", len(calls))
	}
	var plain map[string]any
	if err := json.Unmarshal([]byte(calls[0].body), &plain); err != nil || plain["out_trade_no"] != "GM20251125000001" {
		t.Fatalf("back end did not get the plain JSON: %q %v", calls[0].body, err)
	}
	for _, c := range calls {
		if c.forged || c.header.Get("X-Gm-Client-Serial") != clientSerial || c.header.Get("X-Gm-Verify-Scheme") != signing.WechatPayName ||
			c.subject == "" || c.subject == "CN=forged" || c.header.Get("X-Placeholder-Subject") != c.subject ||
			c.header.Get("X-Placeholder-Result") != "ok" {
			t.Fatalf("identity headers at the back end: %v", c.header)
		}
	}

	// The exact same signed request again is a replay.
	req, _ := http.NewRequest(http.MethodPost, base+"/v3/pay/transactions/native?sub=1", strings.NewReader(calls[0].body))
	req.Header.Set("Authorization", calls[0].auth)
	req.Header.Set("Content-Type", calls[0].ctype)
	assertRejected(t, req, http.StatusUnauthorized, "replay")
	// No signature, and a tampered body.
	req, _ = http.NewRequest(http.MethodPost, base+"/v3/pay/transactions/native", strings.NewReader(`{}`))
	assertRejected(t, req, http.StatusUnauthorized, "missing_signature")
	req, _ = http.NewRequest(http.MethodGet, base+"/v3/certificates", nil)
	req.Header.Set("Authorization", strings.Replace(calls[1].auth, `nonce_str="`, `nonce_str="x`, 1))
	assertRejected(t, req, http.StatusUnauthorized, "bad_signature")
	mu.Lock()
	n := len(got)
	mu.Unlock()
	if n != 2 {
		t.Fatalf("rejected requests reached the back end (%d calls)", n)
	}

	// The audit log holds every decision and verifies with the platform certificate.
	inst.stop()
	out, err := exec.Command(gmgateBin(t), "audit", "verify", "--cert", filepath.Join(pkiDir, pki.DevPlatformBase+".pem"),
		filepath.Join(inst.dir, "audit", "verify.log")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "intact") || !strings.Contains(string(out), "5 decisions") {
		t.Fatalf("gmgate audit verify: %v\n%s", err, out)
	}
}

type forgeHeaders struct{ rt http.RoundTripper }

func (f forgeHeaders) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("X-Gm-Forged", "1")
	r.Header.Set("X-Gm-Client-Subject", "CN=forged")
	return f.rt.RoundTrip(r)
}

func assertRejected(t *testing.T, req *http.Request, status int, code string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var eb struct{ Code, Message string }
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != status || json.Unmarshal(b, &eb) != nil || eb.Code != code || eb.Message == "" {
		t.Fatalf("got %d %s, want %d %s", resp.StatusCode, b, status, code)
	}
}
