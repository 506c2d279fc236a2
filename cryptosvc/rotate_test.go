package cryptosvc

import (
	"context"
	"strings"
	"testing"
)

// TestRotate: RotateKey adds a version of an SM4 key in the vault (SoftHSM2, wrapped) that
// encrypts at once, older versions still decrypt, the rotation is one audit entry naming the
// new version; SM2 keys, file keys, batches and callers without the grant are refused.
func TestRotate(t *testing.T) {
	v := wrappedVault(t)
	p, err := NewPolicy(PolicyConfig{
		Callers: []CallerConfig{{Name: "settlement", SubjectCN: "settlement"}, {Name: "risk", SubjectCN: "risk"}},
		Rules: []Rule{
			{Caller: "settlement", Ops: []Op{OpEncrypt, OpDecrypt, OpRotate}, Key: "pii-other"},
			{Caller: "settlement", Ops: []Op{OpRotate}, Key: "platform-sign"},
			{Caller: "risk", Ops: []Op{OpDecrypt}, Key: "pii-other"},
		}})
	if err != nil {
		t.Fatal(err)
	}
	sink := &recSink{}
	s, err := New(Options{Keys: VaultKeys(v), Policy: p, Audit: sink})
	if err != nil {
		t.Fatal(err)
	}
	_, before, err := v.Versions("pii-other")
	if err != nil {
		t.Fatal(err)
	}
	old := mustOK(t, s, settlement, OpEncrypt, item{"key": "pii-other", "plaintext": "b2xk"}).Ciphertext
	r := mustOK(t, s, settlement, OpRotate, item{"key": "pii-other"})
	if r.KeyVersion != before+1 || r.LatestVersion != before+1 || len(r.Versions) < 2 || r.Versions[len(r.Versions)-1] != before+1 {
		t.Fatalf("rotate: %+v (was %d)", r, before)
	}
	nct := mustOK(t, s, settlement, OpEncrypt, item{"key": "pii-other", "plaintext": "bmV3"}).Ciphertext
	if !strings.HasPrefix(nct, "gm:v"+itoa(before+1)+":") {
		t.Fatalf("encrypt after rotate: %s", nct)
	}
	if pt := mustOK(t, s, risk, OpDecrypt, item{"key": "pii-other", "ciphertext": old}).Plaintext; string(pt) != "old" {
		t.Fatalf("old version after rotate: %q", pt)
	}
	sink.mu.Lock()
	var found bool
	for _, rec := range sink.recs {
		if rec.Scheme == "gm_crypto/rotate" && rec.KeyID == "settlement:pii-other@v"+itoa(before+1) && rec.Reason == "ok" {
			found = true
		}
	}
	sink.mu.Unlock()
	if !found {
		t.Fatal("no audit entry of the rotation")
	}

	_, err = call(t, s, settlement, OpRotate, item{"key": "platform-sign"})
	mustCode(t, err, CodeWrongKeyType)
	_, err = call(t, s, risk, OpRotate, item{"key": "pii-other"})
	mustCode(t, err, CodeForbidden)
	_, err = s.Do(context.Background(), settlement, OpRotate, []byte(`{"key":"pii-other","batch_input":[{},{}]}`), "")
	mustCode(t, err, CodeMalformed)
	_, err = call(t, s, settlement, OpRotate, item{"key": "pii-other", "plaintext": "eA=="})
	mustCode(t, err, CodeMalformed)
	if _, now, _ := v.Versions("pii-other"); now != before+1 {
		t.Fatalf("refused rotations changed the key: version %d", now)
	}

	// File keys have one version.
	fs, err := New(Options{Keys: VaultKeys(fileVault(t)), Policy: p})
	if err != nil {
		t.Fatal(err)
	}
	_, err = call(t, fs, settlement, OpRotate, item{"key": "pii-other"})
	mustCode(t, err, CodeWrongKeyType)
}
