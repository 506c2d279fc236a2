package keyvault

import (
	"crypto/ecdsa"
	"crypto/subtle"
	"encoding/asn1"
	"errors"
	"math/big"
	"sort"
	"sync/atomic"

	"github.com/emmansun/gmsm/kdf"
	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm3"
	"github.com/gmgate/gmgate/keyvault/internal/p11"
	"github.com/miekg/pkcs11"
)

// Token-side SM2 decryption through CKM_ECDH1_DERIVE (KeyConfig.TokenDecrypt).
//
// The SM2 private key is an ordinary CKK_EC key on the SM2 curve inside the token (sensitive,
// non-extractable, derive only). SM2 decryption needs d·C1 = (x2, y2); ECDH1 with CKD_NULL gives
// x2. y2 is one of the two square roots of x2³ + a·x2 + b; the right one is the candidate whose
// C3 = SM3(x2 ‖ M ‖ y2) matches. The key cannot sign (a token without GM mechanisms cannot make
// SM2 signatures), so Signer refuses it. Works on SoftHSM2 2.6.

// oidSM2Curve is 1.2.156.10197.1.301 (sm2p256v1).
var oidSM2Curve = asn1.ObjectIdentifier{1, 2, 156, 10197, 1, 301}

func sm2ECParams() []byte {
	b, _ := asn1.Marshal(oidSM2Curve)
	return b
}

// ecVersion is one stored version of a token EC key.
type ecVersion struct {
	ver   int
	label string
	pub   *ecdsa.PublicKey
}

// ecVersions lists the SM2-curve EC key versions that the reference selects in a token: public
// keys labelled object@N (and, with id=, whose CKA_ID is the id); with id= alone, the one key
// pair with that CKA_ID, as version 1.
func (t *token) ecVersions(ref Ref) ([]ecVersion, error) {
	var out []ecVersion
	object := ref.Object
	err := t.do("list", func(ctx *p11.Ctx, s p11.SessionHandle) error {
		out = out[:0]
		tmpl := []*p11.Attribute{
			p11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
			p11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_EC),
			p11.NewAttribute(pkcs11.CKA_EC_PARAMS, sm2ECParams()),
		}
		if len(ref.ID) > 0 {
			tmpl = append(tmpl, p11.NewAttribute(pkcs11.CKA_ID, ref.ID))
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
				if classify(err) != classOther {
					return err
				}
				continue
			}
			label := string(attrs[0].Value)
			ver, ok := parseBlobLabel(object, label)
			if object == "" {
				ver, ok = 1, true
			}
			if !ok {
				continue
			}
			pub, err := parseECPoint(attrs[1].Value)
			if err != nil {
				return opErr("load", object, t.name, err, nil)
			}
			out = append(out, ecVersion{ver, label, pub})
		}
		if object == "" && len(out) > 1 {
			return opErr("load", "", t.name, ErrConfig, errorf(ErrConfig, "%d keys have CKA_ID %x; add object= to tell them apart", len(out), ref.ID))
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].ver < out[j].ver })
	return out, err
}

// putECKey imports an SM2 scalar as a sensitive, non-extractable, derive-only EC key pair
// labelled label, with CKA_ID id on both halves when id is set.
func (t *token) putECKey(label string, id []byte, priv *sm2.PrivateKey) error {
	d := make([]byte, 32)
	priv.D.FillBytes(d)
	defer zero(d)
	point := append([]byte{4}, append(priv.X.FillBytes(make([]byte, 32)), priv.Y.FillBytes(make([]byte, 32))...)...)
	ecPoint, _ := asn1.Marshal(point)
	return t.do("store", func(ctx *p11.Ctx, s p11.SessionHandle) error {
		if _, err := t.findObject(ctx, s, pkcs11.CKO_PRIVATE_KEY, label); err == nil {
			return opErr("store", label, t.name, ErrExists, nil)
		} else if !errors.Is(err, ErrKeyNotFound) {
			return err
		}
		return createECPair(ctx, s, label, id, d, ecPoint)
	})
}

