package platform

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/audit"
	"github.com/gmgate/gmgate/cosign"
	"github.com/gmgate/gmgate/refusal"
	"github.com/gmgate/gmgate/sealstore"
)

type memShares struct {
	mu sync.Mutex
	m  map[string][]sealstore.Version
}

func (s *memShares) Get(kind string, id []byte) ([]byte, int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.m[kind+"/"+string(id)]
	if len(v) == 0 {
		return nil, 0, sealstore.ErrNotFound
	}
	return append([]byte(nil), v[len(v)-1].Secret...), v[len(v)-1].Version, nil
}

func (s *memShares) GetAll(kind string, id []byte) ([]sealstore.Version, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.m[kind+"/"+string(id)]
	if len(v) == 0 {
		return nil, sealstore.ErrNotFound
	}
	out := make([]sealstore.Version, len(v))
	for i, x := range v {
		out[i] = x
		out[i].Secret = append([]byte(nil), x.Secret...)
	}
	return out, nil
}

func (s *memShares) Put(kind string, id, secret []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := kind + "/" + string(id)
	n := 1
	if v := s.m[k]; len(v) > 0 {
		n = v[len(v)-1].Version + 1
	}
	s.m[k] = append(s.m[k], sealstore.Version{Info: sealstore.Info{Version: n}, Secret: append([]byte(nil), secret...)})
	return n, nil
}

func (s *memShares) DestroyVersion(kind string, id []byte, n int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := kind + "/" + string(id)
	v := s.m[k]
	for i := range v {
		if v[i].Version == n {
			if len(v) == 1 {
				return sealstore.ErrInvalidInput
			}
			s.m[k] = append(v[:i:i], v[i+1:]...)
			return nil
		}
	}
	return sealstore.ErrNotFound
}

// Create, PutIf and DestroyVersionIf are sealstore's conditional writes.
func (s *memShares) Create(kind string, id, secret []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := kind + "/" + string(id)
	if len(s.m[k]) > 0 {
		return sealstore.ErrExists
	}
	s.m[k] = []sealstore.Version{{Info: sealstore.Info{Version: 1}, Secret: append([]byte(nil), secret...)}}
	return nil
}

func (s *memShares) PutIf(kind string, id, secret []byte, match func([]sealstore.Version) bool) (int, error) {
	s.mu.Lock()
	k := kind + "/" + string(id)
	v := s.m[k]
	if len(v) == 0 {
		s.mu.Unlock()
		return 0, sealstore.ErrNotFound
	}
	if !match(v) {
		s.mu.Unlock()
		return 0, sealstore.ErrConflict
	}
	s.mu.Unlock()
	return s.Put(kind, id, secret)
}

func (s *memShares) DestroyVersionIf(kind string, id []byte, n int, match func([]sealstore.Version) bool) error {
	s.mu.Lock()
	v := s.m[kind+"/"+string(id)]
	if len(v) == 0 {
		s.mu.Unlock()
		return sealstore.ErrNotFound
	}
	if !match(v) {
		s.mu.Unlock()
		return sealstore.ErrConflict
	}
	s.mu.Unlock()
	return s.DestroyVersion(kind, id, n)
}

func (s *memShares) Destroy(kind string, id []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, kind+"/"+string(id))
	return nil
}

type memAudit struct {
	mu   sync.Mutex
	recs []audit.Record
	fail error
}

func (a *memAudit) Append(r audit.Record) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.recs = append(a.recs, r)
	return a.fail
}

func (a *memAudit) last() audit.Record {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.recs[len(a.recs)-1]
}

type hmacKey []byte

func (k hmacKey) HMACSM3(d []byte) ([]byte, error) {
	m := hmac.New(sm3.New, k)
	m.Write(d)
	return m.Sum(nil), nil
}

func (k hmacKey) VerifyHMACSM3(d, tag []byte) error {
	want, _ := k.HMACSM3(d)
	if !hmac.Equal(want, tag) {
		return errors.New("bad mac")
	}
	return nil
}

