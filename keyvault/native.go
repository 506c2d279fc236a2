package keyvault

import (
	"crypto/ecdsa"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"sort"
	"strings"
	"sync/atomic"

	"github.com/emmansun/gmsm/sm2"
	"github.com/gmgate/gmgate/keyvault/internal/p11"
	"github.com/miekg/pkcs11"

	"github.com/gmgate/gmgate/pki"
)

// Native GM mode. PKCS#11 has no standard numbers for SM2/SM3/SM4, so key types and mechanisms
// come from configuration, with presets for the vendor families seen in the field. The values
// below are as reported for those families: verify them against the vendor's pkcs11.h before
// production use. A preset whose required mechanism is unknown (0) must be completed through
// TokenConfig.Mechanisms, otherwise Open fails.

// Ciphertext encodings a token may expect for SM2 decryption.
const (
	CiphertextC1C3C2 = "c1c3c2"
	CiphertextC1C2C3 = "c1c2c3"
	CiphertextASN1   = "asn1"
)

// MechanismConfig overrides individual values of a native-mode preset. Zero/nil fields keep the
// preset's value.
type MechanismConfig struct {
	// KeyTypeSM2 is the vendor's CKK_ key type of SM2 keys, used to find the key objects.
	KeyTypeSM2 uint `json:"key_type_sm2,omitempty"`
	// SM2KeyGen is the vendor's SM2 key-pair generation mechanism (recorded in the profile).
	SM2KeyGen uint `json:"sm2_key_gen,omitempty"`
	// SM2SignWithSM3 is the mechanism that signs the raw message (the token computes Z_A and SM3).
	SM2SignWithSM3 uint `json:"sm2_sign_sm3,omitempty"`
	// SM2SignDigest is the mechanism that signs a 32-byte e computed by the vault.
	SM2SignDigest uint `json:"sm2_sign_digest,omitempty"`
	// SM2Decrypt is the SM2 decryption mechanism (required).
	SM2Decrypt uint `json:"sm2_decrypt,omitempty"`
	// SM3 is the vendor's SM3 digest mechanism (recorded in the profile).
	SM3 uint `json:"sm3,omitempty"`
	// UserIDAsParam: the user ID is passed as the parameter of SM2SignWithSM3.
	UserIDAsParam *bool `json:"user_id_as_param,omitempty"`
	// SignatureDER: the token returns DER signatures (otherwise raw r||s).
	SignatureDER *bool `json:"signature_der,omitempty"`
	// Ciphertext is the SM2 ciphertext encoding the token expects: c1c3c2, c1c2c3 or asn1.
	Ciphertext string `json:"ciphertext,omitempty"`
}

// NativeProfile is a resolved native-mode mechanism set.
type NativeProfile struct {
	Name           string `json:"name"`
	KeyTypeSM2     uint   `json:"key_type_sm2"`
	SM2KeyGen      uint   `json:"sm2_key_gen"`
	SM2SignWithSM3 uint   `json:"sm2_sign_sm3"`
	SM2SignDigest  uint   `json:"sm2_sign_digest"`
	SM2Decrypt     uint   `json:"sm2_decrypt"`
	SM3            uint   `json:"sm3"`
	// UserIDAsParam: the user ID is passed as the parameter of SM2SignWithSM3 (otherwise the
	// token always uses the default ID and the vault pre-hashes for other IDs).
	UserIDAsParam bool `json:"user_id_as_param"`
	// SignatureDER: the token returns DER signatures (otherwise raw r||s, 64 bytes).
	SignatureDER bool `json:"signature_der"`
	// Ciphertext is the SM2 ciphertext encoding the token expects.
	Ciphertext string `json:"ciphertext"`
}

