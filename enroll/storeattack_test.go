package enroll

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gmgate/gmgate/internal/attack"
)

// storeFixture is a fixture whose spent tokens go to a ledger too (the replay store in the
// Caddy adapter) and whose refused records are counted.
func storeFixture(t *testing.T) (*fixture, *memNonces, func() int) {
	t.Helper()
	ledger := &memNonces{}
	f := newFixture(t, func(c *Config) { c.TokenLedger = ledger })
	var mu sync.Mutex
	n := 0
	f.store.OnIntegrityFailure(func(string, string, error) { mu.Lock(); n++; mu.Unlock() })
	return f, ledger, func() int { mu.Lock(); defer mu.Unlock(); return n }
}

func (f *fixture) path(parts ...string) string {
	return filepath.Join(append([]string{f.store.Dir()}, parts...)...)
}

// enrolCode presents tok with a request for cn and returns the refusal code (ok on success).
func (f *fixture) enrolCode(tok, cn string) Code {
	f.t.Helper()
	resp, body := f.post(OpSimpleEnroll, enrolHeaders(tok), b64(simpleCSR(f.t, newKey(f.t), cn)))
	if resp.StatusCode == http.StatusOK {
		return "ok"
	}
	return codeOf(body)
}

func tokenID(tok string) string { id, _, _ := parseToken(tok); return id }

// TestAttackForgedAndEditedTokens: someone who can write the store directory plants a token
// whose secret they chose, edits a genuine token's profile, expiry or common name, swaps two
// token records, or leaves a truncated or garbage file. Before, each one enrolled a terminal
// certificate of their choice. Now each is refused (enroll_store_integrity, audited, counted),
// and no pair is issued.
func TestAttackForgedAndEditedTokens(t *testing.T) {
	f, _, refused := storeFixture(t)
	notAfter := f.clock.now().Add(time.Hour)
	edit := func(field string, v any) func(tok string) error {
		return func(tok string) error {
			return attack.EditRecord(f.path("tokens", tokenID(tok)+".json"), func(r map[string]any) { r[field] = v })
		}
	}
	for _, tc := range []struct {
		name string
		cn   string
		// attack returns the token to present.
		attack func() (string, error)
	}{
		{"forged record, older plain format", "T0800", func() (string, error) {
			ft, err := attack.ForgeToken(f.store.Dir(), "terminal", "T0800", notAfter, false, "")
			return ft.Token, err
		}},
		{"forged record with a made-up tag", "T0801", func() (string, error) {
			ft, err := attack.ForgeToken(f.store.Dir(), "terminal", "T0801", notAfter, true, "enroll-store")
			return ft.Token, err
		}},
		{"common name edited", "T0899", func() (string, error) {
			tok := f.token("T0802", time.Hour)
			return tok, edit("common_name", "T0899")(tok)
		}},
		{"common name removed", "ANY-NAME", func() (string, error) {
			tok := f.token("T0803", time.Hour)
			return tok, edit("common_name", "")(tok)
		}},
		{"expiry extended", "T0804", func() (string, error) {
			tok := f.token("T0804", time.Hour)
			return tok, edit("not_after", f.clock.now().Add(900*time.Hour).UTC())(tok)
		}},
		{"profile edited", "T0805", func() (string, error) {
			tok := f.token("T0805", time.Hour)
			return tok, edit("profile", "admin")(tok)
		}},
		{"records swapped", "T0806", func() (string, error) {
			a, b := f.token("T0806", time.Hour), f.token("T0807", time.Hour)
			return a, attack.SwapFiles(f.path("tokens", tokenID(a)+".json"), f.path("tokens", tokenID(b)+".json"))
		}},
		{"truncated record", "T0808", func() (string, error) {
			tok := f.token("T0808", time.Hour)
			return tok, attack.Truncate(f.path("tokens", tokenID(tok)+".json"), 40)
		}},
		{"garbage record", "T0809", func() (string, error) {
			tok := f.token("T0809", time.Hour)
			return tok, attack.Garbage(f.path("tokens", tokenID(tok)+".json"), 300)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			certs, _ := f.store.Certs()
			before, n := len(certs), refused()
			tok, err := tc.attack()
			if err != nil {
				t.Fatal(err)
			}
			if code := f.enrolCode(tok, tc.cn); code != CodeStoreIntegrity {
				t.Fatalf("enrolment with the altered token: %s", code)
			}
			if a := f.audit.last(); a.Scheme != "enroll/simpleenroll" || a.Verdict != "reject" || a.Reason != string(CodeStoreIntegrity) || a.KeyID != tokenID(tok) {
				t.Fatalf("audit: %+v", a)
			}
			if refused() <= n {
				t.Fatal("the refused record was not reported")
			}
			if certs, _ := f.store.Certs(); len(certs) != before {
				t.Fatal("a pair was issued")
			}
		})
	}
	// Listing reports the refused records and keeps the others.
	f.token("T0810", time.Hour)
	toks, err := f.store.Tokens()
	if !errors.Is(err, ErrIntegrity) || len(toks) != 1 {
		t.Fatalf("Tokens: %d records, %v", len(toks), err)
	}
}

