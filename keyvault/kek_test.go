package keyvault

import (
	"testing"

	"github.com/gmgate/gmgate/keyvault/internal/p11"
	"github.com/miekg/pkcs11"
)

// TestKEKAttributes: what an auditor's pkcs11-tool shows for the key-encryption key is what
// docs/keyvault.md promises: sensitive, never extractable, encrypt/decrypt only (SoftHSM2
// defaults CKA_VERIFY to true when the template leaves it out).
func TestKEKAttributes(t *testing.T) {
	needHSM(t)
	tc := tokenCfg("main", tokMain)
	tc.KEKLabel = uniqueObject("kek")
	v, err := Open(Config{Tokens: []TokenConfig{tc}}, WithAdmin())
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if _, err := v.Init(""); err != nil {
		t.Fatal(err)
	}
	tok := v.tokens[0]
	want := map[uint]bool{
		pkcs11.CKA_SENSITIVE: true, pkcs11.CKA_EXTRACTABLE: false, pkcs11.CKA_PRIVATE: true, pkcs11.CKA_TOKEN: true,
		pkcs11.CKA_ENCRYPT: true, pkcs11.CKA_DECRYPT: true,
		pkcs11.CKA_WRAP: false, pkcs11.CKA_UNWRAP: false, pkcs11.CKA_SIGN: false, pkcs11.CKA_VERIFY: false, pkcs11.CKA_DERIVE: false,
	}
	err = tok.do("audit", func(ctx *p11.Ctx, s p11.SessionHandle) error {
		h, err := tok.findObject(ctx, s, pkcs11.CKO_SECRET_KEY, tc.KEKLabel)
		if err != nil {
			return err
		}
		for a, w := range want {
			got, err := ctx.GetAttributeValue(s, h, []*p11.Attribute{p11.NewAttribute(a, nil)})
			if err != nil {
				return err
			}
			if attrBool(got[0]) != w {
				t.Errorf("KEK attribute 0x%x = %v, want %v", a, attrBool(got[0]), w)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