// presets are the built-in vendor families (read through Presets and ResolveProfile; never
// written after init, so a caller cannot change the mechanism numbers another vault uses).
var presets = map[string]NativeProfile{
	// GM/T 0016-style numbering used by several Chinese HSM vendors.
	"gmt0016": {
		Name: "gmt0016", KeyTypeSM2: 0x80000004, SM2KeyGen: 0x80008001,
		SM2SignWithSM3: 0x80008100, SM2SignDigest: 0x80008104, SM2Decrypt: 0x80008200, SM3: 0x80009000,
		UserIDAsParam: true, SignatureDER: false, Ciphertext: CiphertextC1C3C2,
	},
	// Same family, DER-signature variant of the SM3-with-SM2 mechanism.
	"gmt0016-der": {
		Name: "gmt0016-der", KeyTypeSM2: 0x80000004, SM2KeyGen: 0x80008001,
		SM2SignWithSM3: 0x80008101, SM2SignDigest: 0x80008104, SM2Decrypt: 0x80008200, SM3: 0x80009000,
		UserIDAsParam: true, SignatureDER: true, Ciphertext: CiphertextC1C3C2,
	},
	// IBM style (EP11): CKM_IBM_SM2 signs a digest; the vault computes e = SM3(Z_A||M).
	"ibm": {
		Name: "ibm", KeyTypeSM2: 0x80050002, SM2KeyGen: pkcs11.CKM_EC_KEY_PAIR_GEN,
		SM2SignDigest: 0x8005000B, SM2Decrypt: 0x8005000D, SM3: 0x8005000E,
		UserIDAsParam: false, SignatureDER: false, Ciphertext: CiphertextASN1,
	},
	// Thales Luna: only the key types and SM3 are known here; sign/decrypt mechanisms must be
	// configured from the firmware's header.
	"luna": {
		Name: "luna", KeyTypeSM2: 0x80000016, SM3: 0x80000B01,
		UserIDAsParam: false, SignatureDER: false, Ciphertext: CiphertextC1C3C2,
	},
}

// Presets returns a copy of the built-in vendor families, by preset name. Changing the copy
// changes nothing the vault uses.
func Presets() map[string]NativeProfile {
	out := make(map[string]NativeProfile, len(presets))
	for n, p := range presets {
		out[n] = p
	}
	return out
}

// ResolveProfile applies overrides to a preset ("" = no preset: everything from overrides) and
// checks that signing and decryption are possible.
func ResolveProfile(preset string, over *MechanismConfig) (*NativeProfile, error) {
	var p NativeProfile
	if preset != "" {
		base, ok := presets[preset]
		if !ok {
			names := make([]string, 0, len(presets))
			for n := range presets {
				names = append(names, n)
			}
			sort.Strings(names)
			return nil, errorf(ErrConfig, "unknown preset %q (known: %s)", preset, strings.Join(names, ", "))
		}
		p = base
	} else {
		p = NativeProfile{Name: "custom", Ciphertext: CiphertextC1C3C2}
	}
	if over != nil {
		setU := func(dst *uint, v uint) {
			if v != 0 {
				*dst = v
			}
		}
		setU(&p.KeyTypeSM2, over.KeyTypeSM2)
		setU(&p.SM2KeyGen, over.SM2KeyGen)
		setU(&p.SM2SignWithSM3, over.SM2SignWithSM3)
		setU(&p.SM2SignDigest, over.SM2SignDigest)
		setU(&p.SM2Decrypt, over.SM2Decrypt)
		setU(&p.SM3, over.SM3)
		if over.UserIDAsParam != nil {
			p.UserIDAsParam = *over.UserIDAsParam
		}
		if over.SignatureDER != nil {
			p.SignatureDER = *over.SignatureDER
		}
		if over.Ciphertext != "" {
			p.Ciphertext = over.Ciphertext
		}
	}
	switch p.Ciphertext {
	case CiphertextC1C3C2, CiphertextC1C2C3, CiphertextASN1:
	default:
		return nil, errorf(ErrConfig, "ciphertext must be c1c3c2, c1c2c3 or asn1")
	}
	if p.KeyTypeSM2 == 0 {
		return nil, errorf(ErrConfig, "native profile %s: key_type_sm2 is not set", p.Name)
	}
	if p.SM2SignDigest == 0 && p.SM2SignWithSM3 == 0 {
		return nil, errorf(ErrConfig, "native profile %s: set sm2_sign_sm3 or sm2_sign_digest", p.Name)
	}
	if p.SM2Decrypt == 0 {
		return nil, errorf(ErrConfig, "native profile %s: sm2_decrypt is not set", p.Name)
	}
	return &p, nil
}

