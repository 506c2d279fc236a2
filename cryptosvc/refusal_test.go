package cryptosvc

import (
	"bytes"
	"crypto/x509/pkix"
	"encoding/asn1"
	"strings"
	"testing"

	"github.com/gmgate/gmgate/internal/attack"
	"github.com/gmgate/gmgate/refusal"
)

// flip returns ct with one bit of its sealed body changed at byte i (negative: from the end).
func flip(t testing.TB, ct string, i int) string {
	t.Helper()
	out, err := attack.FlipCiphertextBit(ct, i)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func relabel(t testing.TB, ct string, v int) string {
	t.Helper()
	out, err := attack.RelabelCiphertextVersion(ct, v)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestRefusals is the bad-input table of the core: each row is an attack or a mistake and the
// code that stops it.
func TestRefusals(t *testing.T) {
	v := wrappedVault(t)
	sink := &recSink{}
	s := newService(t, v, sink)
	pt := b64([]byte("6222021234567890"))
	ct := mustOK(t, s, settlement, OpEncrypt, item{"key": "pii", "plaintext": pt}).Ciphertext
	ctCtx := mustOK(t, s, settlement, OpEncrypt, item{"key": "pii", "plaintext": pt, "context": b64([]byte("order-1"))}).Ciphertext
	ctOther := mustOK(t, s, settlement, OpEncrypt, item{"key": "pii-other", "plaintext": pt}).Ciphertext
	mac := mustOK(t, s, settlement, OpHMAC, item{"key": "pii", "data": pt}).HMAC
	sig := mustOK(t, s, settlement, OpSign, item{"key": "platform-sign", "data": pt}).Signature
	big := b64(make([]byte, DefaultMaxItemSize+1))
	manyItems := make([]item, DefaultMaxItems+1)
	for i := range manyItems {
		manyItems[i] = item{"bytes": 1}
	}
	// A ciphertext whose version prefix is rewritten from 3 to 2 (both versions exist).
	ctV2, ctV99 := relabel(t, ct, 2), relabel(t, ct, 99)
	truncated, err := attack.TruncateCiphertext(ct, 20)
	if err != nil {
		t.Fatal(err)
	}
	// A ciphertext of pii-other relabelled... it is already "gm:v1:": decrypting it under pii
	// (version 1 exists there too) must fail the tag, since the AAD names the key.

	rows := []struct {
		name   string
		caller Caller
		op     Op
		body   any
		want   refusal.Code
	}{
		{"no caller", Caller{}, OpEncrypt, item{"key": "pii", "plaintext": pt}, CodeUnauthenticated},
		{"unknown operation", settlement, Op("export_key"), item{"key": "pii"}, CodeUnknownOperation},
		{"wrong op for caller", risk, OpEncrypt, item{"key": "pii", "plaintext": pt}, CodeForbidden},
		{"right op, key not granted", risk, OpDecrypt, item{"key": "pii-other", "ciphertext": ctOther}, CodeForbidden},
		{"sign not granted on pii-other", settlement, OpSign, item{"key": "pii-other", "data": pt}, CodeForbidden},
		{"unknown key (granted, not in vault)", settlement, OpEncrypt, item{"key": "missing", "plaintext": pt}, CodeUnknownKey},
		{"sign with an SM4 key", settlement, OpSign, item{"key": "pii", "data": pt}, CodeWrongKeyType},
		{"not JSON", settlement, OpEncrypt, `{"key":"pii",`, CodeMalformed},
		{"unknown field", settlement, OpEncrypt, item{"key": "pii", "plaintext": pt, "iv": "AA=="}, CodeMalformed},
		{"field the op does not take", settlement, OpEncrypt, item{"key": "pii", "plaintext": pt, "digest": pt}, CodeMalformed},
		{"trailing data", settlement, OpEncrypt, `{"key":"pii","plaintext":"` + pt + `"} {}`, CodeMalformed},
		{"key with version suffix", settlement, OpEncrypt, item{"key": "pii@1", "plaintext": pt}, CodeMalformed},
		{"bad base64", settlement, OpEncrypt, item{"key": "pii", "plaintext": "!!"}, CodeMalformed},
		{"both data and digest", settlement, OpSign, item{"key": "platform-sign", "data": pt, "digest": b64(make([]byte, 32))}, CodeMalformed},
		{"short digest", settlement, OpSign, item{"key": "platform-sign", "digest": b64(make([]byte, 31))}, CodeMalformed},
		{"user_id with digest", settlement, OpSign, item{"key": "platform-sign", "digest": b64(make([]byte, 32)), "user_id": "x"}, CodeMalformed},
		{"oversized item", settlement, OpEncrypt, item{"key": "pii", "plaintext": big}, CodeTooLarge},
		{"oversized batch", settlement, OpRandom, item{"batch_input": manyItems}, CodeTooLarge},
		{"empty batch", settlement, OpRandom, item{"batch_input": []item{}}, CodeMalformed},
		{"too many random bytes", settlement, OpRandom, item{"bytes": MaxRandomBytes + 1}, CodeMalformed},
		{"ciphertext not gm:v", settlement, OpDecrypt, item{"key": "pii", "ciphertext": "vault:v1:AAAA"}, CodeMalformed},
		{"ciphertext version 0", settlement, OpDecrypt, item{"key": "pii", "ciphertext": "gm:v0:AAAA"}, CodeMalformed},
		{"ciphertext leading zero", settlement, OpDecrypt, item{"key": "pii", "ciphertext": "gm:v03:" + ct[6:]}, CodeMalformed},
		{"tampered ciphertext body", settlement, OpDecrypt, item{"key": "pii", "ciphertext": flip(t, ct, 20)}, CodeBadCiphertext},
		{"tampered tag", settlement, OpDecrypt, item{"key": "pii", "ciphertext": flip(t, ct, -1)}, CodeBadCiphertext},
		{"tampered nonce", settlement, OpDecrypt, item{"key": "pii", "ciphertext": flip(t, ct, 0)}, CodeBadCiphertext},
		{"truncated ciphertext", settlement, OpDecrypt, item{"key": "pii", "ciphertext": truncated}, CodeBadCiphertext},
		{"version prefix rewritten", settlement, OpDecrypt, item{"key": "pii", "ciphertext": ctV2}, CodeBadCiphertext},
		{"version not loaded", settlement, OpDecrypt, item{"key": "pii", "ciphertext": ctV99}, CodeUnknownKey},
		{"ciphertext of another key", settlement, OpDecrypt, item{"key": "pii", "ciphertext": ctOther}, CodeBadCiphertext},
		{"context missing", settlement, OpDecrypt, item{"key": "pii", "ciphertext": ctCtx}, CodeBadCiphertext},
		{"context of another record", settlement, OpDecrypt, item{"key": "pii", "ciphertext": ctCtx, "context": b64([]byte("order-2"))}, CodeBadCiphertext},
		{"rewrap of another key", settlement, OpRewrap, item{"key": "pii", "ciphertext": ctOther}, CodeBadCiphertext},
		{"retired version for risk", risk, OpDecrypt, item{"key": "pii", "ciphertext": hsmOld[1]}, CodeVersionRetired},
		{"retired ciphertext relabelled as the newest", risk, OpDecrypt, item{"key": "pii", "ciphertext": relabel(t, hsmOld[1], 3)}, CodeBadCiphertext},
		{"version 2 for risk", risk, OpDecrypt, item{"key": "pii", "ciphertext": hsmOld[2]}, CodeVersionRetired},
		{"bad hmac", settlement, OpVerifyHMAC, item{"key": "pii", "data": b64([]byte("other")), "hmac": mac}, CodeBadSignature},
		{"hmac of another key", settlement, OpVerifyHMAC, item{"key": "pii-other", "data": pt, "hmac": strings.Replace(mac, "gm:v3:", "gm:v1:", 1)}, CodeBadSignature},
		{"signature of other data", settlement, OpVerify, item{"key": "platform-sign", "data": b64([]byte("x")), "signature": b64(sig)}, CodeBadSignature},
		{"signature with another user id", settlement, OpVerify, item{"key": "platform-sign", "data": pt, "user_id": "1234567812345678", "signature": b64(sig)}, CodeBadSignature},
		{"signature garbage", settlement, OpVerify, item{"key": "platform-sign", "data": pt, "signature": b64([]byte{0x30, 0x03, 0x02, 0x01})}, CodeBadSignature},
		{"verify version not loaded", settlement, OpVerify, item{"key": "platform-sign", "data": pt, "signature": b64(sig), "key_version": 7}, CodeUnknownKey},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			resp, err := call(t, s, r.caller, r.op, r.body)
			if resp != nil {
				t.Fatalf("response %+v, want refusal %s", resp.Results, r.want)
			}
			mustCode(t, err, r.want)
			// Every refusal is an audit entry with its code and no plaintext.
			rec := sink.last(t)
			if rec.Verdict != "reject" || rec.Reason != string(r.want) {
				t.Fatalf("audit entry %+v", rec)
			}
			if bytes.Contains([]byte(rec.KeyID+rec.Scheme+rec.RequestID), []byte("6222021234567890")) {
				t.Fatal("plaintext in the audit entry")
			}
			// The error text the handler may log never carries the plaintext either.
			if strings.Contains(err.Error(), "6222021234567890") || strings.Contains(err.Error(), pt) {
				t.Fatal("plaintext in the error")
			}
		})
	}
	// The right op/key for risk still works.
	if r := mustOK(t, s, risk, OpDecrypt, item{"key": "pii", "ciphertext": ct}); string(r.Plaintext) != "6222021234567890" {
		t.Fatal("risk cannot decrypt a version-3 ciphertext")
	}
}

