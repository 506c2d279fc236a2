package keyvault

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"
)

// KeyType names the algorithm of a vault key.
type KeyType string

// Key types.
const (
	KeyTypeSM2 KeyType = "sm2"
	KeyTypeSM4 KeyType = "sm4"
)

// Token modes.
const (
	// ModeWrapped keeps an AES-256 key-encryption key in the token and stores SM2/SM4 keys as
	// AES-GCM blobs; keys are unwrapped into memory once at load time.
	ModeWrapped = "wrapped"
	// ModeNative uses vendor GM mechanisms: the private key never leaves the token and every
	// operation is a token call.
	ModeNative = "native"
)

// DefaultKEKLabel is the label of the key-encryption key when TokenConfig.KEKLabel is empty.
const DefaultKEKLabel = "gmgate-kek"

// Config declares the tokens and the named keys of a vault.
type Config struct {
	// Tokens are the PKCS#11 tokens (HSMs) that hold keys. None: file keys only.
	Tokens []TokenConfig `json:"tokens,omitempty"`
	// Keys are the named keys, each a PKCS#11 object on the tokens or a file.
	Keys []KeyConfig `json:"keys,omitempty"`
}

// TokenConfig declares one PKCS#11 token. PINs are never inline: PINEnv names an environment
// variable, PINFile a file whose first line is the PIN.
type TokenConfig struct {
	// Name is the vault-local name of the token (used in logs, metrics and KeyConfig.Tokens).
	Name string `json:"name"`
	// Module is the path of the PKCS#11 shared library.
	Module string `json:"module"`
	// TokenLabel selects the token by label (TokenSerial wins if both are set).
	TokenLabel string `json:"token_label,omitempty"`
	// TokenSerial selects the token by serial number.
	TokenSerial string `json:"token_serial,omitempty"`
	// PINEnv names the environment variable holding the user PIN (or use PINFile).
	PINEnv string `json:"pin_env,omitempty"`
	// PINFile is a file whose first line is the user PIN (or use PINEnv).
	PINFile string `json:"pin_file,omitempty"`
	// PoolSize is the maximum number of concurrent sessions (default 4).
	PoolSize int `json:"pool_size,omitempty"`
	// BorrowTimeout bounds the wait for a free session (default 2s). In JSON a duration string
	// ("2s", "500ms") or a number of nanoseconds, as every Caddy duration.
	BorrowTimeout Duration `json:"borrow_timeout,omitempty"`
	// Mode is "wrapped" (default) or "native".
	Mode string `json:"mode,omitempty"`
	// Preset names a vendor mechanism family for native mode (see Presets).
	Preset string `json:"preset,omitempty"`
	// Mechanisms overrides individual values of the preset (native mode).
	Mechanisms *MechanismConfig `json:"mechanisms,omitempty"`
	// BlobStore is "token" (default: CKO_DATA objects in the token) or a directory path.
	BlobStore string `json:"blob_store,omitempty"`
	// KEKLabel is the label of the AES-256 key-encryption key (default "gmgate-kek").
	KEKLabel string `json:"kek_label,omitempty"`
}

// Duration is a time.Duration that reads from JSON as a duration string ("2s") or a number of
// nanoseconds, like Caddy's durations, so that one spelling works across a configuration.
type Duration time.Duration

// UnmarshalJSON accepts "2s" or 2000000000.
func (d *Duration) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("keyvault: bad duration %q (want e.g. 2s or 500ms)", s)
		}
		*d = Duration(v)
		return nil
	}
	var n int64
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("keyvault: bad duration %s (want e.g. \"2s\" or nanoseconds)", b)
	}
	*d = Duration(n)
	return nil
}

