package keyvault

import (
	"crypto"
	"crypto/ecdsa"
	"io"
	"sync"
	"time"

	"github.com/emmansun/gmsm/ecdh"
	"github.com/emmansun/gmsm/sm2"

	"github.com/gmgate/gmgate/pki"
)

// remoteSM2 performs SM2 private-key operations inside a token (native mode).
type remoteSM2 interface {
	// sign signs the raw message with Z_A computed for uid (prehashed=false), or the 32-byte
	// digest e (prehashed=true); it returns a DER signature.
	sign(msg, uid []byte, prehashed bool) ([]byte, error)
	// decrypt decrypts a C1C3C2 raw ciphertext and returns the plaintext.
	decrypt(c1c3c2 []byte) ([]byte, error)
	// tokenName names the token that served the last call (for metrics).
	tokenName() string
}

// SM2Key is one version of an SM2 key held by the vault. It implements crypto.Signer and
// crypto.Decrypter with gmsm semantics, SM2MQV for TLCP ECDHE, and its Public method returns an
// *ecdsa.PublicKey on the SM2 curve exactly like *sm2.PrivateKey.
//
// In wrapped and file mode the private scalar lives in memory (unwrapped once at load) and no
// token call happens per operation; in native mode every operation is a token call.
type SM2Key struct {
	name     string
	version  int
	token    string
	obs      Observer
	pub      *ecdsa.PublicKey
	uid      []byte
	signOpts *sm2.SM2SignerOption

	mu       sync.RWMutex
	closed   bool
	priv     *sm2.PrivateKey
	ecdhPriv *ecdh.PrivateKey
	remote   remoteSM2
}

func newSoftSM2Key(name string, version int, token string, obs Observer, priv *sm2.PrivateKey, uid []byte) (*SM2Key, error) {
	ep, err := priv.ECDH()
	if err != nil {
		return nil, errorf(ErrIntegrity, "SM2 key cannot be converted for key agreement")
	}
	pub := priv.PublicKey // copy of the public part
	k := &SM2Key{name: name, version: version, token: token, obs: obs, pub: &pub, priv: priv, ecdhPriv: ep}
	k.setUID(uid)
	return k, nil
}

func (k *SM2Key) setUID(uid []byte) {
	if len(uid) == 0 {
		uid = []byte(pki.DefaultUserID)
	}
	k.uid = append([]byte(nil), uid...)
	k.signOpts = sm2.NewSM2SignerOption(true, k.uid)
}

// Name returns the key's vault name.
func (k *SM2Key) Name() string { return k.name }

// Version returns the key version (1-based).
func (k *SM2Key) Version() int { return k.version }

// UserID returns the SM2 distinguishing identifier used when opts do not name one.
func (k *SM2Key) UserID() []byte { return append([]byte(nil), k.uid...) }

// Public returns the *ecdsa.PublicKey on the SM2 curve.
func (k *SM2Key) Public() crypto.PublicKey { return k.pub }

// Sign signs with gmsm semantics:
//   - opts nil or sm2.DefaultSM2SignerOpts: msg is the raw message; Z_A uses the key's configured
//     user ID (default 1234567812345678);
//   - opts another *sm2.SM2SignerOption: as gmsm (its own user ID, raw message when forceGMSign);
//   - any other opts: msg is a 32-byte digest e = SM3(Z_A || M) computed by the caller.
//
// The signature is DER. rand nil gives gmsm's deterministic signature (soft keys only).
func (k *SM2Key) Sign(rand io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	start := time.Now()
	sig, tok, err := k.sign(rand, msg, opts)
	k.obs.ObserveOperation(tok, k.name, "sign", time.Since(start), err)
	return sig, err
}

func (k *SM2Key) sign(rand io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, string, error) {
	if len(msg) > maxMessage {
		return nil, k.token, opErr("sign", k.name, k.token, ErrInvalidInput, nil)
	}
	prehashed := false
	var uid []byte
	switch o := opts.(type) {
	case nil:
		opts, uid = k.signOpts, k.uid
	case *sm2.SM2SignerOption:
		if o == sm2.DefaultSM2SignerOpts {
			opts, uid = k.signOpts, k.uid
		} else {
			var gm bool
			uid, gm = signerOptionFields(o)
			prehashed = !gm
		}
	default:
		prehashed = true
	}
	if prehashed && len(msg) != 32 {
		return nil, k.token, opErr("sign", k.name, k.token, ErrInvalidInput, errorf(ErrInvalidInput, "digest must be 32 bytes, got %d", len(msg)))
	}
	k.mu.RLock()
	defer k.mu.RUnlock()
	if k.closed {
		return nil, k.token, opErr("sign", k.name, k.token, ErrClosed, nil)
	}
	if k.remote != nil {
		sig, err := k.remote.sign(msg, uid, prehashed)
		return sig, k.remote.tokenName(), err
	}
	sig, err := k.priv.Sign(rand, msg, opts)
	if err != nil {
		return nil, k.token, opErr("sign", k.name, k.token, ErrInvalidInput, err)
	}
	return sig, k.token, nil
}

