package caddymodule

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// adaptGmgate adapts a Caddyfile and returns its gmgate app as generic JSON.
func adaptGmgate(t *testing.T, src string) (map[string]any, error) {
	t.Helper()
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(src), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		return nil, err
	}
	var cfg struct {
		Apps map[string]json.RawMessage `json:"apps"`
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	var app map[string]any
	if err := json.Unmarshal(cfg.Apps["gmgate"], &app); err != nil {
		t.Fatal(err)
	}
	return app, nil
}

// The `gmgate` global option adapts to exactly this JSON (golden).
func TestGmgateOptionGolden(t *testing.T) {
	app, err := adaptGmgate(t, `{
	gmgate {
		dev_pki /var/lib/gmgate/devpki {
			names pay.local 127.0.0.1
		}
		audit /var/log/gmgate/audit.log {
			signing_key platform-sign
			checkpoint_every 500
			checkpoint_interval 30s
			max_segment_size 1048576
			fsync interval
		}
		vault {
			health_interval 10s
			token hsm1 {
				module /usr/lib/softhsm/libsofthsm2.so
				label gmgate
				pin_env GMGATE_HSM_PIN
				pool_size 8
				borrow_timeout 3s
				mode wrapped
				kek_label gmgate-kek
			}
			key platform-sign "pkcs11:token=gmgate;object=platform-sign" {
				certificate /etc/gmgate/platform.pem
				user_id 1234567812345678
				tokens hsm1
			}
			key server-enc "pkcs11:token=gmgate;object=server-enc" {
				certificate /etc/gmgate/server_enc.pem
				token_decrypt
			}
			key channel-data "pkcs11:token=gmgate;object=channel-data" {
				type sm4
			}
		}
	}
}
:8080 {
	respond ok
}
`)
	if err != nil {
		t.Fatal(err)
	}
	want := `{
	"vault": {
		"tokens": [{"name": "hsm1", "module": "/usr/lib/softhsm/libsofthsm2.so", "token_label": "gmgate",
			"pin_env": "GMGATE_HSM_PIN", "pool_size": 8, "borrow_timeout": 3000000000, "mode": "wrapped",
			"kek_label": "gmgate-kek"}],
		"keys": [
			{"name": "platform-sign", "ref": "pkcs11:token=gmgate;object=platform-sign", "type": "sm2",
				"certificate": "/etc/gmgate/platform.pem", "user_id": "1234567812345678", "tokens": ["hsm1"]},
			{"name": "server-enc", "ref": "pkcs11:token=gmgate;object=server-enc", "type": "sm2",
				"certificate": "/etc/gmgate/server_enc.pem", "token_decrypt": true},
			{"name": "channel-data", "ref": "pkcs11:token=gmgate;object=channel-data", "type": "sm4"}
		]
	},
	"vault_health_interval": 10000000000,
	"dev_pki": {"dir": "/var/lib/gmgate/devpki", "names": ["pay.local", "127.0.0.1"]},
	"audit": {"path": "/var/log/gmgate/audit.log", "signing_key": "platform-sign", "checkpoint_every": 500,
		"checkpoint_interval": 30000000000, "max_segment_size": 1048576, "fsync": "interval"}
}`
	var w map[string]any
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(app)
	exp, _ := json.Marshal(w)
	if string(got) != string(exp) {
		t.Errorf("adapted gmgate app:\n%s\nwant:\n%s", got, exp)
	}
}