type fixture struct {
	t     testing.TB
	svc   *Service
	aud   *memAudit
	mac   hmacKey
	now   time.Time
	cert  *smx509.Certificate
	codes []refusal.Code
}

func newFixture(t testing.TB, mod func(*Config)) *fixture {
	f := &fixture{t: t, aud: &memAudit{}, mac: hmacKey("token key for tests"), now: time.Unix(1_800_000_000, 0)}
	cfg := Config{
		Shares: &memShares{m: map[string][]sealstore.Version{}}, Audit: f.aud, TokenMAC: f.mac,
		PeerCertificate: func(*http.Request) *smx509.Certificate { return f.cert },
		Now:             func() time.Time { return f.now },
		Observe:         func(op string, c refusal.Code, d time.Duration) { f.codes = append(f.codes, c) },
	}
	if mod != nil {
		mod(&cfg)
	}
	svc, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.svc = svc
	return f
}

func (f *fixture) token(keyID string, ops ...string) string {
	tok, err := IssueToken(f.mac, keyID, ops, f.now.Add(5*time.Minute))
	if err != nil {
		f.t.Fatal(err)
	}
	return tok
}

// call posts req to op with token (may be "") and returns the response or the refusal code.
func (f *fixture) call(op, token string, req any) (*Response, refusal.Code) {
	f.t.Helper()
	body, _ := json.Marshal(req)
	r := httptest.NewRequest(http.MethodPost, "/cosign/"+op, bytes.NewReader(body))
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	w := httptest.NewRecorder()
	f.svc.ServeHTTP(w, r)
	if w.Code != http.StatusOK {
		code, _, ok := refusal.ParseBody(w.Body.Bytes())
		if !ok {
			f.t.Fatalf("refusal body %q", w.Body)
		}
		if st := w.Code; Refusals.Has(refusal.Code(code)) && st >= 400 {
			return nil, refusal.Code(code)
		}
		f.t.Fatalf("status %d body %s", w.Code, w.Body)
	}
	var resp Response
	if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
		f.t.Fatal(err)
	}
	return &resp, refusal.OK
}

type terminal struct {
	id  string
	d1  *cosign.Share
	pub *ecdsa.PublicKey
}

func (f *fixture) enroll(id string) *terminal {
	f.t.Helper()
	d1, _ := cosign.GenerateShare(rand.Reader)
	resp, code := f.call(OpKeygen, f.token(id, OpKeygen), Request{KeyID: id, P1: d1.PartialPublicKey()})
	if code != refusal.OK {
		f.t.Fatalf("keygen: %s", code)
	}
	pub, err := d1.JointPublicKey(resp.P2)
	if err != nil {
		f.t.Fatal(err)
	}
	if !bytes.Equal(cosign.MarshalPublicKey(pub), resp.PublicKey) {
		f.t.Fatal("platform and terminal derive different joint keys")
	}
	return &terminal{id, d1, pub}
}

func (f *fixture) sign(tm *terminal, token string, msg []byte, mod func(*Request)) ([]byte, refusal.Code) {
	f.t.Helper()
	e, _ := cosign.Digest(tm.pub, nil, msg)
	sg, _ := cosign.StartSign(rand.Reader, tm.pub, e)
	req := Request{KeyID: tm.id, E: e, Q1: sg.Q1()}
	if mod != nil {
		mod(&req)
	}
	resp, code := f.call(OpSign, token, req)
	if code != refusal.OK {
		return nil, code
	}
	r, s1, err := cosign.ParsePartialSignature(resp.PartialSignature)
	if err != nil {
		f.t.Fatal(err)
	}
	sig, err := sg.Finish(tm.d1, r, s1)
	if err != nil {
		f.t.Fatal(err)
	}
	return sig, code
}

