package keyvault

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/asn1"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/emmansun/gmsm/sm2"
	"github.com/gmgate/gmgate/keyvault/internal/p11"
)

// pct percent-encodes every byte, as pkcs11-tool and p11tool print an id.
func pct(b []byte) string {
	var s string
	for _, c := range b {
		s += fmt.Sprintf("%%%02X", c)
	}
	return s
}

// putPair creates an SM2-curve EC key pair (token_decrypt form) with the given label and CKA_ID
// (labels may repeat, as a token allows).
func putPair(t *testing.T, tok *token, label string, id []byte) *sm2.PrivateKey {
	t.Helper()
	priv := newSM2(t)
	d := priv.D.FillBytes(make([]byte, 32))
	ecPoint, _ := asn1.Marshal(append([]byte{4}, append(priv.X.FillBytes(make([]byte, 32)), priv.Y.FillBytes(make([]byte, 32))...)...))
	if err := tok.do("store", func(ctx *p11.Ctx, s p11.SessionHandle) error {
		return createECPair(ctx, s, label, id, d, ecPoint)
	}); err != nil {
		t.Fatalf("create %q: %v", label, err)
	}
	return priv
}

// decryptsFor proves the vault key named name is priv: same public key, and it decrypts a
// ciphertext made for priv.
func decryptsFor(t *testing.T, v *Vault, name string, priv *sm2.PrivateKey) {
	t.Helper()
	dec, err := v.Decrypter(name)
	if err != nil {
		t.Fatal(err)
	}
	if !dec.Public().(*ecdsa.PublicKey).Equal(&priv.PublicKey) {
		t.Fatal("the vault loaded another key than the one with that CKA_ID")
	}
	ct, err := sm2.Encrypt(rand.Reader, &priv.PublicKey, []byte("selected by CKA_ID"), nil)
	if err != nil {
		t.Fatal(err)
	}
	pt, err := dec.Decrypt(nil, ct, nil)
	if err != nil || string(pt) != "selected by CKA_ID" {
		t.Fatalf("decrypt: %q %v", pt, err)
	}
}

// TestRefIDSelectsCKAID: id=%xx selects the token object whose CKA_ID is those bytes. The token
// also holds a key labelled with the id's bytes (what a label lookup of the id would find), so
// a vault that took id= for a label loads the wrong key and the test fails.
func TestRefIDSelectsCKAID(t *testing.T) {
	needHSM(t)
	admin, err := Open(Config{Tokens: []TokenConfig{tokenCfg("main", tokMain)}}, WithAdmin())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	tok := admin.tokens[0]
	id := []byte{0xa1, 0xb2, byte(objCounter.Add(1)), 0x7e}
	rand.Read(id[3:])
	otherID := append(bytes.Clone(id), 0xff)

	want := putPair(t, tok, uniqueObject("by-id"), id) // CKA_ID = id, an unrelated label
	decoy := putPair(t, tok, string(id)+"@1", otherID) // label = the id's bytes, another CKA_ID
	_ = decoy

	// object= and id= together: two versions labelled k@1, told apart by CKA_ID.
	obj := uniqueObject("k")
	_ = putPair(t, tok, obj+"@1", []byte{0x01})
	want2 := putPair(t, tok, obj+"@1", []byte{0x02})

	// id= alone matching two key pairs is ambiguous.
	dupID := []byte("dup-" + randHex(4))
	putPair(t, tok, uniqueObject("dup"), dupID)
	putPair(t, tok, uniqueObject("dup"), dupID)

	tc := tokenCfg("main", tokMain)
	open := func(ref string) (*Vault, error) {
		return Open(Config{Tokens: []TokenConfig{tc}, Keys: []KeyConfig{{Name: "enc", Type: KeyTypeSM2, TokenDecrypt: true, Ref: ref}}})
	}
	for _, ref := range []string{
		"pkcs11:token=" + tokMain + ";id=" + pct(id),
		"PKCS11:token=" + tokMain + ";id=" + pct(id) + ";type=private",
	} {
		v, err := open(ref)
		if err != nil {
			t.Fatalf("%s: %v", ref, err)
		}
		decryptsFor(t, v, "enc", want)
		v.Close()
	}
	v, err := open("pkcs11:token=" + tokMain + ";object=" + obj + ";id=%02")
	if err != nil {
		t.Fatal(err)
	}
	decryptsFor(t, v, "enc", want2)
	v.Close()

	_, err = open("pkcs11:token=" + tokMain + ";id=" + pct(dupID))
	mustKind(t, err, ErrConfig)
	_, err = open("pkcs11:token=" + tokMain + ";id=%00%11%22%33%44")
	mustKind(t, err, ErrKeyNotFound)
	// A key named by id= alone cannot get new versions (they are labelled object@N).
	a2, err := Open(Config{Tokens: []TokenConfig{tc}, Keys: []KeyConfig{{Name: "enc", Type: KeyTypeSM2, TokenDecrypt: true,
		Ref: "pkcs11:token=" + tokMain + ";id=" + pct(id)}}}, WithAdmin())
	if err != nil {
		t.Fatal(err)
	}
	_, err = a2.Rotate("enc")
	a2.Close()
	mustKind(t, err, ErrUnsupported)
}

