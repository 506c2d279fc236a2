package keyvault

import (
	"bytes"
	"crypto"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/rand"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emmansun/gmsm/cbcmac"
	"github.com/emmansun/gmsm/ecdh"
	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/sm4"
	"github.com/emmansun/gmsm/smx509"
)

var backends = []string{"file", "file-encrypted", "wrapped", "wrapped-dir"}

// openWith builds a vault holding priv as SM2 key "sign" and sm4key as SM4 key "sym" on the
// given backend. For token backends the keys are imported through an admin vault, which is then
// closed, and a fresh vault is opened: the returned vault really loaded them from the token.
func openWith(t testing.TB, kind string, priv *sm2.PrivateKey, sm4key []byte, uid string, opts ...Option) *Vault {
	t.Helper()
	dir := t.TempDir()
	var cfg Config
	switch kind {
	case "file", "file-encrypted":
		signKC := KeyConfig{Name: "sign", Type: KeyTypeSM2, UserID: uid}
		if kind == "file" {
			signKC.Ref = "file:" + writeFile(t, dir, "sign.pem", sm2PEM(t, priv, nil))
		} else {
			signKC.Ref = "file:" + writeFile(t, dir, "sign.pem", sm2PEM(t, priv, []byte("correct horse")))
			signKC.PasswordFile = writeFile(t, dir, "pw", []byte("correct horse\n"))
		}
		symPath := writeFile(t, dir, "sym.key", []byte(hex.EncodeToString(sm4key)+"\n"))
		cfg.Keys = []KeyConfig{signKC, {Name: "sym", Type: KeyTypeSM4, Ref: "file:" + symPath}}
		v, err := Open(cfg, opts...)
		if err != nil {
			t.Fatalf("open %s: %v", kind, err)
		}
		t.Cleanup(func() { v.Close() })
		return v
	}
	needHSM(t)
	tc := tokenCfg("main", tokMain)
	if kind == "wrapped-dir" {
		tc.BlobStore = filepath.Join(dir, "blobs")
	}
	signObj, symObj := uniqueObject("sign"), uniqueObject("sym")
	cfg = Config{Tokens: []TokenConfig{tc}, Keys: []KeyConfig{
		{Name: "sign", Type: KeyTypeSM2, Ref: "pkcs11:token=" + tokMain + ";object=" + signObj, UserID: uid},
		{Name: "sym", Type: KeyTypeSM4, Ref: "pkcs11:token=" + tokMain + ";object=" + symObj},
	}}
	admin, err := Open(cfg, WithAdmin())
	if err != nil {
		t.Fatalf("admin open: %v", err)
	}
	if _, err := admin.Init(""); err != nil {
		t.Fatalf("init: %v", err)
	}
	if _, err := admin.Import("sign", sm2PEM(t, priv, nil), nil); err != nil {
		t.Fatalf("import sm2: %v", err)
	}
	if _, err := admin.Import("sym", sm4key, nil); err != nil {
		t.Fatalf("import sm4: %v", err)
	}
	admin.Close()
	v, err := Open(cfg, opts...)
	if err != nil {
		t.Fatalf("open %s: %v", kind, err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

func derSig(r, s []byte) []byte {
	out, _ := asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(r), new(big.Int).SetBytes(s)})
	return out
}

// TestStandardVectorsThroughVault runs the GB/T 32918 and SM4 vectors through every backend.
func TestStandardVectorsThroughVault(t *testing.T) {
	vec := loadVectors(t)
	for _, kind := range backends {
		t.Run(kind, func(t *testing.T) {
			priv, err := sm2.NewPrivateKey(unhex(t, vec.SM2Sign.D))
			if err != nil {
				t.Fatal(err)
			}
			v := openWith(t, kind, priv, unhex(t, vec.SM4CBC.Key), "")
			signer, err := v.Signer("sign")
			if err != nil {
				t.Fatal(err)
			}
			pub, ok := signer.Public().(*ecdsa.PublicKey)
			if !ok || pub.Curve != sm2.P256() {
				t.Fatalf("Public() is %T, want *ecdsa.PublicKey on SM2", signer.Public())
			}
			if pub.X.Cmp(new(big.Int).SetBytes(unhex(t, vec.SM2Sign.X))) != 0 || pub.Y.Cmp(new(big.Int).SetBytes(unhex(t, vec.SM2Sign.Y))) != 0 {
				t.Fatal("vault public key differs from the standard's")
			}
			msg, uid := []byte(vec.SM2Sign.Message), []byte(vec.SM2Sign.UserID)
			// 1. The standard's signature verifies with the vault key's public key.
			if !sm2.VerifyASN1WithSM2(pub, uid, msg, derSig(unhex(t, vec.SM2Sign.R), unhex(t, vec.SM2Sign.S))) {
				t.Fatal("standard signature does not verify with the vault public key")
			}
			// 2. Vault signatures verify with gmsm (and not for another message).
			sig, err := signer.Sign(rand.Reader, msg, sm2.DefaultSM2SignerOpts)
			if err != nil {
				t.Fatal(err)
			}
			if !sm2.VerifyASN1WithSM2(pub, uid, msg, sig) {
				t.Fatal("vault signature does not verify with gmsm")
			}
			if sm2.VerifyASN1WithSM2(pub, uid, []byte("other"), sig) {
				t.Fatal("signature verified for a different message")
			}
			// 3. The standard ciphertext C1||C3||C2 decrypts through the vault, raw and ASN.1.
			dec, err := v.Decrypter("sign")
			if err != nil {
				t.Fatal(err)
			}
			ct := append(append(unhex(t, vec.SM2Enc.C1), unhex(t, vec.SM2Enc.C3)...), unhex(t, vec.SM2Enc.C2)...)
			pt, err := dec.Decrypt(nil, ct, nil)
			if err != nil || string(pt) != vec.SM2Enc.Message {
				t.Fatalf("decrypt standard ciphertext: %q, %v", pt, err)
			}
			asn, err := sm2.PlainCiphertext2ASN1(ct, sm2.C1C3C2)
			if err != nil {
				t.Fatal(err)
			}
			pt, err = dec.Decrypt(nil, asn, sm2.ASN1DecrypterOpts)
			if err != nil || string(pt) != vec.SM2Enc.Message {
				t.Fatalf("decrypt ASN.1 standard ciphertext: %q, %v", pt, err)
			}
			// 4. SM4-CBC vector (first two blocks; the vault adds a PKCS#7 block).
			k4, err := v.SM4("sym")
			if err != nil {
				t.Fatal(err)
			}
			cbc, err := k4.EncryptCBCWithIV(unhex(t, vec.SM4CBC.IV), unhex(t, vec.SM4CBC.Plaintext))
			if err != nil {
				t.Fatal(err)
			}
			want := unhex(t, vec.SM4CBC.Ciphertext)
			if !bytes.Equal(cbc[:len(want)], want) || len(cbc) != len(want)+16 {
				t.Fatalf("SM4-CBC: got %x want %x", cbc, want)
			}
			back, err := k4.DecryptCBCWithIV(unhex(t, vec.SM4CBC.IV), cbc)
			if err != nil || !bytes.Equal(back, unhex(t, vec.SM4CBC.Plaintext)) {
				t.Fatalf("SM4-CBC decrypt: %v", err)
			}
		})
	}
}

// TestSM4GCMVector checks RFC 8998 A.1 through a vault SM4 key.
func TestSM4GCMVector(t *testing.T) {
	vec := loadVectors(t)
	for _, kind := range []string{"file", "wrapped"} {
		t.Run(kind, func(t *testing.T) {
			v := openWith(t, kind, newSM2(t), unhex(t, vec.SM4GCM.Key), "")
			k, err := v.SM4("sym")
			if err != nil {
				t.Fatal(err)
			}
			out, err := k.SealGCMWithNonce(unhex(t, vec.SM4GCM.IV), unhex(t, vec.SM4GCM.Plaintext), unhex(t, vec.SM4GCM.AAD))
			if err != nil {
				t.Fatal(err)
			}
			want := append(unhex(t, vec.SM4GCM.Ciphertext), unhex(t, vec.SM4GCM.Tag)...)
			if !bytes.Equal(out, want) {
				t.Fatalf("SM4-GCM: got %x want %x", out, want)
			}
			pt, err := k.OpenGCMWithNonce(unhex(t, vec.SM4GCM.IV), want, unhex(t, vec.SM4GCM.AAD))
			if err != nil || !bytes.Equal(pt, unhex(t, vec.SM4GCM.Plaintext)) {
				t.Fatalf("open: %v", err)
			}
		})
	}
}

func TestSignOptions(t *testing.T) {
	priv := newSM2(t)
	const uid = "ALICE123@YAHOO.COM"
	for _, kind := range []string{"file", "wrapped"} {
		t.Run(kind, func(t *testing.T) {
			v := openWith(t, kind, priv, make([]byte, 16), uid)
			k, err := v.SM2Key("sign")
			if err != nil {
				t.Fatal(err)
			}
			pub := &priv.PublicKey
			msg := []byte("payment 100.00 CNY")
			e, _ := sm2.CalculateSM2Hash(pub, msg, []byte(uid))
			cases := []struct {
				name   string
				msg    []byte
				opts   crypto.SignerOpts
				verify func(sig []byte) bool
				errIs  error
			}{
				{"nil opts uses configured uid", msg, nil, func(s []byte) bool { return sm2.VerifyASN1WithSM2(pub, []byte(uid), msg, s) }, nil},
				{"default opts uses configured uid", msg, sm2.DefaultSM2SignerOpts, func(s []byte) bool { return sm2.VerifyASN1WithSM2(pub, []byte(uid), msg, s) }, nil},
				{"explicit uid", msg, sm2.NewSM2SignerOption(true, []byte("bob")), func(s []byte) bool { return sm2.VerifyASN1WithSM2(pub, []byte("bob"), msg, s) }, nil},
				{"explicit default uid", msg, sm2.NewSM2SignerOption(true, nil), func(s []byte) bool { return sm2.VerifyASN1WithSM2(pub, nil, msg, s) }, nil},
				{"digest with crypto.Hash", e, crypto.SHA256, func(s []byte) bool { return sm2.VerifyASN1(pub, e, s) }, nil},
				{"digest with forceGMSign=false", e, sm2.NewSM2SignerOption(false, nil), func(s []byte) bool { return sm2.VerifyASN1(pub, e, s) }, nil},
				{"short digest rejected", e[:20], crypto.SHA256, nil, ErrInvalidInput},
			}
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					sig, err := k.Sign(rand.Reader, c.msg, c.opts)
					if c.errIs != nil {
						mustKind(t, err, c.errIs)
						return
					}
					if err != nil {
						t.Fatal(err)
					}
					if !c.verify(sig) {
						t.Fatal("signature does not verify")
					}
					if sm2.VerifyASN1WithSM2(pub, []byte("someone else"), msg, sig) {
						t.Fatal("signature verified with the wrong user ID")
					}
				})
			}
			// crypto.MessageSigner path as used by smx509.
			sig, err := crypto.SignMessage(k, rand.Reader, msg, sm2.DefaultSM2SignerOpts)
			if err != nil || !sm2.VerifyASN1WithSM2(pub, []byte(uid), msg, sig) {
				t.Fatalf("SignMessage: %v", err)
			}
		})
	}
}

