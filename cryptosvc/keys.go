package cryptosvc

import (
	"crypto"
	"errors"

	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/keyvault"
)

// Keys is what the service needs of the key vault. Names are "name" (the version in use) or
// "name@N" (version N). *keyvault.Vault provides it through VaultKeys.
type Keys interface {
	// Signer returns the SM2 key that signs now (retired versions refuse).
	Signer(name string) (crypto.Signer, error)
	// PublicKey returns the public key of any loaded version of an SM2 key.
	PublicKey(name string) (crypto.PublicKey, error)
	// Decrypter returns any loaded version of an SM2 key for decryption (envelopes).
	Decrypter(name string) (crypto.Decrypter, error)
	// Certificate returns the configured certificate chain of a key (leaf first).
	Certificate(name string) ([]*smx509.Certificate, error)
	// SymmetricKey returns an SM4 key: the newest version for "name", version N for "name@N"
	// (a retired version only opens and verifies).
	SymmetricKey(name string) (SymmetricKey, error)
	// Versions lists the loaded versions of a key (ascending) and its newest one.
	Versions(name string) (versions []int, current int, err error)
	// Rotate stores a new version of the key in every replica of the vault and makes it the
	// newest (keyvault.Vault.Rotate, what `gmgate vault rotate` does), returning its number.
	Rotate(name string) (version int, err error)
}

// SymmetricKey is one version of an SM4 key (*keyvault.SM4Key).
type SymmetricKey interface {
	Version() int
	SealGCM(plaintext, aad []byte) ([]byte, error)
	OpenGCM(sealed, aad []byte) ([]byte, error)
	HMACSM3(data []byte) ([]byte, error)
	VerifyHMACSM3(data, mac []byte) error
}

// versioned is implemented by the vault's SM2 keys.
type versioned interface{ Version() int }

// VaultKeys adapts a key vault to Keys.
func VaultKeys(v *keyvault.Vault) Keys { return vaultKeys{v} }

type vaultKeys struct{ v *keyvault.Vault }

func (k vaultKeys) Signer(name string) (crypto.Signer, error)       { return k.v.Signer(name) }
func (k vaultKeys) PublicKey(name string) (crypto.PublicKey, error) { return k.v.PublicKey(name) }
func (k vaultKeys) Decrypter(name string) (crypto.Decrypter, error) { return k.v.Decrypter(name) }
func (k vaultKeys) Certificate(name string) ([]*smx509.Certificate, error) {
	return k.v.Certificate(name)
}
func (k vaultKeys) Versions(name string) ([]int, int, error) { return k.v.Versions(name) }
func (k vaultKeys) Rotate(name string) (int, error) {
	ki, err := k.v.Rotate(name)
	if err != nil {
		return 0, err
	}
	return ki.Current, nil
}
func (k vaultKeys) SymmetricKey(name string) (SymmetricKey, error) {
	s, err := k.v.SM4(name)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// keyCode maps a vault error to a refusal code: the caller's fault (unknown key or version,
// wrong type, bad input) or the vault's (unavailable). Anything else is internal.
func keyCode(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, keyvault.ErrKeyNotFound):
		return fail(CodeUnknownKey, err)
	case errors.Is(err, keyvault.ErrWrongKeyType), errors.Is(err, keyvault.ErrUnsupported):
		return fail(CodeWrongKeyType, err)
	case errors.Is(err, keyvault.ErrVersionRetired):
		return fail(CodeVersionRetired, err)
	case errors.Is(err, keyvault.ErrInvalidInput):
		return fail(CodeMalformed, err)
	case errors.Is(err, keyvault.ErrAuthFailed):
		return fail(CodeBadCiphertext, err)
	}
	var u interface{ Unavailable() bool }
	if errors.As(err, &u) && u.Unavailable() || errors.Is(err, keyvault.ErrClosed) || errors.Is(err, keyvault.ErrToken) ||
		errors.Is(err, keyvault.ErrTokenUnavailable) || errors.Is(err, keyvault.ErrPoolTimeout) {
		return fail(CodeKeyUnavailable, err)
	}
	return fail(CodeInternal, err)
}
