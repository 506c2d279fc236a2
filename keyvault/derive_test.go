package keyvault

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/emmansun/gmsm/sm2"
)

// TestFinishSM2Decrypt checks the y-recovery and C3 selection against gmsm, with x2 computed
// in software (x of d·C1).
func TestFinishSM2Decrypt(t *testing.T) {
	priv := newSM2(t)
	ep, _ := priv.ECDH()
	for i := 0; i < 20; i++ {
		msg := make([]byte, 1+i*7)
		rand.Read(msg)
		ct, _ := sm2.Encrypt(rand.Reader, &priv.PublicKey, msg, nil)
		c1, c3, c2 := ct[:65], ct[65:97], ct[97:]
		c1pub, err := sm2.NewPublicKey(c1)
		if err != nil {
			t.Fatal(err)
		}
		ec1, _ := sm2.PublicKeyToECDH(c1pub)
		x2, err := ep.ECDH(ec1)
		if err != nil {
			t.Fatal(err)
		}
		pt, err := finishSM2Decrypt(x2, c2, c3)
		if err != nil || !bytes.Equal(pt, msg) {
			t.Fatalf("iteration %d: %v", i, err)
		}
		bad := bytes.Clone(c3)
		bad[0] ^= 1
		if _, err := finishSM2Decrypt(x2, c2, bad); !errors.Is(err, ErrAuthFailed) {
			t.Fatal("bad C3 accepted")
		}
		if _, err := finishSM2Decrypt(x2[:31], c2, c3); !errors.Is(err, ErrAuthFailed) {
			t.Fatal("short x2 accepted")
		}
	}
}

// TestTokenDecrypt keeps the SM2 key inside SoftHSM2 as an SM2-curve EC key and decrypts with
// CKM_ECDH1_DERIVE, including the GB/T 32918.4 standard ciphertext.
func TestTokenDecrypt(t *testing.T) {
	needHSM(t)
	vec := loadVectors(t)
	obj, objVec := uniqueObject("td"), uniqueObject("tdvec")
	cfg := Config{Tokens: []TokenConfig{tokenCfg("main", tokMain)}, Keys: []KeyConfig{
		{Name: "enc", Type: KeyTypeSM2, TokenDecrypt: true, Ref: "pkcs11:token=" + tokMain + ";object=" + obj},
		{Name: "vec", Type: KeyTypeSM2, TokenDecrypt: true, Ref: "pkcs11:token=" + tokMain + ";object=" + objVec},
	}}
	admin, err := Open(cfg, WithAdmin())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.Generate("enc"); err != nil {
		t.Fatal(err)
	}
	std, _ := sm2.NewPrivateKey(unhex(t, vec.SM2Sign.D))
	if _, err := admin.Import("vec", sm2PEM(t, std, nil), nil); err != nil {
		t.Fatal(err)
	}
	v, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()

	dec, err := v.Decrypter("vec")
	if err != nil {
		t.Fatal(err)
	}
	if !dec.Public().(*ecdsa.PublicKey).Equal(&std.PublicKey) {
		t.Fatal("token public key differs from the standard key")
	}
	ct := append(append(unhex(t, vec.SM2Enc.C1), unhex(t, vec.SM2Enc.C3)...), unhex(t, vec.SM2Enc.C2)...)
	pt, err := dec.Decrypt(nil, ct, nil)
	if err != nil || string(pt) != vec.SM2Enc.Message {
		t.Fatalf("standard ciphertext in token: %q %v", pt, err)
	}

	d2, _ := v.Decrypter("enc")
	pub := d2.Public().(*ecdsa.PublicKey)
	for _, n := range []int{1, 32, 48, 100} {
		msg := make([]byte, n)
		rand.Read(msg)
		c, _ := sm2.EncryptASN1(rand.Reader, pub, msg)
		got, err := d2.Decrypt(nil, c, nil)
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("len %d: %v", n, err)
		}
	}
	c, _ := sm2.Encrypt(rand.Reader, pub, []byte("x"), nil)
	c[len(c)-1] ^= 1
	_, err = d2.Decrypt(nil, c, nil)
	mustKind(t, err, ErrAuthFailed)
	_, err = d2.Decrypt(nil, ct, nil) // someone else's ciphertext
	mustKind(t, err, ErrAuthFailed)

	_, err = v.Signer("enc")
	mustKind(t, err, ErrUnsupported)
	// Rotation adds a version in the token; the old one still decrypts.
	old, _ := sm2.Encrypt(rand.Reader, pub, []byte("old"), nil)
	if r, err := admin.Rotate("enc"); err != nil || r.Current != 2 {
		t.Fatalf("rotate: %v", err)
	}
	if err := v.Reload(); err != nil {
		t.Fatal(err)
	}
	d1, _ := v.Decrypter("enc@1")
	if got, err := d1.Decrypt(nil, old, nil); err != nil || string(got) != "old" {
		t.Fatalf("old version: %v", err)
	}
	// The private key object is sensitive and not extractable.
	ctx := helperCtx(t)
	s, _ := ctx.OpenSession(v.tokens[0].slot, 6)
	defer ctx.CloseSession(s)
	hs, _ := findAll(ctx, s, privTemplate(obj+"@1"), 2)
	if len(hs) != 1 {
		t.Fatalf("found %d private objects", len(hs))
	}
	if _, err := ctx.GetAttributeValue(s, hs[0], valueTemplate()); err == nil {
		t.Fatal("private scalar readable from the token")
	}
}
