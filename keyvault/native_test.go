package keyvault

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/asn1"
	"errors"
	"math/big"
	"testing"

	"github.com/emmansun/gmsm/ecdh"
	"github.com/emmansun/gmsm/sm2"

	"github.com/gmgate/gmgate/pki"
)

func ptr[T any](v T) *T { return &v }

func TestResolveProfile(t *testing.T) {
	cases := []struct {
		name   string
		preset string
		over   *MechanismConfig
		errIs  error
		check  func(p *NativeProfile) bool
	}{
		{"gmt0016", "gmt0016", nil, nil, func(p *NativeProfile) bool {
			return p.KeyTypeSM2 == 0x80000004 && p.SM2SignWithSM3 == 0x80008100 && p.SM2SignDigest == 0x80008104 &&
				p.SM2Decrypt == 0x80008200 && p.SM3 == 0x80009000 && p.SM2KeyGen == 0x80008001 && !p.SignatureDER && p.UserIDAsParam
		}},
		{"gmt0016-der", "gmt0016-der", nil, nil, func(p *NativeProfile) bool { return p.SM2SignWithSM3 == 0x80008101 && p.SignatureDER }},
		{"ibm", "ibm", nil, nil, func(p *NativeProfile) bool {
			return p.KeyTypeSM2 == 0x80050002 && p.SM2SignDigest == 0x8005000B && p.SM2Decrypt == 0x8005000D && p.SM3 == 0x8005000E && p.Ciphertext == CiphertextASN1
		}},
		{"luna incomplete", "luna", nil, ErrConfig, nil},
		{"luna completed", "luna", &MechanismConfig{SM2SignDigest: 0x80000B20, SM2Decrypt: 0x80000B30, SignatureDER: ptr(true)}, nil,
			func(p *NativeProfile) bool {
				return p.KeyTypeSM2 == 0x80000016 && p.SM3 == 0x80000B01 && p.SM2SignDigest == 0x80000B20 && p.SignatureDER
			}},
		{"override keeps others", "gmt0016", &MechanismConfig{SM2Decrypt: 0x1234, UserIDAsParam: ptr(false), Ciphertext: CiphertextC1C2C3}, nil,
			func(p *NativeProfile) bool {
				return p.SM2Decrypt == 0x1234 && !p.UserIDAsParam && p.SM2SignWithSM3 == 0x80008100 && p.Ciphertext == CiphertextC1C2C3
			}},
		{"custom complete", "", &MechanismConfig{KeyTypeSM2: 1, SM2SignDigest: 2, SM2Decrypt: 3}, nil, func(p *NativeProfile) bool { return p.Name == "custom" }},
		{"custom without key type", "", &MechanismConfig{SM2SignDigest: 2, SM2Decrypt: 3}, ErrConfig, nil},
		{"bad ciphertext", "gmt0016", &MechanismConfig{Ciphertext: "c2c1c3"}, ErrConfig, nil},
		{"unknown", "acme", nil, ErrConfig, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := ResolveProfile(c.preset, c.over)
			if c.errIs != nil {
				mustKind(t, err, c.errIs)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !c.check(p) {
				t.Fatalf("profile wrong: %+v", p)
			}
		})
	}
	// Presets are not mutated by overrides, nor through the copy Presets returns.
	if presets["gmt0016"].SM2Decrypt != 0x80008200 {
		t.Fatal("preset mutated")
	}
	cp := Presets()
	p := cp["gmt0016"]
	p.SM2Decrypt = 1
	cp["gmt0016"] = p
	delete(cp, "ibm")
	if got, err := ResolveProfile("gmt0016", nil); err != nil || got.SM2Decrypt != 0x80008200 {
		t.Fatalf("a change to the copy reached the vault: %+v %v", got, err)
	}
	if _, err := ResolveProfile("ibm", nil); err != nil {
		t.Fatalf("deleting from the copy removed a preset: %v", err)
	}
}