// createECPair creates the public and private halves of a token_decrypt key.
func createECPair(ctx *p11.Ctx, s p11.SessionHandle, label string, id, d, ecPoint []byte) error {
	withID := func(a []*p11.Attribute) []*p11.Attribute {
		if len(id) > 0 {
			a = append(a, p11.NewAttribute(pkcs11.CKA_ID, id))
		}
		return a
	}
	ph, err := ctx.CreateObject(s, withID([]*p11.Attribute{
		p11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
		p11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_EC),
		p11.NewAttribute(pkcs11.CKA_TOKEN, true),
		p11.NewAttribute(pkcs11.CKA_PRIVATE, false),
		p11.NewAttribute(pkcs11.CKA_LABEL, label),
		p11.NewAttribute(pkcs11.CKA_EC_PARAMS, sm2ECParams()),
		p11.NewAttribute(pkcs11.CKA_EC_POINT, ecPoint),
	}))
	if err != nil {
		return err
	}
	_, err = ctx.CreateObject(s, withID([]*p11.Attribute{
		p11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
		p11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_EC),
		p11.NewAttribute(pkcs11.CKA_TOKEN, true),
		p11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		p11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		p11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		p11.NewAttribute(pkcs11.CKA_DERIVE, true),
		p11.NewAttribute(pkcs11.CKA_SIGN, false),
		p11.NewAttribute(pkcs11.CKA_DECRYPT, false),
		p11.NewAttribute(pkcs11.CKA_LABEL, label),
		p11.NewAttribute(pkcs11.CKA_EC_PARAMS, sm2ECParams()),
		p11.NewAttribute(pkcs11.CKA_VALUE, d),
	}))
	if err != nil {
		_ = ctx.DestroyObject(s, ph)
	}
	return err
}

// ecdhX asks the token for x(d·C1) with CKM_ECDH1_DERIVE / CKD_NULL.
func (t *token) ecdhX(ctx *p11.Ctx, s p11.SessionHandle, key p11.ObjectHandle, c1 []byte) ([]byte, error) {
	params := p11.NewECDH1DeriveParams(pkcs11.CKD_NULL, nil, c1)
	h, err := ctx.DeriveKey(s, []*p11.Mechanism{p11.NewMechanism(pkcs11.CKM_ECDH1_DERIVE, params)}, key, []*p11.Attribute{
		p11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		p11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_GENERIC_SECRET),
		p11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32),
		p11.NewAttribute(pkcs11.CKA_TOKEN, false),
		p11.NewAttribute(pkcs11.CKA_SENSITIVE, false),
		p11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true),
	})
	if err != nil {
		return nil, err
	}
	defer ctx.DestroyObject(s, h)
	attrs, err := ctx.GetAttributeValue(s, h, []*p11.Attribute{p11.NewAttribute(pkcs11.CKA_VALUE, nil)})
	if err != nil {
		return nil, err
	}
	if len(attrs) != 1 || len(attrs[0].Value) != 32 {
		return nil, errorf(ErrToken, "ECDH1 derive returned %d bytes", len(attrs[0].Value))
	}
	return attrs[0].Value, nil
}

// finishSM2Decrypt completes SM2 decryption from x2 = x(d·C1): it tries both y2 candidates and
// returns the plaintext whose C3 matches (constant-time compare), or ErrAuthFailed.
func finishSM2Decrypt(x2, c2, c3 []byte) ([]byte, error) {
	params := sm2.P256().Params()
	p := params.P
	x := new(big.Int).SetBytes(x2)
	if len(x2) != 32 || x.Cmp(p) >= 0 || len(c3) != sm3.Size || len(c2) == 0 {
		return nil, ErrAuthFailed
	}
	// y² = x³ − 3x + b (mod p)
	rhs := new(big.Int).Mul(x, x)
	rhs.Mul(rhs, x)
	rhs.Sub(rhs, new(big.Int).Mul(big.NewInt(3), x))
	rhs.Add(rhs, params.B)
	rhs.Mod(rhs, p)
	y := new(big.Int).ModSqrt(rhs, p)
	if y == nil {
		return nil, ErrAuthFailed
	}
	var result []byte
	found := 0
	for _, cand := range []*big.Int{y, new(big.Int).Sub(p, y)} {
		y2 := cand.FillBytes(make([]byte, 32))
		z := append(append([]byte(nil), x2...), y2...)
		t := kdf.Kdf(sm3.New, z, len(c2))
		zero(z)
		allZero := byte(0)
		for _, b := range t {
			allZero |= b
		}
		if allZero == 0 {
			continue
		}
		m := make([]byte, len(c2))
		subtle.XORBytes(m, c2, t)
		h := sm3.New()
		h.Write(x2)
		h.Write(m)
		h.Write(y2)
		if subtle.ConstantTimeCompare(h.Sum(nil), c3) == 1 && found == 0 {
			result, found = m, 1
		} else {
			zero(m)
		}
	}
	if found == 0 {
		return nil, ErrAuthFailed
	}
	return result, nil
}

