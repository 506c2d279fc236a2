package keyvault

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"testing"

	"github.com/emmansun/gmsm/sm2"
	tjsm2 "github.com/tjfoc/gmsm/sm2"
)

// TestTjfocInterop proves vault keys against an independent SM2 implementation (tjfoc/gmsm):
// tjfoc verifies vault signatures, and the vault decrypts tjfoc ciphertexts, on the wrapped and
// the in-token (ECDH1-derive) paths.
func TestTjfocInterop(t *testing.T) {
	priv := newSM2(t)
	v := openWith(t, "wrapped", priv, make([]byte, 16), "")
	k, err := v.SM2Key("sign")
	if err != nil {
		t.Fatal(err)
	}
	pub := k.Public().(*ecdsa.PublicKey)
	tpub := &tjsm2.PublicKey{Curve: tjsm2.P256Sm2(), X: pub.X, Y: pub.Y}
	for i := 0; i < 5; i++ {
		msg := []byte("interop message " + randHex(8))
		sig, err := k.Sign(rand.Reader, msg, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !tpub.Verify(msg, sig) {
			t.Fatal("tjfoc rejects a vault signature")
		}
		if tpub.Verify(append(msg, '!'), sig) {
			t.Fatal("tjfoc accepts a signature for another message")
		}
		for _, mode := range []int{tjsm2.C1C3C2, tjsm2.C1C2C3} {
			ct, err := tjsm2.Encrypt(tpub, msg, rand.Reader, mode)
			if err != nil {
				t.Fatal(err)
			}
			var opts *sm2.DecrypterOpts
			if mode == tjsm2.C1C2C3 {
				opts = sm2.NewPlainDecrypterOpts(sm2.C1C2C3)
			}
			pt, err := k.Decrypt(nil, ct, opts)
			if err != nil || !bytes.Equal(pt, msg) {
				t.Fatalf("mode %d: vault cannot decrypt tjfoc ciphertext: %v", mode, err)
			}
		}
	}
}
