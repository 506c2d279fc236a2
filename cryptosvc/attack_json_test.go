package cryptosvc

import (
	"testing"
)

// TestAttackJSONMemberNames: encoding/json matches object member names case-insensitively (with
// Unicode folding: "\u212aey", KELVIN SIGN, is "key") and lets the last of duplicate members
// win. A body could then mean one key, item or plaintext to whatever reads it before the service
// (a proxy, a WAF, a log, the caller's own signing step, a reviewer of the audit trail) and
// another to the service. Every member name must be spelt exactly and appear once per object, in
// the native encoding and in GM/T 0136's.
func TestAttackJSONMemberNames(t *testing.T) {
	native := []struct {
		name string
		op   Op
		body string
		ok   bool
	}{
		{"canonical", OpEncrypt, `{"key":"a","plaintext":"AA=="}`, true},
		{"escaped spelling of the same name", OpEncrypt, `{"k\u0065y":"a","plaintext":"AA=="}`, true},
		{"canonical batch", OpEncrypt, `{"key":"a","batch_input":[{"plaintext":"AA=="},{"plaintext":"AQ=="}]}`, true},
		{"Key overrides key", OpEncrypt, `{"key":"a","Key":"b","plaintext":"AA=="}`, false},
		{"KEY alone", OpEncrypt, `{"KEY":"b","plaintext":"AA=="}`, false},
		{"kelvin sign key", OpEncrypt, "{\"\u212aey\":\"b\",\"plaintext\":\"AA==\"}", false},
		{"long s in user_id", OpSign, "{\"key\":\"a\",\"data\":\"AA==\",\"u\u017fer_id\":\"x\"}", false},
		{"duplicate key, last wins", OpEncrypt, `{"key":"a","key":"b","plaintext":"AA=="}`, false},
		{"duplicate plaintext", OpEncrypt, `{"key":"a","plaintext":"AA==","plaintext":"AQ=="}`, false},
		{"Plaintext overrides plaintext", OpEncrypt, `{"key":"a","plaintext":"AA==","Plaintext":"AQ=="}`, false},
		{"duplicate context", OpDecrypt, `{"key":"a","ciphertext":"gm:v1:AA==","context":"AA==","context":""}`, false},
		{"Batch_Input", OpEncrypt, `{"key":"a","Batch_Input":[{"plaintext":"AA=="}]}`, false},
		{"duplicate batch_input", OpEncrypt, `{"key":"a","batch_input":[{"plaintext":"AA=="}],"batch_input":[{"plaintext":"AQ=="}]}`, false},
		{"batch item duplicate", OpEncrypt, `{"key":"a","batch_input":[{"plaintext":"AA==","plaintext":"AQ=="}]}`, false},
		{"batch item case variant", OpEncrypt, `{"key":"a","batch_input":[{"PLAINTEXT":"AA=="}]}`, false},
		{"nested too deep", OpEncrypt, `{"key":"a","batch_input":[[[[[[[[[[{}]]]]]]]]]]}`, false},
	}
	for _, tc := range native {
		t.Run("native/"+tc.name, func(t *testing.T) {
			_, err := ParseRequest(tc.op, []byte(tc.body), 0, 0)
			if tc.ok && err != nil {
				t.Fatalf("refused a canonical body: %v", err)
			}
			if !tc.ok {
				if err == nil {
					t.Fatal("accepted")
				}
				if c := CodeOf(err); c != CodeMalformed {
					t.Fatalf("code %s, want %s", c, CodeMalformed)
				}
			}
		})
	}

	ntv := []struct {
		name string
		body string
		ok   bool
	}{
		{"canonical", `{"Data":[{"Name":"KeyId","Type":"Raw","Value":"a"},{"Name":"PlainText","Type":"Base64","Value":"AA=="}]}`, true},
		{"DATA overrides Data", `{"Data":[{"Name":"KeyId","Type":"Raw","Value":"a"}],"DATA":[{"Name":"KeyId","Type":"Raw","Value":"b"},{"Name":"PlainText","Type":"Base64","Value":"AA=="}]}`, false},
		{"duplicate Data", `{"Data":[{"Name":"KeyId","Type":"Raw","Value":"a"}],"Data":[{"Name":"KeyId","Type":"Raw","Value":"b"}]}`, false},
		{"name overrides Name", `{"Data":[{"Name":"KeyId","name":"CipherText","Type":"Raw","Value":"a"},{"Name":"PlainText","Type":"Base64","Value":"AA=="}]}`, false},
		{"duplicate Value", `{"Data":[{"Name":"KeyId","Type":"Raw","Value":"a","Value":"b"},{"Name":"PlainText","Type":"Base64","Value":"AA=="}]}`, false},
		{"lower-case members", `{"Data":[{"name":"KeyId","type":"Raw","value":"a"},{"Name":"PlainText","Type":"Base64","Value":"AA=="}]}`, false},
		{"kelvin sign in KeyId's Value member", "{\"Data\":[{\"Name\":\"KeyId\",\"Type\":\"Raw\",\"Value\":\"a\",\"Va\u017fue\":\"b\"}]}", false},
	}
	for _, tc := range ntv {
		t.Run("ntv/"+tc.name, func(t *testing.T) {
			if !IsNTV([]byte(tc.body)) {
				t.Fatal("not taken as GM/T 0136")
			}
			_, err := DecodeNTV(OpEncrypt, []byte(tc.body))
			if tc.ok && err != nil {
				t.Fatalf("refused a canonical body: %v", err)
			}
			if !tc.ok {
				if err == nil {
					t.Fatal("accepted")
				}
				if c := CodeOf(err); c != CodeMalformed {
					t.Fatalf("code %s, want %s", c, CodeMalformed)
				}
			}
		})
	}
}
