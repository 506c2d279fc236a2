package enroll

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"sort"
	"time"

	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/smx509"
	"github.com/redis/go-redis/v9"

	"github.com/gmgate/gmgate/audit"
	"github.com/gmgate/gmgate/internal/abuse"
)

// CRLMark records the last CRL a CA signed: its number, thisUpdate, how many serials it listed
// and the SM3 digest of those serials (sorted lower-case hex, one a line). A revocation is
// never undone, so the CRLs of one CA list ever more serials: a CRL about to be signed that
// lists fewer serials than the mark, or as many but other ones, has lost a revocation (the
// CRL file replaced by an older CRL of the same CA and the store's revocation markers deleted
// or rolled back) and is refused (ErrCRLRollback).
type CRLMark struct {
	// Number is the CRL number, decimal.
	Number string `json:"number"`
	// ThisUpdate is the CRL's thisUpdate.
	ThisUpdate time.Time `json:"this_update"`
	// Count is the number of serials the CRL listed.
	Count int `json:"count"`
	// Digest is the hex SM3 digest of the listed serials.
	Digest string `json:"digest"`
}

// CRLLedger keeps the mark of the last CRL a CA signed outside the store directory, where
// someone who can write that directory (and the CRL file) cannot roll it back: the Caddy
// adapter passes the Redis replay store's client when `replay { store redis }` is configured.
// ca names the CA (hex SM3 of its certificate). LoadCRLMark returns nil and no error when no
// mark was recorded; an error means the ledger cannot tell (the CA fails closed).
type CRLLedger interface {
	LoadCRLMark(ctx context.Context, ca string) (*CRLMark, error)
	StoreCRLMark(ctx context.Context, ca string, m CRLMark) error
}

// ErrCRLRollback reports a CRL that would drop revocations of the last CRL the CA signed.
var ErrCRLRollback = errors.New("enroll: the CRL would list fewer revocations than the last CRL this CA signed (crl_file and store rolled back?); see docs/enrolment.md, \"CRL rollback\"")

// crlMarkStore is implemented by stores that keep the CRL mark as an authenticated record
// (FileStore): a copy that survives without a ledger when the CRL file alone is replaced.
type crlMarkStore interface {
	CRLMark(ca string) (*CRLMark, error)
	PutCRLMark(ca string, m CRLMark) error
}

// CRLMark returns the store's record of the last CRL the CA ca (caID) signed, or nil when
// there is none (crl/<ca>.json).
func (s *FileStore) CRLMark(ca string) (*CRLMark, error) {
	var m CRLMark
	err := s.get(kindCRL, ca, &m)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &m, nil
}

// PutCRLMark replaces the store's record of the last CRL the CA ca signed.
func (s *FileStore) PutCRLMark(ca string, m CRLMark) error { return s.put(kindCRL, ca, m) }

// markOf computes the mark of a CRL listing entries.
func markOf(entries []smx509.RevocationListEntry, number *big.Int, this time.Time) CRLMark {
	serials := make([]string, 0, len(entries))
	for _, e := range entries {
		serials = append(serials, e.SerialNumber.Text(16))
	}
	sort.Strings(serials)
	h := sm3.New()
	for _, sn := range serials {
		fmt.Fprintf(h, "%s\n", sn)
	}
	return CRLMark{Number: number.String(), ThisUpdate: this.UTC(), Count: len(serials), Digest: hex.EncodeToString(h.Sum(nil))}
}

// newer reports whether m was signed after o (by number; nil o: yes).
func (m *CRLMark) newer(o *CRLMark) bool {
	if o == nil {
		return true
	}
	a, ok1 := new(big.Int).SetString(m.Number, 10)
	b, ok2 := new(big.Int).SetString(o.Number, 10)
	if !ok1 || !ok2 {
		return m.ThisUpdate.After(o.ThisUpdate)
	}
	return a.Cmp(b) > 0
}

// caID names the CA in the ledger: hex SM3 of its certificate.
func caID(raw []byte) string {
	d := sm3.Sum(raw)
	return hex.EncodeToString(d[:16])
}

// loadCRLMark returns the newest of the store's and the ledger's marks (nil: none). An error
// (store record refused, ledger unavailable) fails closed. Caller holds s.crlMu.
func (s *Server) loadCRLMark(ctx context.Context) (*CRLMark, error) {
	var best *CRLMark
	if st, ok := s.cfg.Store.(crlMarkStore); ok {
		m, err := st.CRLMark(caID(s.cfg.Issuer.Chain()[0].Raw))
		if err != nil {
			return nil, fmt.Errorf("enroll: the store's record of the last CRL: %w", err)
		}
		best = m
	}
	if l := s.cfg.CRLLedger; l != nil {
		m, err := l.LoadCRLMark(ctx, caID(s.cfg.Issuer.Chain()[0].Raw))
		if err != nil {
			return nil, fmt.Errorf("enroll: the ledger's record of the last CRL: %w", err)
		}
		if m != nil && m.newer(best) {
			best = m
		}
	}
	return best, nil
}