func TestBuildSign(t *testing.T) {
	priv := newSM2(t)
	pub := &priv.PublicKey
	msg := []byte("native request")
	e, _ := sm2.CalculateSM2Hash(pub, msg, nil)
	eBob, _ := sm2.CalculateSM2Hash(pub, msg, []byte("bob"))
	gmt, _ := ResolveProfile("gmt0016", nil)
	gmtNoParam, _ := ResolveProfile("gmt0016", &MechanismConfig{UserIDAsParam: ptr(false)})
	ibm, _ := ResolveProfile("ibm", nil)
	onlySM3, _ := ResolveProfile("", &MechanismConfig{KeyTypeSM2: 1, SM2SignWithSM3: 0x99, SM2Decrypt: 3})
	cases := []struct {
		name      string
		p         *NativeProfile
		msg, uid  []byte
		prehashed bool
		mech      uint
		param     []byte
		data      []byte
		errIs     error
	}{
		{"gmt default uid as param", gmt, msg, nil, false, 0x80008100, []byte(pki.DefaultUserID), msg, nil},
		{"gmt custom uid as param", gmt, msg, []byte("bob"), false, 0x80008100, []byte("bob"), msg, nil},
		{"gmt digest", gmt, e, nil, true, 0x80008104, nil, e, nil},
		{"gmt no-param default uid", gmtNoParam, msg, nil, false, 0x80008100, nil, msg, nil},
		{"gmt no-param custom uid prehashes", gmtNoParam, msg, []byte("bob"), false, 0x80008104, nil, eBob, nil},
		{"ibm always prehashes", ibm, msg, nil, false, 0x8005000B, nil, e, nil},
		{"ibm custom uid", ibm, msg, []byte("bob"), false, 0x8005000B, nil, eBob, nil},
		{"ibm digest", ibm, e, nil, true, 0x8005000B, nil, e, nil},
		{"digest wrong size", gmt, e[:31], nil, true, 0, nil, nil, ErrInvalidInput},
		{"no digest mechanism", onlySM3, e, nil, true, 0, nil, nil, ErrMechanismMissing},
		{"no digest mechanism custom uid", onlySM3, msg, []byte("bob"), false, 0, nil, nil, ErrMechanismMissing},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, err := c.p.buildSign(pub, c.msg, c.uid, c.prehashed)
			if c.errIs != nil {
				mustKind(t, err, c.errIs)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if req.Mechanism != c.mech || !bytes.Equal(req.Param, c.param) || !bytes.Equal(req.Data, c.data) {
				t.Fatalf("got mech %#x param %q data %x; want %#x %q %x", req.Mechanism, req.Param, req.Data, c.mech, c.param, c.data)
			}
		})
	}
}

// simToken executes native requests the way a token of the given profile would, with a gmsm key.
type simToken struct {
	p    *NativeProfile
	priv *sm2.PrivateKey
	seen []signRequest
}

func (s *simToken) execSign(req signRequest) ([]byte, error) {
	s.seen = append(s.seen, req)
	var e []byte
	switch req.Mechanism {
	case s.p.SM2SignWithSM3:
		uid := []byte(pki.DefaultUserID)
		if s.p.UserIDAsParam {
			uid = req.Param
		}
		e, _ = sm2.CalculateSM2Hash(&s.priv.PublicKey, req.Data, uid)
	case s.p.SM2SignDigest:
		e = req.Data
	default:
		return nil, errors.New("sim: mechanism invalid")
	}
	der, err := sm2.SignASN1(rand.Reader, s.priv, e, nil)
	if err != nil || s.p.SignatureDER {
		return der, err
	}
	var sig ecSig
	asn1.Unmarshal(der, &sig)
	raw := make([]byte, 64)
	sig.R.FillBytes(raw[:32])
	sig.S.FillBytes(raw[32:])
	return raw, nil
}

