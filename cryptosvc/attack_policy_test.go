package cryptosvc

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"github.com/gmgate/gmgate/refusal"
)

// TestAttackPolicyBypass plays a low-privileged internal system (risk: decrypt of pii from
// version 3 on, nothing else) and a captured-traffic attacker against the policy and the
// ciphertext binding: key names spelt another way, batch items naming their own key, other
// operations reaching the same key, a version header rewritten above min_version, a ciphertext
// moved to another key or context. Every row must be refused without a plaintext.
func TestAttackPolicyBypass(t *testing.T) {
	v := wrappedVault(t)
	sink := &recSink{}
	s := newService(t, v, sink)
	ct1 := hsmOld[1] // "old record" under pii version 1 (below risk's min_version 3)
	_, body, _ := strings.Cut(strings.TrimPrefix(ct1, "gm:v"), ":")
	ctx := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	ctPii := mustOK(t, s, settlement, OpEncrypt, item{"key": "pii", "plaintext": b64([]byte("account 6222")), "context": ctx("order-1")}).Ciphertext
	_, piiBody, _ := strings.Cut(strings.TrimPrefix(ctPii, "gm:v"), ":")
	moved := "gm:v1:" + piiBody // pii-other has version 1 only

	rows := []struct {
		name   string
		caller Caller
		op     Op
		body   any
		want   refusal.Code
	}{
		{"upper-case key name", risk, OpDecrypt, item{"key": "PII", "ciphertext": ct1}, CodeForbidden},
		{"key with trailing space", risk, OpDecrypt, item{"key": "pii ", "ciphertext": ct1}, CodeMalformed},
		{"key with explicit version", risk, OpDecrypt, item{"key": "pii@1", "ciphertext": ct1}, CodeMalformed},
		{"key with NUL", risk, OpDecrypt, item{"key": "pii\x00", "ciphertext": ct1}, CodeMalformed},
		{"full-width key", risk, OpDecrypt, item{"key": "ｐｉｉ", "ciphertext": ct1}, CodeMalformed},
		{"key given as Key", risk, OpDecrypt, `{"Key":"pii","ciphertext":"` + ct1 + `"}`, CodeMalformed},
		{"batch item names its own key", risk, OpDecrypt, `{"key":"pii","batch_input":[{"key":"pii-other","ciphertext":"` + ct1 + `"}]}`, CodeMalformed},
		{"rewrap not granted", risk, OpRewrap, item{"key": "pii", "ciphertext": ct1}, CodeForbidden},
		{"datakey not granted", risk, OpDataKey, item{"key": "pii"}, CodeForbidden},
		{"encrypt not granted", risk, OpEncrypt, item{"key": "pii", "plaintext": b64([]byte("x"))}, CodeForbidden},
		{"open_envelope not granted", risk, OpOpen, item{"key": "pii", "envelope": b64([]byte("x"))}, CodeForbidden},
		{"version below min_version", risk, OpDecrypt, item{"key": "pii", "ciphertext": ct1}, CodeVersionRetired},
		{"version header rewritten to v3", risk, OpDecrypt, item{"key": "pii", "ciphertext": "gm:v3:" + body}, CodeBadCiphertext},
		{"version header rewritten to v9", risk, OpDecrypt, item{"key": "pii", "ciphertext": "gm:v9:" + body}, CodeUnknownKey},
		{"leading zero version", risk, OpDecrypt, item{"key": "pii", "ciphertext": "gm:v03:" + body}, CodeMalformed},
		{"ciphertext moved to another key", settlement, OpDecrypt, item{"key": "pii-other", "ciphertext": moved, "context": ctx("order-1")}, CodeBadCiphertext},
		{"context changed", settlement, OpDecrypt, item{"key": "pii", "ciphertext": ctPii, "context": ctx("order-2")}, CodeBadCiphertext},
		{"context dropped", settlement, OpDecrypt, item{"key": "pii", "ciphertext": ctPii}, CodeBadCiphertext},
		{"rewrap into another key's ciphertext", settlement, OpRewrap, item{"key": "pii-other", "ciphertext": moved, "context": ctx("order-1")}, CodeBadCiphertext},
	}
	for _, tc := range rows {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := call(t, s, tc.caller, tc.op, tc.body)
			if err == nil {
				t.Fatalf("answered %+v", resp.Results)
			}
			mustCode(t, err, tc.want)
			for _, secret := range []string{"old record", "account 6222"} {
				if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), b64([]byte(secret))) {
					t.Fatalf("refusal names the plaintext: %v", err)
				}
			}
		})
	}

	// A batch cannot carry a retired version past the per-item check: each item is judged.
	resp, err := call(t, s, risk, OpDecrypt, item{"key": "pii", "batch_input": []item{{"ciphertext": ct1}, {"ciphertext": hsmOld[2]}}})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range resp.Results {
		if r.Code != CodeVersionRetired || r.Plaintext != nil {
			t.Fatalf("batch item %d: %+v", i, r)
		}
	}

	// Audit entries hold no plaintext or data key (decrypt, datakey, encrypt).
	sink.recs = nil
	mustOK(t, s, settlement, OpDecrypt, item{"key": "pii", "ciphertext": ctPii, "context": ctx("order-1")})
	dk := mustOK(t, s, settlement, OpDataKey, item{"key": "pii"})
	mustOK(t, s, settlement, OpEncrypt, item{"key": "pii", "plaintext": b64([]byte("account 6222"))})
	for _, rec := range sink.recs {
		all := []byte(fmt.Sprintf("%+v", rec))
		all = append(all, rec.SignedSM3...)
		all = append(all, rec.Signature...)
		for _, secret := range [][]byte{[]byte("account 6222"), dk.Plaintext} {
			if bytes.Contains(all, secret) {
				t.Fatalf("audit entry %+v holds a secret", rec)
			}
		}
	}
}