// KeyConfig declares one named key.
type KeyConfig struct {
	// Name is how other modules refer to the key.
	Name string `json:"name"`
	// Ref is an RFC 7512 URI ("pkcs11:token=gmgate;object=platform-sign") or "file:/path.pem".
	Ref string `json:"ref"`
	// Type is "sm2" or "sm4".
	Type KeyType `json:"type"`
	// Certificate is an optional PEM file holding the key's certificate chain (leaf first).
	Certificate string `json:"certificate,omitempty"`
	// UserID is the SM2 distinguishing identifier (default 1234567812345678).
	UserID string `json:"user_id,omitempty"`
	// PasswordEnv names the environment variable holding the password of an encrypted PKCS#8
	// file key.
	PasswordEnv string `json:"password_env,omitempty"`
	// PasswordFile is a file holding the password of an encrypted PKCS#8 file key.
	PasswordFile string `json:"password_file,omitempty"`
	// TokenDecrypt keeps an SM2 key inside the token as an SM2-curve EC key and decrypts with
	// CKM_ECDH1_DERIVE (works without GM mechanisms, e.g. SoftHSM2); such a key cannot sign.
	TokenDecrypt bool `json:"token_decrypt,omitempty"`
	// Tokens optionally restricts (and orders) the tokens holding the key, by TokenConfig.Name.
	// When empty, every token whose label (or serial) matches the reference is a replica.
	Tokens []string `json:"tokens,omitempty"`
}

// Observer receives one call per vault operation; caddymodule implements it with Prometheus collectors.
type Observer interface {
	ObserveOperation(token, key, op string, d time.Duration, err error)
	ObservePoolWait(token string, d time.Duration)
	ObserveFailover(key, fromToken, toToken string)
	ObserveTokenHealth(token string, healthy bool)
}

// Option tunes Open.
type Option func(*options)

type options struct {
	logger         *slog.Logger
	observer       Observer
	admin          bool
	healthInterval time.Duration
	lookupEnv      func(string) (string, bool)
}

// WithLogger sets the structured logger (nil discards).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithObserver sets the metrics observer.
func WithObserver(obs Observer) Option { return func(o *options) { o.observer = obs } }

// WithAdmin opens the vault for management commands: missing key-encryption keys and missing
// keys are not errors at open time (init, generate and import create them).
func WithAdmin() Option { return func(o *options) { o.admin = true } }

// WithHealthInterval starts a background health check of every token at the given interval
// (0, the default, disables it; Health() always probes on demand).
func WithHealthInterval(d time.Duration) Option { return func(o *options) { o.healthInterval = d } }

func buildOptions(opts []Option) options {
	o := options{lookupEnv: os.LookupEnv}
	for _, f := range opts {
		if f != nil {
			f(&o)
		}
	}
	if o.logger == nil {
		o.logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.observer == nil {
		o.observer = nopObserver{}
	}
	return o
}

type nopObserver struct{}

func (nopObserver) ObserveOperation(string, string, string, time.Duration, error) {}
func (nopObserver) ObservePoolWait(string, time.Duration)                         {}
func (nopObserver) ObserveFailover(string, string, string)                        {}
func (nopObserver) ObserveTokenHealth(string, bool)                               {}

// maxSecretFile bounds PIN and password files.
const maxSecretFile = 4096

// readSecret loads a PIN or password from an environment variable or a file (first line).
// what names the secret in errors; the value never appears in errors.
func readSecret(o *options, what, env, file string) ([]byte, error) {
	switch {
	case env != "" && file != "":
		return nil, errorf(ErrConfig, "%s: set only one of env and file", what)
	case env != "":
		v, ok := o.lookupEnv(env)
		if !ok || v == "" {
			return nil, errorf(ErrConfig, "%s: environment variable %s is empty or unset", what, env)
		}
		return []byte(v), nil
	case file != "":
		f, err := os.Open(file)
		if err != nil {
			return nil, errorf(ErrConfig, "%s: cannot open file %s", what, file)
		}
		defer f.Close()
		buf, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
		if err != nil || len(buf) > maxSecretFile {
			zero(buf)
			return nil, errorf(ErrConfig, "%s: cannot read file %s (or larger than %d bytes)", what, file, maxSecretFile)
		}
		line := buf
		if i := strings.IndexAny(string(buf), "\r\n"); i >= 0 {
			line = buf[:i]
		}
		out := append([]byte(nil), line...)
		zero(buf)
		if len(out) == 0 {
			return nil, errorf(ErrConfig, "%s: file %s is empty", what, file)
		}
		return out, nil
	}
	return nil, nil
}

// zero overwrites b.
func zero(b []byte) {
	for i := range b {
		b[i] = 0
	}
}
