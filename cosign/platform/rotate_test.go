package platform

import (
	"bytes"
	"crypto/rand"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"

	"github.com/gmgate/gmgate/audit"
	"github.com/gmgate/gmgate/cosign"
	"github.com/gmgate/gmgate/refusal"
)

// coSignWith runs one co-signature of e with the terminal share d1 (rotationID names the pending
// share, or nil) and returns the finished signature, the refusal code, or the terminal's error.
func (f *fixture) coSignWith(tm *terminal, d1 *cosign.Share, token string, e, rotationID []byte) ([]byte, refusal.Code, error) {
	f.t.Helper()
	sg, _ := cosign.StartSign(rand.Reader, tm.pub, e)
	resp, code := f.call(OpSign, token, Request{KeyID: tm.id, E: e, Q1: sg.Q1(), RotationID: rotationID})
	if code != refusal.OK {
		return nil, code, nil
	}
	r, s1, err := cosign.ParsePartialSignature(resp.PartialSignature)
	if err != nil {
		f.t.Fatal(err)
	}
	sig, err := sg.Finish(d1, r, s1)
	return sig, code, err
}

func TestServiceRotation(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Burst, c.MaxFailures = 100, 100 })
	tm := f.enroll("term-rot")
	signTok, rotTok := f.token(tm.id, OpSign), f.token(tm.id, OpRotate)
	payment, _ := cosign.Digest(tm.pub, nil, []byte("pay 100 CNY"))
	if _, code, err := f.coSignWith(tm, tm.d1, signTok, payment, nil); code != refusal.OK || err != nil {
		t.Fatalf("sign before rotation: %s %v", code, err)
	}

	// refusals before anything is sealed: no session, a session not allowing rotation
	if _, code := f.call(OpRotate, "", Request{KeyID: tm.id}); code != CodeUnauthenticated {
		t.Fatalf("rotate without a session: %s", code)
	}
	if _, code := f.call(OpRotate, signTok, Request{KeyID: tm.id}); code != CodeUnauthenticated {
		t.Fatalf("rotate with a sign-only token: %s", code)
	}
	if _, code := f.call(OpRotate, f.token("someone-else", OpRotate), Request{KeyID: tm.id}); code != CodeWrongTerminal {
		t.Fatalf("rotate with another key's token: %s", code)
	}

	resp, code := f.call(OpRotate, rotTok, Request{KeyID: tm.id})
	if code != refusal.OK || len(resp.Rho) != cosign.ScalarSize || len(resp.RotationID) != RotationIDSize {
		t.Fatalf("rotate: %s %+v", code, resp)
	}
	if _, code := f.call(OpRotate, rotTok, Request{KeyID: tm.id}); code != CodeRotationPending {
		t.Fatalf("concurrent rotation: %s", code)
	}
	newD1, err := tm.d1.Refreshed(resp.Rho)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := newD1.JointPublicKey(resp.P2); err != nil || !p.Equal(tm.pub) {
		t.Fatalf("refreshed shares give another joint key: %v", err)
	}

	// until confirmed, the platform signs with the current (old) share only
	if _, code, err := f.coSignWith(tm, tm.d1, signTok, payment, nil); code != refusal.OK || err != nil {
		t.Fatalf("old share during a pending rotation: %s %v", code, err)
	}
	if _, code, err := f.coSignWith(tm, newD1, signTok, payment, nil); code != refusal.OK || !errors.Is(err, cosign.ErrVerify) {
		t.Fatalf("new share before confirmation must not sign: %s %v", code, err)
	}
	challenge, _ := RotationChallengeDigest(tm.pub, tm.id, resp.RotationID)
	// the current pair cannot make the confirming signature
	if _, code, _ := f.coSignWith(tm, tm.d1, signTok, challenge, nil); code != CodeRotationMismatch {
		t.Fatalf("challenge with the current share: %s", code)
	}
	// the pending share signs the challenge only, for this rotation only
	if _, code, _ := f.coSignWith(tm, newD1, signTok, payment, resp.RotationID); code != CodeRotationMismatch {
		t.Fatalf("payment with the pending share: %s", code)
	}
	other := append([]byte(nil), resp.RotationID...)
	other[0] ^= 1
	if _, code, _ := f.coSignWith(tm, newD1, signTok, challenge, other); code != CodeRotationMismatch {
		t.Fatalf("another rotation ID: %s", code)
	}
	// the old d_1 cannot complete a co-signature of the pending share
	if _, code, err := f.coSignWith(tm, tm.d1, signTok, challenge, resp.RotationID); code != refusal.OK || !errors.Is(err, cosign.ErrVerify) {
		t.Fatalf("old d_1 with the pending share: %s %v", code, err)
	}
	proof, code, err := f.coSignWith(tm, newD1, signTok, challenge, resp.RotationID)
	if code != refusal.OK || err != nil {
		t.Fatalf("challenge with the pending share: %s %v", code, err)
	}

	// confirm refusals: a wrong signature (valid, but over a payment), a sign-only token
	paySig, _, _ := f.coSignWith(tm, tm.d1, signTok, payment, nil)
	if _, code := f.call(OpConfirm, rotTok, Request{KeyID: tm.id, RotationID: resp.RotationID, Signature: paySig}); code != CodeRotationMismatch {
		t.Fatalf("confirm with a wrong signature: %s", code)
	}
	if _, code := f.call(OpConfirm, signTok, Request{KeyID: tm.id, RotationID: resp.RotationID, Signature: proof}); code != CodeUnauthenticated {
		t.Fatalf("confirm with a sign-only token: %s", code)
	}
	if _, code := f.call(OpConfirm, rotTok, Request{KeyID: tm.id, RotationID: other, Signature: proof}); code != CodeRotationMismatch {
		t.Fatalf("confirm of another rotation ID: %s", code)
	}
	if _, code := f.call(OpConfirm, rotTok, Request{KeyID: tm.id, RotationID: resp.RotationID, Signature: proof}); code != refusal.OK {
		t.Fatalf("confirm: %s", code)
	}
	last := f.aud.recs[len(f.aud.recs)-1]
	if last.Scheme != "cosign-confirm" || last.Verdict != audit.VerdictAccept || len(last.SignedSM3) != 32 {
		t.Fatalf("confirm audit entry: %+v", last)
	}
	// a repeated confirm (its reply was lost) is answered again and changes nothing; one of
	// another rotation ID, or with a signature that is not over this rotation's challenge, is not
	before, _ := f.svc.cfg.Shares.GetAll(ShareKind, []byte(tm.id))
	if _, code := f.call(OpConfirm, rotTok, Request{KeyID: tm.id, RotationID: resp.RotationID, Signature: proof}); code != refusal.OK {
		t.Fatalf("repeated confirm: %s", code)
	}
	if _, code := f.call(OpConfirm, rotTok, Request{KeyID: tm.id, RotationID: resp.RotationID, Signature: paySig}); code != CodeRotationMismatch {
		t.Fatalf("repeated confirm with a wrong signature: %s", code)
	}
	if _, code := f.call(OpConfirm, rotTok, Request{KeyID: tm.id, RotationID: other, Signature: proof}); code != CodeRotationUnknown {
		t.Fatalf("confirm of another rotation ID after the confirm: %s", code)
	}
	if after, _ := f.svc.cfg.Shares.GetAll(ShareKind, []byte(tm.id)); fingerprint(after) != fingerprint(before) {
		t.Fatal("a repeated confirm changed the record")
	}

	// after: the new share signs under the SAME joint key, the old one cannot
	sig, code, err := f.coSignWith(tm, newD1, signTok, payment, nil)
	if code != refusal.OK || err != nil || !sm2.VerifyASN1(tm.pub, payment, sig) {
		t.Fatalf("new share after rotation: %s %v", code, err)
	}
	if _, code, err := f.coSignWith(tm, tm.d1, signTok, payment, nil); code != refusal.OK || !errors.Is(err, cosign.ErrVerify) {
		t.Fatalf("old d_1 after confirmed rotation: %s %v", code, err)
	}
	vs, _ := f.svc.cfg.Shares.GetAll(ShareKind, []byte(tm.id))
	if len(vs) != 1 || vs[0].Version != 2 {
		t.Fatalf("old share not destroyed: %d versions", len(vs))
	}
	var rotateAudited bool
	for _, r := range f.aud.recs {
		rotateAudited = rotateAudited || r.Scheme == "cosign-rotate" && r.Verdict == audit.VerdictAccept
	}
	if !rotateAudited {
		t.Fatal("no audit entry for rotate")
	}
}

