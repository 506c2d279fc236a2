package caddymodule

import (
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"github.com/dustin/go-humanize"
	"go.uber.org/zap"

	"github.com/gmgate/gmgate/cryptosvc"
	"github.com/gmgate/gmgate/envelope"
	"github.com/gmgate/gmgate/gateway"
	"github.com/gmgate/gmgate/keyvault"
	"github.com/gmgate/gmgate/signing"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("gmgate", parseGmgateOption)
	httpcaddyfile.RegisterHandlerDirective("gm_verify", parseVerifyCaddyfile)
	// Authentication comes before anything that can answer or route the request (respond, handle,
	// route, reverse_proxy...), so no directive can bypass verification; encode stays outside so
	// the signed reply bytes are the uncompressed ones.
	httpcaddyfile.RegisterDirectiveOrder("gm_verify", httpcaddyfile.After, "encode")
	httpcaddyfile.RegisterHandlerDirective("tlcp_vars", func(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
		v := new(TLCPVars)
		return v, v.UnmarshalCaddyfile(h.Dispenser)
	})
	httpcaddyfile.RegisterDirectiveOrder("tlcp_vars", httpcaddyfile.After, "vars")
}

// parseGmgateOption sets up the gmgate app from the global option block:
//
//	gmgate {
//		dev_pki [<dir>] {
//			names <name...>
//		}
//		audit [<path>] {
//			signing_key         <vault key name>
//			checkpoint_every    <entries>
//			checkpoint_interval <duration>
//			max_segment_size    <bytes>
//			fsync               always|interval|never
//			witness_redis       <host:port>
//			witness_redis_password_env <environment variable>
//			witness_url         <https URL>
//		}
//		vault {
//			health_interval <duration>|off
//			token <name> {
//				module         <path to the PKCS#11 library>
//				label          <token label>
//				serial         <token serial>
//				pin_env        <environment variable>
//				pin_file       <path>
//				pool_size      <sessions>
//				borrow_timeout <duration>
//				mode           wrapped|native
//				preset         <vendor family>
//				blob_store     token|<directory>
//				kek_label      <label>
//			}
//			key <name> <pkcs11:... URI | file:path> {
//				type          sm2|sm4
//				certificate   <PEM chain path>
//				user_id       <SM2 user ID>
//				password_env  <environment variable>
//				password_file <path>
//				tokens        <token name...>
//				token_decrypt
//			}
//		}
//	}
func parseGmgateOption(d *caddyfile.Dispenser, existing any) (any, error) {
	app := new(App)
	if existing != nil {
		if prev, ok := existing.(httpcaddyfile.App); ok && prev.Name == "gmgate" {
			return nil, d.Err("the gmgate global option may appear only once")
		}
	}
	d.Next() // option name
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "dev_pki":
			dc := &DevPKIConfig{}
			if d.NextArg() {
				dc.Dir = d.Val()
			}
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			for d.NextBlock(1) {
				switch d.Val() {
				case "names":
					dc.Names = append(dc.Names, d.RemainingArgs()...)
					if len(dc.Names) == 0 {
						return nil, d.ArgErr()
					}
				default:
					return nil, d.Errf("unknown dev_pki option %q", d.Val())
				}
			}
			app.DevPKI = dc
		case "audit":
			ac := &AuditConfig{}
			if d.NextArg() {
				ac.Path = d.Val()
			}
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			for d.NextBlock(1) {
				opt := d.Val()
				var v string
				if !d.Args(&v) {
					return nil, d.ArgErr()
				}
				switch opt {
				case "signing_key":
					ac.SigningKey = v
				case "checkpoint_every":
					n, err := strconv.Atoi(v)
					if err != nil || n <= 0 {
						return nil, d.Errf("checkpoint_every: want a positive number, got %q", v)
					}
					ac.CheckpointEvery = n
				case "checkpoint_interval":
					dur, err := caddy.ParseDuration(v)
					if err != nil {
						return nil, d.Errf("checkpoint_interval: %v", err)
					}
					ac.CheckpointInterval = caddy.Duration(dur)
				case "max_segment_size":
					n, err := humanize.ParseBytes(v)
					if err != nil || n == 0 || n > 1<<40 {
						return nil, d.Errf("max_segment_size: want a size such as 64MiB, got %q", v)
					}
					ac.MaxSegmentSize = int64(n)
				case "fsync":
					ac.Fsync = v
				case "witness_redis":
					ac.WitnessRedis = v
				case "witness_redis_password_env":
					ac.WitnessRedisPasswordEnv = v
				case "witness_url":
					if u, err := url.Parse(v); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
						return nil, d.Errf("witness_url: want an http(s) URL, got %q", v)
					}
					ac.WitnessURL = v
				default:
					return nil, d.Errf("unknown audit option %q", opt)
				}
			}
			app.Audit = ac
		case "vault":
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			if err := parseVault(d, &app.Vault, &app.VaultHealthInterval); err != nil {
				return nil, err
			}
		default:
			return nil, d.Errf("unknown gmgate option %q", d.Val())
		}
	}
	return httpcaddyfile.App{Name: "gmgate", Value: caddyconfig.JSON(app, nil)}, nil
}

func parseVault(d *caddyfile.Dispenser, cfg *keyvault.Config, health *caddy.Duration) error {
	for d.NextBlock(1) {
		switch d.Val() {
		case "health_interval":
			var v string
			if !d.Args(&v) {
				return d.ArgErr()
			}
			if v == "off" {
				*health = -1
				continue
			}
			dur, err := caddy.ParseDuration(v)
			if err != nil || dur <= 0 {
				return d.Errf("health_interval: a positive duration or off: %q", v)
			}
			*health = caddy.Duration(dur)
		case "token":
			var tc keyvault.TokenConfig
			if !d.Args(&tc.Name) {
				return d.ArgErr()
			}
			for d.NextBlock(2) {
				opt := d.Val()
				var v string
				if !d.Args(&v) {
					return d.ArgErr()
				}
				switch opt {
				case "module":
					tc.Module = v
				case "label":
					tc.TokenLabel = v
				case "serial":
					tc.TokenSerial = v
				case "pin_env":
					tc.PINEnv = v
				case "pin_file":
					tc.PINFile = v
				case "pool_size":
					n, err := strconv.Atoi(v)
					if err != nil || n <= 0 {
						return d.Errf("pool_size: want a positive number, got %q", v)
					}
					tc.PoolSize = n
				case "borrow_timeout":
					dur, err := caddy.ParseDuration(v)
					if err != nil {
						return d.Errf("borrow_timeout: %v", err)
					}
					tc.BorrowTimeout = keyvault.Duration(dur)
				case "mode":
					tc.Mode = v
				case "preset":
					tc.Preset = v
				case "blob_store":
					tc.BlobStore = v
				case "kek_label":
					tc.KEKLabel = v
				case "pin":
					return d.Err("inline PINs are not accepted: use pin_env or pin_file")
				default:
					return d.Errf("unknown token option %q", opt)
				}
			}
			cfg.Tokens = append(cfg.Tokens, tc)
		case "key":
			kc := keyvault.KeyConfig{Type: keyvault.KeyTypeSM2}
			if !d.Args(&kc.Name, &kc.Ref) {
				return d.ArgErr()
			}
			for d.NextBlock(2) {
				opt := d.Val()
				if opt == "token_decrypt" {
					if d.NextArg() {
						return d.ArgErr()
					}
					kc.TokenDecrypt = true
					continue
				}
				if opt == "tokens" {
					kc.Tokens = d.RemainingArgs()
					if len(kc.Tokens) == 0 {
						return d.ArgErr()
					}
					continue
				}
				var v string
				if !d.Args(&v) {
					return d.ArgErr()
				}
				switch opt {
				case "type":
					kc.Type = keyvault.KeyType(v)
				case "certificate":
					kc.Certificate = v
				case "user_id":
					kc.UserID = v
				case "password_env":
					kc.PasswordEnv = v
				case "password_file":
					kc.PasswordFile = v
				default:
					return d.Errf("unknown key option %q", opt)
				}
			}
			cfg.Keys = append(cfg.Keys, kc)
		default:
			return d.Errf("unknown vault option %q", d.Val())
		}
	}
	return nil
}