func TestServiceSignDecrypt(t *testing.T) {
	f := newFixture(t, nil)
	tm := f.enroll("term-0001")
	msg := []byte("pay 88.00 CNY")
	sig, code := f.sign(tm, f.token(tm.id, OpSign), msg, nil)
	if code != refusal.OK || !sm2.VerifyASN1WithSM2(tm.pub, nil, msg, sig) {
		t.Fatalf("sign: %s", code)
	}
	rec := f.aud.last()
	if rec.Verdict != audit.VerdictAccept || rec.Scheme != "cosign-sign" || rec.KeyID != tm.id || len(rec.Signature) == 0 || len(rec.SignedSM3) != 32 {
		t.Fatalf("audit entry %+v", rec)
	}
	ct, _ := sm2.EncryptASN1(rand.Reader, tm.pub, []byte("secret"))
	dc, _ := cosign.StartDecrypt(rand.Reader, ct)
	resp, code := f.call(OpDecrypt, f.token(tm.id, OpDecrypt), Request{KeyID: tm.id, T1: dc.T1()})
	if code != refusal.OK {
		t.Fatal(code)
	}
	if pt, err := dc.Finish(tm.d1, resp.T2); err != nil || string(pt) != "secret" {
		t.Fatalf("decrypt: %q %v", pt, err)
	}
	if f.aud.last().Scheme != "cosign-decrypt" {
		t.Fatal("decrypt not audited")
	}
}

// The refusals table: each attack, the code it gets, and an audit entry and metric for each.
func TestServiceRefusals(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.MaxFailures = 1000; c.Burst = 1000 })
	tm := f.enroll("term-a")
	other := f.enroll("term-b")
	tok := f.token(tm.id, OpSign, OpDecrypt)
	g := cosign.MarshalPublicKey(&ecdsa.PublicKey{Curve: sm2.P256(), X: sm2.P256().Params().Gx, Y: sm2.P256().Params().Gy})
	offCurve := append([]byte(nil), g...)
	offCurve[64] ^= 1
	identity := append([]byte{4}, make([]byte, 64)...)
	var reusedQ1 []byte
	cases := []struct {
		name string
		run  func() refusal.Code
		want refusal.Code
	}{
		{"no token", func() refusal.Code { _, c := f.sign(tm, "", []byte("m"), nil); return c }, CodeUnauthenticated},
		{"forged token", func() refusal.Code {
			_, c := f.sign(tm, hmacKeyToken(t, "wrong key", tm.id, f.now), []byte("m"), nil)
			return c
		}, CodeUnauthenticated},
		{"expired token", func() refusal.Code {
			old, _ := IssueToken(f.mac, tm.id, []string{OpSign}, f.now.Add(-time.Second))
			_, c := f.sign(tm, old, []byte("m"), nil)
			return c
		}, CodeUnauthenticated},
		{"long-lived token", func() refusal.Code {
			long, _ := IssueToken(f.mac, tm.id, []string{OpSign}, f.now.Add(24*time.Hour))
			_, c := f.sign(tm, long, []byte("m"), nil)
			return c
		}, CodeUnauthenticated},
		{"token without the op", func() refusal.Code {
			_, c := f.sign(tm, f.token(tm.id, OpDecrypt), []byte("m"), nil)
			return c
		}, CodeUnauthenticated},
		{"wrong terminal (token of another key)", func() refusal.Code {
			_, c := f.sign(tm, f.token(other.id, OpSign), []byte("m"), nil)
			return c
		}, CodeWrongTerminal},
		{"unknown key with a valid token", func() refusal.Code {
			_, c := f.call(OpSign, f.token("nobody", OpSign), Request{KeyID: "nobody", E: make([]byte, 32), Q1: g})
			return c
		}, CodeUnknownKey},
		{"identity Q1", func() refusal.Code {
			_, c := f.sign(tm, tok, []byte("m"), func(r *Request) { r.Q1 = identity })
			return c
		}, CodeInvalidPoint},
		{"off-curve Q1", func() refusal.Code {
			_, c := f.sign(tm, tok, []byte("m"), func(r *Request) { r.Q1 = offCurve })
			return c
		}, CodeInvalidPoint},
		{"compressed Q1", func() refusal.Code {
			_, c := f.sign(tm, tok, []byte("m"), func(r *Request) { r.Q1 = append([]byte{2 + g[64]&1}, g[1:33]...) })
			return c
		}, CodeInvalidPoint},
		{"short e", func() refusal.Code {
			_, c := f.sign(tm, tok, []byte("m"), func(r *Request) { r.E = r.E[:31] })
			return c
		}, CodeInvalidScalar},
		{"first use of a Q1", func() refusal.Code {
			_, c := f.sign(tm, tok, []byte("m"), func(r *Request) { reusedQ1 = r.Q1 })
			return c
		}, refusal.OK},
		{"reused Q1", func() refusal.Code {
			_, c := f.sign(tm, tok, []byte("m2"), func(r *Request) { r.Q1 = reusedQ1 })
			return c
		}, CodeReusedPoint},
		{"reused T1 (as Q1 before)", func() refusal.Code {
			_, c := f.call(OpDecrypt, tok, Request{KeyID: tm.id, T1: reusedQ1})
			return c
		}, CodeReusedPoint},
		{"identity T1", func() refusal.Code { _, c := f.call(OpDecrypt, tok, Request{KeyID: tm.id, T1: identity}); return c }, CodeInvalidPoint},
		{"keygen over an existing key", func() refusal.Code {
			_, c := f.call(OpKeygen, f.token(tm.id, OpKeygen), Request{KeyID: tm.id, P1: g})
			return c
		}, CodeKeyExists},
		{"keygen with an off-curve P1", func() refusal.Code {
			_, c := f.call(OpKeygen, f.token("new", OpKeygen), Request{KeyID: "new", P1: offCurve})
			return c
		}, CodeInvalidPoint},
		{"keygen with a sign token", func() refusal.Code {
			_, c := f.call(OpKeygen, f.token("new", OpSign), Request{KeyID: "new", P1: g})
			return c
		}, CodeUnauthenticated},
		{"bad key ID", func() refusal.Code { _, c := f.call(OpSign, tok, Request{KeyID: "a/b"}); return c }, CodeMalformedRequest},
		{"unknown field", func() refusal.Code { _, c := f.call(OpSign, tok, map[string]any{"key_id": tm.id, "d2": "x"}); return c }, CodeMalformedRequest},
		{"unknown operation", func() refusal.Code { _, c := f.call("export", tok, Request{KeyID: tm.id}); return c }, CodeMalformedRequest},
	}
	for _, c := range cases {
		n := len(f.aud.recs)
		if got := c.run(); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
		if len(f.aud.recs) != n+1 || f.aud.last().Reason != string(c.want) {
			t.Errorf("%s: not audited with its code", c.name)
		}
		if f.codes[len(f.codes)-1] != c.want {
			t.Errorf("%s: metric not observed", c.name)
		}
	}
}

