package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gmgate/gmgate/signing"
)

func newTestClient(t testing.TB, cfg Config) *Client {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func withEnvelope(cfg Config, p *testPKI) Config {
	cfg.Envelope = &EnvelopeConfig{
		PlatformEncCert:    p.platformEnc.Certificate,
		Cert:               p.termEnc.Certificate,
		Key:                p.termEnc.Key.(*sm2Key),
		RequireSealedReply: true,
	}
	return cfg
}

// checkOK asserts a verified reply for the request body sent.
func checkOK(t *testing.T, p *testPKI, scheme string, resp *Response, sent []byte, enveloped bool) {
	t.Helper()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d body %q", resp.StatusCode, resp.Body)
	}
	r := resp.Reply
	if r == nil || r.Certificate == nil {
		t.Fatal("no verified reply identity")
	}
	if !bytes.Equal(r.Certificate.Raw, p.platformSign.Certificate.Raw) {
		t.Errorf("reply verified by %s, want the platform certificate", r.Subject)
	}
	if !strings.Contains(r.Subject, "gmgate platform") || r.Serial != signing.SerialHex(p.platformSign.Certificate.SerialNumber) {
		t.Errorf("subject %q serial %q", r.Subject, r.Serial)
	}
	if r.Scheme != scheme || r.Nonce == "" || len(r.SignedSM3) != 32 || len(r.Signature) == 0 {
		t.Errorf("reply evidence incomplete: %+v", r)
	}
	if d := time.Since(r.Timestamp); d > time.Minute || d < -time.Minute {
		t.Errorf("reply timestamp %v", r.Timestamp)
	}
	if r.RequestNonce == "" || r.RequestTime.IsZero() {
		t.Errorf("request nonce/time not recorded: %+v", r)
	}
	if r.Enveloped != enveloped {
		t.Errorf("Enveloped = %v, want %v", r.Enveloped, enveloped)
	}
	if !bytes.Contains(resp.Body, []byte("SUCCESS")) {
		t.Errorf("reply body %q", resp.Body)
	}
	if scheme == signing.WechatPayName || scheme == signing.HTTPSigName {
		// The back end echoes the plaintext it received: proves signing (and sealing) kept it.
		var echo struct{ Echo, Nonce string }
		if err := json.Unmarshal(resp.Body, &echo); err != nil {
			t.Fatalf("reply body %q: %v", resp.Body, err)
		}
		if echo.Echo != string(sent) {
			t.Errorf("back end saw %q, sent %q", echo.Echo, sent)
		}
		if echo.Nonce != r.RequestNonce {
			t.Errorf("back end saw nonce %q, client recorded %q", echo.Nonce, r.RequestNonce)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type %q", ct)
		}
	} else {
		v, err := url.ParseQuery(string(resp.Body))
		if err != nil {
			t.Fatal(err)
		}
		// The back end saw the signed body (the client added the signature fields).
		if v.Get("result_code") != "SUCCESS" || len(v.Get("echo_sha")) != 64 {
			t.Errorf("reply %q", resp.Body)
		}
	}
}

func TestEverySchemePlainHTTP(t *testing.T) {
	p := getPKI(t)
	for _, scheme := range allSchemes {
		for _, env := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/envelope=%v", scheme, env), func(t *testing.T) {
				st := newStub(t, p, scheme)
				srv := plainServer(t, st)
				cfg := baseConfig(t, p, scheme)
				cfg.BaseURL = srv.URL + "/v3"
				if env {
					cfg = withEnvelope(cfg, p)
				}
				c := newTestClient(t, cfg)
				ct, body := requestBody(scheme)
				resp, err := c.Post(context.Background(), "pay/transactions?mode=native", ct, body)
				if err != nil {
					t.Fatalf("Post: %v", err)
				}
				checkOK(t, p, scheme, resp, body, env)
				// A GET with a query is signed too (empty body).
				if !env && (scheme == signing.WechatPayName || scheme == signing.HTTPSigName) {
					resp, err = c.Get(context.Background(), "/v3/pay/transactions/out-trade-no/T1?mchid=1900000001")
					if err != nil {
						t.Fatalf("Get: %v", err)
					}
					if resp.StatusCode != 200 || resp.Reply.Certificate == nil {
						t.Fatalf("GET: %d", resp.StatusCode)
					}
				}
				if got := st.ok.Load(); got < 1 {
					t.Errorf("gateway accepted %d requests", got)
				}
			})
		}
	}
}

