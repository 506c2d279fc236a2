package cryptosvc

import (
	"fmt"
	"strings"
	"testing"

	"github.com/gmgate/gmgate/refusal"
)

// TestAttackNTVValues: GM/T 0136 Type/Value edge cases a rewriting attacker or a sloppy client
// might try (DateTime, IV, odd Hex, Base64 garbage, numbers where text is taken, a key name
// smuggled through Hex, a downgraded or negative verify level, too many items). Each is refused
// or lands on the native parser's checks.
func TestAttackNTVValues(t *testing.T) {
	it := func(name, typ, value string) string {
		return fmt.Sprintf(`{"Name":%q,"Type":%q,"Value":%s}`, name, typ, value)
	}
	body := func(items ...string) []byte { return []byte(`{"Data":[` + strings.Join(items, ",") + `]}`) }
	key := it("KeyId", "Raw", `"pii"`)
	pt := it("PlainText", "Base64", `"AA=="`)
	many := make([]string, MaxNTVItems+1)
	for i := range many {
		many[i] = key
	}
	rows := []struct {
		name string
		op   Op
		body []byte
		want refusal.Code // refusal.OK: translated and parsed
	}{
		{"canonical", OpEncrypt, body(key, pt), refusal.OK},
		{"DateTime", OpEncrypt, body(key, it("Context", "DateTime", `"2026-12-04T00:00:00Z"`)), CodeMalformed},
		{"IV", OpDecrypt, body(key, it("IV", "Hex", `"00"`)), CodeMalformed},
		{"odd Hex", OpEncrypt, body(key, it("PlainText", "Hex", `"abc"`)), CodeMalformed},
		{"0x Hex", OpEncrypt, body(key, it("PlainText", "Hex", `"0x00"`)), CodeMalformed},
		{"bad Base64", OpEncrypt, body(key, it("PlainText", "Base64", `"A*=="`)), CodeMalformed},
		{"unknown Type", OpEncrypt, body(key, it("PlainText", "base64", `"AA=="`)), CodeMalformed},
		{"number for a key", OpEncrypt, body(it("KeyId", "Raw", `7`), pt), CodeMalformed},
		{"null key", OpEncrypt, body(it("KeyId", "Raw", `null`), pt), CodeMalformed},
		{"key name with NUL through Hex", OpEncrypt, body(it("KeyId", "Hex", `"70696900"`), pt), CodeMalformed},
		{"key name with @ through Base64", OpDecrypt, body(it("KeyId", "Base64", `"cGlpQDE="`), it("CipherText", "Raw", `"gm:v1:AA=="`)), CodeMalformed},
		{"repeated name", OpEncrypt, body(key, pt, pt), CodeMalformed},
		{"PlainText and native data", OpSign, body(key, pt, it("Data", "Base64", `"AA=="`)), CodeMalformed},
		{"negative verify level", OpVerifyData, body(it("VerifyLevel", "Raw", `-1`)), CodeMalformed},
		{"verify level 3", OpVerifyData, body(it("VerifyLevel", "Raw", `"3"`)), CodeMalformed},
		{"random over its bound", OpRandom, body(it("Length", "Raw", `1025`)), CodeMalformed},
		{"random huge", OpRandom, body(it("Length", "Raw", `"99999999999999999999"`)), CodeMalformed},
		{"object as Value", OpEncrypt, body(key, it("PlainText", "Raw", `{"a":1}`)), CodeMalformed},
		{"too many items", OpEncrypt, body(many...), CodeTooLarge},
		{"batch smuggled beside Data", OpEncrypt, []byte(`{"Data":[` + key + `,` + pt + `],"batch_input":[{"plaintext":"AA=="}]}`), CodeMalformed},
	}
	for _, tc := range rows {
		t.Run(tc.name, func(t *testing.T) {
			native, err := DecodeNTV(tc.op, tc.body)
			if err == nil {
				_, err = ParseRequest(tc.op, native, 0, 0)
			}
			if got := CodeOf(err); got != tc.want {
				t.Fatalf("code %s, want %s (err %v)", got, tc.want, err)
			}
		})
	}
}

// TestAttackRequestBounds: sizes and counts an authenticated caller controls (batch size, item
// fields, random bytes, user ID, context, chain, nesting) are bounded before any work.
func TestAttackRequestBounds(t *testing.T) {
	items := func(n int, it string) string {
		return `{"key":"pii","batch_input":[` + strings.TrimSuffix(strings.Repeat(it+",", n), ",") + `]}`
	}
	big := strings.Repeat("A", 4*(DefaultMaxItemSize/3+4))
	chain := `"` + strings.Repeat(`AA==","`, MaxChain) + `AA=="`
	rows := []struct {
		name string
		op   Op
		body string
		want refusal.Code
	}{
		{"batch at the bound", OpEncrypt, items(DefaultMaxItems, `{"plaintext":"AA=="}`), refusal.OK},
		{"batch over the bound", OpEncrypt, items(DefaultMaxItems+1, `{"plaintext":"AA=="}`), CodeTooLarge},
		{"empty batch", OpEncrypt, `{"key":"pii","batch_input":[]}`, CodeMalformed},
		{"batch and inline item", OpEncrypt, `{"key":"pii","plaintext":"AA==","batch_input":[{"plaintext":"AA=="}]}`, CodeMalformed},
		{"rotate batch", OpRotate, items(2, `{}`), CodeMalformed},
		{"plaintext over the item bound", OpEncrypt, `{"key":"pii","plaintext":"` + big + `"}`, CodeTooLarge},
		{"random 1025 bytes", OpRandom, `{"bytes":1025}`, CodeMalformed},
		{"random negative", OpRandom, `{"bytes":-1}`, CodeMalformed},
		{"random as float", OpRandom, `{"bytes":1e9}`, CodeMalformed},
		{"user_id over ENTL", OpSign, `{"key":"k","data":"AA==","user_id":"` + strings.Repeat("u", MaxUserIDLen+1) + `"}`, CodeMalformed},
		{"empty user_id", OpSign, `{"key":"k","data":"AA==","user_id":""}`, CodeMalformed},
		{"context over its bound", OpEncrypt, `{"key":"pii","plaintext":"AA==","context":"` + strings.Repeat("A", 4*(MaxContextLen/3+4)) + `"}`, CodeTooLarge},
		{"chain over its bound", OpValidateCert, `{"certificate":"AA==","chain":[` + chain + `]}`, CodeTooLarge},
		{"deep nesting", OpEncrypt, `{"key":"pii","plaintext":` + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + `}`, CodeMalformed},
		{"key on a keyless operation", OpRandom, `{"key":"pii"}`, CodeMalformed},
		{"field the operation does not take", OpEncrypt, `{"key":"pii","plaintext":"AA==","digest":"AA=="}`, CodeMalformed},
		{"trailing object", OpEncrypt, `{"key":"pii","plaintext":"AA=="}{"key":"other"}`, CodeMalformed},
	}
	for _, tc := range rows {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseRequest(tc.op, []byte(tc.body), 0, 0)
			if got := CodeOf(err); got != tc.want {
				t.Fatalf("code %s, want %s (err %v)", got, tc.want, err)
			}
		})
	}
}
