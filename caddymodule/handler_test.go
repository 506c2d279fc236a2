package caddymodule

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	"github.com/gmgate/gmgate/gateway"
)

const verifyCaddyfile = `{
	admin off
}
:8443 {
	reverse_proxy 127.0.0.1:9000
	gm_verify /v3/* {
		scheme form-sm2 {
			user_id_mode key_id
			signature_encoding raw
			text_encoding hex
			timestamp_field ts unix
			nonce_field nonce
		}
		trusted_roots /etc/gm/root.pem /etc/gm/ca2.pem
		identities {
			file /etc/gm/merchant1.pem
			dir /etc/gm/clients
			vault merchant-2
			reload_interval 10s
		}
		crls /etc/gm/root.crl
		bind_tlcp_client subject
		replay {
			window 2m
			store redis
			redis_address 127.0.0.1:6379
			redis_password_env REDIS_PW
			redis_prefix gm:
			fail_open
		}
		max_body_size 64KiB
		envelope {
			decrypt_key platform-enc
			seal_reply
			order sign_then_seal
		}
		reply_signing {
			key platform-sign
		}
		audit /var/log/gm/audit.log {
			checkpoint_every 100
			max_size 10MB
		}
	}
}
`

// goldenVerifyJSON is the handler the Caddyfile above adapts to.
const goldenVerifyJSON = `{"audit":{"checkpoint_every":100,"max_size":10000000,"path":"/var/log/gm/audit.log"},` +
	`"bind_tlcp_client":"subject","crls":["/etc/gm/root.crl"],` +
	`"envelope":{"decrypt_key":"platform-enc","order":"sign_then_seal","seal_reply":true},"handler":"gm_verify",` +
	`"identities":{"dir":"/etc/gm/clients","files":["/etc/gm/merchant1.pem"],"reload_interval":10000000000,"vault":["merchant-2"]},` +
	`"max_body_size":65536,` +
	`"replay":{"fail_open":true,"redis_address":"127.0.0.1:6379","redis_password_env":"REDIS_PW","redis_prefix":"gm:","store":"redis","window":120000000000},` +
	`"reply_signing":{"key":"platform-sign"},"scheme":"form-sm2",` +
	`"scheme_options":{"nonce_field":"nonce","signature_encoding":"raw","text_encoding":"hex","timestamp_field":"ts","timestamp_layout":"unix","user_id_mode":"key_id"},` +
	`"trusted_roots":["/etc/gm/root.pem","/etc/gm/ca2.pem"]}`

// TestVerifyCaddyfileGolden adapts a Caddyfile and checks the gm_verify JSON exactly, and that
// gm_verify is ordered before reverse_proxy although written after it.
func TestVerifyCaddyfileGolden(t *testing.T) {
	// The option names gm_channel and the gmgate audit block use adapt to the same JSON as the
	// older gm_verify spellings (still accepted, with a deprecation warning in the log).
	unified := strings.NewReplacer("user_id_mode key_id", "user_id_from_key_id", "merchant_field", "merchant_id_field",
		"max_size 10MB", "max_segment_size 10MB").Replace(verifyCaddyfile)
	if unified == verifyCaddyfile {
		t.Fatal("the golden Caddyfile no longer uses the old spellings: the alias check tests nothing")
	}
	for _, src := range []string{verifyCaddyfile, unified} {
		checkVerifyGolden(t, src)
	}
}