// TestAttackRestoredSpentToken: the attacker keeps a copy of the store from before a token was
// used and puts it back (the spent marker disappears, the token record is genuine). The ledger
// (the replay store; Redis in production) still knows the token was spent: refused as used,
// and the rollback is an audit entry.
func TestAttackRestoredSpentToken(t *testing.T) {
	f, _, _ := storeFixture(t)
	tok := f.token("T0810", time.Hour)
	snap, err := attack.TakeSnapshot(f.store.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if code := f.enrolCode(tok, "T0810"); code != "ok" {
		t.Fatalf("first use: %s", code)
	}
	if err := snap.Restore(f.store.Dir(), true); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(f.path("used", tokenID(tok))); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("the rollback did not remove the spent marker")
	}
	if code := f.enrolCode(tok, "T0810"); code != CodeTokenUsed {
		t.Fatalf("restored token: %s", code)
	}
	found := false
	for _, a := range f.audit.recs {
		found = found || a.Scheme == "enroll/store" && a.Reason == "spent_marker_rolled_back" && a.KeyID == tokenID(tok)
	}
	if !found {
		t.Fatal("rollback not audited")
	}
	// A spent marker written in clear (or any garbage in its place) does not un-spend either.
	tok2 := f.token("T0811", time.Hour)
	if code := f.enrolCode(tok2, "T0811"); code != "ok" {
		t.Fatal(code)
	}
	if err := attack.Garbage(f.path("used", tokenID(tok2)), 20); err != nil {
		t.Fatal(err)
	}
	if code := f.enrolCode(tok2, "T0811"); code != CodeTokenUsed {
		t.Fatalf("garbage spent marker: %s", code)
	}
}