// UnmarshalCaddyfile sets up the TLCP listener wrapper:
//
//	tlcp {
//		internal                           # development PKI keys (the default)
//		sign_key <vault key name>
//		enc_key  <vault key name>
//		client_auth none|request|require|verify_if_given|require_and_verify
//		client_ca <PEM file...>
//		crls <CRL file...>                 # (or crl)
//		cipher_suites <name...>
//		prefer_client_cipher_suites
//		session_cache <size>|off [<lifetime>]
//		handshake_timeout <duration>
//		max_handshake_message_size <bytes>
//		dual_stack
//		peek_timeout <duration>
//		max_pending_per_source <n>
//	}
func (w *ListenerWrapper) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // wrapper name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		opt := d.Val()
		switch opt {
		case "internal":
			w.SignKey, w.EncKey = DevServerSignKey, DevServerEncKey
		case "sign_key":
			if !d.Args(&w.SignKey) {
				return d.ArgErr()
			}
		case "enc_key":
			if !d.Args(&w.EncKey) {
				return d.ArgErr()
			}
		case "client_auth":
			if !d.Args(&w.ClientAuth) {
				return d.ArgErr()
			}
			if _, err := parseClientAuth(w.ClientAuth); err != nil {
				return d.Err(err.Error())
			}
		case "client_ca":
			w.ClientCAs = append(w.ClientCAs, d.RemainingArgs()...)
		case "crl", "crls": // "crls" as in gm_verify and gm_channel
			w.CRLs = append(w.CRLs, d.RemainingArgs()...)
		case "cipher_suites":
			w.CipherSuites = d.RemainingArgs()
			if _, err := parseSuites(w.CipherSuites); err != nil {
				return d.Err(err.Error())
			}
		case "prefer_client_cipher_suites":
			w.PreferClientCipherSuites = true
		case "session_cache":
			args := d.RemainingArgs()
			if len(args) == 0 || len(args) > 2 {
				return d.ArgErr()
			}
			if args[0] == "off" {
				w.SessionCacheSize = -1
			} else {
				n, err := strconv.Atoi(args[0])
				if err != nil || n <= 0 {
					return d.Errf("session_cache: want a positive size or off, got %q", args[0])
				}
				w.SessionCacheSize = n
			}
			if len(args) == 2 {
				dur, err := caddy.ParseDuration(args[1])
				if err != nil {
					return d.Errf("session_cache lifetime: %v", err)
				}
				w.SessionLifetime = caddy.Duration(dur)
			}
		case "handshake_timeout", "peek_timeout":
			var v string
			if !d.Args(&v) {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(v)
			if err != nil {
				return d.Errf("%s: %v", opt, err)
			}
			if opt == "handshake_timeout" {
				w.HandshakeTimeout = caddy.Duration(dur)
			} else {
				w.PeekTimeout = caddy.Duration(dur)
			}
		case "max_pending_per_source":
			var v string
			if !d.Args(&v) {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				return d.Errf("max_pending_per_source: a positive number, got %q", v)
			}
			w.MaxPendingPerSource = n
		case "max_handshake_message_size":
			var v string
			if !d.Args(&v) {
				return d.ArgErr()
			}
			n, err := humanize.ParseBytes(v)
			if err != nil || n < 1024 || n > 1<<24 {
				return d.Errf("max_handshake_message_size: want a size from 1KiB to 16MiB, got %q", v)
			}
			w.MaxHandshakeMessageSize = int(n)
		case "dual_stack":
			w.DualStack = true
		default:
			return d.Errf("unknown tlcp option %q", opt)
		}
	}
	return nil
}

// UnmarshalCaddyfile sets up tlcp_join, which takes no options.
func (JoinListenerWrapper) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	if d.NextArg() || d.NextBlock(0) {
		return d.ArgErr()
	}
	return nil
}

// Interface guards
var (
	_ caddyfile.Unmarshaler = (*ListenerWrapper)(nil)
	_ caddyfile.Unmarshaler = (*JoinListenerWrapper)(nil)
)

