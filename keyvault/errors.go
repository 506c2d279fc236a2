package keyvault

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors. Every error returned by this package wraps one of them so callers can
// classify failures with errors.Is. Messages never contain PINs, passwords or key bytes.
var (
	// ErrKeyNotFound means the named key, version or token object does not exist.
	ErrKeyNotFound = errors.New("keyvault: key not found")
	// ErrTokenUnavailable means no configured token could serve the request (removed,
	// unreachable, pool exhausted or all replicas failed).
	ErrTokenUnavailable = errors.New("keyvault: token unavailable")
	// ErrBadPIN means the token rejected the configured PIN.
	ErrBadPIN = errors.New("keyvault: PIN rejected by token")
	// ErrMechanismMissing means a token lacks a mechanism that native mode requires.
	ErrMechanismMissing = errors.New("keyvault: token lacks required mechanism")
	// ErrModuleLoad means the PKCS#11 module could not be loaded or initialised.
	ErrModuleLoad = errors.New("keyvault: cannot load PKCS#11 module")
	// ErrConfig means the configuration is invalid.
	ErrConfig = errors.New("keyvault: invalid configuration")
	// ErrBadReference means a key reference (pkcs11: URI or file: path) is malformed.
	ErrBadReference = errors.New("keyvault: invalid key reference")
	// ErrWrongKeyType means the key exists but is not of the requested type (SM2 vs SM4).
	ErrWrongKeyType = errors.New("keyvault: wrong key type")
	// ErrClosed means the vault (and therefore every key handle) has been closed.
	ErrClosed = errors.New("keyvault: vault closed")
	// ErrPoolTimeout means no token session became free within the borrow timeout.
	ErrPoolTimeout = errors.New("keyvault: session pool borrow timeout")
	// ErrIntegrity means a wrapped key blob failed authentication or is malformed.
	ErrIntegrity = errors.New("keyvault: key blob failed integrity check")
	// ErrInvalidInput means caller-supplied data has a bad length or format.
	ErrInvalidInput = errors.New("keyvault: invalid input")
	// ErrAuthFailed means a MAC, tag or padding check failed.
	ErrAuthFailed = errors.New("keyvault: authentication failed")
	// ErrExists means the object to create already exists.
	ErrExists = errors.New("keyvault: already exists")
	// ErrUnsupported means the operation is not supported by the key's backend or mode.
	ErrUnsupported = errors.New("keyvault: operation not supported by this backend")
	// ErrVersionRetired means an old key version was asked to produce new signatures or ciphertexts;
	// old versions only decrypt and verify.
	ErrVersionRetired = errors.New("keyvault: key version is retired (decrypt/verify only)")
	// ErrPassword means the password for an encrypted PKCS#8 file is missing or wrong.
	ErrPassword = errors.New("keyvault: key file password missing or wrong")
	// ErrToken is a generic PKCS#11 failure that is not more specifically classified.
	ErrToken = errors.New("keyvault: token operation failed")
)

// OpError describes a failed vault operation. It names the key, token and operation, and wraps a
// sentinel error (errors.Is) plus, where useful, the underlying cause (errors.As reaches it).
type OpError struct {
	Op    string // operation, e.g. "sign", "load", "login"
	Key   string // key name (may be empty)
	Token string // token name (may be empty)
	Kind  error  // one of the sentinel errors
	Err   error  // underlying cause, never containing secrets (may be nil)
}

// Unavailable reports whether the failure is the vault's own and may pass: the token, a
// session, the module, a missing key object or a closed vault; not the caller's input (bad
// ciphertext, wrong lengths, failed tags). Callers answer "try again later" (503) rather than
// blaming the data they were given.
func (e *OpError) Unavailable() bool {
	for _, k := range []error{ErrTokenUnavailable, ErrPoolTimeout, ErrClosed, ErrKeyNotFound, ErrToken, ErrModuleLoad, ErrBadPIN} {
		if errors.Is(e.Kind, k) {
			return true
		}
	}
	return false
}

// Error implements error.
func (e *OpError) Error() string {
	s := "keyvault: " + e.Op
	if e.Key != "" {
		s += " key=" + e.Key
	}
	if e.Token != "" {
		s += " token=" + e.Token
	}
	// One "keyvault:" prefix per message: the sentinels and the causes made here carry their own.
	unprefixed := func(err error) string { return strings.TrimPrefix(err.Error(), "keyvault: ") }
	switch {
	case e.Err != nil && (e.Kind == nil || errors.Is(e.Err, e.Kind)):
		// The cause already names the kind.
		s += ": " + unprefixed(e.Err)
	case e.Err != nil:
		s += ": " + unprefixed(e.Kind) + ": " + unprefixed(e.Err)
	case e.Kind != nil:
		s += ": " + unprefixed(e.Kind)
	default:
		s += ": error"
	}
	return s
}

// Unwrap returns the sentinel kind and the cause.
func (e *OpError) Unwrap() []error {
	out := []error{}
	if e.Kind != nil {
		out = append(out, e.Kind)
	}
	if e.Err != nil {
		out = append(out, e.Err)
	}
	return out
}

func opErr(op, key, token string, kind, cause error) error {
	return &OpError{Op: op, Key: key, Token: token, Kind: kind, Err: cause}
}

// ErrorKind returns a short stable label for err suitable for a metrics label
// ("not_found", "token_unavailable", ...), or "" for nil.
func ErrorKind(err error) string {
	if err == nil {
		return ""
	}
	for _, k := range errorKinds {
		if errors.Is(err, k.err) {
			return k.name
		}
	}
	return "other"
}

// ErrorKinds lists every label ErrorKind can return for a non-nil error, the fallback "other"
// last (for metric label sets and documentation tables).
func ErrorKinds() []string {
	out := make([]string, 0, len(errorKinds)+1)
	for _, k := range errorKinds {
		out = append(out, k.name)
	}
	return append(out, "other")
}

var errorKinds = []struct {
	err  error
	name string
}{
	{ErrKeyNotFound, "not_found"},
	{ErrBadPIN, "bad_pin"},
	{ErrMechanismMissing, "mechanism_missing"},
	{ErrModuleLoad, "module_load"},
	{ErrPoolTimeout, "pool_timeout"},
	{ErrTokenUnavailable, "token_unavailable"},
	{ErrConfig, "config"},
	{ErrBadReference, "bad_reference"},
	{ErrWrongKeyType, "wrong_type"},
	{ErrClosed, "closed"},
	{ErrIntegrity, "integrity"},
	{ErrInvalidInput, "invalid_input"},
	{ErrAuthFailed, "auth_failed"},
	{ErrExists, "exists"},
	{ErrUnsupported, "unsupported"},
	{ErrVersionRetired, "retired"},
	{ErrPassword, "password"},
	{ErrToken, "token"},
}

func errorf(kind error, format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{kind}, args...)...)
}