// TestAttackCertRecords: edited or moved pair records (un-revoke flag, another pair's key
// delivery, swapped records, truncated or garbage files) are refused when a holder signs with
// them; a genuine record put back from before its revocation does not un-revoke (the signed
// CRL), nor does one from before its renewal allow a second renewal (the ledger); a revocation
// marker written in clear does not revoke another terminal's pair.
func TestAttackCertRecords(t *testing.T) {
	f, _, refused := storeFixture(t)
	k1, k2 := newKey(t), newKey(t)
	r1, r2 := f.enrol(k1, "T0820"), f.enrol(k2, "T0821")
	dl := func(i int) Code {
		t.Helper()
		key, serial := k1, r1.Serial
		if i == 2 {
			key, serial = k2, r2.Serial
		}
		resp, body := f.post(OpDownload, f.signedHeaders(OpDownload, "application/json", nil, key, serial, ""), nil)
		if resp.StatusCode == http.StatusOK {
			return "ok"
		}
		return codeOf(body)
	}
	certFile := func(serial string) string { return f.path("certs", serial+".json") }
	snap, err := attack.TakeSnapshot(f.store.Dir())
	if err != nil {
		t.Fatal(err)
	}
	restore := func() {
		t.Helper()
		if err := snap.Restore(f.store.Dir(), false); err != nil {
			t.Fatal(err)
		}
	}

	// Another pair's key delivery spliced into this record.
	var other map[string]any
	_ = attack.EditRecord(certFile(r2.Serial), func(r map[string]any) { other = r })
	if err := attack.EditRecord(certFile(r1.Serial), func(r map[string]any) { r["delivery"] = other["delivery"] }); err != nil {
		t.Fatal(err)
	}
	n := refused()
	if code := dl(1); code != CodeStoreIntegrity {
		t.Fatalf("delivery swapped: %s", code)
	}
	if refused() <= n || f.audit.last().Reason != string(CodeStoreIntegrity) {
		t.Fatal("refusal not reported or audited")
	}
	restore()
	if code := dl(1); code != "ok" {
		t.Fatalf("restored genuine record: %s", code)
	}
	if err := attack.SwapFiles(certFile(r1.Serial), certFile(r2.Serial)); err != nil {
		t.Fatal(err)
	}
	if c1, c2 := dl(1), dl(2); c1 != CodeStoreIntegrity || c2 != CodeStoreIntegrity {
		t.Fatalf("records swapped: %s %s", c1, c2)
	}
	restore()
	for name, damage := range map[string]func(string) error{
		"truncated": func(p string) error { return attack.Truncate(p, 100) },
		"garbage":   func(p string) error { return attack.Garbage(p, 2000) },
		"empty":     func(p string) error { return attack.Truncate(p, 0) },
	} {
		if err := damage(certFile(r1.Serial)); err != nil {
			t.Fatal(err)
		}
		if code := dl(1); code != CodeStoreIntegrity {
			t.Fatalf("%s record: %s", name, code)
		}
		restore()
	}

	// Revoked, then the revoked flag cleared in place: refused for integrity.
	rb := []byte(`{}`)
	if resp, body := f.post(OpRevoke, f.signedHeaders(OpRevoke, "application/json", rb, k1, r1.Serial, ""), rb); resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke: %s", body)
	}
	if err := attack.EditRecord(certFile(r1.Serial), func(r map[string]any) { delete(r, "revoked"); delete(r, "revoked_at") }); err != nil {
		t.Fatal(err)
	}
	if code := dl(1); code != CodeStoreIntegrity {
		t.Fatalf("revoked flag cleared: %s", code)
	}
	// The genuine record from before the revocation put back, the markers deleted: still
	// revoked (the CRL this server signed lists it).
	restore()
	for _, sn := range []string{r1.Serial, r1.EncSerial} {
		_ = os.Remove(f.path("revoked", sn))
	}
	if code := dl(1); code != CodeCertRevoked {
		t.Fatalf("record from before the revocation: %s", code)
	}
	csr := b64(simpleCSR(t, newKey(t), "T0820"))
	if _, body := f.post(OpSimpleReenroll, f.signedHeaders(OpSimpleReenroll, MediaPKCS10, csr, k1, r1.Serial, ""), csr); codeOf(body) != CodeCertRevoked {
		t.Fatalf("renewal with the un-revoked record: %s", body)
	}

	// Renewed once; the record from before the renewal and no renewal marker: no second renewal.
	before, err := attack.TakeSnapshot(f.store.Dir())
	if err != nil {
		t.Fatal(err)
	}
	csr = b64(simpleCSR(t, newKey(t), "T0821"))
	if resp, body := f.post(OpSimpleReenroll, f.signedHeaders(OpSimpleReenroll, MediaPKCS10, csr, k2, r2.Serial, ""), csr); resp.StatusCode != http.StatusOK {
		t.Fatalf("renewal: %s", body)
	}
	if err := before.Restore(f.store.Dir(), true); err != nil {
		t.Fatal(err)
	}
	csr = b64(simpleCSR(t, newKey(t), "T0821"))
	if _, body := f.post(OpSimpleReenroll, f.signedHeaders(OpSimpleReenroll, MediaPKCS10, csr, k2, r2.Serial, ""), csr); codeOf(body) != CodeAlreadyRenewed {
		t.Fatalf("second renewal after a rollback: %s", body)
	}

	// A revocation marker written in clear for r2: not believed, audited once.
	if err := os.WriteFile(f.path("revoked", r2.Serial), []byte(f.clock.now().UTC().Format(time.RFC3339Nano)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := f.srv.RefreshCRL(context.Background()); err != nil {
		t.Fatal(err)
	}
	der, _, _ := f.srv.CRL(context.Background())
	if crlLists(t, der, r2.Serial) {
		t.Fatal("a forged revocation marker revoked another terminal's pair")
	}
	if !crlLists(t, der, r1.Serial) {
		t.Fatal("the genuine revocation was lost")
	}
	count := 0
	for _, a := range f.audit.recs {
		if a.Scheme == "enroll/store" && a.Reason == "revocation_marker_refused" && a.CertSerial == r2.Serial {
			count++
		}
	}
	f.clock.add(13 * time.Hour)
	_ = f.srv.RefreshCRL(context.Background())
	for _, a := range f.audit.recs {
		if a.Scheme == "enroll/store" && a.Reason == "revocation_marker_refused" && a.CertSerial == r2.Serial {
			count--
		}
	}
	if count != 0 {
		t.Fatal("forged marker not audited exactly once")
	}
}

// TestStoreKeyRotationAndMigration: records tagged under an old key version keep verifying
// after a rotation; records an older gmgate wrote are refused with a message that says how to
// migrate, and Migrate tags them (only when applied) while leaving garbage alone.
func TestStoreKeyRotationAndMigration(t *testing.T) {
	f, _, _ := storeFixture(t)
	tok := f.token("T0830", time.Hour)
	keys := f.store.keys.(interface{ Rotate(testing.TB) })
	keys.Rotate(t)
	if code := f.enrolCode(tok, "T0830"); code != "ok" {
		t.Fatalf("token tagged under the old key version: %s", code)
	}
	// An older gmgate's token record (plain JSON).
	legacy := f.token("T0831", time.Hour)
	id := tokenID(legacy)
	rec, err := f.store.Token(id)
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := json.Marshal(rec)
	if err := os.WriteFile(f.path("tokens", id+".json"), plain, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.Token(id); !errors.Is(err, ErrUnauthenticated) || !errors.Is(err, ErrIntegrity) {
		t.Fatalf("older record: %v", err)
	}
	if code := f.enrolCode(legacy, "T0831"); code != CodeStoreIntegrity {
		t.Fatalf("older record used: %s", code)
	}
	if err := os.WriteFile(f.path("revoked", "abcd"), []byte(time.Now().UTC().Format(time.RFC3339Nano)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := attack.Garbage(f.path("certs", "ffff.json"), 64); err != nil {
		t.Fatal(err)
	}
	m, err := f.store.Migrate(false)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Tagged) != 2 || len(m.Refused) != 1 || m.Refused[0] != "certs/ffff" {
		t.Fatalf("dry run: %+v", m)
	}
	if _, err := f.store.Token(id); !errors.Is(err, ErrUnauthenticated) {
		t.Fatal("the dry run wrote")
	}
	if m, err = f.store.Migrate(true); err != nil || len(m.Tagged) != 2 {
		t.Fatalf("migrate: %+v %v", m, err)
	}
	if code := f.enrolCode(legacy, "T0831"); code != "ok" {
		t.Fatalf("migrated token: %s", code)
	}
	if m, _ = f.store.Migrate(false); len(m.Tagged) != 0 || len(m.Refused) != 1 {
		t.Fatalf("second run: %+v", m)
	}
}
