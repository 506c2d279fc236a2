package integration

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/gmgate/gmgate/internal/wechatsdk"
	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/signing"
)

const trailerCaddyfile = `{
	admin {ADMIN}
	skip_install_trust
	auto_https off
	gmgate {
		dev_pki {DIR}/pki
	}
}

http://:{PORT} {
	gm_verify {
		scheme wechatpay-v3-sm2
	}
	reverse_proxy {BACKEND}
}
`

// TestAttackUnsignedTrailers: a terminal (or a man in the middle of a plain link) adds HTTP
// trailers after a validly signed chunked body: "X-Gm-Client-Subject: CN=victim" and any field
// the back end reads. No scheme covers trailers and gm_verify never looked at them, yet Caddy's
// reverse_proxy forwards request trailers: the back end received unsigned fields, including the
// identity names gm_verify strips from headers, from a request gmgate had verified. Now the
// verified request reaches the back end without trailers.
func TestAttackUnsignedTrailers(t *testing.T) {
	type seen struct {
		trailer http.Header
		subject string
	}
	var mu sync.Mutex
	var got []seen
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body) // trailers arrive after the body
		mu.Lock()
		got = append(got, seen{r.Trailer.Clone(), r.Header.Get("X-Gm-Client-Subject")})
		mu.Unlock()
		fmt.Fprint(w, `{"ok":true}`)
	}))
	defer backend.Close()
	port := freePort(t)
	cf := strings.NewReplacer("{PORT}", fmt.Sprint(port), "{BACKEND}", backend.Listener.Addr().String()).Replace(trailerCaddyfile)
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
	signer := &wechatsdk.Signer{MchID: "1900000001", Serial: signing.SerialHex(certs[0].SerialNumber), Key: key}
	body := `{"out_trade_no":"T1","amount":{"total":1}}`
	req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/v3/pay", port), io.NopCloser(strings.NewReader(body)))
	req.ContentLength = -1 // chunked, so that trailers can follow
	req.Header.Set("Authorization", wechatAuthorization(t, signer, http.MethodPost, "/v3/pay", body))
	req.Header.Set("Content-Type", "application/json")
	req.Trailer = http.Header{"X-Gm-Client-Subject": {"CN=victim"}, "X-Refund-To": {"attacker-account"}}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the signed request was refused: %d %s", resp.StatusCode, b)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 {
		t.Fatalf("back end saw %d requests", len(got))
	}
	if got[0].subject != certs[0].Subject.String() {
		t.Fatalf("back end's X-Gm-Client-Subject %q", got[0].subject)
	}
	if len(got[0].trailer) != 0 {
		t.Fatalf("unsigned trailers reached the back end after verification: %v", got[0].trailer)
	}
}