// A rotation that is never confirmed expires: the old share keeps working, a late confirm is
// refused, and a new rotation may start.
func TestServiceRotationExpires(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.RotationTimeout = time.Minute })
	tm := f.enroll("term-exp")
	rotTok := f.token(tm.id, OpRotate, OpSign)
	resp, code := f.call(OpRotate, rotTok, Request{KeyID: tm.id})
	if code != refusal.OK {
		t.Fatal(code)
	}
	newD1, _ := tm.d1.Refreshed(resp.Rho)
	challenge, _ := RotationChallengeDigest(tm.pub, tm.id, resp.RotationID)
	proof, code, err := f.coSignWith(tm, newD1, rotTok, challenge, resp.RotationID)
	if code != refusal.OK || err != nil {
		t.Fatal(code, err)
	}
	f.now = f.now.Add(2 * time.Minute)
	rotTok = f.token(tm.id, OpRotate, OpSign)
	if _, code := f.call(OpConfirm, rotTok, Request{KeyID: tm.id, RotationID: resp.RotationID, Signature: proof}); code != CodeRotationUnknown {
		t.Fatalf("late confirm: %s", code)
	}
	payment, _ := cosign.Digest(tm.pub, nil, []byte("pay"))
	if _, code, err := f.coSignWith(tm, tm.d1, rotTok, payment, nil); code != refusal.OK || err != nil {
		t.Fatalf("old share after an expired rotation: %s %v", code, err)
	}
	resp2, code := f.call(OpRotate, rotTok, Request{KeyID: tm.id})
	if code != refusal.OK {
		t.Fatalf("rotation after an expired one: %s", code)
	}
	vs, _ := f.svc.cfg.Shares.GetAll(ShareKind, []byte(tm.id))
	if len(vs) != 2 || string(vs[1].Secret[shareSize:shareSize+RotationIDSize]) != string(resp2.RotationID) {
		t.Fatalf("expired pending share not replaced: %d versions", len(vs))
	}
}

