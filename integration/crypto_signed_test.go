package integration

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/client"
	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/signing"
)

// cryptoSignedCaddyfile serves gm_crypto to callers that sign their requests (http-sig-sm2)
// instead of presenting a client certificate.
const cryptoSignedCaddyfile = `{
	admin {ADMIN}
	skip_install_trust
	auto_https off
	metrics
	gmgate {
		audit {DIR}/audit/audit.log {
			signing_key audit-sign
			checkpoint_every 1
		}
		vault {
			key audit-sign file:{AUDITKEY}
			key pii file:{PIIKEY} {
				type sm4
			}
		}
	}
}

http://:{PORT} {
	handle /shf/v1/* {
		gm_crypto {
			caller settlement subject_cn settlement
			caller risk subject_cn risk
			caller old subject_cn settlement-old
			allow settlement encrypt,decrypt pii
			allow settlement random
			allow old encrypt pii
			allow risk decrypt pii
			scheme http-sig-sm2
			identities {
				file {IDS}
			}
			client_ca {CA}
			client_crls {CRL}
		}
	}
	respond 404
}
`

// recordingTransport forwards requests and keeps a copy of the last one (headers and body), the
// attacker's captured traffic.
type recordingTransport struct {
	mu   sync.Mutex
	req  *http.Request
	body []byte
}

func (rt *recordingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	var body []byte
	if r.Body != nil {
		body, _ = io.ReadAll(r.Body)
		r.Body.Close()
	}
	rt.mu.Lock()
	rt.req, rt.body = r.Clone(context.Background()), body
	rt.mu.Unlock()
	r.Body = io.NopCloser(bytes.NewReader(body))
	return http.DefaultTransport.RoundTrip(r)
}

func (rt *recordingTransport) last() (*http.Request, []byte) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.req, append([]byte(nil), rt.body...)
}

