package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wechatpay-apiv3/wechatpay-go/core"
	"github.com/wechatpay-apiv3/wechatpay-go/core/option"

	"github.com/gmgate/gmgate/internal/wechatsdk"
	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/signing"
)

// Each of Caddy's rewriting directives runs before gm_verify in the same site; gm_verify checks
// the signature over the request line the client sent (Caddy keeps it in the request context),
// and the back end receives the rewritten request.
const receivedCaddyfile = `{
	admin {ADMIN}
	skip_install_trust
	auto_https off
	gmgate {
		dev_pki {DIR}/pki
	}
}

http://:{PORT} {
	log {
		output file {DIR}/access.log
		format json
	}
	handle_path /strip/* {
		gm_verify {
			scheme wechatpay-v3-sm2
		}
		reverse_proxy {BACKEND} {
			header_up X-User-Id {http.auth.user.id}
			header_up X-User-Serial {http.auth.user.serial}
		}
	}
	handle /uri/* {
		uri strip_prefix /uri
		gm_verify {
			scheme wechatpay-v3-sm2
		}
		reverse_proxy {BACKEND} {
			header_up X-User-Id {http.auth.user.id}
			header_up X-User-Serial {http.auth.user.serial}
		}
	}
	handle /rw/* {
		rewrite * /internal{uri}
		gm_verify {
			scheme wechatpay-v3-sm2
		}
		reverse_proxy {BACKEND} {
			header_up X-User-Id {http.auth.user.id}
			header_up X-User-Serial {http.auth.user.serial}
		}
	}
	handle /m/* {
		method PUT
		gm_verify {
			scheme wechatpay-v3-sm2
		}
		reverse_proxy {BACKEND} {
			header_up X-User-Id {http.auth.user.id}
			header_up X-User-Serial {http.auth.user.serial}
		}
	}
}
`

func TestVerifyRequestAsReceived(t *testing.T) {
	type call struct{ method, uri, user, serial string }
	var mu sync.Mutex
	var calls []call
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls = append(calls, call{r.Method, r.URL.RequestURI(), r.Header.Get("X-User-Id"), r.Header.Get("X-User-Serial")})
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"ok":true}`)
	}))
	defer backend.Close()
	port := freePort(t)
	cf := strings.NewReplacer("{PORT}", fmt.Sprint(port), "{BACKEND}", backend.Listener.Addr().String()).Replace(receivedCaddyfile)
	inst := startGmgate(t, cf)
	pkiDir := filepath.Join(inst.dir, "pki")
	certs, err := pki.LoadCertificatesFile(filepath.Join(pkiDir, pki.DevClientSignBase+".pem"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := pki.LoadPrivateKeyFile(filepath.Join(pkiDir, pki.DevClientSignBase+".key"), nil)
	if err != nil {
		t.Fatal(err)
	}
	serial := signing.SerialHex(certs[0].SerialNumber)
	subject := certs[0].Subject.String()
	// The SDK validates no reply here (gm_verify has no reply signing configured).
	client, err := core.NewClient(context.Background(),
		option.WithSigner(&wechatsdk.Signer{MchID: "1900000001", Serial: serial, Key: key}),
		option.WithoutValidator(),
		option.WithHTTPClient(&http.Client{Timeout: 10 * time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	cases := []struct {
		path, wantMethod, wantURI string
	}{
		{"/strip/v3/pay?x=1", http.MethodPost, "/v3/pay?x=1"},
		{"/uri/v3/pay?x=2", http.MethodPost, "/v3/pay?x=2"},
		{"/rw/v3/pay?x=3", http.MethodPost, "/internal/rw/v3/pay?x=3"},
		{"/m/v3/pay", http.MethodPut, "/m/v3/pay"},
	}
	for _, c := range cases {
		mu.Lock()
		before := len(calls)
		mu.Unlock()
		if _, err := client.Post(context.Background(), base+c.path, map[string]any{"out_trade_no": c.path}); err != nil {
			t.Fatalf("%s: a request signed as sent was refused: %v", c.path, err)
		}
		mu.Lock()
		got := calls[before:]
		mu.Unlock()
		if len(got) != 1 || got[0].method != c.wantMethod || got[0].uri != c.wantURI {
			t.Fatalf("%s: back end saw %+v, want %s %s", c.path, got, c.wantMethod, c.wantURI)
		}
		if got[0].user != subject || got[0].serial != serial {
			t.Fatalf("%s: {http.auth.user.*} = %q %q, want %q %q", c.path, got[0].user, got[0].serial, subject, serial)
		}
	}

	// The converse attack: a signature over the rewritten request line (what the back end sees),
	// sent to the public path, does not verify.
	signer := &wechatsdk.Signer{MchID: "1900000001", Serial: serial, Key: key}
	body := `{"out_trade_no":"rewritten"}`
	auth := wechatAuthorization(t, signer, http.MethodPost, "/v3/pay", body)
	req, _ := http.NewRequest(http.MethodPost, base+"/uri/v3/pay", strings.NewReader(body))
	req.Header.Set("Authorization", auth)
	req.Header.Set("Content-Type", "application/json")
	assertRejected(t, req, http.StatusUnauthorized, "bad_signature")

	// The access log names the verified client as Caddy's user_id.
	inst.stop()
	f, err := os.Open(filepath.Join(inst.dir, "access.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	users := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var entry struct {
			UserID  string               `json:"user_id"`
			Status  int                  `json:"status"`
			Request struct{ URI string } `json:"request"`
		}
		if json.Unmarshal(sc.Bytes(), &entry) != nil || entry.Status != 200 {
			continue
		}
		if entry.UserID != subject {
			t.Fatalf("access log user_id %q for %s, want %q", entry.UserID, entry.Request.URI, subject)
		}
		users++
	}
	if users != len(cases) {
		t.Fatalf("%d access log entries with user_id, want %d", users, len(cases))
	}
}

// wechatAuthorization signs method, target and body as a WeChat Pay v3 client would.
func wechatAuthorization(t *testing.T, s *wechatsdk.Signer, method, target, body string) string {
	t.Helper()
	ts := fmt.Sprint(time.Now().Unix())
	nonce := fmt.Sprintf("N%015d", time.Now().UnixNano()%1e15)
	res, err := s.Sign(context.Background(), method+"\n"+target+"\n"+ts+"\n"+nonce+"\n"+body+"\n")
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf(`WECHATPAY2-%s mchid="%s",nonce_str="%s",signature="%s",timestamp="%s",serial_no="%s"`,
		wechatsdk.Algorithm, s.MchID, nonce, res.Signature, ts, s.Serial)
}