// checkCRLMark refuses entries that list fewer serials than the mark of the last CRL signed,
// or as many but other ones; the first refusal is audited (crl_rollback) and reported to
// OnCRLRollback. Caller holds s.crlMu.
func (s *Server) checkCRLMark(ctx context.Context, entries []smx509.RevocationListEntry, now time.Time) error {
	if s.crlMark == nil {
		m, err := s.loadCRLMark(ctx)
		if err != nil {
			return err
		}
		s.crlMark = m
	}
	last := s.crlMark
	if last == nil {
		return nil
	}
	cur := markOf(entries, big.NewInt(0), now)
	if cur.Count > last.Count || cur.Count == last.Count && cur.Digest == last.Digest {
		return nil
	}
	if !s.crlRollbackSeen {
		s.crlRollbackSeen = true
		if s.cfg.Audit != nil {
			_ = s.cfg.Audit.Append(audit.Record{Time: now, Direction: audit.DirectionInbound, Scheme: "enroll/crl",
				KeyID: "crl-" + last.Number, Verdict: audit.VerdictReject, Reason: "crl_rollback"})
		}
		if f := s.cfg.OnCRLRollback; f != nil {
			f()
		}
	}
	return fmt.Errorf("%w: %d serials, the CRL numbered %s listed %d", ErrCRLRollback, cur.Count, last.Number, last.Count)
}

// recordCRLMark records the mark of a CRL just signed (and written): in the store, then in the
// ledger. Caller holds s.crlMu.
func (s *Server) recordCRLMark(ctx context.Context, m CRLMark) error {
	if st, ok := s.cfg.Store.(crlMarkStore); ok {
		if err := st.PutCRLMark(caID(s.cfg.Issuer.Chain()[0].Raw), m); err != nil {
			return fmt.Errorf("enroll: recording the CRL in the store: %w", err)
		}
	}
	if l := s.cfg.CRLLedger; l != nil {
		if err := l.StoreCRLMark(ctx, caID(s.cfg.Issuer.Chain()[0].Raw), m); err != nil {
			return fmt.Errorf("enroll: recording the CRL in the ledger: %w", err)
		}
	}
	s.crlMark = &m
	return nil
}

// RedisCRLLedger keeps CRL marks in Redis (the replay store's server: outside the store
// directory), one key per CA: <Prefix><ca>, a hash of the CRL number and the mark's JSON. A
// mark never replaces a newer one (two instances sharing the CA and the store sign in turn).
type RedisCRLLedger struct {
	abuse.RedisStore
}

// crlMarkScript sets the mark unless the key holds a higher CRL number (decimal strings:
// compared by length, then bytes).
var crlMarkScript = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], 'number')
if cur and (string.len(cur) > string.len(ARGV[1]) or (string.len(cur) == string.len(ARGV[1]) and cur > ARGV[1])) then
	return 0
end
redis.call('HSET', KEYS[1], 'number', ARGV[1], 'mark', ARGV[2])
return 1
`)

// LoadCRLMark returns the mark of ca, or nil when none is recorded.
func (l RedisCRLLedger) LoadCRLMark(ctx context.Context, ca string) (*CRLMark, error) {
	ctx, cancel := l.RoundTrip(ctx)
	defer cancel()
	data, err := l.Client.HGet(ctx, l.Prefix+ca, "mark").Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	m, err := parseCRLMark(data)
	if err != nil {
		return nil, fmt.Errorf("%w (in Redis)", err)
	}
	return m, nil
}

// ErrCRLMark reports a CRL mark a ledger holds that is not one gmgate wrote: too large, not
// JSON, or not a decimal CRL number, a non-negative count and a lower-case hex SM3 digest.
var ErrCRLMark = errors.New("enroll: malformed CRL mark")

// maxCRLMarkSize bounds a CRL mark read from a ledger.
const maxCRLMarkSize = 4096

// parseCRLMark reads a mark as StoreCRLMark writes it. A malformed mark is refused (the CA
// fails closed) rather than compared: a negative count or an unparsable number would otherwise
// let a CRL that drops revocations pass the rollback check.
func parseCRLMark(data []byte) (*CRLMark, error) {
	if len(data) > maxCRLMarkSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrCRLMark, maxCRLMarkSize)
	}
	var m CRLMark
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCRLMark, err)
	}
	if !decimal(m.Number) || m.Count < 0 || len(m.Digest) != 2*sm3.Size || !lowerHex(m.Digest) {
		return nil, fmt.Errorf("%w: number %.64q, count %d", ErrCRLMark, m.Number, m.Count)
	}
	return &m, nil
}

// decimal reports whether s is a non-negative decimal number of at most 49 digits (a CRL
// number is at most 20 octets, RFC 5280 5.2.3).
func decimal(s string) bool {
	if s == "" || len(s) > 49 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if !(s[i] >= '0' && s[i] <= '9' || s[i] >= 'a' && s[i] <= 'f') {
			return false
		}
	}
	return true
}

// StoreCRLMark records m for ca unless a newer mark is recorded.
func (l RedisCRLLedger) StoreCRLMark(ctx context.Context, ca string, m CRLMark) error {
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	ctx, cancel := l.RoundTrip(ctx)
	defer cancel()
	return crlMarkScript.Run(ctx, l.Client, []string{l.Prefix + ca}, m.Number, data).Err()
}
