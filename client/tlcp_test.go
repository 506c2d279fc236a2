package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/gmgate/gmgate/signing"
	"github.com/gmgate/gmgate/tlcp"
)

// tlcpConfig is a client Config that dials the stub over TLCP with the terminal's pair.
func tlcpConfig(t testing.TB, p *testPKI, scheme, url string) Config {
	cfg := baseConfig(t, p, scheme)
	cfg.BaseURL = url
	cfg.TLCP = &TLCPConfig{Sign: p.termSign, Enc: p.termEnc, RootCAs: p.pool, ServerName: "gateway.test"}
	return cfg
}

func TestEverySchemeOverTLCP(t *testing.T) {
	p := getPKI(t)
	suites := map[string]uint16{
		signing.WechatPayName: tlcp.ECC_SM4_GCM_SM3,
		signing.HTTPSigName:   tlcp.ECDHE_SM4_GCM_SM3,
		signing.FormName:      tlcp.ECC_SM4_CBC_SM3,
		signing.UnionPayName:  tlcp.ECDHE_SM4_CBC_SM3,
	}
	for _, scheme := range allSchemes {
		for _, env := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/envelope=%v", scheme, env), func(t *testing.T) {
				st := newStub(t, p, scheme)
				url := tlcpServer(t, st)
				cfg := tlcpConfig(t, p, scheme, url)
				cfg.TLCP.CipherSuites = []uint16{suites[scheme]}
				if env {
					cfg = withEnvelope(cfg, p)
				}
				c := newTestClient(t, cfg)
				for i := 0; i < 2; i++ { // the second request dials again (resumption off)
					ct, body := requestBody(scheme)
					resp, err := c.Post(context.Background(), "/v3/pay", ct, body)
					if err != nil {
						t.Fatalf("Post: %v", err)
					}
					checkOK(t, p, scheme, resp, body, env)
				}
				if got := st.ok.Load(); got != 2 {
					t.Errorf("gateway accepted %d, want 2", got)
				}
			})
		}
	}
}

func TestTLCPReplyFailures(t *testing.T) {
	p := getPKI(t)
	st := newStub(t, p, signing.WechatPayName)
	url := tlcpServer(t, st)
	c := newTestClient(t, tlcpConfig(t, p, signing.WechatPayName, url))
	for mode, want := range map[string]error{
		"tamper": ErrReplySignatureInvalid, "unsigned": ErrReplyUnsigned, "stale": ErrReplyStale,
		"unknownkey": ErrReplyUnknownKey,
	} {
		ct, body := requestBody(signing.WechatPayName)
		req, err := c.NewRequest(context.Background(), "POST", "/v3/pay", ct, body)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Test-Mode", mode)
		if _, err := c.Do(req); !errors.Is(err, want) {
			t.Errorf("%s over TLCP: %v, want %v", mode, err, want)
		}
	}
}

// The gateway's TLCP certificate must chain to RootCAs and match ServerName.
func TestTLCPServerAuthentication(t *testing.T) {
	p := getPKI(t)
	st := newStub(t, p, signing.HTTPSigName)
	url := tlcpServer(t, st)

	cfg := tlcpConfig(t, p, signing.HTTPSigName, url)
	cfg.TLCP.ServerName = "other.test"
	c := newTestClient(t, cfg)
	ct, body := requestBody(signing.HTTPSigName)
	if _, err := c.Post(context.Background(), "/pay", ct, body); err == nil {
		t.Fatal("wrong server name accepted")
	} else {
		t.Logf("wrong server name: %v", err)
	}

	other, _, err := newRoot()
	if err != nil {
		t.Fatal(err)
	}
	cfg = tlcpConfig(t, p, signing.HTTPSigName, url)
	cfg.TLCP.RootCAs = other
	c = newTestClient(t, cfg)
	if _, err := c.Post(context.Background(), "/pay", ct, body); err == nil || !strings.Contains(err.Error(), "tlcp") {
		t.Fatalf("untrusted gateway accepted or odd error: %v", err)
	} else {
		t.Logf("untrusted gateway: %v", err)
	}

	// Without a client certificate the gateway (RequireAndVerifyClientCert) refuses.
	cfg = tlcpConfig(t, p, signing.HTTPSigName, url)
	cfg.TLCP.Sign, cfg.TLCP.Enc = nil, nil
	cfg.TLCP.CipherSuites = []uint16{tlcp.ECC_SM4_GCM_SM3}
	c = newTestClient(t, cfg)
	if _, err := c.Post(context.Background(), "/pay", ct, body); err == nil {
		t.Fatal("request without client certificate accepted")
	}
	if st.ok.Load() != 0 {
		t.Fatalf("gateway accepted %d requests", st.ok.Load())
	}
}

func TestConcurrentTLCP(t *testing.T) {
	p := getPKI(t)
	for _, scheme := range []string{signing.WechatPayName, signing.FormName} {
		st := newStub(t, p, scheme)
		url := tlcpServer(t, st)
		cfg := tlcpConfig(t, p, scheme, url)
		cfg.TLCP.SessionCache = tlcp.NewLRUSessionCache(8, 0)
		c := newTestClient(t, cfg)
		runConcurrent(t, c, scheme, 8, 8)
		if got := st.ok.Load(); got != 64 {
			t.Errorf("%s: gateway accepted %d, want 64", scheme, got)
		}
	}
}
