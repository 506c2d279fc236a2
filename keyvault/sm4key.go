package keyvault

import (
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/subtle"
	"sync"
	"time"

	"github.com/emmansun/gmsm/cbcmac"
	"github.com/emmansun/gmsm/padding"
	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/sm4"
)

// SM4 sizes.
const (
	SM4KeySize   = 16
	GCMNonceSize = 12
	GCMTagSize   = 16
	sm4Block     = 16
)

// SM4Key is one version of an SM4 key. Retired (non-current) versions only open, decrypt and
// verify; SealGCM, EncryptCBC, CBCMAC and HMACSM3 on them return ErrVersionRetired.
type SM4Key struct {
	name    string
	version int
	token   string
	retired bool
	obs     Observer

	mu     sync.RWMutex
	closed bool
	key    []byte
	block  cipher.Block
	gcm    cipher.AEAD
	// parent is set on retired handles: they share the parent's material and lock.
	parent *SM4Key
}

func newSM4Key(name string, version int, token string, obs Observer, key []byte) (*SM4Key, error) {
	if len(key) != SM4KeySize {
		return nil, errorf(ErrIntegrity, "SM4 key must be %d bytes", SM4KeySize)
	}
	kb := append([]byte(nil), key...)
	b, err := sm4.NewCipher(kb)
	if err != nil {
		return nil, errorf(ErrIntegrity, "bad SM4 key")
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		return nil, errorf(ErrIntegrity, "SM4-GCM unavailable")
	}
	return &SM4Key{name: name, version: version, token: token, obs: obs, key: kb, block: b, gcm: g}, nil
}

// handle returns k itself or, for a retired version, a view of the same material that refuses to produce new output.
// (retired handles) a handle on the same material that refuses to produce new output.
func (k *SM4Key) handle(retired bool) *SM4Key {
	if !retired {
		return k
	}
	return &SM4Key{name: k.name, version: k.version, token: k.token, retired: true, obs: k.obs, parent: k}
}

// Name returns the key's vault name.
func (k *SM4Key) Name() string { return k.name }

// Version returns the key version.
func (k *SM4Key) Version() int { return k.version }

// Retired reports whether this handle is for a non-current version.
func (k *SM4Key) Retired() bool { return k.retired }

// with runs f with the key material under the read lock.
func (k *SM4Key) with(op string, produce bool, f func(m *SM4Key) error) error {
	start := time.Now()
	err := k.with0(op, produce, f)
	k.obs.ObserveOperation(k.token, k.name, op, time.Since(start), err)
	return err
}

func (k *SM4Key) with0(op string, produce bool, f func(m *SM4Key) error) error {
	if produce && k.retired {
		return opErr(op, k.name, k.token, ErrVersionRetired, nil)
	}
	m := k
	if k.parent != nil {
		m = k.parent
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return opErr(op, k.name, k.token, ErrClosed, nil)
	}
	return f(m)
}

func checkLen(op, name string, n int) error {
	if n > maxMessage {
		return opErr(op, name, "", ErrInvalidInput, errorf(ErrInvalidInput, "input longer than %d bytes", maxMessage))
	}
	return nil
}

// SealGCM encrypts plaintext with SM4-GCM under a fresh random 12-byte nonce and returns
// nonce || ciphertext || tag.
func (k *SM4Key) SealGCM(plaintext, aad []byte) ([]byte, error) {
	if err := checkLen("seal", k.name, len(plaintext)+len(aad)); err != nil {
		return nil, err
	}
	var out []byte
	err := k.with("seal", true, func(m *SM4Key) error {
		nonce := make([]byte, GCMNonceSize, GCMNonceSize+len(plaintext)+GCMTagSize)
		if _, err := rand.Read(nonce); err != nil {
			return opErr("seal", k.name, k.token, ErrToken, err)
		}
		out = m.gcm.Seal(nonce, nonce, plaintext, aad)
		return nil
	})
	return out, err
}

// OpenGCM reverses SealGCM (input nonce || ciphertext || tag).
func (k *SM4Key) OpenGCM(sealed, aad []byte) ([]byte, error) {
	if len(sealed) < GCMNonceSize+GCMTagSize {
		return nil, opErr("open", k.name, k.token, ErrInvalidInput, errorf(ErrInvalidInput, "sealed data too short"))
	}
	return k.OpenGCMWithNonce(sealed[:GCMNonceSize], sealed[GCMNonceSize:], aad)
}