// deriveRemote decrypts inside the token; it cannot sign.
type deriveRemote struct {
	v    *Vault
	e    *keyEntry
	sel  objSel // the private key of the version
	last atomic.Value
}

func (r *deriveRemote) tokenName() string {
	s, _ := r.last.Load().(string)
	return s
}

func (r *deriveRemote) sign([]byte, []byte, bool) ([]byte, error) {
	return nil, opErr("sign", r.e.cfg.Name, "", ErrUnsupported,
		errorf(ErrUnsupported, "token_decrypt keys decrypt only; SM2 signing needs a wrapped or native key"))
}

func (r *deriveRemote) decrypt(c1c3c2 []byte) ([]byte, error) {
	if len(c1c3c2) < 65+32+1 {
		return nil, opErr("decrypt", r.e.cfg.Name, "", ErrAuthFailed, nil)
	}
	c1, c3, c2 := c1c3c2[:65], c1c3c2[65:97], c1c3c2[97:]
	if _, err := sm2.NewPublicKey(c1); err != nil {
		return nil, opErr("decrypt", r.e.cfg.Name, "", ErrAuthFailed, nil)
	}
	var prev string
	var errs []error
	for _, t := range r.v.replicaOrder(r.e) {
		if prev != "" {
			r.v.opts.observer.ObserveFailover(r.e.cfg.Name, prev, t.name)
		}
		r.last.Store(t.name)
		var x2 []byte
		err := t.do("decrypt", func(ctx *p11.Ctx, s p11.SessionHandle) error {
			h, err := t.findSel(ctx, s, pkcs11.CKO_PRIVATE_KEY, r.sel)
			if err != nil {
				return err
			}
			x2, err = t.ecdhX(ctx, s, h, c1)
			return err
		})
		if err == nil {
			pt, ferr := finishSM2Decrypt(x2, c2, c3)
			zero(x2)
			if ferr != nil {
				return nil, opErr("decrypt", r.e.cfg.Name, t.name, ErrAuthFailed, nil)
			}
			return pt, nil
		}
		if errors.Is(err, ErrTokenUnavailable) || errors.Is(err, ErrPoolTimeout) {
			t.setHealth(err)
		}
		errs = append(errs, err)
		if !failoverWorthy(err) {
			return nil, err
		}
		prev = t.name
	}
	return nil, opErr("decrypt", r.e.cfg.Name, "", ErrTokenUnavailable, errors.Join(errs...))
}

// loadDerive loads the versions of a token_decrypt key (public keys only; the private key
// stays in the token).
func (v *Vault) loadDerive(e *keyEntry, t *token) error {
	list, err := t.ecVersions(e.ref)
	if err != nil {
		return err
	}
	if len(list) == 0 {
		return opErr("load", e.cfg.Name, t.name, ErrKeyNotFound, nil)
	}
	for _, f := range list {
		k := &SM2Key{name: e.cfg.Name, version: f.ver, token: t.name, obs: v.opts.observer, pub: f.pub}
		k.setUID(e.uid)
		k.remote = &deriveRemote{v: v, e: e, sel: e.ref.objSel(f.label)}
		e.setVersion(f.ver, &loadedVersion{sm2: k, token: t.name})
	}
	return nil
}

func (v *Vault) putDerive(t *token, label string, id, raw []byte) error {
	priv, err := sm2.NewPrivateKey(raw)
	if err != nil {
		return errorf(ErrIntegrity, "invalid SM2 scalar")
	}
	defer func() {
		w := priv.D.Bits()
		for i := range w {
			w[i] = 0
		}
	}()
	return t.putECKey(label, id, priv)
}
