package caddymodule

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/gmgate/gmgate/gateway"
	"github.com/gmgate/gmgate/internal/abuse"
	"github.com/gmgate/gmgate/internal/testenv"
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

// TestEnrollRedisWiring: gm_enroll's replay block with store redis puts the limits in the same
// Redis, over the one client of the nonce store (closing the store closes it), under
// <redis_prefix>limits: (default gmgate:replay:limits:), so every instance shares them; a
// redis_prefix with a hash tag is refused (the limits add their own).
func TestEnrollRedisWiring(t *testing.T) {
	addr := testenv.RedisAddr(t)
	prefix := fmt.Sprintf("gmgate:enroll:wiring%d:", time.Now().UnixNano())
	st, shared, err := enrollRedis(&ReplayConfig{Store: "redis", RedisAddress: RedisAddresses{addr}, RedisPrefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	if shared.Prefix != prefix+"limits:" {
		t.Fatalf("limits prefix %q", shared.Prefix)
	}
	lim, err := abuse.NewRedis(*shared, abuse.Limits{RatePerMinute: 60, Burst: 1, MaxFailures: 1, Lockout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if locked, err := lim.Fail(ctx, "198.51.100.1", time.Now()); err != nil || !locked {
		t.Fatalf("fail: %v %v", locked, err)
	}
	if n, err := shared.Client.Keys(ctx, prefix+"limits:{*}:lock").Result(); err != nil || len(n) != 1 {
		t.Fatalf("lock keys under the prefix: %v %v", n, err)
	}
	st.Close()
	if _, err := lim.Admit(ctx, "198.51.100.1", time.Now()); err == nil {
		t.Fatal("the limits' client outlived the nonce store's: two clients")
	}
	st, shared, err = enrollRedis(&ReplayConfig{Store: "redis", RedisAddress: RedisAddresses{addr}})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	if shared.Prefix != gateway.DefaultRedisReplayPrefix+"limits:" {
		t.Fatalf("default limits prefix %q", shared.Prefix)
	}
	if _, _, err := enrollRedis(&ReplayConfig{Store: "redis", RedisAddress: RedisAddresses{addr}, RedisPrefix: "a{b}:"}); err == nil {
		t.Fatal("a hash tag in the prefix accepted")
	}
}
