package platform

import (
	"bytes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm4"

	"github.com/gmgate/gmgate/cosign"
	"github.com/gmgate/gmgate/refusal"
	"github.com/gmgate/gmgate/sealstore"
)

// Lifecycle races between instances sharing one share directory: each instance is a Service
// over its own sealstore.Store on the same directory, as two gmgate processes are.

// hookShares runs afterRead once, right after the next GetAll: a write by another instance
// between a request's read and its own write.
type hookShares struct {
	*sealstore.Store
	mu        sync.Mutex
	afterRead func()
}

func (h *hookShares) GetAll(kind string, id []byte) ([]sealstore.Version, error) {
	vs, err := h.Store.GetAll(kind, id)
	h.mu.Lock()
	f := h.afterRead
	h.afterRead = nil
	h.mu.Unlock()
	if f != nil {
		f()
	}
	return vs, err
}

// sharedDir returns n instances over one share directory (and their stores).
func sharedDir(t *testing.T, n int) ([]*fixture, []*hookShares) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "shares")
	block, _ := sm4.NewCipher([]byte("0123456789abcdef"))
	aead, _ := cipher.NewGCM(block)
	var fs []*fixture
	var ss []*hookShares
	for range n {
		st, err := sealstore.Open(dir, gcmKeys{gcmKey{aead}})
		if err != nil {
			t.Fatal(err)
		}
		h := &hookShares{Store: st}
		fs = append(fs, newFixture(t, func(c *Config) { c.Shares, c.Observe = h, nil }))
		ss = append(ss, h)
	}
	return fs, ss
}

// TestKeygenRaceOneShare: eight instances generate the same new key ID at once for eight
// terminals: exactly one gets a P_2, the others cosign_key_exists, the record holds one share,
// and that terminal signs through any instance.
func TestKeygenRaceOneShare(t *testing.T) {
	fs, ss := sharedDir(t, 8)
	type result struct {
		d1   *cosign.Share
		resp *Response
		code refusal.Code
	}
	results := make([]result, len(fs))
	var wg sync.WaitGroup
	for i, f := range fs {
		d1, _ := cosign.GenerateShare(rand.Reader)
		tok := f.token("term-race", OpKeygen)
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, code := f.callGo(OpKeygen, tok, Request{KeyID: "term-race", P1: d1.PartialPublicKey()})
			results[i] = result{d1, resp, code}
		}()
	}
	wg.Wait()
	var winner *terminal
	for i, r := range results {
		switch r.code {
		case refusal.OK:
			if winner != nil {
				t.Fatalf("two instances generated the same key ID (%d)", i)
			}
			pub, err := r.d1.JointPublicKey(r.resp.P2)
			if err != nil {
				t.Fatal(err)
			}
			winner = &terminal{"term-race", r.d1, pub}
		case CodeKeyExists:
		default:
			t.Fatalf("instance %d: %s", i, r.code)
		}
	}
	if winner == nil {
		t.Fatal("no instance generated the key")
	}
	vs, err := ss[0].Store.GetAll(ShareKind, []byte("term-race"))
	if err != nil || len(vs) != 1 {
		t.Fatalf("record after the race: %d versions, %v; want exactly one d_2", len(vs), err)
	}
	for i, f := range fs {
		sig, code := f.sign(winner, f.token(winner.id, OpSign), []byte("pay"), nil)
		if code != refusal.OK || !sm2.VerifyASN1WithSM2(winner.pub, nil, []byte("pay"), sig) {
			t.Fatalf("the winning terminal through instance %d: %s", i, code)
		}
	}
}

// callGo is call for goroutines: it never fails the test itself.
func (f *fixture) callGo(op, token string, req Request) (*Response, refusal.Code) {
	body, _ := json.Marshal(req)
	r := httptest.NewRequest(http.MethodPost, "/cosign/"+op, bytes.NewReader(body))
	r.Header.Set("Authorization", "Bearer "+token)
	w := httptest.NewRecorder()
	f.svc.ServeHTTP(w, r)
	if w.Code != http.StatusOK {
		code, _, _ := refusal.ParseBody(w.Body.Bytes())
		return nil, refusal.Code(code)
	}
	var resp Response
	if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
		return nil, "unparsable"
	}
	return &resp, refusal.OK
}