func TestDecryptEncodings(t *testing.T) {
	priv := newSM2(t)
	v := openWith(t, "wrapped", priv, make([]byte, 16), "")
	dec, err := v.Decrypter("sign")
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("card 6222 0000 1111 2222")
	c1c3c2, _ := sm2.Encrypt(rand.Reader, &priv.PublicKey, msg, sm2.NewPlainEncrypterOpts(sm2.MarshalUncompressed, sm2.C1C3C2))
	c1c2c3, _ := sm2.Encrypt(rand.Reader, &priv.PublicKey, msg, sm2.NewPlainEncrypterOpts(sm2.MarshalUncompressed, sm2.C1C2C3))
	asn, _ := sm2.EncryptASN1(rand.Reader, &priv.PublicKey, msg)
	tampered := append([]byte(nil), c1c3c2...)
	tampered[len(tampered)-1] ^= 1
	cases := []struct {
		name  string
		ct    []byte
		opts  crypto.DecrypterOpts
		errIs error
	}{
		{"c1c3c2 default", c1c3c2, nil, nil},
		{"c1c2c3 opts", c1c2c3, sm2.NewPlainDecrypterOpts(sm2.C1C2C3), nil},
		{"asn1", asn, sm2.ASN1DecrypterOpts, nil},
		{"asn1 auto", asn, nil, nil},
		{"tampered", tampered, nil, ErrAuthFailed},
		{"wrong order", c1c2c3, nil, ErrAuthFailed},
		{"truncated", c1c3c2[:50], nil, ErrAuthFailed},
		{"empty", nil, nil, ErrAuthFailed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pt, err := dec.Decrypt(nil, c.ct, c.opts)
			if c.errIs != nil {
				mustKind(t, err, c.errIs)
				if pt != nil {
					t.Fatal("plaintext returned with an error")
				}
				return
			}
			if err != nil || !bytes.Equal(pt, msg) {
				t.Fatalf("got %q, %v", pt, err)
			}
		})
	}
}

