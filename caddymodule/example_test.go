package caddymodule

import (
	"encoding/json"
	"os"
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
	found := false
	for _, srv := range cfg.Apps.HTTP.Servers {
		for i, raw := range srv.ListenerWrappers {
			var w struct {
				Wrapper   string `json:"wrapper"`
				DualStack bool   `json:"dual_stack"`
			}
			if err := json.Unmarshal(raw, &w); err != nil {
				t.Fatal(err)
			}
			if w.Wrapper == "tlcp" {
				found = true
				if !w.DualStack {
					t.Errorf("tlcp wrapper is not dual-stack")
				}
				if i+2 >= len(srv.ListenerWrappers) {
					t.Fatalf("tlcp must be followed by tls and tlcp_join: %s", srv.ListenerWrappers)
				}
			}
		}
	}
	if !found {
		t.Fatalf("no tlcp listener wrapper in adapted config:\n%s", out)
	}
}