// requiredMechanisms lists the mechanisms checked at start-up.
func (p *NativeProfile) requiredMechanisms() []uint {
	var out []uint
	for _, m := range []uint{p.SM2SignWithSM3, p.SM2SignDigest, p.SM2Decrypt} {
		if m != 0 {
			out = append(out, m)
		}
	}
	return out
}

// missingMechanisms returns the required mechanisms absent from available.
func (p *NativeProfile) missingMechanisms(available []uint) []uint {
	have := map[uint]bool{}
	for _, m := range available {
		have[m] = true
	}
	var miss []uint
	for _, m := range p.requiredMechanisms() {
		if !have[m] {
			miss = append(miss, m)
		}
	}
	return miss
}

// checkMechanisms calls C_GetMechanismList and fails closed if any required mechanism is missing.
func (t *token) checkMechanisms() error {
	t.mu.Lock()
	slot := t.slot
	t.mu.Unlock()
	ms, err := t.mod.ctx.GetMechanismList(slot)
	if err != nil {
		return t.wrapErr("mechanisms", err)
	}
	avail := make([]uint, 0, len(ms))
	for _, m := range ms {
		avail = append(avail, m.Mechanism)
	}
	if miss := t.native.missingMechanisms(avail); len(miss) > 0 {
		hex := make([]string, len(miss))
		for i, m := range miss {
			hex[i] = fmt.Sprintf("0x%08X", m)
		}
		return opErr("mechanisms", "", t.name, ErrMechanismMissing,
			errorf(ErrMechanismMissing, "preset %s needs %s", t.native.Name, strings.Join(hex, ", ")))
	}
	return nil
}

// signRequest is one native signing call.
type signRequest struct {
	Mechanism uint
	Param     []byte
	Data      []byte
}

var defaultUID = []byte(pki.DefaultUserID)

// buildSign builds the token request for signing msg (a raw message, or a 32-byte digest when
// prehashed) with user ID uid.
func (p *NativeProfile) buildSign(pub *ecdsa.PublicKey, msg, uid []byte, prehashed bool) (signRequest, error) {
	if len(uid) == 0 {
		uid = defaultUID
	}
	if prehashed {
		if len(msg) != 32 {
			return signRequest{}, errorf(ErrInvalidInput, "digest must be 32 bytes")
		}
		if p.SM2SignDigest == 0 {
			return signRequest{}, errorf(ErrMechanismMissing, "profile %s cannot sign a precomputed digest", p.Name)
		}
		return signRequest{Mechanism: p.SM2SignDigest, Data: msg}, nil
	}
	if p.SM2SignWithSM3 != 0 {
		if p.UserIDAsParam {
			return signRequest{Mechanism: p.SM2SignWithSM3, Param: append([]byte(nil), uid...), Data: msg}, nil
		}
		if string(uid) == pki.DefaultUserID {
			return signRequest{Mechanism: p.SM2SignWithSM3, Data: msg}, nil
		}
	}
	if p.SM2SignDigest == 0 {
		return signRequest{}, errorf(ErrMechanismMissing, "profile %s cannot sign with a non-default user ID", p.Name)
	}
	e, err := sm2.CalculateSM2Hash(pub, msg, uid)
	if err != nil {
		return signRequest{}, errorf(ErrInvalidInput, "cannot compute SM2 hash")
	}
	return signRequest{Mechanism: p.SM2SignDigest, Data: e}, nil
}

type ecSig struct{ R, S *big.Int }

// signatureToDER converts the token's signature output into DER, validating it.
func (p *NativeProfile) signatureToDER(out []byte) ([]byte, error) {
	if p.SignatureDER {
		var s ecSig
		rest, err := asn1.Unmarshal(out, &s)
		if err != nil || len(rest) != 0 || s.R == nil || s.S == nil || s.R.Sign() <= 0 || s.S.Sign() <= 0 {
			return nil, errorf(ErrToken, "token returned a malformed DER signature")
		}
		return out, nil
	}
	if len(out) != 64 {
		return nil, errorf(ErrToken, "token returned a %d-byte raw signature (want 64)", len(out))
	}
	r := new(big.Int).SetBytes(out[:32])
	s := new(big.Int).SetBytes(out[32:])
	if r.Sign() == 0 || s.Sign() == 0 {
		return nil, errorf(ErrToken, "token returned a zero signature component")
	}
	return asn1.Marshal(ecSig{r, s})
}