func checkVerifyGolden(t *testing.T, src string) {
	t.Helper()
	out, warns, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(src), nil)
	if err != nil {
		t.Fatalf("adapt: %v", err)
	}
	if len(warns) > 0 {
		t.Fatalf("warnings: %v", warns)
	}
	var handlers []json.RawMessage
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if h, ok := x["handler"].(string); ok && (h == "gm_verify" || h == "reverse_proxy") {
				b, _ := json.Marshal(x)
				handlers = append(handlers, b)
			}
			for _, k := range sortedKeys(x) {
				walk(x[k])
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	var cfg any
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	walk(cfg)
	if len(handlers) != 2 {
		t.Fatalf("found %d handlers in %s", len(handlers), out)
	}
	if !bytes.Contains(handlers[0], []byte(`"handler":"gm_verify"`)) {
		t.Fatalf("gm_verify is not before reverse_proxy: %s", out)
	}
	if string(handlers[0]) != goldenVerifyJSON {
		t.Fatalf("adapted gm_verify:\n%s\nwant:\n%s", handlers[0], goldenVerifyJSON)
	}
	// The JSON round-trips into the module type.
	var v Verify
	if err := json.Unmarshal(handlers[0], &v); err != nil || len(v.Replay.RedisAddress) != 1 || v.Replay.RedisAddress[0] != "127.0.0.1:6379" || !v.Envelope.SealReply {
		t.Fatalf("unmarshal: %v %+v", err, v)
	}
}

func sortedKeys(m map[string]any) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	for i := 1; i < len(ks); i++ {
		for j := i; j > 0 && ks[j] < ks[j-1]; j-- {
			ks[j], ks[j-1] = ks[j-1], ks[j]
		}
	}
	return ks
}

func TestVerifyCaddyfileErrors(t *testing.T) {
	for _, in := range []string{
		"gm_verify extra",
		"gm_verify {\n bogus\n}",
		"gm_verify {\n scheme\n}",
		"gm_verify {\n bind_tlcp_client sometimes\n}",
		"gm_verify {\n replay {\n window soon\n }\n}",
		"gm_verify {\n max_body_size lots\n}",
		"gm_verify {\n identities {\n dir\n }\n}",
		"gm_verify {\n scheme form-sm2 {\n colour blue\n }\n}",
		"gm_verify {\n audit a b\n}",
		"gm_verify {\n envelope {\n order sometimes\n }\n}",
		"gm_verify {\n envelope {\n order\n }\n}",
	} {
		var v Verify
		if err := v.UnmarshalCaddyfile(caddyfile.NewTestDispenser(in)); err == nil {
			t.Errorf("accepted %q", in)
		}
	}
}

func TestVerifyBuildScheme(t *testing.T) {
	for _, tc := range []struct {
		v    Verify
		want string
		ok   bool
	}{
		{Verify{}, "wechatpay-v3-sm2", true},
		{Verify{Scheme: "http-sig-sm2", SchemeOptions: &SchemeOptions{Label: "gm", Components: []string{"@method"}}}, "http-sig-sm2", true},
		{Verify{Scheme: "unionpay-sm2"}, "unionpay-sm2", true},
		{Verify{Scheme: "rsa"}, "", false},
		{Verify{Scheme: "form-sm2", SchemeOptions: &SchemeOptions{SignatureEncoding: "pem"}}, "", false},
		{Verify{Scheme: "form-sm2", SchemeOptions: &SchemeOptions{UserIDMode: "random"}}, "", false},
	} {
		s, err := tc.v.buildScheme()
		if (err == nil) != tc.ok || (err == nil && s.Name() != tc.want) {
			t.Errorf("%+v: %v %v", tc.v, s, err)
		}
	}
}

func TestReplyRecorderBounds(t *testing.T) {
	r := &replyRecorder{header: http.Header{}, max: 8}
	r.WriteHeader(http.StatusContinue)
	r.WriteHeader(http.StatusCreated)
	r.WriteHeader(http.StatusTeapot)
	if _, err := r.Write([]byte("12345")); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Write([]byte("6789")); err == nil || !r.overflow {
		t.Fatal("overflow not detected")
	}
	if r.status != http.StatusCreated || string(r.buf) != "12345" {
		t.Fatalf("status %d body %q", r.status, r.buf)
	}
	// tlcpState on a plain request finds nothing.
	if _, ok := tlcpState(httptest.NewRequest("GET", "/", strings.NewReader(""))); ok {
		t.Fatal("TLCP state for a plain request")
	}
}

