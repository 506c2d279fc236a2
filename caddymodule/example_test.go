package caddymodule

import (
	"encoding/json"
	"os"
	"slices"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

// TestCaddyfileExampleAdapts keeps Caddyfile.example true to the code: it must adapt without
// warnings and configure the gmgate listener the way its comments say.
func TestCaddyfileExampleAdapts(t *testing.T) {
	src, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	adapter := caddyconfig.GetAdapter("caddyfile")
	out, warnings, err := adapter.Adapt(src, map[string]any{"filename": "Caddyfile.example"})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range warnings {
		t.Errorf("warning: %s", w.String())
	}
	var cfg struct {
		Apps struct {
			HTTP struct {
				Servers map[string]struct {
					Listen           []string          `json:"listen"`
					ListenerWrappers []json.RawMessage `json:"listener_wrappers"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	wrappers := func(listen string) []string {
		for _, srv := range cfg.Apps.HTTP.Servers {
			if !slices.Contains(srv.Listen, listen) {
				continue
			}
			var names []string
			for _, raw := range srv.ListenerWrappers {
				var w struct {
					Wrapper   string `json:"wrapper"`
					DualStack bool   `json:"dual_stack"`
					SignKey   string `json:"sign_key"`
				}
				if err := json.Unmarshal(raw, &w); err != nil {
					t.Fatal(err)
				}
				name := w.Wrapper
				if w.DualStack {
					name += "+dual_stack"
				}
				if w.SignKey != "" {
					name += "(" + w.SignKey + ")"
				}
				names = append(names, name)
			}
			return names
		}
		t.Fatalf("no server listens on %s:\n%s", listen, out)
		return nil
	}
	for _, tc := range []struct {
		listen   string
		wrappers []string
	}{
		// The ingress: TLCP, RFC 8998 and TLS on one port.
		{":8443", []string{"tlcp+dual_stack", "tls13sm", "tls", "tlcp_join"}},
		// The demo bank: TLCP only, with the demo bank's keys.
		{"127.0.0.1:9443", []string{"tlcp(" + DevBankSignKey + ")"}},
		// The demo back end and the egress: plain HTTP on loopback only (the egress signs
		// whatever reaches it with the platform key).
		{"127.0.0.1:9001", nil},
		{"127.0.0.1:9002", nil},
	} {
		if got := wrappers(tc.listen); !slices.Equal(got, tc.wrappers) {
			t.Errorf("%s: listener wrappers %v, want %v", tc.listen, got, tc.wrappers)
		}
	}
}