func hmacKeyToken(t *testing.T, key, keyID string, now time.Time) string {
	tok, err := IssueToken(hmacKey(key), keyID, []string{OpSign}, now.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestServiceLockoutAndRateLimit(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.MaxFailures = 3; c.Lockout = time.Minute; c.RatePerMinute = 6; c.Burst = 8 })
	tm := f.enroll("term-lock")
	tok := f.token(tm.id, OpSign)
	for i := range 3 {
		if _, c := f.sign(tm, "", []byte("m"), nil); c != CodeUnauthenticated {
			t.Fatalf("attempt %d: %s", i, c)
		}
	}
	// Locked: even a valid session is refused until the lockout ends.
	if _, c := f.sign(tm, tok, []byte("m"), nil); c != CodeLocked {
		t.Fatalf("after 3 failures: %s", c)
	}
	f.now = f.now.Add(time.Minute)
	tok = f.token(tm.id, OpSign)
	if _, c := f.sign(tm, tok, []byte("m"), nil); c != refusal.OK {
		t.Fatalf("after the lockout: %s", c)
	}
	// Another key is unaffected by the first one's lockout; the bucket refills at 6/min.
	for i := 0; ; i++ {
		_, c := f.sign(tm, tok, []byte("m"), nil)
		if c == CodeRateLimited {
			if i < 3 {
				t.Fatalf("rate limited after %d", i)
			}
			break
		}
		if i > 20 {
			t.Fatal("never rate limited")
		}
	}
	f.now = f.now.Add(10 * time.Second)
	if _, c := f.sign(tm, tok, []byte("m"), nil); c != refusal.OK {
		t.Fatalf("after a refill: %s", c)
	}
}

