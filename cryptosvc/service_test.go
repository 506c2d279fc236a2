package cryptosvc

import (
	"bytes"
	"crypto/ecdsa"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm3"

	"github.com/gmgate/gmgate/keyvault"
)

type item = map[string]any

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func backends(t *testing.T) map[string]func(testing.TB) *keyvault.Vault {
	return map[string]func(testing.TB) *keyvault.Vault{"softhsm-wrapped": wrappedVault, "file": func(tb testing.TB) *keyvault.Vault { return fileVault(tb.(*testing.T)) }}
}

// TestRoundTrips runs every operation's good path on both key backends, checking each result
// against an independent computation where there is one.
func TestRoundTrips(t *testing.T) {
	for name, mk := range backends(t) {
		t.Run(name, func(t *testing.T) {
			v := mk(t)
			sink := &recSink{}
			s := newService(t, v, sink)
			signer, _ := v.Signer("platform-sign")
			pub := signer.Public().(*ecdsa.PublicKey)
			latest := 1
			if name == "softhsm-wrapped" {
				latest = 3
			}

			msg := []byte("settlement batch 2026-12-04 total=1234.56")
			// Sign with the key's configured user ID: verify independently with gmsm.
			r := mustOK(t, s, settlement, OpSign, item{"key": "platform-sign", "data": b64(msg)})
			if !sm2.VerifyASN1WithSM2(pub, []byte("settlement@gmgate"), msg, r.Signature) || r.KeyVersion != 1 {
				t.Fatalf("signature with the key's user ID does not verify (version %d)", r.KeyVersion)
			}
			// With an explicit user ID.
			r = mustOK(t, s, settlement, OpSign, item{"key": "platform-sign", "data": b64(msg), "user_id": "1234567812345678"})
			if !sm2.VerifyASN1WithSM2(pub, nil, msg, r.Signature) {
				t.Fatal("signature with the default user ID does not verify")
			}
			// Of a digest e = SM3(Z_A || M).
			za, _ := sm2.CalculateZA(pub, []byte("risk-uid"))
			h := sm3.New()
			h.Write(za)
			h.Write(msg)
			e := h.Sum(nil)
			r = mustOK(t, s, settlement, OpSign, item{"key": "platform-sign", "digest": b64(e)})
			if !sm2.VerifyASN1WithSM2(pub, []byte("risk-uid"), msg, r.Signature) {
				t.Fatal("signature of a digest does not verify as a signature of the message")
			}
			if rec := sink.last(t); !bytes.Equal(rec.SignedSM3, e) || !bytes.Equal(rec.Signature, r.Signature) {
				t.Fatal("audit entry of sign lacks the digest or the signature")
			}
			// Verify through the service: data with user ID, and digest.
			r = mustOK(t, s, settlement, OpVerify, item{"key": "platform-sign", "digest": b64(e), "signature": b64(r.Signature)})
			if !r.Valid || r.KeyVersion != 1 {
				t.Fatalf("verify: %+v", r)
			}

			// Encrypt / decrypt with context.
			pt := []byte("6222 0212 3456 7890")
			r = mustOK(t, s, settlement, OpEncrypt, item{"key": "pii", "plaintext": b64(pt), "context": b64([]byte("order-42"))})
			if !strings.HasPrefix(r.Ciphertext, "gm:v"+itoa(latest)+":") || r.KeyVersion != latest {
				t.Fatalf("ciphertext %q version %d", r.Ciphertext, r.KeyVersion)
			}
			ct := r.Ciphertext
			if rec := sink.last(t); !bytes.Equal(rec.SignedSM3, sm3sum([]byte(ct))) || rec.KeyID != "settlement:pii@v"+itoa(latest) || rec.Scheme != "gm_crypto/encrypt" {
				t.Fatalf("audit entry of encrypt: %+v", rec)
			}
			r = mustOK(t, s, settlement, OpDecrypt, item{"key": "pii", "ciphertext": ct, "context": b64([]byte("order-42"))})
			if !bytes.Equal(r.Plaintext, pt) {
				t.Fatal("decrypt does not give the plaintext back")
			}
			// The ciphertext is SM4-GCM under the vault key with the documented AAD: open it
			// with the key handle directly.
			k, _ := v.SM4("pii")
			_, sealed, _ := parseVersioned(ct)
			if got, err := k.OpenGCM(sealed, aadFor("pii", latest, []byte("order-42"))); err != nil || !bytes.Equal(got, pt) {
				t.Fatalf("ciphertext is not SM4-GCM with the documented AAD: %v", err)
			}

			// Data key: the wrapped form decrypts to the plaintext form.
			r = mustOK(t, s, settlement, OpDataKey, item{"key": "pii"})
			if len(r.Plaintext) != 16 {
				t.Fatalf("data key of %d bytes", len(r.Plaintext))
			}
			d := mustOK(t, s, settlement, OpDecrypt, item{"key": "pii", "ciphertext": r.Ciphertext})
			if !bytes.Equal(d.Plaintext, r.Plaintext) {
				t.Fatal("wrapped data key does not unwrap to the plaintext data key")
			}
			r = mustOK(t, s, settlement, OpDataKey, item{"key": "pii", "wrapped_only": true})
			if r.Plaintext != nil || r.Ciphertext == "" {
				t.Fatal("wrapped_only returned the plaintext key")
			}

			// HMAC-SM3: equals HMAC-SM3 under the key, and verifies.
			r = mustOK(t, s, settlement, OpHMAC, item{"key": "pii", "data": b64(msg)})
			want, _ := k.HMACSM3(msg)
			if r.HMAC != formatVersioned(latest, want) {
				t.Fatalf("hmac %s", r.HMAC)
			}
			if r = mustOK(t, s, settlement, OpVerifyHMAC, item{"key": "pii", "data": b64(msg), "hmac": r.HMAC}); !r.Valid {
				t.Fatal("hmac does not verify")
			}

			// Random and key info.
			r = mustOK(t, s, settlement, OpRandom, item{"bytes": 48})
			if len(r.Random) != 48 || bytes.Equal(r.Random, make([]byte, 48)) {
				t.Fatal("random")
			}
			r = mustOK(t, s, settlement, OpKeyInfo, item{"key": "pii"})
			if r.LatestVersion != latest || len(r.Versions) != latest {
				t.Fatalf("key_info %+v", r)
			}
		})
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func sm3sum(b []byte) []byte { d := sm3.Sum(b); return d[:] }

// TestVersions: rewrap moves a ciphertext to the newest version; a caller's min_version refuses
// older versions before any decryption; retired versions still open for callers without one.
func TestVersions(t *testing.T) {
	v := wrappedVault(t)
	s := newService(t, v, &recSink{})
	k1, err := v.SM4("pii@1")
	if err != nil {
		t.Fatal(err)
	}
	ct1 := hsmOld[1] // made by the service when version 1 was the newest
	if r := mustOK(t, s, settlement, OpDecrypt, item{"key": "pii", "ciphertext": ct1}); string(r.Plaintext) != "old record" || r.KeyVersion != 1 {
		t.Fatalf("version-1 ciphertext: %+v", r)
	}
	// risk may decrypt only version >= 3.
	_, err = call(t, s, risk, OpDecrypt, item{"key": "pii", "ciphertext": ct1})
	mustCode(t, err, CodeVersionRetired)
	r := mustOK(t, s, settlement, OpRewrap, item{"key": "pii", "ciphertext": ct1})
	if r.KeyVersion != 3 || !strings.HasPrefix(r.Ciphertext, "gm:v3:") {
		t.Fatalf("rewrap: %+v", r)
	}
	if r2 := mustOK(t, s, risk, OpDecrypt, item{"key": "pii", "ciphertext": r.Ciphertext}); string(r2.Plaintext) != "old record" {
		t.Fatal("rewrapped ciphertext does not decrypt for risk")
	}
	// A retired handle cannot make new ciphertexts or HMACs (the vault's rule): the service
	// always encrypts with the newest version.
	if _, err := k1.SealGCM([]byte("x"), nil); err == nil {
		t.Fatal("retired version sealed")
	}
}