func (s *simToken) execDecrypt(mech uint, data []byte) ([]byte, error) {
	if mech != s.p.SM2Decrypt {
		return nil, errors.New("sim: mechanism invalid")
	}
	var opts crypto.DecrypterOpts
	switch s.p.Ciphertext {
	case CiphertextC1C2C3:
		opts = sm2.NewPlainDecrypterOpts(sm2.C1C2C3)
		if data[0] == 0x30 {
			return nil, errors.New("sim: expected raw")
		}
	case CiphertextASN1:
		if data[0] != 0x30 {
			return nil, errors.New("sim: expected ASN.1")
		}
		opts = sm2.ASN1DecrypterOpts
	}
	return s.priv.Decrypt(nil, data, opts)
}

// simRemote plugs the simulated token into an SM2Key through the real native pipeline.
type simRemote struct {
	tok *simToken
	pub *ecdsa.PublicKey
}

func (r *simRemote) sign(msg, uid []byte, prehashed bool) ([]byte, error) {
	return nativeSign(r.tok.p, r.pub, msg, uid, prehashed, r.tok.execSign)
}
func (r *simRemote) decrypt(c []byte) ([]byte, error) {
	return nativeDecrypt(r.tok.p, c, r.tok.execDecrypt)
}
func (r *simRemote) tokenName() string { return "sim" }

// TestNativePipeline drives SM2Key's native branch (option handling, user IDs, ciphertext
// normalisation, signature re-encoding) against a simulated token for every preset.
func TestNativePipeline(t *testing.T) {
	priv := newSM2(t)
	pub := &priv.PublicKey
	msg := []byte("through the native pipeline")
	for _, name := range []string{"gmt0016", "gmt0016-der", "ibm", "luna"} {
		t.Run(name, func(t *testing.T) {
			var over *MechanismConfig
			if name == "luna" {
				over = &MechanismConfig{SM2SignDigest: 0x80000B20, SM2Decrypt: 0x80000B30}
			}
			p, err := ResolveProfile(name, over)
			if err != nil {
				t.Fatal(err)
			}
			tok := &simToken{p: p, priv: priv}
			k := &SM2Key{name: "n", version: 1, token: "sim", obs: nopObserver{}, pub: pub}
			k.setUID([]byte("configured-id"))
			k.remote = &simRemote{tok: tok, pub: pub}

			sig, err := k.Sign(rand.Reader, msg, nil)
			if err != nil || !sm2.VerifyASN1WithSM2(pub, []byte("configured-id"), msg, sig) {
				t.Fatalf("configured uid: %v", err)
			}
			sig, err = k.Sign(rand.Reader, msg, sm2.NewSM2SignerOption(true, []byte("bob")))
			if err != nil || !sm2.VerifyASN1WithSM2(pub, []byte("bob"), msg, sig) {
				t.Fatalf("explicit uid: %v", err)
			}
			sig, err = k.Sign(rand.Reader, msg, sm2.NewSM2SignerOption(true, nil))
			if err != nil || !sm2.VerifyASN1WithSM2(pub, nil, msg, sig) {
				t.Fatalf("default uid: %v", err)
			}
			e, _ := sm2.CalculateSM2Hash(pub, msg, nil)
			sig, err = k.Sign(rand.Reader, e, crypto.SHA256)
			if err != nil || !sm2.VerifyASN1(pub, e, sig) {
				t.Fatalf("digest: %v", err)
			}
			for _, form := range []struct {
				name string
				ct   func() []byte
				opts crypto.DecrypterOpts
			}{
				{"c1c3c2", func() []byte { c, _ := sm2.Encrypt(rand.Reader, pub, msg, nil); return c }, nil},
				{"c1c2c3", func() []byte {
					c, _ := sm2.Encrypt(rand.Reader, pub, msg, sm2.NewPlainEncrypterOpts(sm2.MarshalUncompressed, sm2.C1C2C3))
					return c
				}, sm2.NewPlainDecrypterOpts(sm2.C1C2C3)},
				{"asn1", func() []byte { c, _ := sm2.EncryptASN1(rand.Reader, pub, msg); return c }, sm2.ASN1DecrypterOpts},
			} {
				pt, err := k.Decrypt(nil, form.ct(), form.opts)
				if err != nil || !bytes.Equal(pt, msg) {
					t.Fatalf("decrypt %s: %v", form.name, err)
				}
			}
			// MQV needs the private scalar: native keys refuse clearly.
			eph, _ := ecdh.P256().GenerateKey(rand.Reader)
			_, err = k.SM2MQV(eph, eph.PublicKey(), eph.PublicKey())
			mustKind(t, err, ErrUnsupported)
			if len(tok.seen) == 0 {
				t.Fatal("simulated token never called")
			}
		})
	}
}