// TestCryptoSignedRequestsRealBinary: callers without a client certificate sign their requests
// (http-sig-sm2 over method, target and body; the client's signing option), gm_crypto verifies
// them through the gateway's pipeline (identities through pki with the client CA and CRL,
// timestamp window, nonce store) and applies the policy to the signing certificate exactly as
// to a client certificate. Attacks: a replayed request, a body or key name swapped under a valid
// signature, an operation swapped (path), a revoked caller certificate, a certificate with the
// caller's CN from another CA, a stale timestamp.
func TestCryptoSignedRequestsRealBinary(t *testing.T) {
	dir := t.TempDir()
	ca, _, err := pki.NewRootCA(pki.IssueOptions{CommonName: "internal callers CA"})
	if err != nil {
		t.Fatal(err)
	}
	otherCA, _, err := pki.NewRootCA(pki.IssueOptions{CommonName: "some other CA"})
	if err != nil {
		t.Fatal(err)
	}
	issue := func(ca *pki.CA, cn string, serial int64) *pki.Pair {
		p, err := ca.IssueClientPair(pki.IssueOptions{CommonName: cn, SerialNumber: big.NewInt(serial)})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	settlement, risk, old := issue(ca, "settlement", 0x5e71), issue(ca, "risk", 0x415c), issue(ca, "settlement-old", 0x01d)
	foreign := issue(otherCA, "settlement", 0xf0e1) // the caller's CN, another CA
	crl, err := ca.CreateCRL([]smx509.RevocationListEntry{{SerialNumber: old.Sign.Cert.SerialNumber, RevocationTime: time.Now().Add(-time.Hour)}}, big.NewInt(1), 24*time.Hour)
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
	auditKey, err := smx509.MarshalPKCS8PrivateKey(settlement.Enc.Key) // any SM2 key: the audit checkpoint key
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	cf := strings.NewReplacer(
		"{AUDITKEY}", write("audit.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: auditKey})),
		"{PIIKEY}", write("pii.key", []byte("00112233445566778899aabbccddeeff\n")),
		"{IDS}", write("callers.pem", pki.EncodeCertificatesPEM(settlement.Sign.Cert, risk.Sign.Cert, old.Sign.Cert, foreign.Sign.Cert)),
		"{CA}", write("ca.pem", pki.EncodeCertificatesPEM(ca.Cert)),
		"{CRL}", write("ca.crl", pki.EncodeCRLPEM(crl)),
		"{PORT}", fmt.Sprint(port)).Replace(cryptoSignedCaddyfile)
	inst := startGmgate(t, cf)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	ctx := context.Background()

	signedClient := func(p *pki.Pair, now func() time.Time) (*client.CryptoService, *recordingTransport) {
		rt := &recordingTransport{}
		svc, err := client.NewCryptoService(base, client.Config{Transport: rt, Scheme: signing.HTTPSigName,
			Key: signing.Key{Signer: p.Sign.Key, Cert: p.Sign.Cert}, Now: now})
		if err != nil {
			t.Fatal(err)
		}
		return svc, rt
	}
	wantCode := func(err error, status int, code string) {
		t.Helper()
		var ce *client.CryptoError
		if !errors.As(err, &ce) || ce.Status != status || ce.Code != code {
			t.Fatalf("got %v, want %d %s", err, status, code)
		}
	}

	// The signed caller is served, and the policy is the caller's.
	st, rec := signedClient(settlement, nil)
	secret := []byte("card 6222021234567890")
	ct, err := st.Encrypt(ctx, "pii", secret, []byte("order-1"))
	if err != nil {
		t.Fatalf("signed encrypt: %v", err)
	}
	capturedReq, capturedBody := rec.last()
	rk, _ := signedClient(risk, nil)
	if pt, err := rk.Decrypt(ctx, "pii", ct, []byte("order-1")); err != nil || !bytes.Equal(pt, secret) {
		t.Fatalf("signed decrypt by risk: %v", err)
	}
	_, err = rk.Encrypt(ctx, "pii", secret, nil)
	wantCode(err, 403, "crypto_forbidden")

	send := func(method, path string, h http.Header, body []byte) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, base+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range h {
			req.Header[k] = v
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		var got struct{ Code string }
		json.Unmarshal(out, &got)
		if resp.StatusCode != http.StatusOK && resp.Header.Get("Gm-Crypto-Code") != got.Code {
			t.Fatalf("refusal header %q, body %s", resp.Header.Get("Gm-Crypto-Code"), out)
		}
		return resp.StatusCode, got.Code
	}

	// Attacks on captured traffic. Each gets a fresh capture so that only the attack fails it.
	fresh := func() (http.Header, []byte) {
		if _, err := st.Encrypt(ctx, "pii", []byte("x"), nil); err != nil {
			t.Fatal(err)
		}
		r, b := rec.last()
		return r.Header.Clone(), b
	}
	t.Run("replayed request", func(t *testing.T) {
		if s, c := send("POST", "/shf/v1/Encrypt", capturedReq.Header, capturedBody); s != 401 || c != "crypto_unauthenticated" {
			t.Fatalf("replay: %d %s", s, c)
		}
	})
	t.Run("key name swapped under a valid signature", func(t *testing.T) {
		h, b := fresh()
		swapped := bytes.Replace(b, []byte(`"key":"pii"`), []byte(`"key":"pij"`), 1)
		if bytes.Equal(swapped, b) {
			t.Fatal("no key field to swap")
		}
		if s, c := send("POST", "/shf/v1/Encrypt", h, swapped); s != 401 || c != "crypto_unauthenticated" {
			t.Fatalf("swapped key: %d %s", s, c)
		}
	})
	t.Run("body swapped with its digest recomputed", func(t *testing.T) {
		h, b := fresh()
		swapped := bytes.Replace(b, []byte(`"key":"pii"`), []byte(`"key":"pij"`), 1)
		h.Set("Content-Digest", "sm3=:"+b64sm3(swapped)+":")
		if s, c := send("POST", "/shf/v1/Encrypt", h, swapped); s != 401 || c != "crypto_unauthenticated" {
			t.Fatalf("swapped body with digest: %d %s", s, c)
		}
	})
	t.Run("operation swapped", func(t *testing.T) {
		h, b := fresh()
		if s, c := send("POST", "/shf/v1/Decrypt", h, b); s != 401 || c != "crypto_unauthenticated" {
			t.Fatalf("swapped path: %d %s", s, c)
		}
	})
	t.Run("revoked caller certificate", func(t *testing.T) {
		o, _ := signedClient(old, nil)
		_, err := o.Encrypt(ctx, "pii", secret, nil)
		wantCode(err, 401, "crypto_unauthenticated")
	})
	t.Run("caller's CN from another CA", func(t *testing.T) {
		f, _ := signedClient(foreign, nil)
		_, err := f.Encrypt(ctx, "pii", secret, nil)
		wantCode(err, 401, "crypto_unauthenticated")
	})
	t.Run("stale timestamp", func(t *testing.T) {
		s, _ := signedClient(settlement, func() time.Time { return time.Now().Add(-time.Hour) })
		_, err := s.Encrypt(ctx, "pii", secret, nil)
		wantCode(err, 401, "crypto_unauthenticated")
	})
	t.Run("unsigned request", func(t *testing.T) {
		if s, c := send("POST", "/shf/v1/Encrypt", nil, []byte(`{"key":"pii","plaintext":"eA=="}`)); s != 401 || c != "crypto_unauthenticated" {
			t.Fatalf("unsigned: %d %s", s, c)
		}
		// A malformed GM/T 0136 body of an unidentified caller: unauthenticated, not malformed
		// (nothing about the body is judged before the caller is known).
		if s, c := send("POST", "/shf/v1/Encrypt", nil, []byte(`{"Data":[{"Name":"IV","Type":"Hex","Value":"00"}]}`)); s != 401 || c != "crypto_unauthenticated" {
			t.Fatalf("unsigned GM/T 0136: %d %s", s, c)
		}
	})
	// GM/T 0136's Name/Type/Value items: the same operation in the standard's body shape,
	// answered in it; a name the translation does not know is refused.
	t.Run("GM/T 0136 items", func(t *testing.T) {
		type ntvItem struct {
			Name, Type string
			Value      json.RawMessage
		}
		var got struct{ Data []ntvItem }
		req := map[string]any{"Data": []map[string]any{{"Name": "KeyId", "Type": "Raw", "Value": "pii"},
			{"Name": "PlainText", "Type": "Hex", "Value": "36323232"}, {"Name": "Context", "Type": "Raw", "Value": "order-1"}}}
		if err := st.Call(ctx, "Encrypt", req, &got); err != nil {
			t.Fatal(err)
		}
		var ct string
		for _, it := range got.Data {
			if it.Name == "CipherText" && it.Type == "Raw" {
				json.Unmarshal(it.Value, &ct)
			}
		}
		if pt, err := st.Decrypt(ctx, "pii", ct, []byte("order-1")); err != nil || string(pt) != "6222" {
			t.Fatalf("GM/T 0136 ciphertext %q: %v", ct, err)
		}
		req["Data"] = append(req["Data"].([]map[string]any), map[string]any{"Name": "IV", "Type": "Hex", "Value": "00"})
		wantCode(st.Call(ctx, "Encrypt", req, &got), 400, "crypto_malformed")
	})
	// The captured original, never sent twice, was accepted once; the caller still works.
	if _, err := st.Decrypt(ctx, "pii", ct, []byte("order-1")); err != nil {
		t.Fatalf("after the attacks: %v", err)
	}

	m := scrapeMetrics(t, inst.admin)
	for _, l := range []map[string]string{
		{"caller": "settlement", "op": "encrypt", "key": "pii", "code": "ok"},
		{"caller": "risk", "op": "decrypt", "key": "pii", "code": "ok"},
		{"caller": "risk", "op": "encrypt", "key": "pii", "code": "crypto_forbidden"},
		{"caller": "-", "op": "encrypt", "key": "", "code": "crypto_unauthenticated"},
	} {
		if n, ok := m.sum("gmgate_crypto_requests_total", l); !ok || n < 1 {
			t.Errorf("gmgate_crypto_requests_total%v = %v (%v)", l, n, ok)
		}
	}
	inst.stop()
	logs, _ := filepath.Glob(filepath.Join(inst.dir, "audit", "audit.log.*"))
	var all []byte
	for _, l := range logs {
		b, _ := os.ReadFile(l)
		all = append(all, b...)
	}
	for _, want := range []string{`"key_id":"settlement:pii@v1"`, `"key_id":"risk:pii@v1"`, `"reason":"crypto_unauthenticated"`,
		`"cert_serial":"5E71"`} {
		if !bytes.Contains(all, []byte(want)) {
			t.Errorf("audit log lacks %s", want)
		}
	}
}

// b64sm3 is the Base64 SM3 digest of b (a Content-Digest value an attacker recomputes).
func b64sm3(b []byte) string {
	d := sm3.Sum(b)
	return base64.StdEncoding.EncodeToString(d[:])
}
