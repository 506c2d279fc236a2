package keyvault

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/gmgate/gmgate/keyvault/internal/p11"
	"github.com/miekg/pkcs11"
)

// Wrapped-mode blob format: magic "GMKV" | format 0x01 | 12-byte IV | AES-256-GCM(ciphertext||tag).
// The additional data binds the object name, version and purpose (see blobAAD).
const (
	blobMagic   = "GMKV"
	blobFormat  = 1
	blobIVLen   = 12
	blobTagBits = 128
	maxBlob     = 4096
	// dataApplication is CKA_APPLICATION of every blob object.
	dataApplication = "gmgate-keyvault"
)

// Purposes bound into the additional data.
const (
	purposeSM2 = "sm2-private-key"
	purposeSM4 = "sm4-secret-key"
)

func purposeFor(t KeyType) string {
	if t == KeyTypeSM4 {
		return purposeSM4
	}
	return purposeSM2
}

// blobAAD is the additional authenticated data of one wrapped key version.
func blobAAD(object string, version int, purpose string) []byte {
	return []byte("gmgate-keyvault/v1\x00name=" + object + "\x00version=" + strconv.Itoa(version) + "\x00purpose=" + purpose)
}

// blobLabel is the CKA_LABEL (or file name stem) of one version: "object@version".
func blobLabel(object string, version int) string {
	return object + "@" + strconv.Itoa(version)
}

// parseBlobLabel reverses blobLabel for the given object.
func parseBlobLabel(object, label string) (int, bool) {
	rest, ok := strings.CutPrefix(label, object+"@")
	if !ok || rest == "" || len(rest) > 6 {
		return 0, false
	}
	n, err := strconv.Atoi(rest)
	if err != nil || n <= 0 || strconv.Itoa(n) != rest {
		return 0, false
	}
	return n, true
}

func kekTemplate(label string) []*p11.Attribute {
	return []*p11.Attribute{
		p11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		p11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		p11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32),
		p11.NewAttribute(pkcs11.CKA_TOKEN, true),
		p11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		p11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		p11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		p11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
		p11.NewAttribute(pkcs11.CKA_DECRYPT, true),
		p11.NewAttribute(pkcs11.CKA_WRAP, false),
		p11.NewAttribute(pkcs11.CKA_UNWRAP, false),
		p11.NewAttribute(pkcs11.CKA_SIGN, false),
		p11.NewAttribute(pkcs11.CKA_VERIFY, false),
		p11.NewAttribute(pkcs11.CKA_DERIVE, false),
		p11.NewAttribute(pkcs11.CKA_LABEL, label),
	}
}

// createKEK generates the non-extractable, sensitive AES-256 key-encryption key.
func (t *token) createKEK() (created bool, err error) {
	err = t.do("init", func(ctx *p11.Ctx, s p11.SessionHandle) error {
		if _, err := t.findObject(ctx, s, pkcs11.CKO_SECRET_KEY, t.kekLabel); err == nil {
			return nil
		} else if !errors.Is(err, ErrKeyNotFound) {
			return err
		}
		h, err := ctx.GenerateKey(s, []*p11.Mechanism{p11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}, kekTemplate(t.kekLabel))
		if err != nil {
			return err
		}
		// Prove the attributes stuck (some tokens silently ignore template values).
		attrs, err := ctx.GetAttributeValue(s, h, []*p11.Attribute{
			p11.NewAttribute(pkcs11.CKA_SENSITIVE, nil),
			p11.NewAttribute(pkcs11.CKA_EXTRACTABLE, nil),
		})
		if err != nil {
			return err
		}
		if len(attrs) != 2 || !attrBool(attrs[0]) || attrBool(attrs[1]) {
			_ = ctx.DestroyObject(s, h)
			return errorf(ErrToken, "token did not create the KEK as sensitive and non-extractable")
		}
		created = true
		return nil
	})
	return created, err
}

func attrBool(a *p11.Attribute) bool { return len(a.Value) > 0 && a.Value[0] != 0 }

// seal encrypts a key with the KEK (AES-256-GCM, random IV) and returns the blob.
func (t *token) seal(aad, plaintext []byte) ([]byte, error) {
	iv := make([]byte, blobIVLen)
	if _, err := rand.Read(iv); err != nil {
		return nil, errorf(ErrToken, "no randomness")
	}
	var blob []byte
	err := t.do("wrap", func(ctx *p11.Ctx, s p11.SessionHandle) error {
		kek, err := t.findObject(ctx, s, pkcs11.CKO_SECRET_KEY, t.kekLabel)
		if err != nil {
			return err
		}
		params := p11.NewGCMParams(iv, aad, blobTagBits)
		defer params.Free()
		if err := ctx.EncryptInit(s, []*p11.Mechanism{p11.NewMechanism(pkcs11.CKM_AES_GCM, params)}, kek); err != nil {
			return err
		}
		ct, err := ctx.Encrypt(s, plaintext)
		if err != nil {
			return err
		}
		if len(ct) != len(plaintext)+blobTagBits/8 {
			return errorf(ErrToken, "unexpected AES-GCM output length")
		}
		b := make([]byte, 0, len(blobMagic)+1+blobIVLen+len(ct))
		b = append(b, blobMagic...)
		b = append(b, blobFormat)
		b = append(b, iv...)
		blob = append(b, ct...)
		return nil
	})
	return blob, err
}

