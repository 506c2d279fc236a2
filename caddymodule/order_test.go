package caddymodule

import (
	"encoding/json"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// TestDirectiveOrder: no directive that answers or routes a request can run before gm_verify,
// whatever the order in which a site lists them.
func TestDirectiveOrder(t *testing.T) {
	const site = `{
	admin off
}
:8443 {
	respond "not verified" 200
	handle /other {
		respond "bypass" 200
	}
	route /r {
		respond "bypass" 200
	}
	reverse_proxy 127.0.0.1:9000
	encode gzip
	vars x 1
	gm_verify {
		scheme wechatpay-v3-sm2
	}
}
`
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(site), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Apps struct {
			HTTP struct {
				Servers map[string]struct {
					Routes []struct {
						Handle []struct {
							Handler string `json:"handler"`
						} `json:"handle"`
					} `json:"routes"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, s := range cfg.Apps.HTTP.Servers {
		for _, r := range s.Routes {
			for _, h := range r.Handle {
				order = append(order, h.Handler)
			}
		}
	}
	pos := func(name string) int {
		for i, h := range order {
			if h == name {
				return i
			}
		}
		t.Fatalf("handler %s missing from %v", name, order)
		return -1
	}
	verify := pos("gm_verify")
	for _, before := range []string{"vars", "encode"} {
		if pos(before) > verify {
			t.Errorf("%s runs after gm_verify: %v", before, order)
		}
	}
	for _, after := range []string{"static_response", "subroute", "reverse_proxy"} {
		if pos(after) < verify {
			t.Errorf("%s runs before gm_verify (verification bypassed): %v", after, order)
		}
	}
}