// Bad `gmgate` options are refused with a message naming them.
func TestGmgateOptionErrors(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{"vault {\n health_interval -5s\n}", "health_interval"},
		{"vault {\n health_interval\n}", "wrong argument count"},
		{"vault {\n key k file:/k.pem {\n token_decrypt yes\n }\n}", "wrong argument count"},
		{"vault {\n key k file:/k.pem {\n colour blue\n }\n}", `unknown key option "colour"`},
		{"vault {\n tokenz x\n}", `unknown vault option "tokenz"`},
		{"audit {\n fsync sometimes\n}", ""}, // accepted by the parser; Provision refuses it
		{"audit {\n checkpoint_every 0\n}", "checkpoint_every"},
		{"colour blue", `unknown gmgate option "colour"`},
	} {
		_, err := adaptGmgate(t, "{\n\tgmgate {\n"+tc.body+"\n\t}\n}\n:8080 {\n\trespond ok\n}\n")
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: %v", tc.body, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: error %v, want %q", tc.body, err, tc.want)
		}
	}
}

// gm_channel's TLCP link to the bank: session resumption on by default (64 sessions), sized or
// turned off in the Caddyfile.
func TestChannelTLCPSessionCache(t *testing.T) {
	for _, tc := range []struct {
		line string
		size int
		on   bool
	}{
		{"", 0, true},
		{"session_cache 500", 500, true},
		{"session_cache off", -1, false},
	} {
		src := "{\n\tadmin off\n}\n:9002 {\n\treverse_proxy 127.0.0.1:9443 {\n\t\ttransport gm_channel {\n\t\t\tbank b\n\t\t\tscheme http-sig-sm2\n\t\t\ttlcp {\n\t\t\t\tserver_name bank.example\n\t\t\t\t" + tc.line + "\n\t\t\t}\n\t\t}\n\t}\n}\n"
		out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(src), map[string]any{"filename": "Caddyfile"})
		if err != nil {
			t.Fatalf("%q: %v", tc.line, err)
		}
		var ct *ChannelTLCP
		var find func(v any)
		find = func(v any) {
			switch x := v.(type) {
			case map[string]any:
				if x["protocol"] == "gm_channel" {
					b, _ := json.Marshal(x)
					var tr ChannelTransport
					if err := json.Unmarshal(b, &tr); err != nil {
						t.Fatal(err)
					}
					ct = tr.TLCP
				}
				for _, e := range x {
					find(e)
				}
			case []any:
				for _, e := range x {
					find(e)
				}
			}
		}
		var all any
		if err := json.Unmarshal(out, &all); err != nil {
			t.Fatal(err)
		}
		find(all)
		if ct == nil || ct.SessionCacheSize != tc.size {
			t.Fatalf("%q: adapted %+v, want session_cache_size %d", tc.line, ct, tc.size)
		}
		tc2, err := ct.config(nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if (tc2.SessionCache != nil) != tc.on {
			t.Errorf("%q: session cache on = %v, want %v", tc.line, tc2.SessionCache != nil, tc.on)
		}
	}
	if _, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte("{\n\tadmin off\n}\n:9002 {\n\treverse_proxy 127.0.0.1:9443 {\n\t\ttransport gm_channel {\n\t\t\tbank b\n\t\t\ttlcp {\n\t\t\t\tsession_cache 0\n\t\t\t}\n\t\t}\n\t}\n}\n"), nil); err == nil {
		t.Error("session_cache 0 accepted")
	}
}

