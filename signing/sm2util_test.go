package signing

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The GB/T 32918.5 / GM/T 0003.5 example: (r, s) for "message digest" with ID 1234567812345678.
func TestStandardVectorSM2Sign(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(interopDir(t), "standard-vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil {
		t.Fatal(err)
	}
	var v map[string]string
	if err := json.Unmarshal(top["sm2_sign"], &v); err != nil {
		t.Fatal(err)
	}
	priv, err := sm2.NewPrivateKey(mustHex(t, v["private_key_d"]))
	if err != nil {
		t.Fatal(err)
	}
	pub := &priv.PublicKey
	if pub.X.Cmp(new(big.Int).SetBytes(mustHex(t, v["public_x"]))) != 0 ||
		pub.Y.Cmp(new(big.Int).SetBytes(mustHex(t, v["public_y"]))) != 0 {
		t.Fatal("public key from d does not match the vector")
	}
	uid, msg := []byte(v["user_id_ascii"]), []byte(v["message_ascii"])
	za, err := sm2.CalculateZA(pub, uid)
	if err != nil || !bytes.Equal(za, mustHex(t, v["za"])) {
		t.Fatalf("Z_A mismatch: %x", za)
	}
	rawSig := append(mustHex(t, v["r"]), mustHex(t, v["s"])...)
	if len(rawSig) != 64 {
		t.Fatalf("vector r||s is %d bytes", len(rawSig))
	}
	if err := VerifySM2(pub, msg, rawSig, uid, Raw); err != nil {
		t.Fatalf("standard vector (raw) does not verify: %v", err)
	}
	der, err := rawToDER(rawSig)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifySM2(pub, msg, der, nil, DER); err != nil { // nil = default ID = the vector's ID
		t.Fatalf("standard vector (DER, default ID) does not verify: %v", err)
	}
	back, err := derToRaw(der)
	if err != nil || !bytes.Equal(back, rawSig) {
		t.Fatalf("DER round trip: %v", err)
	}
	for name, c := range map[string]struct{ msg, sig, uid []byte }{
		"other message": {[]byte("message digesT"), rawSig, uid},
		"other user ID": {msg, rawSig, []byte("1234567812345679")},
		"flipped r":     {msg, flipByte(rawSig, 5), uid},
		"flipped s":     {msg, flipByte(rawSig, 40), uid},
	} {
		if err := VerifySM2(pub, c.msg, c.sig, c.uid, Raw); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s: want ErrBadSignature, got %v", name, err)
		}
	}
}

