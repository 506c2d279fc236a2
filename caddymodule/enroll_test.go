package caddymodule

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// TestEnrollCaddyfile: every gm_enroll option reaches its JSON field; unknown options fail.
func TestEnrollCaddyfile(t *testing.T) {
	src := `{
	gmgate
}
http://:1 {
	route /est/* {
		gm_enroll {
			ca_key terminal-ca
			ca_chain /etc/gmgate/root.pem
			store /var/lib/gmgate/enroll
			store_key enroll-store
			rate_per_minute 30
			burst 5
			max_failures 4
			lockout 10m
			identities_dir /var/lib/gmgate/identities
			escrow_key enroll-escrow
			escrow_dir /var/lib/gmgate/escrow
			crl_file /var/lib/gmgate/crl.pem
			crl_urls https://pay.example/est/crl
			crl_validity 12h
			crl_check_interval 5s
			max_body_size 32KB
			admin_certs /etc/gmgate/alice.pem
			admin_roots /etc/gmgate/ops-ca.pem
			expiry_warning 240h
			replay {
				window 2m
				store memory
			}
			profile terminal {
				common_name "POS-[0-9]{4}"
				organization "Acme Pay"
				organizational_unit terminals
				dns_names *.pos.example
				validity 720h
			}
		}
	}
}
`
	out, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(src), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) > 0 {
		t.Fatalf("warnings: %v", warnings)
	}
	s := string(out)
	for _, want := range []string{`"handler":"gm_enroll"`, `"ca_key":"terminal-ca"`, `"identities_dir":"/var/lib/gmgate/identities"`,
		`"escrow_key":"enroll-escrow"`, `"store_key":"enroll-store"`, `"rate_per_minute":30`, `"burst":5`, `"max_failures":4`, `"lockout":600000000000`, `"crl_urls":["https://pay.example/est/crl"]`, `"crl_validity":43200000000000`,
		`"max_body_size":32000`, `"admin_roots":["/etc/gmgate/ops-ca.pem"]`, `"window":120000000000`,
		`"common_name":"POS-[0-9]{4}"`, `"dns_names":["*.pos.example"]`, `"validity":2592000000000000`} {
		if !strings.Contains(s, want) {
			t.Errorf("adapted config lacks %s:\n%s", want, s)
		}
	}
	var v any
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(src, "expiry_warning 240h", "expiry_warnings 240h", 1)
	if _, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(bad), nil); err == nil {
		t.Fatal("unknown option accepted")
	}
}