// unseal authenticates and decrypts a blob with the KEK.
func (t *token) unseal(aad, blob []byte) ([]byte, error) {
	hdr := len(blobMagic) + 1
	if len(blob) < hdr+blobIVLen+blobTagBits/8 || len(blob) > maxBlob ||
		!bytes.Equal(blob[:len(blobMagic)], []byte(blobMagic)) || blob[len(blobMagic)] != blobFormat {
		return nil, opErr("unwrap", "", t.name, ErrIntegrity, errorf(ErrIntegrity, "malformed blob"))
	}
	iv := blob[hdr : hdr+blobIVLen]
	ct := blob[hdr+blobIVLen:]
	var pt []byte
	err := t.do("unwrap", func(ctx *p11.Ctx, s p11.SessionHandle) error {
		kek, err := t.findObject(ctx, s, pkcs11.CKO_SECRET_KEY, t.kekLabel)
		if err != nil {
			return err
		}
		params := p11.NewGCMParams(iv, aad, blobTagBits)
		defer params.Free()
		if err := ctx.DecryptInit(s, []*p11.Mechanism{p11.NewMechanism(pkcs11.CKM_AES_GCM, params)}, kek); err != nil {
			return err
		}
		out, err := ctx.Decrypt(s, ct)
		if err != nil {
			if classify(err) == classOther {
				return opErr("unwrap", "", t.name, ErrIntegrity, err)
			}
			return err
		}
		pt = out
		return nil
	})
	return pt, err
}

// --- blob storage: CKO_DATA objects in the token, or files in BlobStore/<token name>/ ---

func (t *token) blobPath(label string) string {
	return filepath.Join(t.blobDir, t.name, label+".blob")
}

func (t *token) putBlob(label string, blob []byte) error {
	if t.blobDir != "" {
		dir := filepath.Join(t.blobDir, t.name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return opErr("store", label, t.name, ErrConfig, errorf(ErrConfig, "cannot create blob directory"))
		}
		if err := writeFileKey(t.blobPath(label), blob); err != nil {
			return opErr("store", label, t.name, err, nil)
		}
		return nil
	}
	return t.do("store", func(ctx *p11.Ctx, s p11.SessionHandle) error {
		if _, err := t.findObject(ctx, s, pkcs11.CKO_DATA, label); err == nil {
			return opErr("store", label, t.name, ErrExists, nil)
		} else if !errors.Is(err, ErrKeyNotFound) {
			return err
		}
		_, err := ctx.CreateObject(s, []*p11.Attribute{
			p11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_DATA),
			p11.NewAttribute(pkcs11.CKA_TOKEN, true),
			p11.NewAttribute(pkcs11.CKA_PRIVATE, true),
			p11.NewAttribute(pkcs11.CKA_MODIFIABLE, false),
			p11.NewAttribute(pkcs11.CKA_LABEL, label),
			p11.NewAttribute(pkcs11.CKA_APPLICATION, dataApplication),
			p11.NewAttribute(pkcs11.CKA_VALUE, blob),
		})
		return err
	})
}

func (t *token) getBlob(label string) ([]byte, error) {
	if t.blobDir != "" {
		b, err := readBounded(t.blobPath(label))
		if err != nil {
			return nil, opErr("load", label, t.name, err, nil)
		}
		return b, nil
	}
	var out []byte
	err := t.do("load", func(ctx *p11.Ctx, s p11.SessionHandle) error {
		h, err := t.findObject(ctx, s, pkcs11.CKO_DATA, label)
		if err != nil {
			return err
		}
		attrs, err := ctx.GetAttributeValue(s, h, []*p11.Attribute{p11.NewAttribute(pkcs11.CKA_VALUE, nil)})
		if err != nil {
			return err
		}
		if len(attrs) != 1 || len(attrs[0].Value) > maxBlob {
			return opErr("load", label, t.name, ErrIntegrity, nil)
		}
		out = attrs[0].Value
		return nil
	})
	return out, err
}

// blobVersions lists the stored versions of object, ascending.
func (t *token) blobVersions(object string) ([]int, error) {
	var labels []string
	if t.blobDir != "" {
		ents, err := os.ReadDir(filepath.Join(t.blobDir, t.name))
		if err != nil {
			if os.IsNotExist(err) {
				return nil, nil
			}
			return nil, opErr("list", object, t.name, ErrConfig, errorf(ErrConfig, "cannot read blob directory"))
		}
		for _, e := range ents {
			if l, ok := strings.CutSuffix(e.Name(), ".blob"); ok {
				labels = append(labels, l)
			}
		}
	} else {
		err := t.do("list", func(ctx *p11.Ctx, s p11.SessionHandle) error {
			labels = labels[:0]
			hs, err := findAll(ctx, s, []*p11.Attribute{
				p11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_DATA),
				p11.NewAttribute(pkcs11.CKA_APPLICATION, dataApplication),
			}, 10000)
			if err != nil {
				return err
			}
			for _, h := range hs {
				attrs, err := ctx.GetAttributeValue(s, h, []*p11.Attribute{p11.NewAttribute(pkcs11.CKA_LABEL, nil)})
				if err != nil {
					if classify(err) != classOther {
						return err
					}
					continue // object deleted concurrently
				}
				labels = append(labels, string(attrs[0].Value))
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	var vs []int
	for _, l := range labels {
		if n, ok := parseBlobLabel(object, l); ok {
			vs = append(vs, n)
		}
	}
	sort.Ints(vs)
	return vs, nil
}

// hasKEK reports whether the key-encryption key exists.
func (t *token) hasKEK() (bool, error) {
	found := false
	err := t.do("find_kek", func(ctx *p11.Ctx, s p11.SessionHandle) error {
		_, err := t.findObject(ctx, s, pkcs11.CKO_SECRET_KEY, t.kekLabel)
		if err == nil {
			found = true
			return nil
		}
		if errors.Is(err, ErrKeyNotFound) {
			return nil
		}
		return err
	})
	return found, err
}