// TestBatch: many items in one request, a failed item carries its code and the others their
// results; the one audit entry names the versions used and the first failure.
func TestBatch(t *testing.T) {
	v := wrappedVault(t)
	sink := &recSink{}
	s := newService(t, v, sink)
	resp, err := call(t, s, settlement, OpEncrypt, item{"key": "pii", "batch_input": []item{
		{"plaintext": b64([]byte("a"))}, {"plaintext": b64([]byte("b")), "context": b64([]byte("c"))}}})
	if err != nil || !resp.Batch() || len(resp.Results) != 2 {
		t.Fatalf("batch encrypt: %v", err)
	}
	cts := []string{resp.Results[0].Ciphertext, resp.Results[1].Ciphertext}
	resp, err = call(t, s, settlement, OpDecrypt, item{"key": "pii", "batch_input": []item{
		{"ciphertext": cts[0]}, {"ciphertext": cts[1]}, {"ciphertext": hsmOld[1]}, {"ciphertext": flip(t, cts[0], 15)}}})
	if err != nil {
		t.Fatal(err)
	}
	r := resp.Results
	if string(r[0].Plaintext) != "a" || r[1].Code != CodeBadCiphertext || string(r[2].Plaintext) != "old record" || r[3].Code != CodeBadCiphertext {
		t.Fatalf("batch results %+v", r)
	}
	if r[1].Plaintext != nil || r[1].Message != CodeBadCiphertext.Message() {
		t.Fatal("failed item carries more than its code")
	}
	js, err := resp.MarshalJSON()
	if err != nil || !bytes.HasPrefix(js, []byte(`{"batch_results":[`)) {
		t.Fatalf("batch JSON %s", js)
	}
	rec := sink.last(t)
	if rec.KeyID != "settlement:pii@v1,v3" || rec.Reason != string(CodeBadCiphertext) || len(rec.SignedSM3) != 32 {
		t.Fatalf("batch audit entry %+v", rec)
	}
}