func TestTLS13SMCaddyfile(t *testing.T) {
	wrap := func(block string) string {
		return "{\n\tadmin off\n\tservers :8443 {\n\t\tlistener_wrappers {\n\t\t\ttls13sm {\n" + block + "\n\t\t\t}\n\t\t\ttls\n\t\t\ttlcp_join\n\t\t}\n\t}\n}\nhttps://localhost:8443 {\n\trespond ok\n}\n"
	}
	good := "\t\t\t\tsign_key server-sign\n\t\t\t\tclient_auth require_and_verify\n\t\t\t\tcipher_suites TLS_SM4_CCM_SM3 TLS_SM4_GCM_SM3\n\t\t\t\tsession_lifetime 30m\n\t\t\t\tticket_key tickets\n\t\t\t\tmax_handshake_message_size 32KB\n\t\t\t\tpeek_timeout 5s\n\t\t\t\tmax_pending_per_source 8"
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(wrap(good)), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"wrapper":"tls13sm"`, `"sign_key":"server-sign"`, `"client_auth":"require_and_verify"`,
		`"cipher_suites":["TLS_SM4_CCM_SM3","TLS_SM4_GCM_SM3"]`, `"session_lifetime":1800000000000`, `"ticket_key":"tickets"`,
		`"max_handshake_message_size":32000`, `"max_pending_per_source":8`} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("adapted config lacks %s:\n%s", want, out)
		}
	}
	for _, bad := range []string{"cipher_suites TLS_AES_128_GCM_SHA256", "client_auth maybe", "session_tickets on",
		"session_lifetime -1s", "max_handshake_message_size 10", "peek_timeout soon", "unknown_option 1"} {
		if _, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(wrap("\t\t\t\t"+bad)), nil); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestChannelTLS13SMCaddyfile(t *testing.T) {
	src := func(block string) string {
		return "{\n\tadmin off\n}\n:9002 {\n\treverse_proxy 127.0.0.1:9443 {\n\t\ttransport gm_channel {\n\t\t\tbank b\n\t\t\ttls13sm {\n" + block + "\n\t\t\t}\n\t\t}\n\t}\n}\n"
	}
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(src("\t\t\t\tsign_key platform-tls\n\t\t\t\tserver_name bank.example\n\t\t\t\tcipher_suites TLS_SM4_GCM_SM3\n\t\t\t\tsession_cache off\n\t\t\t\thandshake_timeout 3s\n\t\t\t\tcrls /etc/bank.crl")), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"tls13sm":{`, `"sign_key":"platform-tls"`, `"server_name":"bank.example"`, `"cipher_suites":["TLS_SM4_GCM_SM3"]`,
		`"session_cache_size":-1`, `"handshake_timeout":3000000000`, `"crls":["/etc/bank.crl"]`} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("adapted config lacks %s:\n%s", want, out)
		}
	}
	for _, bad := range []string{"cipher_suites ECC_SM4_GCM_SM3", "session_cache 0", "handshake_timeout never", "sign_key", "enc_key x"} {
		if _, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(src("\t\t\t\t"+bad)), nil); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// Sizes read as sizes in every directive ("1MB", "64KiB", or bytes), and a bad one names the
// option and the expected form.
func TestCaddyfileSizes(t *testing.T) {
	adapt := func(src string) (string, error) {
		out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(src), map[string]any{"filename": "Caddyfile"})
		return string(out), err
	}
	out, err := adapt(`{
	gmgate {
		audit /var/log/gmgate/audit.log {
			max_segment_size 64MiB
		}
	}
	servers :8443 {
		listener_wrappers {
			tlcp {
				max_handshake_message_size 32KiB
			}
		}
	}
}
:8443 {
	gm_verify {
		scheme wechatpay-v3-sm2
		max_body_size 2MB
		max_reply_size 512KiB
	}
	reverse_proxy 127.0.0.1:9 {
		transport gm_channel {
			bank b
			scheme unionpay-sm2
			max_body_size 1MB
		}
	}
}
`)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"max_segment_size":67108864`, `"max_handshake_message_size":32768`,
		`"max_body_size":2000000`, `"max_reply_size":524288`, `"max_body_size":1000000`} {
		if !strings.Contains(out, want) {
			t.Errorf("adapted config lacks %s:\n%s", want, out)
		}
	}
	_, err = adapt(":8443 {\n\treverse_proxy 127.0.0.1:9 {\n\t\ttransport gm_channel {\n\t\t\tbank b\n\t\t\tmax_body_size lots\n\t\t}\n\t}\n}\n")
	if err == nil || !strings.Contains(err.Error(), "max_body_size") || !strings.Contains(err.Error(), "Caddyfile:5") {
		t.Fatalf("bad size: %v", err)
	}
}