// Tongsuo 8.5.0 pkeyutl signatures (DER, default ID) verify with the certificate's key.
func TestTongsuoSM2Signatures(t *testing.T) {
	dir := filepath.Join(interopDir(t), "tongsuo")
	raw, err := os.ReadFile(filepath.Join(dir, "primitives.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		SM2Sign struct {
			Cert    string `json:"cert"`
			UserID  string `json:"user_id"`
			Vectors []struct {
				MessageHex string `json:"message_hex"`
				SigHex     string `json:"signature_der_hex"`
			} `json:"vectors"`
		} `json:"sm2_sign"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	certPEM, err := os.ReadFile(filepath.Join(dir, doc.SM2Sign.Cert))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := smx509.ParseCertificatePEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		t.Fatalf("certificate key is %T", cert.PublicKey)
	}
	if len(doc.SM2Sign.Vectors) == 0 {
		t.Fatal("no vectors")
	}
	for i, v := range doc.SM2Sign.Vectors {
		msg, sig := mustHex(t, v.MessageHex), mustHex(t, v.SigHex)
		if err := VerifySM2(pub, msg, sig, []byte(doc.SM2Sign.UserID), DER); err != nil {
			t.Errorf("vector %d: %v", i, err)
		}
		rs, err := derToRaw(sig)
		if err != nil {
			t.Fatalf("vector %d DERToRaw: %v", i, err)
		}
		if err := VerifySM2(pub, msg, rs, nil, Raw); err != nil {
			t.Errorf("vector %d as raw: %v", i, err)
		}
		if err := VerifySM2(pub, flipByte(msg, 0), sig, nil, DER); !errors.Is(err, ErrBadSignature) {
			t.Errorf("vector %d flipped message: want ErrBadSignature, got %v", i, err)
		}
	}
}

func TestSignVerifySM2(t *testing.T) {
	k := newKey(t)
	other := newKey(t)
	msg := []byte("payment instruction")
	for _, enc := range []SigEncoding{DER, Raw} {
		for _, uid := range [][]byte{nil, []byte("1234567812345678"), []byte("8888")} {
			sig, err := SignSM2(k, msg, uid, enc)
			if err != nil {
				t.Fatal(err)
			}
			if enc == Raw && len(sig) != 64 {
				t.Fatalf("raw signature is %d bytes", len(sig))
			}
			if err := VerifySM2(&k.PublicKey, msg, sig, uid, enc); err != nil {
				t.Fatalf("%v uid=%q: %v", enc, uid, err)
			}
			// Cross-check with gmsm directly.
			der := sig
			if enc == Raw {
				der, _ = rawToDER(sig)
			}
			if !sm2.VerifyASN1WithSM2(&k.PublicKey, uid, msg, der) {
				t.Fatal("gmsm does not accept our signature")
			}
			if err := VerifySM2(&other.PublicKey, msg, sig, uid, enc); !errors.Is(err, ErrBadSignature) {
				t.Fatalf("other key: %v", err)
			}
			wrongUID := []byte("wrong-id")
			if err := VerifySM2(&k.PublicKey, msg, sig, wrongUID, enc); !errors.Is(err, ErrBadSignature) {
				t.Fatalf("wrong uid: %v", err)
			}
		}
	}
	if _, err := SignSM2(nil, msg, nil, DER); err == nil {
		t.Fatal("nil signer accepted")
	}
	if err := VerifySM2(nil, msg, []byte{1}, nil, DER); !errors.Is(err, ErrBadSignature) {
		t.Fatal("nil key accepted")
	}
}

func TestRawDERBounds(t *testing.T) {
	n := sm2.P256().Params().N
	nBytes := n.FillBytes(make([]byte, 32))
	one := make([]byte, 32)
	one[31] = 1
	zero := make([]byte, 32)
	cases := []struct {
		name string
		raw  []byte
		ok   bool
	}{
		{"1,1", append(append([]byte{}, one...), one...), true},
		{"short", make([]byte, 63), false},
		{"long", make([]byte, 65), false},
		{"zero r", append(append([]byte{}, zero...), one...), false},
		{"zero s", append(append([]byte{}, one...), zero...), false},
		{"r = n", append(append([]byte{}, nBytes...), one...), false},
		{"s = n", append(append([]byte{}, one...), nBytes...), false},
	}
	for _, c := range cases {
		der, err := rawToDER(c.raw)
		if (err == nil) != c.ok {
			t.Fatalf("%s: RawToDER err=%v", c.name, err)
		}
		if c.ok {
			back, err := derToRaw(der)
			if err != nil || !bytes.Equal(back, c.raw) {
				t.Fatalf("%s: round trip %v", c.name, err)
			}
		}
	}
	badDER := map[string]string{
		"empty":            "",
		"trailing":         "3006020101020101" + "00",
		"non-minimal int":  "30080202000102020001",
		"negative":         "3006020181020101",
		"three ints":       "3009020101020101020101",
		"wrong tag":        "3106020101020101",
		"zero r":           "3006020100020101",
		"too long":         "30" + strings.Repeat("00", 80),
		"r 33 bytes no 00": "302502210101" + strings.Repeat("01", 31) + "020101",
	}
	for name, h := range badDER {
		if _, err := derToRaw(mustHex(t, h)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// Random signatures round trip, including short r or s.
	k := newKey(t)
	for i := 0; i < 50; i++ {
		der, err := k.Sign(rand.Reader, []byte{byte(i)}, sm2.DefaultSM2SignerOpts)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := derToRaw(der)
		if err != nil {
			t.Fatal(err)
		}
		der2, err := rawToDER(raw)
		if err != nil || !bytes.Equal(der, der2) {
			t.Fatalf("DER not canonical round trip: %x vs %x", der, der2)
		}
	}
}

func TestCanonicalParams(t *testing.T) {
	cases := []struct {
		in      map[string]string
		exclude []string
		want    string
	}{
		{map[string]string{"b": "2", "a": "1", "sign": "x", "empty": ""}, []string{"sign"}, "a=1&b=2"},
		{map[string]string{"B": "1", "a": "2", "_": "3"}, nil, "B=1&_=3&a=2"},
		{map[string]string{"k": "a=b&c"}, nil, "k=a=b&c"},
		{map[string]string{}, nil, ""},
	}
	for _, c := range cases {
		if got := CanonicalParams(c.in, c.exclude...); got != c.want {
			t.Errorf("got %q want %q", got, c.want)
		}
	}
}

func TestContentDigestAndNonce(t *testing.T) {
	// SM3("abc") from GB/T 32905.
	if got := SM3Hex([]byte("abc")); got != "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0" {
		t.Fatalf("SM3(abc) = %s", got)
	}
	if got := ContentDigest([]byte("abc")); got != "sm3=:Zsfw9GLu7dnR8tRr3BDk4kFnxIdc8veiKX2gK49LqOA=:" {
		t.Fatalf("content digest %s", got)
	}
	a, _ := NewNonce()
	b, _ := NewNonce()
	if len(a) != 32 || a == b {
		t.Fatalf("nonces %q %q", a, b)
	}
}

func TestLookup(t *testing.T) {
	for _, n := range Names() {
		s, err := Lookup(n)
		if err != nil || s.Name() != n {
			t.Fatalf("%s: %v", n, err)
		}
	}
	if len(Names()) != 4 {
		t.Fatalf("names %v", Names())
	}
	if _, err := Lookup("rsa"); err == nil {
		t.Fatal("unknown scheme found")
	}
}
