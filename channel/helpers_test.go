package channel

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gmgate/gmgate/audit"
	"github.com/gmgate/gmgate/signing"

	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/integration/banksim"
)

var (
	pkiOnce sync.Once
	testP   *banksim.TestPKI
	pkiErr  error
)

func getPKI(t testing.TB) *banksim.TestPKI {
	t.Helper()
	pkiOnce.Do(func() { testP, pkiErr = banksim.NewTestPKI("bank.test") })
	if pkiErr != nil {
		t.Fatal(pkiErr)
	}
	return testP
}

// memAudit records audit entries.
type memAudit struct {
	mu   sync.Mutex
	recs []audit.Record
	// failAccepts makes that many accept entries fail after they were recorded, as an
	// audit.Log whose fsync fails after the write (audit.TestFsyncFailureAfterWrite).
	failAccepts int
}

func (a *memAudit) Append(r audit.Record) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.recs = append(a.recs, r)
	if a.failAccepts > 0 && r.Verdict == audit.VerdictAccept {
		a.failAccepts--
		return errors.New("audit: fsync: injected EIO")
	}
	return nil
}

func (a *memAudit) all() []audit.Record {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]audit.Record(nil), a.recs...)
}

type memMetrics struct {
	mu  sync.Mutex
	obs []string
}

func (m *memMetrics) ObserveChannel(bank, result string, d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.obs = append(m.obs, bank+":"+result)
}

func (m *memMetrics) all() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.obs...)
}

var testSM4Key = []byte("0123456789abcdef")

// profile is one end-to-end case: the gateway's settings and the simulator's.
type profile struct {
	name   string
	scheme signing.Settings
	sim    banksim.Profile
	enc    func(p *banksim.TestPKI) Encryption
	ctype  string
	body   string
	method string
}

// channelConfig builds the gateway side for p.
func channelConfig(t testing.TB, p *banksim.TestPKI, pr profile) Config {
	t.Helper()
	cfg := Config{
		Name:           "bank-" + pr.name,
		Scheme:         pr.scheme,
		PlatformSigner: p.PlatformSign.Key,
		PlatformCert:   p.PlatformSign.Cert,
		MerchantID:     "898310000000001",
		BankCerts:      []*smx509.Certificate{p.BankSign.Cert},
		BankRoots:      []*smx509.Certificate{p.BankRoot.Cert},
	}
	if pr.enc != nil {
		cfg.Encryption = pr.enc(p)
	}
	return cfg
}

func mustKey() DataKey {
	k, err := NewSM4DataKey(testSM4Key)
	if err != nil {
		panic(err)
	}
	return k
}

// startSim starts a simulator for pr over plain HTTP.
func startSim(t testing.TB, p *banksim.TestPKI, pr profile, mutate func(*banksim.Options)) *banksim.Server {
	t.Helper()
	o := banksim.FromTestPKI(p, pr.sim)
	if mutate != nil {
		mutate(&o)
	}
	s, err := banksim.New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.StartHTTP(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newTransport(t testing.TB, cfg Config, inner http.RoundTripper, mut func(*TransportOptions)) (*Transport, *memAudit, *memMetrics) {
	t.Helper()
	ch, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	a, m := &memAudit{}, &memMetrics{}
	o := TransportOptions{Inner: inner, Audit: a, Metrics: m, ResponseTimeout: 5 * time.Second,
		ReplyHeaders: append([]string{banksim.HeaderVerified}, DefaultReplyHeaders...)}
	if mut != nil {
		mut(&o)
	}
	tr, err := NewTransport(ch, o)
	if err != nil {
		t.Fatal(err)
	}
	return tr, a, m
}

func do(t testing.TB, tr http.RoundTripper, method, url, ctype, body string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func jsonMap(t testing.TB, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		t.Fatalf("reply is not a JSON object: %v: %q", err, b)
	}
	return m
}
