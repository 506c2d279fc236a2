package caddymodule

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// The gm_cosign block adapts to exactly this JSON (golden), and unknown options are refused.
func TestCosignCaddyfileGolden(t *testing.T) {
	src := `:8443 {
	handle /cosign/* {
		gm_cosign {
			share_dir /var/lib/gmgate/cosign
			seal_key cosign-seal
			auth cert_or_token
			token_key cosign-token
			max_token_lifetime 5m
			rate_per_minute 30
			burst 5
			max_failures 3
			lockout 30m
			point_window 15m
			max_points 50000
			bind_instruction
			user_id 1234567812345678
			rotation_timeout 5m
		}
	}
}`
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(src), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"auth":"cert_or_token","bind_instruction":true,"burst":5,"handler":"gm_cosign","lockout":1800000000000,` +
		`"max_failures":3,"max_points":50000,"max_token_lifetime":300000000000,"point_window":900000000000,` +
		`"rate_per_minute":30,"rotation_timeout":300000000000,"seal_key":"cosign-seal","share_dir":"/var/lib/gmgate/cosign","token_key":"cosign-token","user_id":"1234567812345678"}`
	i := strings.Index(string(out), `{"auth"`)
	if i < 0 {
		t.Fatalf("no gm_cosign handler in %s", out)
	}
	var h json.RawMessage
	if err := json.NewDecoder(strings.NewReader(string(out[i:]))).Decode(&h); err != nil {
		t.Fatal(err)
	}
	if string(h) != want {
		t.Fatalf("got  %s\nwant %s", h, want)
	}
	for _, bad := range []string{"gm_cosign {\n share_dir\n}", "gm_cosign {\n frobnicate 1\n}", "gm_cosign {\n bind_instruction yes\n}", "gm_cosign {\n rotation_timeout\n}", "gm_cosign extra"} {
		var c Cosign
		if err := c.UnmarshalCaddyfile(caddyfile.NewTestDispenser(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if err := (&Cosign{Auth: "password"}).Validate(); err == nil {
		t.Error("unknown auth mode validated")
	}
}