// SealGCMWithNonce encrypts with a caller-chosen 12-byte nonce (the caller guarantees
// uniqueness, e.g. a TLS-style sequence nonce) and returns ciphertext || tag.
func (k *SM4Key) SealGCMWithNonce(nonce, plaintext, aad []byte) ([]byte, error) {
	if len(nonce) != GCMNonceSize {
		return nil, opErr("seal", k.name, k.token, ErrInvalidInput, errorf(ErrInvalidInput, "nonce must be %d bytes", GCMNonceSize))
	}
	if err := checkLen("seal", k.name, len(plaintext)+len(aad)); err != nil {
		return nil, err
	}
	var out []byte
	err := k.with("seal", true, func(m *SM4Key) error {
		out = m.gcm.Seal(nil, nonce, plaintext, aad)
		return nil
	})
	return out, err
}

// OpenGCMWithNonce decrypts ciphertext || tag with the given nonce.
func (k *SM4Key) OpenGCMWithNonce(nonce, ciphertext, aad []byte) ([]byte, error) {
	if len(nonce) != GCMNonceSize || len(ciphertext) < GCMTagSize {
		return nil, opErr("open", k.name, k.token, ErrInvalidInput, errorf(ErrInvalidInput, "bad nonce or ciphertext length"))
	}
	if err := checkLen("open", k.name, len(ciphertext)+len(aad)); err != nil {
		return nil, err
	}
	var out []byte
	err := k.with("open", false, func(m *SM4Key) error {
		pt, err := m.gcm.Open(nil, nonce, ciphertext, aad)
		if err != nil {
			return opErr("open", k.name, k.token, ErrAuthFailed, nil)
		}
		out = pt
		return nil
	})
	return out, err
}

// EncryptCBC pads plaintext (PKCS#7) and encrypts it with SM4-CBC under a random IV; it returns
// IV || ciphertext. CBC has no integrity: pair it with CBCMAC or HMACSM3 under another key.
func (k *SM4Key) EncryptCBC(plaintext []byte) ([]byte, error) {
	iv := make([]byte, sm4Block)
	if _, err := rand.Read(iv); err != nil {
		return nil, opErr("encrypt_cbc", k.name, k.token, ErrToken, err)
	}
	ct, err := k.EncryptCBCWithIV(iv, plaintext)
	if err != nil {
		return nil, err
	}
	return append(iv, ct...), nil
}

// DecryptCBC reverses EncryptCBC (input IV || ciphertext).
func (k *SM4Key) DecryptCBC(data []byte) ([]byte, error) {
	if len(data) < 2*sm4Block {
		return nil, opErr("decrypt_cbc", k.name, k.token, ErrInvalidInput, errorf(ErrInvalidInput, "data too short"))
	}
	return k.DecryptCBCWithIV(data[:sm4Block], data[sm4Block:])
}

// EncryptCBCWithIV pads plaintext (PKCS#7) and encrypts it with SM4-CBC and the given IV.
func (k *SM4Key) EncryptCBCWithIV(iv, plaintext []byte) ([]byte, error) {
	if len(iv) != sm4Block {
		return nil, opErr("encrypt_cbc", k.name, k.token, ErrInvalidInput, errorf(ErrInvalidInput, "IV must be 16 bytes"))
	}
	if err := checkLen("encrypt_cbc", k.name, len(plaintext)); err != nil {
		return nil, err
	}
	var out []byte
	err := k.with("encrypt_cbc", true, func(m *SM4Key) error {
		// Copy first: Pad may append into the caller's spare capacity.
		buf := make([]byte, len(plaintext), len(plaintext)+sm4Block)
		copy(buf, plaintext)
		p := padding.NewPKCS7Padding(sm4Block).Pad(buf)
		cipher.NewCBCEncrypter(m.block, iv).CryptBlocks(p, p)
		out = p
		return nil
	})
	return out, err
}