// TestReplyFailures: a tampered, unsigned, stale, future-dated, wrongly signed or unknown-key
// reply gives the right typed error, for every scheme, sealed or not.
func TestReplyFailures(t *testing.T) {
	p := getPKI(t)
	cases := []struct {
		mode string
		want []error // any of
	}{
		{"tamper", []error{ErrReplySignatureInvalid}},
		{"unsigned", []error{ErrReplyUnsigned}},
		{"stale", []error{ErrReplyStale}},
		{"future", []error{ErrReplyStale}},
		{"wrongkey", []error{ErrReplySignatureInvalid}},
		{"unknownkey", []error{ErrReplyUnknownKey}},
	}
	for _, scheme := range allSchemes {
		for _, env := range []bool{false, true} {
			st := newStub(t, p, scheme)
			srv := plainServer(t, st)
			cfg := baseConfig(t, p, scheme)
			cfg.BaseURL = srv.URL
			if env {
				cfg = withEnvelope(cfg, p)
			}
			c := newTestClient(t, cfg)
			for _, tc := range cases {
				t.Run(fmt.Sprintf("%s/envelope=%v/%s", scheme, env, tc.mode), func(t *testing.T) {
					want := tc.want
					if env && tc.mode == "tamper" && scheme != signing.WechatPayName && scheme != signing.HTTPSigName {
						// Sign-then-seal: a flipped ciphertext byte breaks the envelope or the
						// signature of what comes out of it.
						want = []error{ErrReplyEnvelope, ErrReplySignatureInvalid}
					}
					ct, body := requestBody(scheme)
					req, err := c.NewRequest(context.Background(), http.MethodPost, "/pay", ct, body)
					if err != nil {
						t.Fatal(err)
					}
					req.Header.Set("X-Test-Mode", tc.mode)
					resp, err := c.Do(req)
					if err == nil {
						t.Fatalf("mode %s accepted: %d %q", tc.mode, resp.StatusCode, resp.Body)
					}
					matched := false
					for _, w := range want {
						matched = matched || errors.Is(err, w)
					}
					if !matched {
						t.Fatalf("mode %s: error %v, want one of %v", tc.mode, err, want)
					}
					var re *ReplyError
					if !errors.As(err, &re) || re.StatusCode != http.StatusOK || re.Scheme != scheme {
						t.Errorf("ReplyError %+v", re)
					}
					// Only the listed sentinel matches.
					for _, other := range []error{ErrReplyUnsigned, ErrReplySignatureInvalid, ErrReplyStale, ErrReplyUnknownKey, ErrReplyEnvelope} {
						if errors.Is(err, other) && !errors.Is(re.Err, other) {
							t.Errorf("error also matches %v", other)
						}
					}
				})
			}
		}
	}
}

// The gateway's own refusals are unsigned; the client reports them as ErrReplyUnsigned with
// the gateway's code as a hint.
func TestGatewayRefusals(t *testing.T) {
	p := getPKI(t)
	t.Run("bad request signature", func(t *testing.T) {
		for _, scheme := range allSchemes {
			st := newStub(t, p, scheme)
			srv := plainServer(t, st)
			cfg := baseConfig(t, p, scheme)
			cfg.BaseURL = srv.URL
			cfg.Key.Signer = p.otherSign.Key.(*sm2Key) // wrong key for the terminal certificate
			c := newTestClient(t, cfg)
			ct, body := requestBody(scheme)
			_, err := c.Post(context.Background(), "/pay", ct, body)
			var re *ReplyError
			if !errors.Is(err, ErrReplyUnsigned) || !errors.As(err, &re) {
				t.Fatalf("%s: %v", scheme, err)
			}
			if re.StatusCode != 401 || re.GatewayCode != "bad_signature" {
				t.Errorf("%s: %+v", scheme, re)
			}
		}
	})
	t.Run("replayed nonce", func(t *testing.T) {
		for _, scheme := range []string{signing.WechatPayName, signing.HTTPSigName, signing.FormName} {
			st := newStub(t, p, scheme)
			srv := plainServer(t, st)
			cfg := baseConfig(t, p, scheme)
			cfg.BaseURL = srv.URL
			cfg.Nonce = func() (string, error) { return "FIXEDNONCE0001", nil }
			c := newTestClient(t, cfg)
			ct, body := requestBody(scheme)
			if _, err := c.Post(context.Background(), "/pay", ct, body); err != nil {
				t.Fatalf("%s first: %v", scheme, err)
			}
			ct, body = requestBody(scheme)
			_, err := c.Post(context.Background(), "/pay", ct, body)
			var re *ReplyError
			if !errors.As(err, &re) || re.GatewayCode != "replay" || !errors.Is(err, ErrReplyUnsigned) {
				t.Fatalf("%s second: %v", scheme, err)
			}
		}
	})
}