// Decrypt decrypts an SM2 ciphertext: C1C3C2 raw by default (opts nil), ASN.1 when the
// ciphertext is a SEQUENCE, or as gmsm's *sm2.DecrypterOpts say (e.g. C1C2C3).
func (k *SM2Key) Decrypt(rand io.Reader, msg []byte, opts crypto.DecrypterOpts) ([]byte, error) {
	start := time.Now()
	pt, tok, err := k.decrypt(msg, opts)
	k.obs.ObserveOperation(tok, k.name, "decrypt", time.Since(start), err)
	return pt, err
}

func (k *SM2Key) decrypt(msg []byte, opts crypto.DecrypterOpts) ([]byte, string, error) {
	if len(msg) > maxMessage {
		return nil, k.token, opErr("decrypt", k.name, k.token, ErrInvalidInput, nil)
	}
	k.mu.RLock()
	defer k.mu.RUnlock()
	if k.closed {
		return nil, k.token, opErr("decrypt", k.name, k.token, ErrClosed, nil)
	}
	if k.remote != nil {
		raw, err := normalizeCiphertext(msg, opts)
		if err != nil {
			return nil, k.token, opErr("decrypt", k.name, k.token, ErrInvalidInput, err)
		}
		pt, err := k.remote.decrypt(raw)
		return pt, k.remote.tokenName(), err
	}
	var o crypto.DecrypterOpts
	if d, ok := opts.(*sm2.DecrypterOpts); ok && d != nil {
		o = d
	}
	pt, err := k.priv.Decrypt(nil, msg, o)
	if err != nil {
		return nil, k.token, opErr("decrypt", k.name, k.token, ErrAuthFailed, err)
	}
	return pt, k.token, nil
}

// SM2MQV computes the SM2 key-agreement point (GB/T 32918.3) with this key as the local static
// key, as gmsm's (*ecdh.PrivateKey).SM2MQV does. Native-mode keys return ErrUnsupported.
func (k *SM2Key) SM2MQV(ephemeral *ecdh.PrivateKey, peerStatic, peerEphemeral *ecdh.PublicKey) (*ecdh.PublicKey, error) {
	start := time.Now()
	p, err := k.mqv(ephemeral, peerStatic, peerEphemeral)
	k.obs.ObserveOperation(k.token, k.name, "mqv", time.Since(start), err)
	return p, err
}

func (k *SM2Key) mqv(ephemeral *ecdh.PrivateKey, peerStatic, peerEphemeral *ecdh.PublicKey) (*ecdh.PublicKey, error) {
	if ephemeral == nil || peerStatic == nil || peerEphemeral == nil {
		return nil, opErr("mqv", k.name, k.token, ErrInvalidInput, nil)
	}
	k.mu.RLock()
	defer k.mu.RUnlock()
	if k.closed {
		return nil, opErr("mqv", k.name, k.token, ErrClosed, nil)
	}
	if k.ecdhPriv == nil {
		return nil, opErr("mqv", k.name, k.token, ErrUnsupported, nil)
	}
	p, err := k.ecdhPriv.SM2MQV(ephemeral, peerStatic, peerEphemeral)
	if err != nil {
		return nil, opErr("mqv", k.name, k.token, ErrInvalidInput, err)
	}
	return p, nil
}

// ECDH performs plain ECDH with this key on the SM2 curve (x coordinate of d*Q).
func (k *SM2Key) ECDH(remote *ecdh.PublicKey) ([]byte, error) {
	if remote == nil {
		return nil, opErr("ecdh", k.name, k.token, ErrInvalidInput, nil)
	}
	k.mu.RLock()
	defer k.mu.RUnlock()
	if k.closed {
		return nil, opErr("ecdh", k.name, k.token, ErrClosed, nil)
	}
	if k.ecdhPriv == nil {
		return nil, opErr("ecdh", k.name, k.token, ErrUnsupported, nil)
	}
	out, err := k.ecdhPriv.ECDH(remote)
	if err != nil {
		return nil, opErr("ecdh", k.name, k.token, ErrInvalidInput, err)
	}
	return out, nil
}

// close zeroizes the private scalar. Later operations fail with ErrClosed.
func (k *SM2Key) close() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return
	}
	k.closed = true
	if k.priv != nil && k.priv.D != nil {
		w := k.priv.D.Bits()
		for i := range w {
			w[i] = 0
		}
		k.priv.D.SetInt64(0)
	}
	k.priv = nil
	k.ecdhPriv = nil
	k.remote = nil
}

// maxMessage bounds inputs to one vault operation (16 MiB).
const maxMessage = 16 << 20

// SignMessage implements crypto.MessageSigner like gmsm's *sm2.PrivateKey: msg is always the raw
// message; the user ID comes from an *sm2.SM2SignerOption or, otherwise, the key's configured one.
func (k *SM2Key) SignMessage(rand io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	if o, ok := opts.(*sm2.SM2SignerOption); ok && o != sm2.DefaultSM2SignerOpts {
		uid, _ := signerOptionFields(o)
		return k.Sign(rand, msg, sm2.NewSM2SignerOption(true, uid))
	}
	return k.Sign(rand, msg, nil)
}
