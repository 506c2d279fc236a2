package enroll

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gmgate/gmgate/internal/testpki"
)

// storeFuzzCase is one record of a store built by the code itself: its kind, ID, a fresh value
// of its type and the genuine file content.
type storeFuzzCase struct {
	kind, id string
	newV     func() any
	genuine  []byte
}

// FuzzStoreRecord writes arbitrary bytes as a record file of each kind (tokens, certificates,
// spent, revoked and ski markers, the CRL mark) and reads it back through the store's record
// path: every failure is an integrity error, and what is accepted decodes to exactly the record
// the store wrote (the fuzzer cannot forge a tag: it may only re-encode the envelope around the
// authenticated bytes). Legacy records (gmgate enroll migrate) are parsed too: what the
// migration accepts re-decodes strictly as its kind's record.
func FuzzStoreRecord(f *testing.F) {
	dir := f.TempDir()
	st, err := OpenFileStore(filepath.Join(dir, "store"), testpki.NewSealKeys(f, "enroll-store"))
	if err != nil {
		f.Fatal(err)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tok := TokenRecord{ID: "tok1", Hash: bytes.Repeat([]byte{7}, 32), Profile: "pos", CommonName: "T1",
		NotAfter: now.Add(time.Hour), Created: now, Note: "shop 7"}
	cert := CertRecord{Serial: "0abc", EncSerial: "0abd", CommonName: "T1", Profile: "pos", SKI: "5a5a",
		NotBefore: now, NotAfter: now.Add(time.Hour), IssuedAt: now, Via: "token:tok1",
		SignCert: []byte{0x30, 1, 2}, EncCert: []byte{0x30, 3, 4},
		Delivery: Delivery{EnvelopedKey: []byte{1}, CSRResponse: []byte{2}}}
	mark := markOf(nil, big.NewInt(9), now)
	must := func(err error) {
		if err != nil {
			f.Fatal(err)
		}
	}
	must(st.PutToken(tok))
	must(st.PutCert(cert))
	must(st.PutCRLMark("ca1", mark))
	must(st.ReserveToken(f.Context(), "tok1"))
	must(st.SpendToken("tok1"))
	if _, err := st.Revoke("0abc", "holder", now); err != nil {
		f.Fatal(err)
	}
	cases := []storeFuzzCase{
		{kindToken, "tok1", func() any { return new(TokenRecord) }, nil},
		{kindCert, "0abc", func() any { return new(CertRecord) }, nil},
		{kindCRL, "ca1", func() any { return new(CRLMark) }, nil},
		{kindSpent, "tok1", func() any { return new(marker) }, nil},
		{kindRevoked, "0abd", func() any { return new(marker) }, nil},
		{kindSKI, "5a5a", func() any { return new(marker) }, nil},
	}
	for i := range cases {
		c := &cases[i]
		p, _ := st.path(c.kind, c.id)
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		c.genuine = b
		f.Add(uint8(i), b)
	}
	f.Add(uint8(0), []byte(`{"id":"tok1","hash":"BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=","profile":"pos","not_after":"2026-01-02T04:04:05Z","created":"2026-01-02T03:04:05Z"}`))
	f.Add(uint8(3), []byte("2026-01-02T03:04:05Z\n"))
	f.Add(uint8(5), []byte("0abc"))
	f.Add(uint8(1), []byte(`{"format":2,"kind":"cert","id":"0abc","key":"enroll-store","key_version":1,"tag":"AAAA","record":{}}`))

	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		c := cases[int(which)%len(cases)]
		p, _ := st.path(c.kind, c.id)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		got := c.newV()
		err := st.get(c.kind, c.id, got)
		if len(data) > maxRecordSize && err == nil {
			t.Fatal("accepted a record over the size bound")
		}
		if err != nil {
			if !errors.Is(err, ErrIntegrity) {
				t.Fatalf("refusal is not an integrity error: %v", err)
			}
		} else {
			want := c.newV()
			if err := json.Unmarshal(mustOpen(t, st, c, c.genuine), want); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("accepted a record other than the one the store wrote:\n%+v\n%+v", got, want)
			}
		}
		if rec, ok := legacyRecord(c.kind, c.id, data); ok {
			dec := json.NewDecoder(bytes.NewReader(rec))
			dec.DisallowUnknownFields()
			if err := dec.Decode(c.newV()); err != nil {
				t.Fatalf("migration produced a record that does not decode: %v", err)
			}
		}
	})
}

func mustOpen(t *testing.T, st *FileStore, c storeFuzzCase, data []byte) []byte {
	rec, err := st.open(c.kind, c.id, data)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// FuzzCRLMarkLedger feeds arbitrary bytes as the CRL mark a ledger (Redis) holds: errors wrap
// ErrCRLMark, an accepted mark is well formed (decimal number, non-negative count, SM3 digest)
// and survives a marshal/parse round trip unchanged.
func FuzzCRLMarkLedger(f *testing.F) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, m := range []CRLMark{markOf(nil, big.NewInt(1), now), markOf(nil, new(big.Int).Lsh(big.NewInt(1), 159), now)} {
		b, _ := json.Marshal(m)
		f.Add(b)
	}
	f.Add([]byte(`{"number":"-1","count":-5,"digest":"zz","this_update":"2026-01-02T03:04:05Z"}`))
	f.Add([]byte(`{"number":"1e9999999"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := parseCRLMark(data)
		if err != nil {
			if m != nil || !errors.Is(err, ErrCRLMark) {
				t.Fatalf("refusal %v (mark %v) is not an ErrCRLMark", err, m)
			}
			return
		}
		if len(data) > maxCRLMarkSize {
			t.Fatal("accepted a mark over the size bound")
		}
		if n, ok := new(big.Int).SetString(m.Number, 10); !ok || n.Sign() < 0 || m.Count < 0 || len(m.Digest) != 64 {
			t.Fatalf("accepted a malformed mark %+v", m)
		}
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatalf("accepted mark does not marshal: %v", err)
		}
		again, err := parseCRLMark(b)
		if err != nil {
			t.Fatalf("marshalled mark does not parse: %v", err)
		}
		if again.Number != m.Number || again.Count != m.Count || again.Digest != m.Digest || !again.ThisUpdate.Equal(m.ThisUpdate) {
			t.Fatalf("round trip changed the mark: %+v, %+v", m, again)
		}
		if m.newer(again) || again.newer(m) {
			t.Fatal("a mark is newer than itself")
		}
	})
}

// TestCRLMarkLedgerMalformedRefused: a ledger mark with a negative count (or an unparsable
// number) would make every CRL look newer than the last one signed, so a CRL that drops
// revocations passes the rollback check; such marks are refused (the CA fails closed).
func TestCRLMarkLedgerMalformedRefused(t *testing.T) {
	good := markOf(nil, big.NewInt(7), time.Now())
	for _, bad := range []CRLMark{
		{Number: "99999", Count: -1, Digest: good.Digest},
		{Number: "x", Count: 3, Digest: good.Digest},
		{Number: "8", Count: 3, Digest: "00"},
		{Number: "8", Count: 3, Digest: strings.ToUpper(good.Digest)},
	} {
		b, _ := json.Marshal(bad)
		if m, err := parseCRLMark(b); !errors.Is(err, ErrCRLMark) {
			t.Errorf("mark %+v accepted (%+v, %v)", bad, m, err)
		}
	}
	b, _ := json.Marshal(good)
	if m, err := parseCRLMark(b); err != nil || m.Digest != good.Digest {
		t.Fatalf("genuine mark refused: %v", err)
	}
}