// UnmarshalCaddyfile sets up the gm_channel transport:
//
//	transport gm_channel {
//		bank <name>
//		scheme unionpay-sm2|http-sig-sm2|wechatpay-v3-sm2|form-sm2 {
//			user_id <id>
//			user_id_from_key_id
//			signature_encoding der|raw
//			text_encoding base64|hex
//			sign_field <field>
//			excluded_fields <field...>
//			key_id_field <field>
//			merchant_id_field <field>
//			timestamp_field <field> [unix|unixms|<Go layout>]
//			nonce_field <field>
//			components <component...>
//			reply_components <component...>
//			label <RFC 9421 label>
//			auth_schema <Authorization token>
//		}
//		platform_key <vault key name>
//		platform_key_id <key ID>
//		merchant_id <ID>
//		bank_cert <PEM file...>
//		bank_root <PEM file...>
//		encrypt body|fields {
//			cipher sm4-gcm|sm4-cbc|sm2-envelope
//			fields <field...>
//			data_key <vault SM4 key name>
//			bank_enc_cert <PEM file>
//			platform_enc_key <vault key name>
//			allow_plain_reply
//		}
//		tlcp {
//			sign_key <vault key name>
//			enc_key <vault key name>
//			server_name <name>
//			cipher_suites <name...>
//			ecdhe_params_as_vector
//			ecc_ciphertext_raw
//			session_cache <size>|off
//			crls <CRL file...>
//			handshake_timeout <duration>
//		}
//		tls13sm {                          # instead of tlcp (parseChannelTLS13SM)
//			sign_key <vault key name>
//			server_name <name>
//			cipher_suites TLS_SM4_GCM_SM3|TLS_SM4_CCM_SM3...
//			crls <CRL file...>                 # (or crl)
//			session_cache <size>|off
//			handshake_timeout <duration>
//		}
//		reply_window <duration>|off
//		reply_headers <name...>
//		max_body_size <bytes>
//		response_timeout <duration>
//		retries <n>
//		dial_timeout <duration>
//	}
func (t *ChannelTransport) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // transport name
	if d.NextArg() {
		return d.ArgErr()
	}
	one := func() (string, error) {
		var v string
		if !d.Args(&v) {
			return "", d.ArgErr()
		}
		return v, nil
	}
	for d.NextBlock(0) {
		opt := d.Val()
		var err error
		switch opt {
		case "bank":
			t.Bank, err = one()
		case "scheme":
			if t.Scheme.Name, err = one(); err != nil {
				return err
			}
			err = unmarshalSchemeSettings(d, &t.Scheme)
		case "platform_key":
			t.PlatformKey, err = one()
		case "platform_key_id":
			t.PlatformKeyID, err = one()
		case "merchant_id":
			t.MerchantID, err = one()
		case "bank_cert":
			t.BankCerts = append(t.BankCerts, d.RemainingArgs()...)
		case "bank_root":
			t.BankRoots = append(t.BankRoots, d.RemainingArgs()...)
		case "encrypt":
			e := &ChannelEncryption{}
			if e.Target, err = one(); err != nil {
				return err
			}
			for d.NextBlock(1) {
				switch d.Val() {
				case "cipher":
					e.Cipher, err = one()
				case "fields":
					e.Fields = d.RemainingArgs()
				case "data_key":
					e.DataKey, err = one()
				case "bank_enc_cert":
					e.BankEncCert, err = one()
				case "platform_enc_key":
					e.PlatformEncKey, err = one()
				case "allow_plain_reply":
					e.AllowPlainReply = true
				default:
					return d.Errf("unknown encrypt option %q", d.Val())
				}
				if err != nil {
					return err
				}
			}
			t.Encryption = e
		case "tlcp":
			c := &ChannelTLCP{}
			for d.NextBlock(1) {
				switch d.Val() {
				case "sign_key":
					c.SignKey, err = one()
				case "enc_key":
					c.EncKey, err = one()
				case "server_name":
					c.ServerName, err = one()
				case "cipher_suites":
					c.CipherSuites = d.RemainingArgs()
					_, err = parseSuites(c.CipherSuites)
				case "ecdhe_params_as_vector":
					c.ECDHEParamsAsVector = true
				case "ecc_ciphertext_raw":
					c.ECCCiphertextRaw = true
				case "crls":
					c.CRLs = append(c.CRLs, d.RemainingArgs()...)
					if len(c.CRLs) == 0 {
						return d.ArgErr()
					}
				case "session_cache":
					var v string
					if v, err = one(); err == nil {
						if v == "off" {
							c.SessionCacheSize = -1
						} else if c.SessionCacheSize, err = strconv.Atoi(v); err == nil && c.SessionCacheSize <= 0 {
							err = d.Errf("session_cache: a positive size or off, got %q", v)
						}
					}
				case "handshake_timeout":
					var v string
					if v, err = one(); err == nil {
						var dur time.Duration
						dur, err = caddy.ParseDuration(v)
						c.HandshakeTimeout = caddy.Duration(dur)
					}
				default:
					return d.Errf("unknown tlcp option %q", d.Val())
				}
				if err != nil {
					return err
				}
			}
			t.TLCP = c
		case "tls13sm":
			if t.TLS13SM, err = parseChannelTLS13SM(d); err != nil {
				return err
			}
		case "max_body_size":
			var n int64
			if err = sizeArg(d, &n); err == nil {
				if n > math.MaxInt32 {
					err = d.Errf("max_body_size: at most 2GiB, got %d bytes", n)
				}
				t.MaxBodySize = int(n)
			}
		case "retries":
			err = intArg(d, &t.Retries)
		case "reply_window":
			var v string
			if v, err = one(); err == nil {
				if v == "off" {
					t.ReplyWindow = -1
				} else {
					var dur time.Duration
					if dur, err = caddy.ParseDuration(v); err == nil && dur <= 0 {
						err = d.Errf("reply_window: a positive duration or off, got %q", v)
					}
					t.ReplyWindow = caddy.Duration(dur)
				}
			}
		case "reply_headers":
			t.ReplyHeaders = append(t.ReplyHeaders, d.RemainingArgs()...)
			if len(t.ReplyHeaders) == 0 {
				return d.ArgErr()
			}
		case "response_timeout", "dial_timeout":
			var v string
			if v, err = one(); err == nil {
				var dur time.Duration
				if dur, err = caddy.ParseDuration(v); err == nil {
					if opt == "response_timeout" {
						t.ResponseTimeout = caddy.Duration(dur)
					} else {
						if t.HTTP == nil {
							t.HTTP = new(reverseproxy.HTTPTransport)
						}
						t.HTTP.DialTimeout = caddy.Duration(dur)
					}
				}
			}
		default:
			return d.Errf("unknown gm_channel option %q", opt)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// unmarshalSchemeSettings reads a scheme block (the options of signing.Settings).
func unmarshalSchemeSettings(d *caddyfile.Dispenser, s *signing.Settings) error {
	for d.NextBlock(1) {
		opt := d.Val()
		args := d.RemainingArgs()
		need := func(n int) error {
			if len(args) != n {
				return d.ArgErr()
			}
			return nil
		}
		var err error
		switch opt {
		case "user_id":
			if err = need(1); err == nil {
				s.UserID = args[0]
			}
		case "user_id_from_key_id":
			s.UserIDFromKeyID = true
		case "signature_encoding":
			if err = need(1); err == nil {
				s.SignatureEncoding = args[0]
			}
		case "text_encoding":
			if err = need(1); err == nil {
				s.TextEncoding = args[0]
			}
		case "sign_field":
			if err = need(1); err == nil {
				s.SignField = args[0]
			}
		case "excluded_fields":
			s.ExcludedFields = args
		case "key_id_field":
			if err = need(1); err == nil {
				s.KeyIDField = args[0]
			}
		case "merchant_id_field":
			if err = need(1); err == nil {
				s.MerchantIDField = args[0]
			}
		case "timestamp_field":
			if len(args) < 1 || len(args) > 2 {
				return d.ArgErr()
			}
			s.TimestampField = args[0]
			if len(args) == 2 {
				s.TimestampLayout = args[1]
			}
		case "nonce_field":
			if err = need(1); err == nil {
				s.NonceField = args[0]
			}
		case "components":
			s.Components = args
		case "reply_components":
			s.ReplyComponents = args
		case "label":
			if err = need(1); err == nil {
				s.Label = args[0]
			}
		case "auth_schema":
			if err = need(1); err == nil {
				s.AuthSchema = args[0]
			}
		default:
			return d.Errf("unknown scheme option %q", opt)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

var _ caddyfile.Unmarshaler = (*ChannelTransport)(nil)

// unmarshal reads an identities block (gm_verify, gm_crypto).
func (ic *IdentitiesConfig) unmarshal(d *caddyfile.Dispenser) error {
	for d.NextBlock(1) {
		switch d.Val() {
		case "file", "files":
			if err := appendArgs(d, &ic.Files); err != nil {
				return err
			}
		case "dir":
			if err := oneArg(d, &ic.Dir); err != nil {
				return err
			}
		case "vault":
			if err := appendArgs(d, &ic.Vault); err != nil {
				return err
			}
		case "reload_interval":
			if err := durationArg(d, &ic.ReloadInterval); err != nil {
				return err
			}
		default:
			return d.Errf("unknown identities option %q", d.Val())
		}
	}
	return nil
}

// unmarshal reads gm_verify's replay block (syntax: Verify.UnmarshalCaddyfile).
func (rc *ReplayConfig) unmarshal(d *caddyfile.Dispenser) error {
	for d.NextBlock(1) {
		var err error
		switch d.Val() {
		case "window":
			err = durationArg(d, &rc.Window)
		case "store":
			err = oneArg(d, &rc.Store)
		case "redis_address":
			var addrs []string
			if err = appendArgs(d, &addrs); err == nil {
				rc.RedisAddress = append(rc.RedisAddress, addrs...)
			}
		case "redis_mode":
			err = oneArg(d, &rc.RedisMode)
		case "redis_sentinel_master":
			err = oneArg(d, &rc.RedisSentinelMaster)
		case "redis_username":
			err = oneArg(d, &rc.RedisUsername)
		case "redis_password_env":
			err = oneArg(d, &rc.RedisPasswordEnv)
		case "redis_sentinel_username":
			err = oneArg(d, &rc.RedisSentinelUsername)
		case "redis_sentinel_password_env":
			err = oneArg(d, &rc.RedisSentinelPasswordEnv)
		case "redis_prefix":
			err = oneArg(d, &rc.RedisPrefix)
		case "redis_db":
			err = intArg(d, &rc.RedisDB)
		case "redis_tls":
			err = rc.unmarshalRedisTLS(d)
		case "redis_timeout":
			err = durationArg(d, &rc.RedisTimeout)
		case "redis_replica_acks":
			var n int
			if err = intArg(d, &n); err == nil {
				rc.RedisReplicaAcks = &n
			}
		case "fail_open":
			if d.NextArg() {
				return d.ArgErr()
			}
			rc.FailOpen = true
		case "max_entries":
			err = intArg(d, &rc.MaxEntries)
		default:
			return d.Errf("unknown replay option %q", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// unmarshalRedisTLS reads `redis_tls [{ trusted_roots, client_cert, server_name }]`.
func (rc *ReplayConfig) unmarshalRedisTLS(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	if rc.RedisTLS == nil {
		rc.RedisTLS = &RedisTLSConfig{}
	}
	t := rc.RedisTLS
	for d.NextBlock(2) {
		switch d.Val() {
		case "trusted_roots":
			if err := appendArgs(d, &t.TrustedRoots); err != nil {
				return err
			}
		case "client_cert":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return d.Errf("client_cert: want <cert file> <key file>")
			}
			t.ClientCert, t.ClientKey = args[0], args[1]
		case "server_name":
			if err := oneArg(d, &t.ServerName); err != nil {
				return err
			}
		default:
			return d.Errf("unknown redis_tls option %q", d.Val())
		}
	}
	return nil
}

// parseVerifyCaddyfile sets up the handler from Caddyfile tokens.
func parseVerifyCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	v := new(Verify)
	err := v.UnmarshalCaddyfile(h.Dispenser)
	return v, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	gm_verify [<matcher>] {
//		scheme wechatpay-v3-sm2|http-sig-sm2|form-sm2|unionpay-sm2 {
//			user_id            <SM2 user ID>
//			user_id_from_key_id
//			signature_encoding der|raw
//			text_encoding      base64|hex
//			label              <RFC 9421 label>
//			components         <component...>
//			sign_field         <field>
//			key_id_field       <field>
//			merchant_id_field  <field>
//			nonce_field        <field>
//			timestamp_field    <field> [<layout>|unix]
//		}
//		trusted_roots    <pem file...>
//		intermediates    <pem file...>
//		identities {
//			file            <cert file...>   # (or files)
//			dir             <directory>
//			vault           <vault key name...>
//			reload_interval <duration>
//		}
//		crls             <crl file...>
//		bind_tls_client  none|cert|subject   # TLCP or RFC 8998 client certificate
//		bind_tlcp_client none|cert|subject   # older name of bind_tls_client
//		replay {
//			window             <duration>
//			store              memory|redis
//			redis_address      <host:port...>
//			redis_mode         standalone|cluster|sentinel
//			redis_sentinel_master <name>
//			redis_username     <ACL user>
//			redis_password_env <environment variable>
//			redis_sentinel_username <ACL user>
//			redis_sentinel_password_env <environment variable>
//			redis_prefix       <prefix>
//			redis_db           <n>
//			redis_tls {
//				trusted_roots <pem file...>
//				client_cert   <cert file> <key file>
//				server_name   <name>
//			}
//			redis_timeout      <duration>
//			redis_replica_acks <n>
//			fail_open
//			max_entries        <n>
//		}
//		max_body_size    <size>
//		max_reply_size   <size>
//		header_prefix    <prefix>
//		envelope {
//			decrypt_key <vault key name>
//			seal_reply
//			order       auto|seal_then_sign|sign_then_seal
//			allow_cbc
//		}
//		reply_signing {
//			key <vault key name>
//			off
//		}
//		audit [<path>] {
//			path             <path>          # the same as the argument
//			checkpoint_every <entries>
//			max_segment_size <size>
//			signing_key      <vault key name>
//		}
//	}
func (h *Verify) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "scheme":
			if !d.NextArg() {
				return d.ArgErr()
			}
			h.Scheme = d.Val()
			if d.NextArg() {
				return d.ArgErr()
			}
			for d.NextBlock(1) {
				if h.SchemeOptions == nil {
					h.SchemeOptions = &SchemeOptions{}
				}
				if err := h.SchemeOptions.unmarshal(d); err != nil {
					return err
				}
			}
		case "trusted_roots":
			if err := appendArgs(d, &h.TrustedRoots); err != nil {
				return err
			}
		case "intermediates":
			if err := appendArgs(d, &h.Intermediates); err != nil {
				return err
			}
		case "crls":
			if err := appendArgs(d, &h.CRLs); err != nil {
				return err
			}
		case "identities":
			if d.NextArg() {
				return d.ArgErr()
			}
			if h.Identities == nil {
				h.Identities = &IdentitiesConfig{}
			}
			if err := h.Identities.unmarshal(d); err != nil {
				return err
			}
		case "bind_tlcp_client":
			if err := oneArg(d, &h.BindTLCPClient); err != nil {
				return err
			}
			if _, err := gateway.ParseBinding(h.BindTLCPClient); err != nil {
				return d.Err(err.Error())
			}
		case "bind_tls_client":
			if err := oneArg(d, &h.BindTLSClient); err != nil {
				return err
			}
			if _, err := gateway.ParseBinding(h.BindTLSClient); err != nil {
				return d.Err(err.Error())
			}
		case "replay":
			if d.NextArg() {
				return d.ArgErr()
			}
			if h.Replay == nil {
				h.Replay = &ReplayConfig{}
			}
			if err := h.Replay.unmarshal(d); err != nil {
				return err
			}
		case "max_body_size":
			if err := sizeArg(d, &h.MaxBodySize); err != nil {
				return err
			}
		case "max_reply_size":
			if err := sizeArg(d, &h.MaxReplySize); err != nil {
				return err
			}
		case "header_prefix":
			if err := oneArg(d, &h.HeaderPrefix); err != nil {
				return err
			}
		case "envelope":
			if d.NextArg() {
				return d.ArgErr()
			}
			if h.Envelope == nil {
				h.Envelope = &EnvelopeConfig{}
			}
			for d.NextBlock(1) {
				switch d.Val() {
				case "decrypt_key":
					if err := oneArg(d, &h.Envelope.DecryptKey); err != nil {
						return err
					}
				case "seal_reply":
					if d.NextArg() {
						return d.ArgErr()
					}
					h.Envelope.SealReply = true
				case "allow_cbc":
					if d.NextArg() {
						return d.ArgErr()
					}
					h.Envelope.AllowCBC = true
				case "order":
					if err := oneArg(d, &h.Envelope.Order); err != nil {
						return err
					}
					if _, err := envelope.ParseOrder(h.Envelope.Order); err != nil {
						return d.Err(err.Error())
					}
				default:
					return d.Errf("unknown envelope option %q", d.Val())
				}
			}
		case "reply_signing":
			if d.NextArg() {
				return d.ArgErr()
			}
			if h.ReplySigning == nil {
				h.ReplySigning = &ReplySigningConfig{}
			}
			for d.NextBlock(1) {
				switch d.Val() {
				case "key":
					if err := oneArg(d, &h.ReplySigning.Key); err != nil {
						return err
					}
				case "off":
					if d.NextArg() {
						return d.ArgErr()
					}
					h.ReplySigning.Disabled = true
				default:
					return d.Errf("unknown reply_signing option %q", d.Val())
				}
			}
		case "audit":
			if h.Audit == nil {
				h.Audit = &VerifyAuditConfig{}
			}
			if d.NextArg() {
				h.Audit.Path = d.Val()
			}
			if d.NextArg() {
				return d.ArgErr()
			}
			for d.NextBlock(1) {
				switch d.Val() {
				case "path":
					if err := oneArg(d, &h.Audit.Path); err != nil {
						return err
					}
				case "checkpoint_every":
					if err := intArg(d, &h.Audit.CheckpointEvery); err != nil {
						return err
					}
				case "max_segment_size", "max_size": // max_segment_size: as in gmgate { audit }
					if d.Val() == "max_size" {
						deprecated(d, "audit max_size", "max_segment_size")
					}
					if err := sizeArg(d, &h.Audit.MaxSize); err != nil {
						return err
					}
				case "signing_key", "key": // signing_key: as in gmgate { audit }
					if d.Val() == "key" {
						deprecated(d, "audit key", "signing_key")
					}
					if err := oneArg(d, &h.Audit.Key); err != nil {
						return err
					}
				default:
					return d.Errf("unknown audit option %q", d.Val())
				}
			}
		default:
			return d.Errf("unknown gm_verify option %q", d.Val())
		}
	}
	return nil
}

func (o *SchemeOptions) unmarshal(d *caddyfile.Dispenser) error {
	switch d.Val() {
	case "user_id":
		return oneArg(d, &o.UserID)
	case "user_id_from_key_id": // the name gm_channel uses (signing.Settings)
		if d.NextArg() {
			return d.ArgErr()
		}
		o.UserIDMode = "key_id"
		return nil
	case "user_id_mode":
		deprecated(d, "user_id_mode key_id", "user_id_from_key_id")
		return oneArg(d, &o.UserIDMode)
	case "signature_encoding":
		return oneArg(d, &o.SignatureEncoding)
	case "text_encoding":
		return oneArg(d, &o.TextEncoding)
	case "label":
		return oneArg(d, &o.Label)
	case "components":
		return appendArgs(d, &o.Components)
	case "sign_field":
		return oneArg(d, &o.SignField)
	case "key_id_field":
		return oneArg(d, &o.KeyIDField)
	case "merchant_id_field": // the name gm_channel uses (signing.Settings)
		return oneArg(d, &o.MerchantField)
	case "merchant_field":
		deprecated(d, "merchant_field", "merchant_id_field")
		return oneArg(d, &o.MerchantField)
	case "nonce_field":
		return oneArg(d, &o.NonceField)
	case "timestamp_field":
		if !d.NextArg() {
			return d.ArgErr()
		}
		o.TimestampField = d.Val()
		if d.NextArg() {
			o.TimestampLayout = d.Val()
		}
		if d.NextArg() {
			return d.ArgErr()
		}
		return nil
	}
	return d.Errf("unknown scheme option %q", d.Val())
}

func oneArg(d *caddyfile.Dispenser, dst *string) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	*dst = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

func appendArgs(d *caddyfile.Dispenser, dst *[]string) error {
	args := d.RemainingArgs()
	if len(args) == 0 {
		return d.ArgErr()
	}
	*dst = append(*dst, args...)
	return nil
}

func intArg(d *caddyfile.Dispenser, dst *int) error {
	opt := d.Val()
	var s string
	if err := oneArg(d, &s); err != nil {
		return err
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return d.Errf("%s: want a whole number >= 0, got %q", opt, s)
	}
	*dst = n
	return nil
}

func durationArg(d *caddyfile.Dispenser, dst *caddy.Duration) error {
	opt := d.Val()
	var s string
	if err := oneArg(d, &s); err != nil {
		return err
	}
	dur, err := caddy.ParseDuration(s)
	if err != nil || dur < 0 {
		return d.Errf("%s: want a duration such as 2s or 5m, got %q", opt, s)
	}
	*dst = caddy.Duration(dur)
	return nil
}

func sizeArg(d *caddyfile.Dispenser, dst *int64) error {
	opt := d.Val()
	var s string
	if err := oneArg(d, &s); err != nil {
		return err
	}
	n, err := humanize.ParseBytes(s)
	if err != nil || n > 1<<40 {
		return d.Errf("%s: want a size such as 1MB or 1048576, got %q", opt, s)
	}
	*dst = int64(n)
	return nil
}

// UnmarshalCaddyfile: `tlcp_vars` takes no options.
func (*TLCPVars) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	if d.NextArg() || d.NextBlock(0) {
		return d.ArgErr()
	}
	return nil
}

// deprecated warns, with the file and line, that an old option spelling was used; it keeps working.
func deprecated(d *caddyfile.Dispenser, old, now string) {
	caddy.Log().Named("gmgate.caddyfile").Warn("deprecated option spelling: use "+now,
		zap.String("option", old), zap.String("file", d.File()), zap.Int("line", d.Line()))
}

// gm_cosign (issue 17: collaborative SM2, package cosign/platform)

func init() {
	httpcaddyfile.RegisterHandlerDirective("gm_cosign", func(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
		c := new(Cosign)
		return c, c.UnmarshalCaddyfile(h.Dispenser)
	})
	// gm_cosign answers the co-operation requests it is given itself, like respond.
	httpcaddyfile.RegisterDirectiveOrder("gm_cosign", httpcaddyfile.Before, "respond")
}

// UnmarshalCaddyfile sets up gm_cosign. Syntax:
//
//	gm_cosign [<matcher>] {
//		share_dir          <directory>
//		seal_key           <vault SM4 key>
//		auth               token|cert|cert_or_token
//		token_key          <vault SM4 key>
//		max_token_lifetime <duration>
//		rate_per_minute    <n>
//		burst              <n>
//		max_failures       <n>
//		lockout            <duration>
//		point_window       <duration>
//		max_points         <n>
//		bind_instruction
//		user_id            <SM2 user ID>
//		rotation_timeout   <duration>
//		enroll_store       <directory>
//		enroll_store_key   <vault SM4 key>
//		crls               <file|url...>  # the joint keys' CA CRLs (gm_enroll's crl_file/crl_urls)
//		trusted_roots      <pem...>       # the CAs of crls (default: development root)
//		intermediates      <pem...>
//		replay {                      # where rate limit, lockout and points live
//			store memory|redis
//			redis_address ...         # and the other redis_* options of gm_verify's replay block
//		}
//	}
func (h *Cosign) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		var err error
		switch d.Val() {
		case "share_dir":
			err = oneArg(d, &h.ShareDir)
		case "seal_key":
			err = oneArg(d, &h.SealKey)
		case "auth":
			err = oneArg(d, &h.Auth)
		case "token_key":
			err = oneArg(d, &h.TokenKey)
		case "max_token_lifetime":
			err = durationArg(d, &h.MaxTokenLifetime)
		case "rate_per_minute":
			err = intArg(d, &h.RatePerMinute)
		case "burst":
			err = intArg(d, &h.Burst)
		case "max_failures":
			err = intArg(d, &h.MaxFailures)
		case "lockout":
			err = durationArg(d, &h.Lockout)
		case "point_window":
			err = durationArg(d, &h.PointWindow)
		case "max_points":
			err = intArg(d, &h.MaxPoints)
		case "bind_instruction":
			if d.NextArg() {
				return d.ArgErr()
			}
			h.BindInstruction = true
		case "user_id":
			err = oneArg(d, &h.UserID)
		case "rotation_timeout":
			err = durationArg(d, &h.RotationTimeout)
		case "enroll_store":
			err = oneArg(d, &h.EnrollStore)
		case "enroll_store_key":
			err = oneArg(d, &h.EnrollStoreKey)
		case "crls":
			err = appendArgs(d, &h.CRLs)
		case "trusted_roots":
			err = appendArgs(d, &h.TrustedRoots)
		case "intermediates":
			err = appendArgs(d, &h.Intermediates)
		case "replay":
			if h.Replay == nil {
				h.Replay = &ReplayConfig{}
			}
			err = h.Replay.unmarshal(d)
		default:
			return d.Errf("unknown gm_cosign option %q", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// ---- tls13sm (listener wrapper caddy.listeners.tls13sm) ----

// UnmarshalCaddyfile sets up the RFC 8998 listener wrapper:
//
//	tls13sm {
//		sign_key <vault key name>
//		client_auth none|request|require|verify_if_given|require_and_verify
//		client_ca <PEM file...>
//		crls <CRL file...>                 # (or crl)
//		cipher_suites TLS_SM4_GCM_SM3|TLS_SM4_CCM_SM3...
//		session_tickets off
//		session_lifetime <duration>
//		ticket_key <vault SM4 key name>
//		handshake_timeout <duration>
//		max_handshake_message_size <size>
//		peek_timeout <duration>
//		max_pending_per_source <n>
//	}
func (w *TLS13SMListenerWrapper) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // wrapper name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		opt := d.Val()
		switch opt {
		case "sign_key":
			if !d.Args(&w.SignKey) {
				return d.ArgErr()
			}
		case "client_auth":
			if !d.Args(&w.ClientAuth) {
				return d.ArgErr()
			}
			if _, err := parseClientAuth(w.ClientAuth); err != nil {
				return d.Err(err.Error())
			}
		case "client_ca":
			w.ClientCAs = append(w.ClientCAs, d.RemainingArgs()...)
		case "crl", "crls":
			w.CRLs = append(w.CRLs, d.RemainingArgs()...)
		case "cipher_suites":
			w.CipherSuites = d.RemainingArgs()
			if _, err := parseTLS13SMSuites(w.CipherSuites); err != nil {
				return d.Err(err.Error())
			}
		case "session_tickets":
			if !d.Args(&w.SessionTickets) || w.SessionTickets != "off" {
				return d.Errf("session_tickets: only \"off\" is accepted")
			}
		case "ticket_key":
			if !d.Args(&w.TicketKey) {
				return d.ArgErr()
			}
		case "session_lifetime", "handshake_timeout", "peek_timeout":
			var v string
			if !d.Args(&v) {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(v)
			if err != nil || dur <= 0 {
				return d.Errf("%s: want a positive duration, got %q", opt, v)
			}
			switch opt {
			case "session_lifetime":
				w.SessionLifetime = caddy.Duration(dur)
			case "handshake_timeout":
				w.HandshakeTimeout = caddy.Duration(dur)
			default:
				w.PeekTimeout = caddy.Duration(dur)
			}
		case "max_pending_per_source":
			var v string
			if !d.Args(&v) {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				return d.Errf("max_pending_per_source: a positive number, got %q", v)
			}
			w.MaxPendingPerSource = n
		case "max_handshake_message_size":
			var v string
			if !d.Args(&v) {
				return d.ArgErr()
			}
			n, err := humanize.ParseBytes(v)
			if err != nil || n < 1024 || n > 1<<24 {
				return d.Errf("max_handshake_message_size: want a size between 1KB and 16MB, got %q", v)
			}
			w.MaxHandshakeMessageSize = int(n)
		default:
			return d.Errf("unknown tls13sm option %q", opt)
		}
	}
	return nil
}

var _ caddyfile.Unmarshaler = (*TLS13SMListenerWrapper)(nil)

// parseChannelTLS13SM reads gm_channel's RFC 8998 link block:
//
//	tls13sm {
//		sign_key <vault key name>
//		server_name <name>
//		cipher_suites TLS_SM4_GCM_SM3|TLS_SM4_CCM_SM3...
//		crls <CRL file...>
//		session_cache <size>|off
//		handshake_timeout <duration>
//	}
func parseChannelTLS13SM(d *caddyfile.Dispenser) (*ChannelTLS13SM, error) {
	c := &ChannelTLS13SM{}
	for d.NextBlock(1) {
		opt := d.Val()
		var v string
		switch opt {
		case "sign_key", "server_name", "session_cache", "handshake_timeout":
			if !d.Args(&v) || d.NextArg() {
				return nil, d.ArgErr()
			}
		}
		switch opt {
		case "sign_key":
			c.SignKey = v
		case "server_name":
			c.ServerName = v
		case "cipher_suites":
			c.CipherSuites = d.RemainingArgs()
			if _, err := parseTLS13SMSuites(c.CipherSuites); err != nil {
				return nil, d.Err(err.Error())
			}
		case "crls", "crl":
			c.CRLs = append(c.CRLs, d.RemainingArgs()...)
			if len(c.CRLs) == 0 {
				return nil, d.ArgErr()
			}
		case "session_cache":
			if v == "off" {
				c.SessionCacheSize = -1
			} else if n, err := strconv.Atoi(v); err != nil || n <= 0 {
				return nil, d.Errf("session_cache: a positive size or off, got %q", v)
			} else {
				c.SessionCacheSize = n
			}
		case "handshake_timeout":
			dur, err := caddy.ParseDuration(v)
			if err != nil || dur <= 0 {
				return nil, d.Errf("handshake_timeout: want a positive duration, got %q", v)
			}
			c.HandshakeTimeout = caddy.Duration(dur)
		default:
			return nil, d.Errf("unknown tls13sm option %q", opt)
		}
	}
	return c, nil
}

// ---- gm_enroll (issue 16) ----

func init() {
	httpcaddyfile.RegisterHandlerDirective("gm_enroll", func(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
		e := new(Enroll)
		return e, e.UnmarshalCaddyfile(h.Dispenser)
	})
	// gm_enroll answers every request it sees (enrolment is authorised by tokens and signed
	// requests, not by gm_verify); it sits with the other terminal handlers, before respond.
	httpcaddyfile.RegisterDirectiveOrder("gm_enroll", httpcaddyfile.Before, "respond")
}

// UnmarshalCaddyfile sets up gm_enroll:
//
//	gm_enroll {
//		ca_key             <vault key name>
//		ca_chain           <PEM file...>
//		store              <dir>
//		profile <name> {
//			common_name         <regexp>
//			organization        <O...>
//			organizational_unit <OU...>
//			dns_names           <name or *.suffix...>
//			validity            <duration>
//		}
//		identities_dir     <dir>
//		escrow_key         <vault SM4 key name>
//		escrow_dir         <dir>
//		crl_file           <path>
//		crl_urls           <url...>   # (or crl_url)
//		crl_validity       <duration>
//		crl_check_interval <duration>
//		max_body_size      <size>
//		admin_certs        <PEM file...>
//		admin_roots        <PEM file...>
//		expiry_warning     <duration>
//		replay {
//			window <duration>
//			store  memory|redis
//			redis_address ...   (as in gm_verify)
//		}
//		store_key          <vault SM4 key name>
//		rate_per_minute    <n>          # per client address, default 60
//		burst              <n>          # default 20
//		max_failures       <n>          # failed attempts per address and per token ID, default 10
//		lockout            <duration>   # default 15m
//		upstream <url> {              # a registration authority in front of another gm_enroll (no ca_key)
//			ra_key   <vault key name> # the RA's key; its certificate is the RA certificate
//			ca_chain <PEM file...>    # the upstream CA's chain, issuing CA first
//			timeout  <duration>       # default 30s
//		}
//		ra_certs <PEM file...>        # RAs this CA accepts (keyid ra:<CN>)
//		ra_roots <PEM file...>
//		ra_crls  <CRL file or URL...>
//		ra_scope <RA name> {          # one per RA of ra_certs (its certificate CN); required
//			profiles    <profile...>  # the profiles it may request
//			common_name <regexp>      # the subject CNs it may enrol (anchored; .* for any)
//			dns_names   <name or *.suffix...> # the DNS names it may enrol; default none
//		}
//	}
func (h *Enroll) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "ca_key":
			if err := oneArg(d, &h.CAKey); err != nil {
				return err
			}
		case "ca_chain":
			if err := appendArgs(d, &h.CAChain); err != nil {
				return err
			}
		case "store":
			if err := oneArg(d, &h.Store); err != nil {
				return err
			}
		case "profile":
			var p EnrollProfile
			if err := oneArg(d, &p.Name); err != nil {
				return err
			}
			for d.NextBlock(1) {
				switch d.Val() {
				case "common_name":
					if err := oneArg(d, &p.CommonName); err != nil {
						return err
					}
				case "organization":
					if err := appendArgs(d, &p.Organization); err != nil {
						return err
					}
				case "organizational_unit":
					if err := appendArgs(d, &p.OrganizationalUnit); err != nil {
						return err
					}
				case "dns_names":
					if err := appendArgs(d, &p.DNSNames); err != nil {
						return err
					}
				case "validity":
					if err := durationArg(d, &p.Validity); err != nil {
						return err
					}
				default:
					return d.Errf("unknown gm_enroll profile option %q", d.Val())
				}
			}
			h.Profiles = append(h.Profiles, p)
		case "identities_dir":
			if err := oneArg(d, &h.IdentitiesDir); err != nil {
				return err
			}
		case "escrow_key":
			if err := oneArg(d, &h.EscrowKey); err != nil {
				return err
			}
		case "escrow_dir":
			if err := oneArg(d, &h.EscrowDir); err != nil {
				return err
			}
		case "crl_file":
			if err := oneArg(d, &h.CRLFile); err != nil {
				return err
			}
		case "crl_urls", "crl_url":
			if err := appendArgs(d, &h.CRLURLs); err != nil {
				return err
			}
		case "crl_validity":
			if err := durationArg(d, &h.CRLValidity); err != nil {
				return err
			}
		case "crl_check_interval":
			if err := durationArg(d, &h.CRLCheckInterval); err != nil {
				return err
			}
		case "max_body_size":
			if err := sizeArg(d, &h.MaxBodySize); err != nil {
				return err
			}
		case "admin_certs":
			if err := appendArgs(d, &h.AdminCerts); err != nil {
				return err
			}
		case "admin_roots":
			if err := appendArgs(d, &h.AdminRoots); err != nil {
				return err
			}
		case "expiry_warning":
			if err := durationArg(d, &h.ExpiryWarning); err != nil {
				return err
			}
		case "replay":
			if h.Replay == nil {
				h.Replay = &ReplayConfig{}
			}
			if err := h.Replay.unmarshal(d); err != nil {
				return err
			}
		case "store_key":
			if err := oneArg(d, &h.StoreKey); err != nil {
				return err
			}
		case "rate_per_minute":
			if err := intArg(d, &h.RatePerMinute); err != nil {
				return err
			}
		case "burst":
			if err := intArg(d, &h.Burst); err != nil {
				return err
			}
		case "max_failures":
			if err := intArg(d, &h.MaxFailures); err != nil {
				return err
			}
		case "lockout":
			if err := durationArg(d, &h.Lockout); err != nil {
				return err
			}
		case "upstream":
			u := &EnrollUpstream{}
			if err := oneArg(d, &u.URL); err != nil {
				return err
			}
			for d.NextBlock(1) {
				switch d.Val() {
				case "ra_key":
					if err := oneArg(d, &u.RAKey); err != nil {
						return err
					}
				case "ca_chain":
					if err := appendArgs(d, &u.CAChain); err != nil {
						return err
					}
				case "timeout":
					if err := durationArg(d, &u.Timeout); err != nil {
						return err
					}
				default:
					return d.Errf("unknown gm_enroll upstream option %q", d.Val())
				}
			}
			h.Upstream = u
		case "ra_certs":
			if err := appendArgs(d, &h.RACerts); err != nil {
				return err
			}
		case "ra_roots":
			if err := appendArgs(d, &h.RARoots); err != nil {
				return err
			}
		case "ra_crls":
			if err := appendArgs(d, &h.RACRLs); err != nil {
				return err
			}
		case "ra_scope":
			var sc EnrollRAScope
			if err := oneArg(d, &sc.Name); err != nil {
				return err
			}
			for d.NextBlock(1) {
				switch d.Val() {
				case "profiles":
					if err := appendArgs(d, &sc.Profiles); err != nil {
						return err
					}
				case "common_name":
					if err := oneArg(d, &sc.CommonName); err != nil {
						return err
					}
				case "dns_names":
					if err := appendArgs(d, &sc.DNSNames); err != nil {
						return err
					}
				default:
					return d.Errf("unknown gm_enroll ra_scope option %q", d.Val())
				}
			}
			h.RAScopes = append(h.RAScopes, sc)
		default:
			return d.Errf("unknown gm_enroll option %q", d.Val())
		}
	}
	return nil
}

// ---- gm_crypto (the crypto service, issue 15) ----

func init() {
	httpcaddyfile.RegisterHandlerDirective("gm_crypto", func(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
		c := new(Crypto)
		return c, c.UnmarshalCaddyfile(h.Dispenser)
	})
	// The service answers every request itself: it runs where respond does.
	httpcaddyfile.RegisterDirectiveOrder("gm_crypto", httpcaddyfile.Before, "respond")
}

// UnmarshalCaddyfile sets up gm_crypto:
//
//	gm_crypto {
//		caller <name> [fingerprint <SM3 hex>] [subject_cn <CN>]
//		allow <caller> <op>[,<op>...] [<key>] [min_version <n>]
//		trusted_roots <PEM file...>
//		intermediates <PEM file...>
//		crls <CRL file...>        # (or crl)
//		max_body_size <size>      # default 1MB
//		max_items <n>             # default 256
//		max_item_size <size>      # default 64KiB
//		certificates <PEM file...>   # signers named by cert_serial/cert_subject
//		min_verify_level 0|1|2       # default 2
//		# signed requests (callers without a client certificate):
//		scheme http-sig-sm2|wechatpay-v3-sm2 { <scheme options as gm_verify> }
//		identities { file <PEM...>; dir <dir>; vault <key...>; reload_interval <d> }
//		client_ca <PEM file...>          # roots the identities chain to
//		client_intermediates <PEM file...>
//		client_crls <CRL file...>
//		replay { window 5m; store memory|redis; … as gm_verify }
//	}
func (h *Crypto) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "caller":
			var c cryptosvc.CallerConfig
			if !d.NextArg() {
				return d.ArgErr()
			}
			c.Name = d.Val()
			for d.NextArg() {
				matcher := d.Val()
				var dst *string
				switch matcher {
				case "fingerprint":
					dst = &c.Fingerprint
				case "subject_cn":
					dst = &c.SubjectCN
				}
				switch {
				case dst != nil && *dst != "":
					return d.Errf("caller %s: %s given twice", c.Name, matcher)
				case dst != nil:
					if !d.NextArg() {
						return d.ArgErr()
					}
					*dst = d.Val()
				default:
					return d.Errf("caller %s: unknown matcher %q (fingerprint, subject_cn)", c.Name, d.Val())
				}
			}
			h.Callers = append(h.Callers, c)
		case "allow":
			args := d.RemainingArgs()
			if len(args) < 2 {
				return d.ArgErr()
			}
			r := cryptosvc.Rule{Caller: args[0]}
			for _, op := range strings.Split(args[1], ",") {
				r.Ops = append(r.Ops, cryptosvc.Op(op))
			}
			rest := args[2:]
			if len(rest) > 0 && rest[0] != "min_version" {
				r.Key, rest = rest[0], rest[1:]
			}
			switch {
			case len(rest) == 0:
			case len(rest) == 2 && rest[0] == "min_version":
				n, err := strconv.Atoi(rest[1])
				if err != nil || n < 1 {
					return d.Errf("min_version: a version number >= 1, got %q", rest[1])
				}
				r.MinVersion = n
			default:
				return d.Errf("allow: unexpected %q (want: allow <caller> <ops> [<key>] [min_version <n>])", strings.Join(rest, " "))
			}
			h.Rules = append(h.Rules, r)
		case "trusted_roots":
			if err := appendArgs(d, &h.TrustedRoots); err != nil {
				return err
			}
		case "intermediates":
			if err := appendArgs(d, &h.Intermediates); err != nil {
				return err
			}
		case "crl", "crls":
			if err := appendArgs(d, &h.CRLs); err != nil {
				return err
			}
		case "max_body_size":
			if err := sizeArg(d, &h.MaxBodySize); err != nil {
				return err
			}
		case "max_items":
			if err := intArg(d, &h.MaxItems); err != nil {
				return err
			}
		case "max_item_size":
			if err := sizeArg(d, &h.MaxItemSize); err != nil {
				return err
			}
		case "scheme":
			sr := h.signedRequests()
			if err := oneArg(d, &sr.Scheme); err != nil {
				return err
			}
			for d.NextBlock(1) {
				if sr.SchemeOptions == nil {
					sr.SchemeOptions = &SchemeOptions{}
				}
				if err := sr.SchemeOptions.unmarshal(d); err != nil {
					return err
				}
			}
		case "identities":
			if d.NextArg() {
				return d.ArgErr()
			}
			sr := h.signedRequests()
			if sr.Identities == nil {
				sr.Identities = &IdentitiesConfig{}
			}
			if err := sr.Identities.unmarshal(d); err != nil {
				return err
			}
		case "certificates":
			if err := appendArgs(d, &h.Certificates); err != nil {
				return err
			}
		case "min_verify_level":
			var n int
			if err := intArg(d, &n); err != nil {
				return err
			}
			h.MinVerifyLevel = &n
		case "client_ca":
			if err := appendArgs(d, &h.signedRequests().ClientCA); err != nil {
				return err
			}
		case "client_intermediates":
			if err := appendArgs(d, &h.signedRequests().ClientIntermediates); err != nil {
				return err
			}
		case "client_crls":
			if err := appendArgs(d, &h.signedRequests().ClientCRLs); err != nil {
				return err
			}
		case "replay":
			if d.NextArg() {
				return d.ArgErr()
			}
			sr := h.signedRequests()
			if sr.Replay == nil {
				sr.Replay = &ReplayConfig{}
			}
			if err := sr.Replay.unmarshal(d); err != nil {
				return err
			}
		default:
			return d.Errf("gm_crypto: unknown option %q", d.Val())
		}
	}
	return nil
}