// DecryptCBCWithIV decrypts SM4-CBC with the given IV and removes PKCS#7 padding in constant time.
func (k *SM4Key) DecryptCBCWithIV(iv, ciphertext []byte) ([]byte, error) {
	if len(iv) != sm4Block || len(ciphertext) == 0 || len(ciphertext)%sm4Block != 0 {
		return nil, opErr("decrypt_cbc", k.name, k.token, ErrInvalidInput, errorf(ErrInvalidInput, "bad IV or ciphertext length"))
	}
	if err := checkLen("decrypt_cbc", k.name, len(ciphertext)); err != nil {
		return nil, err
	}
	var out []byte
	err := k.with("decrypt_cbc", false, func(m *SM4Key) error {
		p := make([]byte, len(ciphertext))
		cipher.NewCBCDecrypter(m.block, iv).CryptBlocks(p, ciphertext)
		pt, err := padding.NewPKCS7Padding(sm4Block).ConstantTimeUnpad(p)
		if err != nil {
			zero(p)
			return opErr("decrypt_cbc", k.name, k.token, ErrAuthFailed, nil)
		}
		out = pt
		return nil
	})
	return out, err
}

// CBCMAC computes the 16-byte SM4 CBC-MAC of data (GB/T 15821.1-2020 MAC algorithm 1,
// ISO/IEC 9797-1 padding method 2), as gmsm's cbcmac.NewCBCMAC.
func (k *SM4Key) CBCMAC(data []byte) ([]byte, error) {
	if err := checkLen("cbcmac", k.name, len(data)); err != nil {
		return nil, err
	}
	var out []byte
	err := k.with("cbcmac", true, func(m *SM4Key) error {
		out = cbcmac.NewCBCMAC(m.block, sm4Block).MAC(data)
		return nil
	})
	return out, err
}

// VerifyCBCMAC checks mac (4..16 bytes, a truncated prefix is accepted) against data in constant
// time; it returns ErrAuthFailed on mismatch.
func (k *SM4Key) VerifyCBCMAC(data, mac []byte) error {
	if len(mac) < 4 || len(mac) > sm4Block {
		return opErr("verify_cbcmac", k.name, k.token, ErrInvalidInput, errorf(ErrInvalidInput, "MAC must be 4..16 bytes"))
	}
	if err := checkLen("verify_cbcmac", k.name, len(data)); err != nil {
		return err
	}
	return k.with("verify_cbcmac", false, func(m *SM4Key) error {
		want := cbcmac.NewCBCMAC(m.block, sm4Block).MAC(data)
		if subtle.ConstantTimeCompare(want[:len(mac)], mac) != 1 {
			return opErr("verify_cbcmac", k.name, k.token, ErrAuthFailed, nil)
		}
		return nil
	})
}

// HMACSM3 computes HMAC-SM3(key, data) (32 bytes).
func (k *SM4Key) HMACSM3(data []byte) ([]byte, error) {
	if err := checkLen("hmac", k.name, len(data)); err != nil {
		return nil, err
	}
	var out []byte
	err := k.with("hmac", true, func(m *SM4Key) error {
		h := hmac.New(sm3.New, m.key)
		h.Write(data)
		out = h.Sum(nil)
		return nil
	})
	return out, err
}

// VerifyHMACSM3 checks a full 32-byte HMAC-SM3 in constant time; ErrAuthFailed on mismatch.
func (k *SM4Key) VerifyHMACSM3(data, mac []byte) error {
	if len(mac) != sm3.Size {
		return opErr("verify_hmac", k.name, k.token, ErrInvalidInput, errorf(ErrInvalidInput, "HMAC-SM3 must be 32 bytes"))
	}
	if err := checkLen("verify_hmac", k.name, len(data)); err != nil {
		return err
	}
	return k.with("verify_hmac", false, func(m *SM4Key) error {
		h := hmac.New(sm3.New, m.key)
		h.Write(data)
		if !hmac.Equal(h.Sum(nil), mac) {
			return opErr("verify_hmac", k.name, k.token, ErrAuthFailed, nil)
		}
		return nil
	})
}

// close zeroizes the key bytes (the SM4 round keys inside gmsm's cipher are dropped for the GC).
func (k *SM4Key) close() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return
	}
	k.closed = true
	zero(k.key)
	k.key = nil
	k.block = nil
	k.gcm = nil
}
