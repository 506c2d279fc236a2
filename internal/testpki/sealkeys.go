package testpki

import (
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"sync"
	"testing"

	"github.com/emmansun/gmsm/sm4"

	"github.com/gmgate/gmgate/sealstore"
)

// SealKeys is a rotating SM4 key in memory with the shape of a vault key as sealstore sees it
// (sealstore.Keys): Current seals, At opens every version. Tests rotate it (the vault's file
// backend keeps one version) and switch it off (Fail) to play a vault that is down.
type SealKeys struct {
	name     string
	mu       sync.Mutex
	versions []*sealKey
	fail     error
}

type sealKey struct {
	v   int
	gcm cipher.AEAD
}

// NewSealKeys returns a key named name at version 1.
func NewSealKeys(t testing.TB, name string) *SealKeys {
	k := &SealKeys{name: name}
	k.Rotate(t)
	return k
}

// Rotate adds a new current version.
func (k *SealKeys) Rotate(t testing.TB) {
	raw := make([]byte, 16)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	b, err := sm4.NewCipher(raw)
	if err != nil {
		t.Fatal(err)
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		t.Fatal(err)
	}
	k.mu.Lock()
	k.versions = append(k.versions, &sealKey{v: len(k.versions) + 1, gcm: g})
	k.mu.Unlock()
}

// Fail makes every later use fail with err (nil: work again).
func (k *SealKeys) Fail(err error) {
	k.mu.Lock()
	k.fail = err
	k.mu.Unlock()
}

// Name implements sealstore.Keys.
func (k *SealKeys) Name() string { return k.name }

// Current implements sealstore.Keys.
func (k *SealKeys) Current() (sealstore.Key, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.fail != nil {
		return nil, k.fail
	}
	return k.versions[len(k.versions)-1], nil
}

// At implements sealstore.Keys.
func (k *SealKeys) At(v int) (sealstore.Key, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.fail != nil {
		return nil, k.fail
	}
	if v < 1 || v > len(k.versions) {
		return nil, errors.New("testpki: no such key version")
	}
	return k.versions[v-1], nil
}

func (s *sealKey) Version() int { return s.v }

func (s *sealKey) SealGCM(p, aad []byte) ([]byte, error) {
	n := make([]byte, s.gcm.NonceSize())
	if _, err := rand.Read(n); err != nil {
		return nil, err
	}
	return s.gcm.Seal(n, n, p, aad), nil
}

func (s *sealKey) OpenGCM(c, aad []byte) ([]byte, error) {
	if len(c) < s.gcm.NonceSize() {
		return nil, errors.New("testpki: sealed data too short")
	}
	return s.gcm.Open(nil, c[:s.gcm.NonceSize()], c[s.gcm.NonceSize():], aad)
}