// TestRotateDestroyRace: a destruction during a live rotation leaves no usable share, whenever
// it lands: after the rotation was sealed (the confirm and both pairs are refused), between a
// rotate's read and its write (nothing is re-created: the pending share alone never becomes a
// key), between a confirm's read and its write, and at random against a running rotate.
func TestRotateDestroyRace(t *testing.T) {
	fs, ss := sharedDir(t, 2)
	a, b := fs[0], fs[1]
	noRecord := func(id string) {
		t.Helper()
		if _, err := ss[0].Store.GetAll(ShareKind, []byte(id)); !errors.Is(err, sealstore.ErrNotFound) {
			t.Fatalf("%s: a share record exists after the destruction: %v", id, err)
		}
	}

	t.Run("destroy after rotate", func(t *testing.T) {
		tm := a.enroll("term-rd1")
		rot, code := a.call(OpRotate, a.token(tm.id, OpRotate), Request{KeyID: tm.id})
		if code != refusal.OK {
			t.Fatal(code)
		}
		newD1, _ := tm.d1.Refreshed(rot.Rho)
		e, _ := RotationChallengeDigest(tm.pub, tm.id, rot.RotationID)
		proof, code, err := a.coSignWith(tm, newD1, a.token(tm.id, OpSign), e, rot.RotationID)
		if code != refusal.OK || err != nil {
			t.Fatalf("challenge: %s %v", code, err)
		}
		if err := b.svc.Destroy(tm.id); err != nil {
			t.Fatal(err)
		}
		if _, code := a.call(OpConfirm, a.token(tm.id, OpRotate), Request{KeyID: tm.id, RotationID: rot.RotationID, Signature: proof}); code != CodeUnknownKey {
			t.Fatalf("confirm after destroy: %s", code)
		}
		for _, d1 := range []*cosign.Share{tm.d1, newD1} {
			if _, code, _ := a.coSignWith(tm, d1, a.token(tm.id, OpSign), e, rot.RotationID); code != CodeUnknownKey {
				t.Fatalf("pending share after destroy: %s", code)
			}
			if _, code := a.sign(&terminal{tm.id, d1, tm.pub}, a.token(tm.id, OpSign), []byte("pay"), nil); code != CodeUnknownKey {
				t.Fatalf("sign after destroy: %s", code)
			}
		}
		noRecord(tm.id)
	})

	t.Run("destroy between rotate's read and write", func(t *testing.T) {
		tm := a.enroll("term-rd2")
		ss[0].afterRead = func() {
			if err := b.svc.Destroy(tm.id); err != nil {
				t.Error(err)
			}
		}
		if _, code := a.call(OpRotate, a.token(tm.id, OpRotate), Request{KeyID: tm.id}); code != CodeUnknownKey {
			t.Fatalf("rotate racing a destroy: %s", code)
		}
		noRecord(tm.id)
		if _, code := a.sign(tm, a.token(tm.id, OpSign), []byte("pay"), nil); code != CodeUnknownKey {
			t.Fatalf("sign after: %s", code)
		}
	})

	t.Run("destroy between confirm's read and write", func(t *testing.T) {
		tm := a.enroll("term-rd3")
		rot, _ := a.call(OpRotate, a.token(tm.id, OpRotate), Request{KeyID: tm.id})
		newD1, _ := tm.d1.Refreshed(rot.Rho)
		e, _ := RotationChallengeDigest(tm.pub, tm.id, rot.RotationID)
		proof, _, _ := a.coSignWith(tm, newD1, a.token(tm.id, OpSign), e, rot.RotationID)
		ss[0].afterRead = func() { b.svc.Destroy(tm.id) }
		if _, code := a.call(OpConfirm, a.token(tm.id, OpRotate), Request{KeyID: tm.id, RotationID: rot.RotationID, Signature: proof}); code != CodeUnknownKey {
			t.Fatalf("confirm racing a destroy: %s", code)
		}
		noRecord(tm.id)
	})

	t.Run("destroy against a running rotate", func(t *testing.T) {
		for i := range 20 {
			tm := a.enroll("term-rd4-" + string(rune('a'+i)))
			tok := a.token(tm.id, OpRotate)
			var wg sync.WaitGroup
			wg.Add(2)
			go func() { defer wg.Done(); a.callQuiet(OpRotate, tok, Request{KeyID: tm.id}) }()
			go func() {
				defer wg.Done()
				if err := b.svc.Destroy(tm.id); err != nil {
					t.Error(err)
				}
			}()
			wg.Wait()
			noRecord(tm.id)
		}
	})
}

// TestRotateConfirmRaceTwoInstances: two instances asked to rotate one key at once seal one
// rotation (the other answers cosign_rotation_pending); two confirms of it at once both
// succeed (one commits, the other is answered as a repeat) and leave one share.
func TestRotateConfirmRaceTwoInstances(t *testing.T) {
	fs, ss := sharedDir(t, 2)
	a, b := fs[0], fs[1]
	for round := range 5 {
		tm := a.enroll("term-rr" + string(rune('a'+round)))
		var wg sync.WaitGroup
		codes := make([]refusal.Code, 2)
		resps := make([]*Response, 2)
		for i, f := range fs {
			tok := f.token(tm.id, OpRotate)
			wg.Add(1)
			go func() { defer wg.Done(); resps[i], codes[i] = f.callGo(OpRotate, tok, Request{KeyID: tm.id}) }()
		}
		wg.Wait()
		if !(codes[0] == refusal.OK && codes[1] == CodeRotationPending || codes[1] == refusal.OK && codes[0] == CodeRotationPending) {
			t.Fatalf("two rotates at once: %v, want one ok and one %s", codes, CodeRotationPending)
		}
		vs, err := ss[0].Store.GetAll(ShareKind, []byte(tm.id))
		if err != nil || len(vs) != 2 {
			t.Fatalf("record after two rotates: %d versions %v", len(vs), err)
		}
		rot := resps[0]
		if rot == nil {
			rot = resps[1]
		}
		newD1, _ := tm.d1.Refreshed(rot.Rho)
		id := rot.RotationID
		e, _ := RotationChallengeDigest(tm.pub, tm.id, id)
		proof, code, err := a.coSignWith(tm, newD1, a.token(tm.id, OpSign), e, id)
		if code != refusal.OK || err != nil {
			t.Fatalf("challenge: %s %v", code, err)
		}
		for i, f := range fs {
			tok := f.token(tm.id, OpRotate)
			wg.Add(1)
			go func() {
				defer wg.Done()
				codes[i] = f.callQuiet(OpConfirm, tok, Request{KeyID: tm.id, RotationID: id, Signature: proof})
			}()
		}
		wg.Wait()
		if codes[0] != refusal.OK || codes[1] != refusal.OK {
			t.Fatalf("two confirms at once: %v, want both ok", codes)
		}
		if vs, err := ss[1].Store.GetAll(ShareKind, []byte(tm.id)); err != nil || len(vs) != 1 {
			t.Fatalf("record after confirm: %d versions %v", len(vs), err)
		}
		if _, code := b.sign(&terminal{tm.id, newD1, tm.pub}, b.token(tm.id, OpSign), []byte("pay"), nil); code != refusal.OK {
			t.Fatalf("new share: %s", code)
		}
	}
}