func TestBounds(t *testing.T) {
	p := getPKI(t)
	st := newStub(t, p, signing.HTTPSigName)
	srv := plainServer(t, st)
	cfg := baseConfig(t, p, signing.HTTPSigName)
	cfg.BaseURL = srv.URL
	cfg.MaxRequestBody = 16
	c := newTestClient(t, cfg)
	_, err := c.Post(context.Background(), "/pay", "application/json", bytes.Repeat([]byte("a"), 17))
	if !errors.Is(err, ErrRequestTooLarge) {
		t.Fatalf("large request: %v", err)
	}
	if st.ok.Load() != 0 {
		t.Fatal("an oversized request reached the gateway")
	}
	if _, err := c.Post(context.Background(), "/pay", "application/json", []byte(`{"a":"1"}`)); err != nil {
		t.Fatalf("16-byte request: %v", err)
	}

	cfg.MaxRequestBody = 0
	cfg.MaxReplyBody = 32
	c = newTestClient(t, cfg)
	_, body := requestBody(signing.HTTPSigName)
	_, err = c.Post(context.Background(), "/pay", "application/json", body)
	if !errors.Is(err, ErrReplyTooLarge) {
		t.Fatalf("large reply: %v", err)
	}
}

// The Transport never modifies the caller's request, and WithReply works with the bare
// *http.Client.
func TestTransportWithBareHTTPClient(t *testing.T) {
	p := getPKI(t)
	st := newStub(t, p, signing.WechatPayName)
	srv := plainServer(t, st)
	cfg := baseConfig(t, p, signing.WechatPayName)
	cfg.BaseURL = srv.URL
	c := newTestClient(t, cfg)
	_, body := requestBody(signing.WechatPayName)
	var reply Reply
	req, err := http.NewRequestWithContext(WithReply(context.Background(), &reply), http.MethodPost, srv.URL+"/v3/pay", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	before := req.Header.Clone()
	resp, err := c.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Contains(got, []byte("SUCCESS")) || reply.Certificate == nil || reply.KeyID != reply.Serial {
		t.Fatalf("reply %q identity %+v", got, reply)
	}
	if len(req.Header) != len(before) || req.Header.Get("Authorization") != "" {
		t.Errorf("caller's request was modified: %v", req.Header)
	}
}

func TestConcurrentPlain(t *testing.T) {
	p := getPKI(t)
	for _, scheme := range []string{signing.HTTPSigName, signing.UnionPayName} {
		st := newStub(t, p, scheme)
		srv := plainServer(t, st)
		cfg := baseConfig(t, p, scheme)
		cfg.BaseURL = srv.URL
		c := newTestClient(t, cfg)
		runConcurrent(t, c, scheme, 8, 10)
		if got := st.ok.Load(); got != 80 {
			t.Errorf("%s: gateway accepted %d, want 80", scheme, got)
		}
	}
}

// runConcurrent sends workers*each signed requests concurrently and checks every reply.
func runConcurrent(t *testing.T, c *Client, scheme string, workers, each int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	var mu sync.Mutex
	nonces := map[string]bool{}
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				ct, body := requestBody(scheme)
				resp, err := c.Post(context.Background(), "/pay", ct, body)
				if err != nil {
					errs <- err
					continue
				}
				if resp.StatusCode != 200 || resp.Reply.Certificate == nil {
					errs <- fmt.Errorf("status %d", resp.StatusCode)
					continue
				}
				mu.Lock()
				if nonces[resp.Reply.RequestNonce] {
					errs <- fmt.Errorf("nonce %q reused", resp.Reply.RequestNonce)
				}
				nonces[resp.Reply.RequestNonce] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestNewErrors(t *testing.T) {
	p := getPKI(t)
	ok := baseConfig(t, p, signing.FormName)
	ok.BaseURL = "https://gateway.test"
	cases := []struct {
		name string
		mod  func(*Config)
	}{
		{"no base URL", func(c *Config) { c.BaseURL = "" }},
		{"relative base URL", func(c *Config) { c.BaseURL = "/api" }},
		{"ftp base URL", func(c *Config) { c.BaseURL = "ftp://gateway.test" }},
		{"unknown scheme", func(c *Config) { c.Scheme = "rsa-sha256" }},
		{"no signer", func(c *Config) { c.Key.Signer = nil }},
		{"no platform certs", func(c *Config) { c.PlatformCerts = nil }},
		{"nil platform cert", func(c *Config) { c.PlatformCerts = append(c.PlatformCerts, nil) }},
		{"TLCP over http", func(c *Config) { c.BaseURL = "http://gateway.test"; c.TLCP = &TLCPConfig{RootCAs: p.pool} }},
		{"TLCP without roots", func(c *Config) { c.TLCP = &TLCPConfig{} }},
		{"TLCP sign without enc", func(c *Config) { c.TLCP = &TLCPConfig{RootCAs: p.pool, Sign: p.termSign} }},
		{"envelope key without cert", func(c *Config) { c.Envelope = &EnvelopeConfig{Key: p.termEnc.Key.(*sm2Key)} }},
		{"seal-then-sign with a body scheme", func(c *Config) { c.Envelope = &EnvelopeConfig{Order: SealThenSign} }},
	}
	if _, err := New(ok); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ok
			tc.mod(&cfg)
			if _, err := New(cfg); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestURL(t *testing.T) {
	p := getPKI(t)
	cfg := baseConfig(t, p, signing.FormName)
	cfg.BaseURL = "https://gw.test:8443/api/"
	c := newTestClient(t, cfg)
	cases := []struct{ in, want string }{
		{"pay?x=1", "https://gw.test:8443/api/pay?x=1"},
		{"/v3/pay", "https://gw.test:8443/v3/pay"},
		{"a/b", "https://gw.test:8443/api/a/b"},
	}
	for _, tc := range cases {
		got, err := c.URL(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("URL(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"https://evil.test/pay", "//evil.test/pay"} {
		if _, err := c.URL(bad); err == nil {
			t.Errorf("URL(%q) accepted", bad)
		}
	}
}

// headerRecorder records the requests it is given and answers nothing.
type headerRecorder struct{ got []http.Header }

func (h *headerRecorder) RoundTrip(r *http.Request) (*http.Response, error) {
	h.got = append(h.got, r.Header.Clone())
	return nil, errors.New("recorded")
}

// A signed request carries Idempotency-Key = its nonce (net/http may then resend it on a
// kept-alive connection the server closed; the gateway refuses a second copy as a replay),
// unless the caller set its own.
func TestIdempotencyKeyIsTheNonce(t *testing.T) {
	p := getPKI(t)
	rec := &headerRecorder{}
	cfg := baseConfig(t, p, signing.WechatPayName)
	cfg.BaseURL = "https://pay.example"
	cfg.Transport = rec
	cfg.Nonce = func() (string, error) { return "5D2B7A4E0C9F41A3B8E6D1F0A2C4E6B8", nil }
	c := newTestClient(t, cfg)
	_, body := requestBody(signing.WechatPayName)
	c.Post(context.Background(), "/v3/pay", "application/json", body)
	req, _ := c.NewRequest(context.Background(), http.MethodPost, "/v3/pay", "application/json", body)
	req.Header.Set("Idempotency-Key", "order-42")
	c.Do(req)
	if len(rec.got) != 2 {
		t.Fatalf("%d requests recorded", len(rec.got))
	}
	if got := rec.got[0].Get("Idempotency-Key"); got != "5D2B7A4E0C9F41A3B8E6D1F0A2C4E6B8" ||
		!strings.Contains(rec.got[0].Get("Authorization"), `nonce_str="`+got+`"`) {
		t.Errorf("Idempotency-Key %q, Authorization %q", got, rec.got[0].Get("Authorization"))
	}
	if got := rec.got[1].Get("Idempotency-Key"); got != "order-42" {
		t.Errorf("the caller's Idempotency-Key was replaced: %q", got)
	}
}
