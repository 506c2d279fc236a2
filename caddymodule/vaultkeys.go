package caddymodule

import (
	"crypto"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/emmansun/gmsm/ecdh"
	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/channel"
	"github.com/gmgate/gmgate/keyvault"
	"github.com/gmgate/gmgate/sealstore"
	"github.com/gmgate/gmgate/tlcp"
)

// vaultState is the gmgate app's key vault: configured and checked at Provision, opened (PKCS#11
// modules loaded, tokens logged in, keys loaded) when the configuration starts, so that `gmgate
// validate` touches no HSM. Caddy starts its apps in no fixed order: a server that answers before
// the gmgate app started opens the vault through the first key use.
type vaultState struct {
	cfg   keyvault.Config
	opts  []keyvault.Option
	names []string                         // declared keys, in configuration order
	types map[string]keyvault.KeyType      // by name
	certs map[string][]*smx509.Certificate // configured chains, read at Provision

	ready  atomic.Pointer[keyvault.Vault] // set once open succeeded
	mu     sync.Mutex
	v      *keyvault.Vault
	err    error // the failure to open, kept: every later use fails closed with it
	closed bool
}

// open opens the vault once and returns it; a failure is kept and returned to every caller.
func (s *vaultState) open() (*keyvault.Vault, error) {
	if v := s.ready.Load(); v != nil {
		return v, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.v != nil || s.err != nil {
		return s.v, s.err
	}
	if s.closed {
		return nil, errVaultClosed
	}
	v, err := keyvault.Open(s.cfg, s.opts...)
	if err != nil {
		s.err = fmt.Errorf("opening key vault: %w", err)
		return nil, s.err
	}
	s.v = v
	s.ready.Store(v)
	return v, nil
}

// close marks the state closed (a later use fails) and returns the vault to close, if it opened.
func (s *vaultState) close() *keyvault.Vault {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return s.v
}

// vaultKey is a named SM2 key of the vault: as a crypto.Signer (App.Signer: the version its
// certificate carries, never a decrypt-only key), or as a crypto.Decrypter and TLCP key-agreement
// key (App.Decrypter: any version, token_decrypt keys too). Its public key is the configured
// certificate's (the vault checks, when it opens, that a version of the key matches it); without
// a certificate, asking for it opens the vault.
type vaultKey struct {
	vs      *vaultState
	name    string
	decrypt bool // resolved as Vault.Decrypter, else as Vault.SM2Key
	key     atomic.Pointer[keyvault.SM2Key]
}

func (k *vaultKey) resolve() (*keyvault.SM2Key, error) {
	return resolveOnce(k.vs, &k.key, func(v *keyvault.Vault) (*keyvault.SM2Key, error) {
		if !k.decrypt {
			return v.SM2Key(k.name)
		}
		d, err := v.Decrypter(k.name)
		if err != nil {
			return nil, err
		}
		h, ok := d.(*keyvault.SM2Key)
		if !ok {
			return nil, fmt.Errorf("key %q: unexpected decrypter type %T", k.name, d)
		}
		return h, nil
	})
}

// resolveOnce returns the handle cached in slot, or opens the vault (once per configuration) and
// looks the handle up with get, caching it: after the first use a key costs one atomic load.
func resolveOnce[T any](vs *vaultState, slot *atomic.Pointer[T], get func(*keyvault.Vault) (*T, error)) (*T, error) {
	if h := slot.Load(); h != nil {
		return h, nil
	}
	v, err := vs.open()
	if err != nil {
		return nil, err
	}
	h, err := get(v)
	if err != nil {
		return nil, err
	}
	slot.Store(h)
	return h, nil
}

// Public returns the key's public key (nil when the vault cannot open and no certificate names it).
func (k *vaultKey) Public() crypto.PublicKey {
	if c := k.vs.certs[k.name]; len(c) > 0 {
		return c[0].PublicKey
	}
	h, err := k.resolve()
	if err != nil {
		return nil
	}
	return h.Public()
}

func (k *vaultKey) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	h, err := k.resolve()
	if err != nil {
		return nil, err
	}
	return h.Sign(rand, digest, opts)
}

func (k *vaultKey) Decrypt(rand io.Reader, msg []byte, opts crypto.DecrypterOpts) ([]byte, error) {
	h, err := k.resolve()
	if err != nil {
		return nil, err
	}
	return h.Decrypt(rand, msg, opts)
}

// SM2MQV implements tlcp.SM2KeyAgreement (the TLCP ECDHE suites).
func (k *vaultKey) SM2MQV(ephemeral *ecdh.PrivateKey, peerStatic, peerEphemeral *ecdh.PublicKey) (*ecdh.PublicKey, error) {
	h, err := k.resolve()
	if err != nil {
		return nil, err
	}
	return h.SM2MQV(ephemeral, peerStatic, peerEphemeral)
}

// vaultSM4 is a named SM4 key of the vault as a channel data key.
type vaultSM4 struct {
	vs   *vaultState
	name string
	key  atomic.Pointer[keyvault.SM4Key]
}

func (k *vaultSM4) resolve() (*keyvault.SM4Key, error) {
	return resolveOnce(k.vs, &k.key, func(v *keyvault.Vault) (*keyvault.SM4Key, error) { return v.SM4(k.name) })
}

func (k *vaultSM4) SealGCM(plaintext, aad []byte) ([]byte, error) {
	h, err := k.resolve()
	if err != nil {
		return nil, err
	}
	return h.SealGCM(plaintext, aad)
}

func (k *vaultSM4) OpenGCM(sealed, aad []byte) ([]byte, error) {
	h, err := k.resolve()
	if err != nil {
		return nil, err
	}
	return h.OpenGCM(sealed, aad)
}

func (k *vaultSM4) EncryptCBC(plaintext []byte) ([]byte, error) {
	h, err := k.resolve()
	if err != nil {
		return nil, err
	}
	return h.EncryptCBC(plaintext)
}

func (k *vaultSM4) DecryptCBC(data []byte) ([]byte, error) {
	h, err := k.resolve()
	if err != nil {
		return nil, err
	}
	return h.DecryptCBC(data)
}

// Interface guards
var (
	_ crypto.Signer        = (*vaultKey)(nil)
	_ crypto.Decrypter     = (*vaultKey)(nil)
	_ tlcp.SM2KeyAgreement = (*vaultKey)(nil)
	_ channel.DataKey      = (*vaultSM4)(nil)
)

// vaultSealKeys is a named SM4 key of the vault as the sealing key of a sealstore, opened like
// the other handles.
type vaultSealKeys struct {
	vs   *vaultState
	name string
}

func (k vaultSealKeys) Name() string { return k.name }

func (k vaultSealKeys) Current() (sealstore.Key, error) {
	v, err := k.vs.open()
	if err != nil {
		return nil, err
	}
	return sealstore.VaultKey(v, k.name).Current()
}

func (k vaultSealKeys) At(version int) (sealstore.Key, error) {
	v, err := k.vs.open()
	if err != nil {
		return nil, err
	}
	return sealstore.VaultKey(v, k.name).At(version)
}