func TestServiceCertAuth(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Auth = AuthCertOrToken })
	tm := f.enroll("term-cert")
	other := f.enroll("term-other")
	f.cert = &smx509.Certificate{PublicKey: tm.pub}
	if _, c := f.sign(tm, "", []byte("m"), nil); c != refusal.OK {
		t.Fatalf("own certificate: %s", c)
	}
	f.cert = &smx509.Certificate{PublicKey: other.pub}
	if _, c := f.sign(tm, "", []byte("m"), nil); c != CodeWrongTerminal {
		t.Fatalf("another key's certificate: %s", c)
	}
	f.cert = nil
	if _, c := f.sign(tm, "", []byte("m"), nil); c != CodeUnauthenticated {
		t.Fatalf("no certificate: %s", c)
	}
	// Without a session, an unknown key looks like any other: no key-ID oracle.
	if _, c := f.call(OpSign, "", Request{KeyID: "ghost", E: make([]byte, 32), Q1: tm.d1.PartialPublicKey()}); c != CodeUnauthenticated {
		t.Fatalf("unknown key without session: %s", c)
	}
}

func TestServiceBinding(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.BindInstruction = true })
	tm := f.enroll("term-bind")
	tok := f.token(tm.id, OpSign)
	instr := []byte("POST\n/v3/pay/transactions\n1700000000\nnonce\n{\"amount\":100}\n")
	if _, c := f.sign(tm, tok, instr, func(r *Request) { r.Instruction = instr }); c != refusal.OK {
		t.Fatalf("bound: %s", c)
	}
	if h := sm3.Sum(instr); !bytes.Equal(f.aud.last().SignedSM3, h[:]) {
		t.Fatal("audit entry does not carry SM3 of the instruction")
	}
	if _, c := f.sign(tm, tok, instr, nil); c != CodeBindingMismatch {
		t.Fatalf("no instruction: %s", c)
	}
	changed := bytes.Replace(instr, []byte("100"), []byte("900"), 1)
	if _, c := f.sign(tm, tok, instr, func(r *Request) { r.Instruction = changed }); c != CodeBindingMismatch {
		t.Fatalf("digest of another instruction: %s", c)
	}
}

func TestServiceAuditFailureWithholdsResult(t *testing.T) {
	f := newFixture(t, nil)
	tm := f.enroll("term-aud")
	f.aud.fail = errors.New("disk full")
	if _, c := f.sign(tm, f.token(tm.id, OpSign), []byte("m"), nil); c != CodeUnavailable {
		t.Fatalf("audit failure: %s", c)
	}
}

func TestServiceDestroy(t *testing.T) {
	f := newFixture(t, nil)
	tm := f.enroll("term-gone")
	if err := f.svc.Destroy(tm.id); err != nil {
		t.Fatal(err)
	}
	if _, c := f.sign(tm, f.token(tm.id, OpSign), []byte("m"), nil); c != CodeUnknownKey {
		t.Fatalf("after destroy: %s", c)
	}
}

func FuzzServiceRequest(f *testing.F) {
	fx := newFixture(f, func(c *Config) { c.RatePerMinute = 1 << 30; c.Burst = 1 << 30; c.MaxFailures = 1 << 30 })
	f.Add([]byte(`{"key_id":"k","e":"AAAA","q1":"BA=="}`), "sign")
	f.Add([]byte(`{"key_id":"k","p1":"BA=="}`), "keygen")
	f.Fuzz(func(t *testing.T, body []byte, op string) {
		r := &http.Request{Method: http.MethodPost, URL: &url.URL{Path: "/cosign/" + op}, Header: http.Header{},
			Body: io.NopCloser(bytes.NewReader(body))}
		r.Header.Set("Authorization", "Bearer "+strings.ToValidUTF8(string(body), ""))
		w := httptest.NewRecorder()
		fx.svc.ServeHTTP(w, r)
		if w.Code == http.StatusOK {
			t.Fatalf("unauthenticated request served: %s", body)
		}
	})
}
