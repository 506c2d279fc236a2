package caddymodule

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/gmgate/gmgate/gateway"
)

// TestReplayRedisOptions: the redis_* options of gm_verify's replay block adapt to the JSON
// below (one address stays a string, several are a list) and are checked at provisioning, before
// any connection: a wrong combination is an error naming what to fix.
func TestReplayRedisOptions(t *testing.T) {
	for _, tc := range []struct {
		name, block, json, err string
	}{
		{name: "standalone, ACL user",
			block: "store redis\nredis_address 10.0.0.20:6379\nredis_username gmgate\nredis_password_env PW",
			json:  `{"redis_address":"10.0.0.20:6379","redis_password_env":"PW","redis_username":"gmgate","store":"redis"}`},
		{name: "cluster",
			block: "store redis\nredis_mode cluster\nredis_address 10.0.0.21:6379 10.0.0.22:6379\nredis_address 10.0.0.23:6379",
			json:  `{"redis_address":["10.0.0.21:6379","10.0.0.22:6379","10.0.0.23:6379"],"redis_mode":"cluster","store":"redis"}`},
		{name: "sentinel, TLS, acks",
			block: "store redis\nredis_mode sentinel\nredis_address s1:26379 s2:26379 s3:26379\nredis_sentinel_master pay\n" +
				"redis_sentinel_password_env SPW\nredis_sentinel_username sent\nredis_timeout 400ms\nredis_replica_acks 2\n" +
				"redis_tls {\ntrusted_roots /etc/redis/ca.pem\nclient_cert /etc/gmgate/redis.pem /etc/gmgate/redis.key\nserver_name redis.pay.internal\n}",
			json: `{"redis_address":["s1:26379","s2:26379","s3:26379"],"redis_mode":"sentinel","redis_replica_acks":2,` +
				`"redis_sentinel_master":"pay","redis_sentinel_password_env":"SPW","redis_sentinel_username":"sent","redis_timeout":400000000,` +
				`"redis_tls":{"client_cert":"/etc/gmgate/redis.pem","client_key":"/etc/gmgate/redis.key","server_name":"redis.pay.internal","trusted_roots":["/etc/redis/ca.pem"]},"store":"redis"}`,
			err: "redis TLS roots: open /etc/redis/ca.pem"}, // files are read when the handler is provisioned
		{name: "TLS with the system roots, acks off",
			block: "store redis\nredis_address r:6380\nredis_tls\nredis_replica_acks 0",
			json:  `{"redis_address":"r:6380","redis_replica_acks":0,"redis_tls":{},"store":"redis"}`},
		{name: "several addresses, no mode",
			block: "store redis\nredis_address a:1 b:2",
			json:  `{"redis_address":["a:1","b:2"],"store":"redis"}`, err: "set the mode to cluster"},
		{name: "sentinel without a master name",
			block: "store redis\nredis_mode sentinel\nredis_address a:26379",
			json:  `{"redis_address":"a:26379","redis_mode":"sentinel","store":"redis"}`, err: "master name"},
		{name: "cluster with a database",
			block: "store redis\nredis_mode cluster\nredis_address a:1\nredis_db 2",
			json:  `{"redis_address":"a:1","redis_db":2,"redis_mode":"cluster","store":"redis"}`, err: "only database 0"},
		{name: "cluster with a hash tag in the prefix",
			block: "store redis\nredis_mode cluster\nredis_address a:1\nredis_prefix {gm}:",
			json:  `{"redis_address":"a:1","redis_mode":"cluster","redis_prefix":"{gm}:","store":"redis"}`, err: "hash tag"},
		{name: "unknown mode",
			block: "store redis\nredis_mode ring\nredis_address a:1",
			json:  `{"redis_address":"a:1","redis_mode":"ring","store":"redis"}`, err: "want standalone, cluster or sentinel"},
		{name: "client certificate files missing",
			block: "store redis\nredis_address a:1\nredis_tls {\nclient_cert /nonexistent/c.pem /nonexistent/c.key\n}",
			json:  `{"redis_address":"a:1","redis_tls":{"client_cert":"/nonexistent/c.pem","client_key":"/nonexistent/c.key"},"store":"redis"}`, err: "client certificate"},
		{name: "too many acks",
			block: "store redis\nredis_address a:1\nredis_replica_acks 99",
			json:  `{"redis_address":"a:1","redis_replica_acks":99,"store":"redis"}`, err: "replica acks"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var v Verify
			if err := v.UnmarshalCaddyfile(caddyfile.NewTestDispenser("gm_verify {\nreplay {\n" + tc.block + "\n}\n}")); err != nil {
				t.Fatal(err)
			}
			got := sortedJSON(t, v.Replay)
			if string(got) != tc.json {
				t.Fatalf("JSON:\n%s\nwant:\n%s", got, tc.json)
			}
			var back ReplayConfig
			if err := json.Unmarshal(got, &back); err != nil {
				t.Fatal(err)
			}
			if again := sortedJSON(t, &back); string(again) != tc.json {
				t.Fatalf("JSON round trip:\n%s\nwant:\n%s", again, tc.json)
			}
			h := &Verify{Replay: &back}
			_, err := h.replayGuard()
			if tc.err == "" {
				if err != nil {
					t.Fatalf("provision: %v", err)
				}
				if _, ok := h.store.(*gateway.RedisReplayStore); !ok {
					t.Fatalf("store %T", h.store)
				}
				h.store.Close()
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("provision error %v, want one containing %q", err, tc.err)
			}
		})
	}
	for _, bad := range []string{
		"redis_tls {\nclient_cert /c.pem\n}",
		"redis_tls {\nca /c.pem\n}",
		"redis_tls extra",
		"redis_replica_acks many",
		"redis_address",
	} {
		var v Verify
		if err := v.UnmarshalCaddyfile(caddyfile.NewTestDispenser("gm_verify {\nreplay {\n" + bad + "\n}\n}")); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if err := json.Unmarshal([]byte(`{"redis_address":7}`), new(ReplayConfig)); err == nil {
		t.Error("a number accepted as redis_address")
	}
}

// sortedJSON marshals v with its object keys sorted (as the Caddyfile adapter writes them).
func sortedJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var m any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	b, _ = json.Marshal(m)
	return b
}