// buildDecrypt converts a C1C3C2 raw ciphertext into the encoding the token expects.
func (p *NativeProfile) buildDecrypt(c1c3c2 []byte) ([]byte, error) {
	switch p.Ciphertext {
	case CiphertextC1C2C3:
		out, err := sm2.AdjustCiphertextSplicingOrder(c1c3c2, sm2.C1C3C2, sm2.C1C2C3)
		if err != nil {
			return nil, errorf(ErrInvalidInput, "bad ciphertext")
		}
		return out, nil
	case CiphertextASN1:
		out, err := sm2.PlainCiphertext2ASN1(c1c3c2, sm2.C1C3C2)
		if err != nil {
			return nil, errorf(ErrInvalidInput, "bad ciphertext")
		}
		return out, nil
	}
	return c1c3c2, nil
}

// parseECPoint decodes CKA_EC_POINT (a DER OCTET STRING holding 04||x||y, or the bare point
// as some tokens return) into an SM2 public key.
func parseECPoint(v []byte) (*ecdsa.PublicKey, error) {
	pt := v
	var inner []byte
	if rest, err := asn1.Unmarshal(v, &inner); err == nil && len(rest) == 0 {
		pt = inner
	}
	if len(pt) != 65 || pt[0] != 4 {
		return nil, errorf(ErrIntegrity, "EC point is not an uncompressed SM2 point")
	}
	pub, err := sm2.NewPublicKey(pt)
	if err != nil {
		return nil, errorf(ErrIntegrity, "EC point is not on the SM2 curve")
	}
	return pub, nil
}

// nativeRemote performs SM2 operations on the token objects of one key version, spreading
// calls over the key's replicas and failing over.
type nativeRemote struct {
	v    *Vault
	e    *keyEntry
	sel  objSel // the private key of the version
	pub  *ecdsa.PublicKey
	last atomic.Value // string
}

func (r *nativeRemote) tokenName() string {
	s, _ := r.last.Load().(string)
	return s
}

func (r *nativeRemote) run(op string, f func(t *token, ctx *p11.Ctx, s p11.SessionHandle, key p11.ObjectHandle) error) error {
	var prev string
	var errs []error
	for _, t := range r.v.replicaOrder(r.e) {
		if t.native == nil {
			continue
		}
		if prev != "" {
			r.v.opts.observer.ObserveFailover(r.e.cfg.Name, prev, t.name)
		}
		r.last.Store(t.name)
		err := t.do(op, func(ctx *p11.Ctx, s p11.SessionHandle) error {
			h, err := t.findSel(ctx, s, pkcs11.CKO_PRIVATE_KEY, r.sel)
			if err != nil {
				return err
			}
			return f(t, ctx, s, h)
		})
		if err == nil {
			return nil
		}
		if errors.Is(err, ErrTokenUnavailable) || errors.Is(err, ErrPoolTimeout) {
			t.setHealth(err)
		}
		errs = append(errs, err)
		if !failoverWorthy(err) || errors.Is(err, ErrIntegrity) {
			return err
		}
		prev = t.name
	}
	return opErr(op, r.e.cfg.Name, "", ErrTokenUnavailable, errors.Join(errs...))
}

// nativeSign runs the full native signing pipeline: build the request for the profile, execute
// it (a C_SignInit/C_Sign pair on a real token) and normalise the output to DER.
func nativeSign(p *NativeProfile, pub *ecdsa.PublicKey, msg, uid []byte, prehashed bool, exec func(signRequest) ([]byte, error)) ([]byte, error) {
	req, err := p.buildSign(pub, msg, uid, prehashed)
	if err != nil {
		return nil, err
	}
	out, err := exec(req)
	if err != nil {
		return nil, err
	}
	return p.signatureToDER(out)
}

// nativeDecrypt converts the ciphertext for the profile and executes the decryption.
func nativeDecrypt(p *NativeProfile, c1c3c2 []byte, exec func(mech uint, data []byte) ([]byte, error)) ([]byte, error) {
	data, err := p.buildDecrypt(c1c3c2)
	if err != nil {
		return nil, err
	}
	return exec(p.SM2Decrypt, data)
}