func TestSM2MQV(t *testing.T) {
	privA, privB := newSM2(t), newSM2(t)
	v := openWith(t, "wrapped", privA, make([]byte, 16), "")
	k, err := v.SM2Key("sign")
	if err != nil {
		t.Fatal(err)
	}
	ephA, _ := ecdh.P256().GenerateKey(rand.Reader)
	ephB, _ := ecdh.P256().GenerateKey(rand.Reader)
	staticA, _ := privA.ECDH()
	staticB, _ := privB.ECDH()
	got, err := k.SM2MQV(ephA, staticB.PublicKey(), ephB.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	want, err := staticA.SM2MQV(ephA, staticB.PublicKey(), ephB.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	peer, err := staticB.SM2MQV(ephB, staticA.PublicKey(), ephA.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(want) || !got.Equal(peer) {
		t.Fatal("SM2MQV through the vault differs from gmsm / the peer")
	}
	other, _ := ecdh.P256().GenerateKey(rand.Reader)
	bad, err := k.SM2MQV(other, staticB.PublicKey(), ephB.PublicKey())
	if err == nil && bad.Equal(want) {
		t.Fatal("different ephemeral gave the same point")
	}
	if _, err := k.SM2MQV(nil, staticB.PublicKey(), ephB.PublicKey()); err == nil {
		t.Fatal("nil ephemeral accepted")
	}
	sh, err := k.ECDH(staticB.PublicKey())
	sh2, _ := staticB.ECDH(staticA.PublicKey())
	if err != nil || !bytes.Equal(sh, sh2) {
		t.Fatalf("ECDH mismatch: %v", err)
	}
}

func TestSM4Operations(t *testing.T) {
	key := []byte("0123456789abcdef")
	for _, kind := range []string{"file", "wrapped"} {
		t.Run(kind, func(t *testing.T) {
			v := openWith(t, kind, newSM2(t), key, "")
			k, err := v.SM4("sym")
			if err != nil {
				t.Fatal(err)
			}
			block, _ := sm4.NewCipher(key)
			msg, aad := []byte("settle batch 2026-11-25"), []byte("hdr")
			sealed, err := k.SealGCM(msg, aad)
			if err != nil {
				t.Fatal(err)
			}
			g, _ := cipher.NewGCM(block)
			if pt, err := g.Open(nil, sealed[:12], sealed[12:], aad); err != nil || !bytes.Equal(pt, msg) {
				t.Fatal("vault GCM output does not open with gmsm")
			}
			pt, err := k.OpenGCM(sealed, aad)
			if err != nil || !bytes.Equal(pt, msg) {
				t.Fatalf("open: %v", err)
			}
			for i := range []int{0, 12, len(sealed) - 1} {
				bad := append([]byte(nil), sealed...)
				bad[[]int{0, 12, len(sealed) - 1}[i]] ^= 0x80
				_, err := k.OpenGCM(bad, aad)
				mustKind(t, err, ErrAuthFailed)
			}
			_, err = k.OpenGCM(sealed, []byte("other"))
			mustKind(t, err, ErrAuthFailed)
			_, err = k.OpenGCM(sealed[:10], aad)
			mustKind(t, err, ErrInvalidInput)

			// CBC: round trip for every length around block boundaries; caller's buffer untouched.
			for n := 0; n <= 33; n++ {
				p := bytes.Repeat([]byte{byte(n)}, n)
				buf := make([]byte, n, n+64)
				copy(buf, p)
				ct, err := k.EncryptCBC(buf)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(buf, p) || !bytes.Equal(buf[:cap(buf)][n:n+16], make([]byte, 16)) {
					t.Fatal("EncryptCBC modified the caller's buffer")
				}
				back, err := k.DecryptCBC(ct)
				if err != nil || !bytes.Equal(back, p) {
					t.Fatalf("CBC n=%d: %v", n, err)
				}
			}
			ct, _ := k.EncryptCBC(msg)
			ct[len(ct)-17] ^= 1 // corrupts the last block's padding after decryption
			if _, err := k.DecryptCBC(ct); err == nil {
				t.Fatal("bad padding accepted")
			} else {
				mustKind(t, err, ErrAuthFailed)
			}
			_, err = k.DecryptCBC(make([]byte, 20))
			mustKind(t, err, ErrInvalidInput)

			// CBC-MAC matches gmsm's cbcmac; verify is strict.
			mac, err := k.CBCMAC(msg)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(mac, cbcmac.NewCBCMAC(block, 16).MAC(msg)) {
				t.Fatal("CBC-MAC differs from gmsm")
			}
			if err := k.VerifyCBCMAC(msg, mac); err != nil {
				t.Fatal(err)
			}
			if err := k.VerifyCBCMAC(msg, mac[:8]); err != nil {
				t.Fatalf("truncated MAC: %v", err)
			}
			mac[3] ^= 1
			mustKind(t, k.VerifyCBCMAC(msg, mac), ErrAuthFailed)
			mustKind(t, k.VerifyCBCMAC(msg, mac[:2]), ErrInvalidInput)

			// HMAC-SM3 matches crypto/hmac with sm3.
			h, err := k.HMACSM3(msg)
			if err != nil {
				t.Fatal(err)
			}
			ref := hmac.New(sm3.New, key)
			ref.Write(msg)
			if !bytes.Equal(h, ref.Sum(nil)) {
				t.Fatal("HMAC-SM3 differs")
			}
			if err := k.VerifyHMACSM3(msg, h); err != nil {
				t.Fatal(err)
			}
			h[31] ^= 1
			mustKind(t, k.VerifyHMACSM3(msg, h), ErrAuthFailed)
			mustKind(t, k.VerifyHMACSM3(msg, h[:16]), ErrInvalidInput)

			// Type confusion is refused.
			_, err = v.SM4("sign")
			mustKind(t, err, ErrWrongKeyType)
			_, err = v.Signer("sym")
			mustKind(t, err, ErrWrongKeyType)
			_, err = v.Signer("nope")
			mustKind(t, err, ErrKeyNotFound)
			_, err = v.Signer("sign@0")
			mustKind(t, err, ErrInvalidInput)
		})
	}
}

func TestCertificate(t *testing.T) {
	priv := newSM2(t)
	dir := t.TempDir()
	keyPath := writeFile(t, dir, "k.pem", sm2PEM(t, priv, nil))
	tmpl := &smx509.Certificate{SerialNumber: big.NewInt(7), Subject: pkixName("gmgate test"), BasicConstraintsValid: true}
	der, err := smx509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	certPath := writeFile(t, dir, "c.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	v, err := Open(Config{Keys: []KeyConfig{{Name: "tls", Type: KeyTypeSM2, Ref: "file:" + keyPath, Certificate: certPath}}})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	certs, err := v.Certificate("tls")
	if err != nil || len(certs) != 1 || certs[0].SerialNumber.Int64() != 7 {
		t.Fatalf("certificate: %v", err)
	}
	exp, err := v.ExportPublic("tls")
	if err != nil || !strings.Contains(exp.CertificatePEM, "CERTIFICATE") || !strings.Contains(exp.String(), "PUBLIC KEY") {
		t.Fatalf("export: %v", err)
	}
	// A certificate for another key is refused at open.
	other := writeFile(t, dir, "k2.pem", sm2PEM(t, newSM2(t), nil))
	_, err = Open(Config{Keys: []KeyConfig{{Name: "tls", Type: KeyTypeSM2, Ref: "file:" + other, Certificate: certPath}}})
	mustKind(t, err, ErrConfig)
	_, err = v.Certificate("nope")
	mustKind(t, err, ErrKeyNotFound)
}

func TestFileBackend(t *testing.T) {
	dir := t.TempDir()
	priv := newSM2(t)
	cases := []struct {
		name  string
		data  []byte
		pwEnv string
		errIs error
	}{
		{"pkcs8", sm2PEM(t, priv, nil), "", nil},
		{"encrypted pkcs8", sm2PEM(t, priv, []byte("pw1")), "KV_TEST_PW_OK", nil},
		{"encrypted without password", sm2PEM(t, priv, []byte("pw1")), "", ErrPassword},
		{"encrypted wrong password", sm2PEM(t, priv, []byte("pw1")), "KV_TEST_PW_BAD", ErrPassword},
		{"garbage", []byte("not a key"), "", ErrInvalidInput},
		{"sm4 in sm2 slot", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}}), "", ErrInvalidInput},
	}
	t.Setenv("KV_TEST_PW_OK", "pw1")
	t.Setenv("KV_TEST_PW_BAD", "pw2")
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := writeFile(t, dir, strings.Repeat("k", i+1)+".pem", c.data)
			v, err := Open(Config{Keys: []KeyConfig{{Name: "k", Type: KeyTypeSM2, Ref: "file:" + p, PasswordEnv: c.pwEnv}}})
			if c.errIs != nil {
				mustKind(t, err, c.errIs)
				if strings.Contains(err.Error(), "pw1") {
					t.Fatal("password leaked into error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer v.Close()
			pub, _ := v.PublicKey("k")
			if !priv.PublicKey.Equal(pub) {
				t.Fatal("wrong key loaded")
			}
		})
	}
	// Generate writes new files; rotate is unsupported; a second generate refuses.
	cfg := Config{Keys: []KeyConfig{
		{Name: "g2", Type: KeyTypeSM2, Ref: "file:" + filepath.Join(dir, "g2.pem")},
		{Name: "g4", Type: KeyTypeSM4, Ref: "file:" + filepath.Join(dir, "g4.pem")},
	}}
	_, err := Open(cfg)
	mustKind(t, err, ErrKeyNotFound)
	admin, err := Open(cfg, WithAdmin())
	if err != nil {
		t.Fatal(err)
	}
	info, err := admin.Generate("g2")
	if err != nil || info.Current != 1 {
		t.Fatalf("generate: %v", err)
	}
	if _, err := admin.Generate("g4"); err != nil {
		t.Fatal(err)
	}
	_, err = admin.Generate("g2")
	mustKind(t, err, ErrExists)
	_, err = admin.Rotate("g2")
	mustKind(t, err, ErrUnsupported)
	pub1, _ := admin.PublicKey("g2")
	admin.Close()
	v, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	pub2, _ := v.PublicKey("g2")
	if !pub1.(*ecdsa.PublicKey).Equal(pub2) {
		t.Fatal("generated file key not reloaded")
	}
}

func TestClose(t *testing.T) {
	for _, kind := range []string{"file", "wrapped"} {
		t.Run(kind, func(t *testing.T) {
			v := openWith(t, kind, newSM2(t), make([]byte, 16), "")
			k, _ := v.SM2Key("sign")
			s4, _ := v.SM4("sym")
			if err := v.Close(); err != nil {
				t.Fatal(err)
			}
			_, err := k.Sign(rand.Reader, []byte("m"), nil)
			mustKind(t, err, ErrClosed)
			_, err = k.Decrypt(nil, make([]byte, 200), nil)
			mustKind(t, err, ErrClosed)
			_, err = s4.SealGCM([]byte("m"), nil)
			mustKind(t, err, ErrClosed)
			_, err = v.Signer("sign")
			mustKind(t, err, ErrClosed)
			if k.priv != nil || s4.key != nil {
				t.Fatal("key material not dropped")
			}
			if v.Close() != nil {
				t.Fatal("second close failed")
			}
		})
	}
}