// TestRefObjectAttrsPerMode: wrapped keys are CKO_DATA blobs without CKA_ID, so id= is refused
// there, and type= must name the class of what the vault uses.
func TestRefObjectAttrsPerMode(t *testing.T) {
	needHSM(t)
	tc := tokenCfg("main", tokMain)
	for _, c := range []struct {
		kc    KeyConfig
		errIs error
	}{
		{KeyConfig{Type: KeyTypeSM2, Ref: "pkcs11:token=" + tokMain + ";id=%01"}, ErrBadReference},
		{KeyConfig{Type: KeyTypeSM2, Ref: "pkcs11:token=" + tokMain + ";object=o;id=%01"}, ErrBadReference},
		{KeyConfig{Type: KeyTypeSM4, Ref: "pkcs11:token=" + tokMain + ";object=o;id=%01"}, ErrBadReference},
		{KeyConfig{Type: KeyTypeSM4, TokenDecrypt: false, Ref: "pkcs11:token=" + tokMain + ";object=o;type=private"}, ErrBadReference},
		{KeyConfig{Type: KeyTypeSM2, Ref: "pkcs11:token=" + tokMain + ";object=o;type=secret-key"}, ErrBadReference},
		{KeyConfig{Type: KeyTypeSM2, Ref: "pkcs11:token=" + tokMain + ";object=o;type=public"}, ErrBadReference},
		{KeyConfig{Type: KeyTypeSM2, Ref: "pkcs11:token=" + tokMain + ";object=o;type=cert"}, ErrBadReference},
		{KeyConfig{Type: KeyTypeSM2, TokenDecrypt: true, Ref: "pkcs11:token=" + tokMain + ";object=o;type=data"}, ErrBadReference},
		// Accepted (the admin vault tolerates the missing key).
		{KeyConfig{Type: KeyTypeSM2, Ref: "pkcs11:token=" + tokMain + ";object=o;type=private"}, nil},
		{KeyConfig{Type: KeyTypeSM2, Ref: "pkcs11:token=" + tokMain + ";object=o;type=data"}, nil},
		{KeyConfig{Type: KeyTypeSM4, Ref: "pkcs11:token=" + tokMain + ";object=o;type=secret-key"}, nil},
		{KeyConfig{Type: KeyTypeSM2, TokenDecrypt: true, Ref: "pkcs11:token=" + tokMain + ";id=%01;type=private"}, nil},
	} {
		t.Run(c.kc.Ref+"/"+string(c.kc.Type), func(t *testing.T) {
			c.kc.Name = "k"
			v, err := Open(Config{Tokens: []TokenConfig{tc}, Keys: []KeyConfig{c.kc}}, WithAdmin())
			if c.errIs != nil {
				mustKind(t, err, c.errIs)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			v.Close()
		})
	}
}

// TestRefTokenAttrs: token, slot, library and module attributes choose among the configured
// tokens; one that contradicts the token the key is configured on is refused, naming the
// contradiction, never ignored.
func TestRefTokenAttrs(t *testing.T) {
	needHSM(t)
	tc := tokenCfg("main", tokMain)
	admin, err := Open(Config{Tokens: []TokenConfig{tc}}, WithAdmin())
	if err != nil {
		t.Fatal(err)
	}
	slot := strconv.FormatUint(uint64(admin.tokens[0].status().Slot), 10)
	admin.Close()
	moduleDir := filepath.Dir(softhsmModule)
	ok := []string{
		"manufacturer=SoftHSM%20project", "model=SoftHSM%20v2", "slot-id=" + slot,
		"library-manufacturer=SoftHSM", "library-description=Implementation%20of%20PKCS11",
		"object=o?module-name=softhsm2", "object=o?module-path=" + softhsmModule, "object=o?module-path=" + moduleDir,
	}
	bad := []string{
		"manufacturer=Thales", "model=Luna", "slot-id=" + slot + "0", "library-manufacturer=SafeNet",
		"library-description=Other", "library-version=99.1", "token=another-token", "serial=0000",
		"object=o?module-name=opensc-pkcs11", "object=o?module-path=/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so",
		"object=o?module-path=/opt/elsewhere/",
	}
	for _, listed := range []bool{false, true} {
		for _, attrs := range append(ok, bad...) {
			path, query, _ := strings.Cut(attrs, "?")
			if !strings.Contains(path, "object=") {
				path += ";object=o"
			}
			if !strings.Contains(path, "token=") {
				path += ";token=" + tokMain
			}
			ref := "pkcs11:" + path
			if query != "" {
				ref += "?" + query
			}
			want := error(nil)
			for _, b := range bad {
				if b == attrs {
					want = ErrConfig
				}
			}
			t.Run(fmt.Sprintf("listed=%v/%s", listed, attrs), func(t *testing.T) {
				kc := KeyConfig{Name: "k", Type: KeyTypeSM2, Ref: ref}
				if listed {
					kc.Tokens = []string{"main"}
				}
				v, err := Open(Config{Tokens: []TokenConfig{tc}, Keys: []KeyConfig{kc}}, WithAdmin())
				if want != nil {
					mustKind(t, err, want)
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				v.Close()
			})
		}
	}
	// Among two configured tokens, the reference's attributes pick the replica.
	tcB := tokenCfg("sess", tokSess)
	obj := uniqueObject("pick")
	cfg := Config{Tokens: []TokenConfig{tc, tcB}, Keys: []KeyConfig{{Name: "k", Type: KeyTypeSM4,
		Ref: "pkcs11:model=SoftHSM%20v2;slot-id=" + slot + ";object=" + obj}}}
	v, err := Open(cfg, WithAdmin())
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if _, err := v.Init(""); err != nil {
		t.Fatal(err)
	}
	ki, err := v.Generate("k")
	if err != nil {
		t.Fatal(err)
	}
	if len(ki.Tokens) != 1 || ki.Tokens[0] != "main" {
		t.Fatalf("slot-id=%s selected %v, want [main]", slot, ki.Tokens)
	}
}

// TestRefPINSource: pin-source (file: URI or absolute path) gives the token its PIN; it
// contradicting the token's pin_env or pin_file, or another key's pin-source, is refused.
func TestRefPINSource(t *testing.T) {
	needHSM(t)
	dir := t.TempDir()
	good := writeFile(t, dir, "pin", []byte(testPIN+"\n"))
	wrong := writeFile(t, dir, "wrong pin", []byte("999999\n"))
	noPIN := tokenCfg("p", tokPIN)
	noPIN.PINEnv = ""
	key := func(ref string) KeyConfig { return KeyConfig{Name: "k", Type: KeyTypeSM4, Ref: ref} }
	base := "pkcs11:token=" + tokPIN + ";object=" + uniqueObject("pin")

	for _, ref := range []string{base + "?pin-source=file:" + good, base + "?pin-source=file://" + good, base + "?pin-source=" + good} {
		v, err := Open(Config{Tokens: []TokenConfig{noPIN}, Keys: []KeyConfig{key(ref)}}, WithAdmin())
		if err != nil {
			t.Fatalf("%s: %v", ref, err)
		}
		if h := v.Health(); len(h) != 1 || !h[0].Healthy {
			t.Fatalf("%s: %+v", ref, h)
		}
		v.Close()
	}
	// The PIN really comes from the file: a wrong one is refused by the token.
	_, err := Open(Config{Tokens: []TokenConfig{noPIN}, Keys: []KeyConfig{key(base + "?pin-source=file:" + url.PathEscape(wrong))}}, WithAdmin())
	mustKind(t, err, ErrBadPIN)

	withEnv := tokenCfg("p", tokPIN)
	_, err = Open(Config{Tokens: []TokenConfig{withEnv}, Keys: []KeyConfig{key(base + "?pin-source=file:" + good)}}, WithAdmin())
	mustKind(t, err, ErrConfig)
	withFile := noPIN
	withFile.PINFile = wrong
	_, err = Open(Config{Tokens: []TokenConfig{withFile}, Keys: []KeyConfig{key(base + "?pin-source=file:" + good)}}, WithAdmin())
	mustKind(t, err, ErrConfig)
	withFile.PINFile = good
	v, err := Open(Config{Tokens: []TokenConfig{withFile}, Keys: []KeyConfig{key(base + "?pin-source=file:" + good)}}, WithAdmin())
	if err != nil {
		t.Fatalf("pin-source naming the token's own pin_file: %v", err)
	}
	v.Close()
	two := []KeyConfig{key(base + "?pin-source=file:" + good), {Name: "k2", Type: KeyTypeSM4, Ref: base + "x?pin-source=file:" + url.PathEscape(wrong)}}
	_, err = Open(Config{Tokens: []TokenConfig{noPIN}, Keys: two}, WithAdmin())
	mustKind(t, err, ErrConfig)
	// A pin-source for a token the configuration does not show is refused, not sent elsewhere.
	_, err = Open(Config{Tokens: []TokenConfig{noPIN}, Keys: []KeyConfig{key("pkcs11:token=elsewhere;object=o?pin-source=file:" + good)}}, WithAdmin())
	mustKind(t, err, ErrConfig)
	if _, err := os.Stat(good); err != nil {
		t.Fatal(err)
	}
}