func (r *nativeRemote) sign(msg, uid []byte, prehashed bool) ([]byte, error) {
	var out []byte
	err := r.run("sign", func(t *token, ctx *p11.Ctx, s p11.SessionHandle, h p11.ObjectHandle) error {
		der, err := nativeSign(t.native, r.pub, msg, uid, prehashed, func(req signRequest) ([]byte, error) {
			var param any
			if req.Param != nil {
				param = req.Param
			}
			if err := ctx.SignInit(s, []*p11.Mechanism{p11.NewMechanism(req.Mechanism, param)}, h); err != nil {
				return nil, err
			}
			return ctx.Sign(s, req.Data)
		})
		if err != nil {
			if _, isP11 := rvOf(err); isP11 {
				return err
			}
			return opErr("sign", r.e.cfg.Name, t.name, err, nil)
		}
		out = der
		return nil
	})
	return out, err
}

func (r *nativeRemote) decrypt(c1c3c2 []byte) ([]byte, error) {
	var out []byte
	err := r.run("decrypt", func(t *token, ctx *p11.Ctx, s p11.SessionHandle, h p11.ObjectHandle) error {
		pt, err := nativeDecrypt(t.native, c1c3c2, func(mech uint, data []byte) ([]byte, error) {
			if err := ctx.DecryptInit(s, []*p11.Mechanism{p11.NewMechanism(mech, nil)}, h); err != nil {
				return nil, err
			}
			return ctx.Decrypt(s, data)
		})
		if err != nil {
			if classify(err) != classOther {
				return err
			}
			return opErr("decrypt", r.e.cfg.Name, t.name, ErrAuthFailed, nil)
		}
		out = pt
		return nil
	})
	return out, err
}

// loadNative finds the versions of a native SM2 key ("object@N" labels; a bare "object" label
// is version 1) and reads their public keys. SM4 keys on native tokens are stored wrapped.
func (v *Vault) loadNative(e *keyEntry, t *token) error {
	if e.cfg.Type != KeyTypeSM2 {
		return v.loadWrapped(e, t)
	}
	type found struct {
		ver   int
		label string
		pub   *ecdsa.PublicKey
	}
	var list []found
	err := t.do("load", func(ctx *p11.Ctx, s p11.SessionHandle) error {
		list = list[:0]
		tmpl := []*p11.Attribute{
			p11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
			p11.NewAttribute(pkcs11.CKA_KEY_TYPE, t.native.KeyTypeSM2),
		}
		if len(e.ref.ID) > 0 {
			tmpl = append(tmpl, p11.NewAttribute(pkcs11.CKA_ID, e.ref.ID))
		}
		hs, err := findAll(ctx, s, tmpl, 10000)
		if err != nil {
			return err
		}
		for _, h := range hs {
			attrs, err := ctx.GetAttributeValue(s, h, []*p11.Attribute{
				p11.NewAttribute(pkcs11.CKA_LABEL, nil),
				p11.NewAttribute(pkcs11.CKA_EC_POINT, nil),
			})
			if err != nil {
				continue
			}
			label := string(attrs[0].Value)
			ver, ok := parseBlobLabel(e.ref.Object, label)
			if e.ref.Object == "" || (!ok && label == e.ref.Object) {
				ver, ok = 1, true // id= alone names one key pair, whatever its label
			}
			if !ok {
				continue
			}
			pub, err := parseECPoint(attrs[1].Value)
			if err != nil {
				return opErr("load", e.cfg.Name, t.name, err, nil)
			}
			list = append(list, found{ver, label, pub})
		}
		if e.ref.Object == "" && len(list) > 1 {
			return opErr("load", e.cfg.Name, t.name, ErrConfig, errorf(ErrConfig, "%d keys have CKA_ID %x; add object= to tell them apart", len(list), e.ref.ID))
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(list) == 0 {
		return opErr("load", e.cfg.Name, t.name, ErrKeyNotFound, nil)
	}
	for _, f := range list {
		k := &SM2Key{name: e.cfg.Name, version: f.ver, token: t.name, obs: v.opts.observer, pub: f.pub}
		k.setUID(e.uid)
		k.remote = &nativeRemote{v: v, e: e, sel: e.ref.objSel(f.label), pub: f.pub}
		e.setVersion(f.ver, &loadedVersion{sm2: k, token: t.name})
	}
	return nil
}