func TestSignatureToDER(t *testing.T) {
	priv := newSM2(t)
	e := make([]byte, 32)
	rand.Read(e)
	der, _ := sm2.SignASN1(rand.Reader, priv, e, nil)
	var sig ecSig
	asn1.Unmarshal(der, &sig)
	raw := make([]byte, 64)
	sig.R.FillBytes(raw[:32])
	sig.S.FillBytes(raw[32:])
	rawP := &NativeProfile{SignatureDER: false}
	derP := &NativeProfile{SignatureDER: true}
	got, err := rawP.signatureToDER(raw)
	if err != nil || !sm2.VerifyASN1(&priv.PublicKey, e, got) {
		t.Fatalf("raw->DER: %v", err)
	}
	if got, err := derP.signatureToDER(der); err != nil || !bytes.Equal(got, der) {
		t.Fatalf("DER passthrough: %v", err)
	}
	zeroR := append(make([]byte, 32), raw[32:]...)
	negDER, _ := asn1.Marshal(ecSig{big.NewInt(-1), big.NewInt(1)})
	for _, c := range []struct {
		name string
		p    *NativeProfile
		in   []byte
	}{
		{"raw too short", rawP, raw[:63]},
		{"raw too long", rawP, append(raw, 0)},
		{"raw zero r", rawP, zeroR},
		{"DER garbage", derP, []byte{0x30, 0x02, 0x01}},
		{"DER trailing", derP, append(bytes.Clone(der), 0)},
		{"DER negative", derP, negDER},
		{"DER given raw", derP, raw},
	} {
		if _, err := c.p.signatureToDER(c.in); !errors.Is(err, ErrToken) {
			t.Errorf("%s: got %v", c.name, err)
		}
	}
}

func TestMissingMechanisms(t *testing.T) {
	p, _ := ResolveProfile("gmt0016", nil)
	all := []uint{0x80008100, 0x80008104, 0x80008200, 0x1041}
	if m := p.missingMechanisms(all); len(m) != 0 {
		t.Fatalf("unexpected missing %v", m)
	}
	m := p.missingMechanisms([]uint{0x80008100, 0x1041})
	if len(m) != 2 || m[0] != 0x80008104 || m[1] != 0x80008200 {
		t.Fatalf("missing = %#x", m)
	}
	if m := p.missingMechanisms(nil); len(m) != 3 {
		t.Fatalf("empty list should miss all: %#x", m)
	}
}

func TestParseECPoint(t *testing.T) {
	priv := newSM2(t)
	raw := append([]byte{4}, append(priv.PublicKey.X.FillBytes(make([]byte, 32)), priv.PublicKey.Y.FillBytes(make([]byte, 32))...)...)
	wrapped, _ := asn1.Marshal(raw)
	for _, in := range [][]byte{raw, wrapped} {
		pub, err := parseECPoint(in)
		if err != nil || !pub.Equal(&priv.PublicKey) {
			t.Fatalf("parse: %v", err)
		}
	}
	bad := bytes.Clone(raw)
	bad[64] ^= 1
	for _, in := range [][]byte{bad, raw[:64], nil, {0x04}, append([]byte{2}, raw[1:33]...)} {
		if _, err := parseECPoint(in); !errors.Is(err, ErrIntegrity) {
			t.Fatalf("accepted bad point %x: %v", in, err)
		}
	}
}