// A record the platform did not write (three versions, a pending share of another joint key)
// fails closed.
func TestServiceRotationFailsClosed(t *testing.T) {
	f := newFixture(t, nil)
	tm := f.enroll("term-bad")
	other := f.enroll("term-other")
	sh := f.svc.cfg.Shares.(*memShares)
	foreign, _, _ := sh.Get(ShareKind, []byte(other.id))
	pending := append(foreign, make([]byte, RotationIDSize+8)...)
	sh.Put(ShareKind, []byte(tm.id), pending)
	payment, _ := cosign.Digest(tm.pub, nil, []byte("pay"))
	if _, code, _ := f.coSignWith(tm, tm.d1, f.token(tm.id, OpSign), payment, nil); code != CodeInternal {
		t.Fatalf("pending share of another key: %s", code)
	}
	sh.DestroyVersion(ShareKind, []byte(tm.id), 2)
	cur, _, _ := sh.Get(ShareKind, []byte(tm.id))
	sh.Put(ShareKind, []byte(tm.id), append(cur, make([]byte, RotationIDSize+8)...))
	sh.Put(ShareKind, []byte(tm.id), append(cur, make([]byte, RotationIDSize+8)...))
	if _, code, _ := f.coSignWith(tm, tm.d1, f.token(tm.id, OpSign), payment, nil); code != CodeInternal {
		t.Fatalf("three versions: %s", code)
	}
}

// FuzzRotationRequest: authenticated sign/rotate/confirm bodies of any shape, against a key with
// a pending rotation, never panic and never confirm the rotation (nothing but the pending pair
// can sign the challenge); the record keeps its current and its pending version.
func FuzzRotationRequest(f *testing.F) {
	fx := newFixture(f, func(c *Config) { c.RatePerMinute = 1 << 30; c.Burst = 1 << 30; c.MaxFailures = 1 << 30 })
	tm := fx.enroll("term-fuzz")
	fx.now = time.Now()
	tok := fx.token(tm.id, OpSign, OpRotate)
	resp, code := fx.call(OpRotate, tok, Request{KeyID: tm.id})
	if code != refusal.OK {
		f.Fatal(code)
	}
	f.Add([]byte(`{"key_id":"term-fuzz","rotation_id":"AAAAAAAAAAAAAAAAAAAAAA==","signature":"MAYCAQECAQE="}`), "confirm")
	f.Add([]byte(`{"key_id":"term-fuzz","e":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","q1":"BA==","rotation_id":"AAAAAAAAAAAAAAAAAAAAAA=="}`), "sign")
	f.Add([]byte(`{"key_id":"term-fuzz"}`), "rotate")
	f.Fuzz(func(t *testing.T, body []byte, op string) {
		fx.t = t
		r := httptest.NewRequest(http.MethodPost, "/cosign/confirm", bytes.NewReader(body))
		r.URL.Path = "/cosign/" + op
		r.Header.Set("Authorization", "Bearer "+tok)
		w := httptest.NewRecorder()
		fx.svc.ServeHTTP(w, r)
		if op == OpConfirm && w.Code == http.StatusOK {
			t.Fatalf("rotation confirmed by %s", body)
		}
		vs, err := fx.svc.cfg.Shares.GetAll(ShareKind, []byte(tm.id))
		if err != nil || len(vs) != 2 || vs[0].Version != 1 || string(vs[1].Secret[shareSize:shareSize+RotationIDSize]) != string(resp.RotationID) {
			t.Fatalf("record changed by %s %s: %d versions %v", op, body, len(vs), err)
		}
	})
}