// TestAuditFailureWithholds: when the audit entry cannot be written the result (here a
// plaintext) is withheld and the code says why.
func TestAuditFailureWithholds(t *testing.T) {
	v := fileVault(t)
	sink := &recSink{}
	s := newService(t, v, sink)
	ct := mustOK(t, s, settlement, OpEncrypt, item{"key": "pii", "plaintext": b64([]byte("secret"))}).Ciphertext
	sink.fail = true
	resp, err := call(t, s, settlement, OpDecrypt, item{"key": "pii", "ciphertext": ct})
	if resp != nil {
		t.Fatal("result returned without its audit entry")
	}
	mustCode(t, err, CodeAuditUnavailable)
}

// TestPolicyConfig: the checks of NewPolicy and caller identification.
func TestPolicyConfig(t *testing.T) {
	fp := strings.Repeat("ab", 32)
	rows := []struct {
		name string
		cfg  PolicyConfig
		ok   bool
	}{
		{"good", PolicyConfig{Callers: []CallerConfig{{Name: "risk", Fingerprint: fp}}, Rules: []Rule{{Caller: "risk", Ops: []Op{OpDecrypt}, Key: "pii", MinVersion: 2}}}, true},
		{"bad caller name", PolicyConfig{Callers: []CallerConfig{{Name: "Risk", SubjectCN: "x"}}}, false},
		{"caller without matcher", PolicyConfig{Callers: []CallerConfig{{Name: "risk"}}}, false},
		{"short fingerprint", PolicyConfig{Callers: []CallerConfig{{Name: "risk", Fingerprint: "abcd"}}}, false},
		{"duplicate caller", PolicyConfig{Callers: []CallerConfig{{Name: "risk", SubjectCN: "a"}, {Name: "risk", SubjectCN: "b"}}}, false},
		{"unknown caller", PolicyConfig{Rules: []Rule{{Caller: "risk", Ops: []Op{OpDecrypt}, Key: "pii"}}}, false},
		{"unknown op", PolicyConfig{Callers: []CallerConfig{{Name: "risk", SubjectCN: "x"}}, Rules: []Rule{{Caller: "risk", Ops: []Op{"export"}, Key: "pii"}}}, false},
		{"keyed op without key", PolicyConfig{Callers: []CallerConfig{{Name: "risk", SubjectCN: "x"}}, Rules: []Rule{{Caller: "risk", Ops: []Op{OpDecrypt}}}}, false},
		{"keyless op with key", PolicyConfig{Callers: []CallerConfig{{Name: "risk", SubjectCN: "x"}}, Rules: []Rule{{Caller: "risk", Ops: []Op{OpRandom}, Key: "pii"}}}, false},
		{"min_version on encrypt only", PolicyConfig{Callers: []CallerConfig{{Name: "risk", SubjectCN: "x"}}, Rules: []Rule{{Caller: "risk", Ops: []Op{OpEncrypt}, Key: "pii", MinVersion: 2}}}, false},
		{"no ops", PolicyConfig{Callers: []CallerConfig{{Name: "risk", SubjectCN: "x"}}, Rules: []Rule{{Caller: "risk", Key: "pii"}}}, false},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			_, err := NewPolicy(r.cfg)
			if (err == nil) != r.ok {
				t.Fatalf("err %v, want ok=%v", err, r.ok)
			}
		})
	}
	der := []byte("certificate DER")
	d := sm3sum(der)
	p, err := NewPolicy(PolicyConfig{Callers: []CallerConfig{
		{Name: "by-fp", Fingerprint: strings.ToUpper(hexs(d)), SubjectCN: "whoever"},
		{Name: "by-both", Fingerprint: strings.Repeat("00", 32), SubjectCN: "risk"},
		{Name: "by-cn", SubjectCN: "settlement"}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		der  []byte
		subj pkix.Name
		want string
	}{
		{der, subjectOf("whoever"), "by-fp"},
		{der, subjectOf("settlement"), "by-cn"}, // the pinned certificate whose CN is another caller's: that one
		{[]byte("other"), subjectOf("risk"), ""},
		{[]byte("other"), subjectOf("settlement"), "by-cn"},
		{nil, subjectOf("settlement"), ""},
		// A subject with two CN attributes is ambiguous: Go's CommonName keeps one of them,
		// the other could be what a CA checked. It never matches by CN.
		{[]byte("other"), subjectOf("settlement", "risk"), ""},
		{[]byte("other"), subjectOf("risk", "settlement"), ""},
		// The CN is compared exactly: no case folding, no match on another RDN.
		{[]byte("other"), subjectOf("Settlement"), ""},
		{[]byte("other"), pkix.Name{Names: []pkix.AttributeTypeAndValue{{Type: asn1.ObjectIdentifier{2, 5, 4, 10}, Value: "settlement"}}}, ""},
	} {
		got, _ := p.Identify(c.der, c.subj)
		if got != c.want {
			t.Fatalf("Identify(%q,%v) = %q, want %q", c.der, c.subj.Names, got, c.want)
		}
	}
}

func subjectOf(cns ...string) pkix.Name {
	var n pkix.Name
	for _, cn := range cns {
		n.Names = append(n.Names, pkix.AttributeTypeAndValue{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: cn})
		n.CommonName = cn
	}
	return n
}

// TestPolicyAmbiguousCallers: two callers that one certificate could both match are refused at
// configuration (Provision and Validate both build the policy), whatever their order.
func TestPolicyAmbiguousCallers(t *testing.T) {
	fpA, fpB := strings.Repeat("ab", 32), strings.Repeat("cd", 32)
	rows := []struct {
		name string
		a, b CallerConfig
		ok   bool
	}{
		{"same cn", CallerConfig{Name: "a", SubjectCN: "x"}, CallerConfig{Name: "b", SubjectCN: "x"}, false},
		{"same cn, one pinned", CallerConfig{Name: "a", SubjectCN: "x", Fingerprint: fpA}, CallerConfig{Name: "b", SubjectCN: "x"}, false},
		{"same fingerprint", CallerConfig{Name: "a", Fingerprint: fpA}, CallerConfig{Name: "b", Fingerprint: strings.ToUpper(fpA)}, false},
		{"same fingerprint, other cns", CallerConfig{Name: "a", Fingerprint: fpA, SubjectCN: "x"}, CallerConfig{Name: "b", Fingerprint: fpA, SubjectCN: "y"}, false},
		{"fingerprint only vs cn only", CallerConfig{Name: "a", Fingerprint: fpA}, CallerConfig{Name: "b", SubjectCN: "y"}, false},
		{"fingerprint only vs cn pinned elsewhere", CallerConfig{Name: "a", Fingerprint: fpA}, CallerConfig{Name: "b", SubjectCN: "y", Fingerprint: fpB}, true},
		{"same cn, distinct fingerprints", CallerConfig{Name: "a", SubjectCN: "x", Fingerprint: fpA}, CallerConfig{Name: "b", SubjectCN: "x", Fingerprint: fpB}, true},
		{"distinct cns", CallerConfig{Name: "a", SubjectCN: "x"}, CallerConfig{Name: "b", SubjectCN: "y"}, true},
	}
	for _, r := range rows {
		for _, order := range [][]CallerConfig{{r.a, r.b}, {r.b, r.a}} {
			t.Run(r.name, func(t *testing.T) {
				_, err := NewPolicy(PolicyConfig{Callers: order})
				if (err == nil) != r.ok {
					t.Fatalf("err %v, want ok=%v", err, r.ok)
				}
			})
		}
	}
}
