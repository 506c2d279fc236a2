package gateway

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gmgate/gmgate/envelope"
	"github.com/gmgate/gmgate/internal/attack"
	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/signing"
)

// TestAttackPaddingOracle is finding 1 of the security review. A form-sm2 payment signed, then
// sealed with SM4-CBC (sign-then-seal, what `auto` picks for body schemes) is captured. The
// attacker, with no credential, sends the captured content key with chosen IV/ciphertext blocks
// and reads only what a client sees. Against the bare opener (padding error vs success) the
// oracle loop recovers a block of the signed form: the helper works. Through the Verifier it
// must learn nothing: by default a CBC envelope is refused before decryption, and with AllowCBC
// every answer is the same. Before the fix the Verifier answered envelope_invalid for bad padding
// and missing_signature for good padding, and the same loop recovered the block.
func TestAttackPaddingOracle(t *testing.T) {
	p := newTestPKI(t)
	platEnc, err := p.root.IssueServerPair(pki.IssueOptions{CommonName: "platform enc"})
	if err != nil {
		t.Fatal(err)
	}
	scheme := signing.NewForm()
	m := &signing.Message{Kind: signing.Request, Method: http.MethodPost, Target: "/pay",
		Header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}},
		Body:   attack.FormBody(map[string]string{"app_id": "2021000000", "card_no": "6222020200000000000", "total_amount": "100.00"})}
	key := signing.Key{Signer: p.good.Sign.Key, Cert: p.good.Sign.Cert, KeyID: signing.SerialHex(p.good.Sign.Cert.SerialNumber)}
	if err := scheme.Sign(m, key, time.Now(), ""); err != nil {
		t.Fatal(err)
	}
	captured, err := envelope.Seal(m.Body, platEnc.Enc.Cert, envelope.SealOptions{}) // SM4-CBC
	if err != nil {
		t.Fatal(err)
	}
	env, err := attack.ParseCBCEnvelope(captured)
	if err != nil {
		t.Fatal(err)
	}
	const block = 1
	want := m.Body[block*16 : (block+1)*16]

	// The helper against a real oracle: the opener's padding check.
	raw := &envelope.Opener{Cert: platEnc.Enc.Cert, Key: platEnc.Enc.Key}
	got, n, err := env.RecoverBlock(block, func(der []byte) bool { _, err := raw.Open(der); return err == nil })
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("oracle loop against the bare opener: %q after %d queries (%v), want %q", got, n, err, want)
	}

	for _, tc := range []struct {
		name     string
		allowCBC bool
	}{{"default (CBC refused before decryption)", false}, {"allow_cbc (one uniform refusal)", true}} {
		t.Run(tc.name, func(t *testing.T) {
			v := newTestVerifier(t, p, func(o *VerifierOptions) {
				o.Scheme, o.Opener, o.EnvelopeOrder, o.AllowCBC = scheme, raw, envelope.SignThenSeal, tc.allowCBC
			})
			seen := map[string]int{}
			answer := func(der []byte) string {
				r := httptest.NewRequest(http.MethodPost, "/pay", bytes.NewReader(der))
				r.Header.Set("Content-Type", envelope.ContentType)
				r.Header.Set(envelope.HeaderInnerContentType, "application/x-www-form-urlencoded")
				_, err := v.Verify(context.Background(), r, nil)
				w := httptest.NewRecorder()
				WriteError(w, CodeOf(err))
				a := w.Result().Status + " " + w.Body.String()
				seen[a]++
				return a
			}
			refusal := answer([]byte("0")) // what the attacker knows a broken envelope gets
			got, n, err := env.RecoverBlock(block, func(der []byte) bool { return answer(der) != refusal })
			if !errors.Is(err, attack.ErrNoSignal) {
				t.Fatalf("oracle loop through the Verifier: %q after %d queries (%v); answers %v", got, n, err, seen)
			}
			if len(seen) != 1 {
				t.Fatalf("the answers differ: %v", seen)
			}
			// The genuine request still works where it should: CBC only with the opt-in, GCM always.
			r := httptest.NewRequest(http.MethodPost, "/pay", bytes.NewReader(captured))
			r.Header.Set("Content-Type", envelope.ContentType)
			r.Header.Set(envelope.HeaderInnerContentType, "application/x-www-form-urlencoded")
			if _, err := v.Verify(context.Background(), r, nil); (err == nil) != tc.allowCBC {
				t.Fatalf("genuine CBC envelope: %v", err)
			}
			gcm, err := envelope.Seal(m.Body, platEnc.Enc.Cert, envelope.SealOptions{GCM: true})
			if err != nil {
				t.Fatal(err)
			}
			r = httptest.NewRequest(http.MethodPost, "/pay", bytes.NewReader(gcm))
			r.Header.Set("Content-Type", envelope.ContentType)
			r.Header.Set(envelope.HeaderInnerContentType, "application/x-www-form-urlencoded")
			res, err := v.Verify(context.Background(), r, nil)
			if tc.allowCBC {
				if CodeOf(err) != CodeReplay { // the CBC copy of the same signed form came first
					t.Fatalf("genuine GCM envelope after its CBC copy: %v", err)
				}
			} else if err != nil || !bytes.Equal(res.Body, m.Body) {
				t.Fatalf("genuine GCM envelope: %v", err)
			}
		})
	}
}