// TestMemoryReplayStoreSurvivesReload: the memory nonce store is one per process, shared by the
// handlers of the old and the new configuration during a reload and by sites with different
// max_entries (it used to be one store per bound: two sites did not share nonces, and a reload
// that changed max_entries forgot every nonce of the window); it is closed only when its last
// handler lets it go.
func TestMemoryReplayStoreSurvivesReload(t *testing.T) {
	ctx := context.Background()
	const bound = 4242
	oldCfg, h1, err := acquireMemoryReplayStore(bound)
	if err != nil {
		t.Fatal(err)
	}
	if err := oldCfg.CheckAndStore(ctx, "cert", "nonce-1", time.Minute); err != nil {
		t.Fatal(err)
	}
	newCfg, h2, err := acquireMemoryReplayStore(bound * 2) // new configuration, another max_entries
	if err != nil || newCfg != oldCfg {
		t.Fatalf("a reload that changes max_entries got another store: %v", err)
	}
	other, h3, err := acquireMemoryReplayStore(bound + 1) // another site of the same configuration
	if err != nil || other != oldCfg {
		t.Fatalf("a site with another bound does not share the nonces: %v", err)
	}
	if err := other.CheckAndStore(ctx, "cert", "nonce-1", time.Minute); !errors.Is(err, gateway.ErrReplay) {
		t.Fatalf("nonce accepted again on the other site: %v", err)
	}
	if err := releaseMemoryReplayStore(h3, other); err != nil {
		t.Fatal(err)
	}
	if err := releaseMemoryReplayStore(h1, oldCfg); err != nil { // old configuration cleaned up
		t.Fatal(err)
	}
	if err := newCfg.CheckAndStore(ctx, "cert", "nonce-1", time.Minute); !errors.Is(err, gateway.ErrReplay) {
		t.Fatalf("nonce forgotten across the reload: %v", err)
	}
	if err := releaseMemoryReplayStore(h2, newCfg); err != nil { // last user gone: closed
		t.Fatal(err)
	}
	if err := newCfg.CheckAndStore(ctx, "cert", "nonce-2", time.Minute); !errors.Is(err, gateway.ErrReplayStoreUnavailable) {
		t.Fatalf("store still open after its last release: %v", err)
	}
	fresh, h4, err := acquireMemoryReplayStore(bound)
	if err != nil || fresh == newCfg {
		t.Fatalf("a closed store was handed out again: %v", err)
	}
	_ = releaseMemoryReplayStore(h4, fresh)
}

// TestCleanupWaitsForInflightRequests: a handler cleaned up by a reload while it still serves
// requests keeps its replay store until they are done, then closes it.
func TestCleanupWaitsForInflightRequests(t *testing.T) {
	ctx := context.Background()
	for _, inflight := range []int64{0, 2} {
		st := gateway.NewMemoryReplayStore(gateway.MemoryReplayOptions{})
		h := &Verify{store: st, inflight: new(atomic.Int64)}
		h.inflight.Add(inflight)
		if err := h.Cleanup(); err != nil {
			t.Fatal(err)
		}
		err := st.CheckAndStore(ctx, "cert", "n1", time.Minute)
		if inflight == 0 {
			if !errors.Is(err, gateway.ErrReplayStoreUnavailable) {
				t.Fatalf("idle handler: store not closed by Cleanup: %v", err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("store closed under %d requests in flight: %v", inflight, err)
		}
		h.inflight.Add(-1)
		if err := st.CheckAndStore(ctx, "cert", "n2", time.Minute); err != nil {
			t.Fatalf("store closed with a request still in flight: %v", err)
		}
		h.inflight.Add(-1)
		deadline := time.Now().Add(10 * time.Second)
		for {
			err := st.CheckAndStore(ctx, "cert", "n3", time.Minute)
			if errors.Is(err, gateway.ErrReplayStoreUnavailable) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("store never closed after the last request: %v", err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}
