package enroll

import (
	"context"
	"crypto/rand"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/audit"
	"github.com/gmgate/gmgate/internal/testpki"
	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/signing"
)

// memNonces is a NonceStore for tests (production passes gm_verify's replay store).
type memNonces struct {
	mu   sync.Mutex
	seen map[string]bool
	err  error
}

func (m *memNonces) CheckAndStore(_ context.Context, k, n string, _ time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return m.err
	}
	if m.seen == nil {
		m.seen = map[string]bool{}
	}
	if m.seen[k+"\x00"+n] {
		return ErrSeen
	}
	m.seen[k+"\x00"+n] = true
	return nil
}

// sink records audit entries.
type sink struct {
	mu   sync.Mutex
	recs []audit.Record
	err  error
}

func (s *sink) Append(r audit.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	s.recs = append(s.recs, r)
	return nil
}

func (s *sink) last() audit.Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.recs) == 0 {
		return audit.Record{}
	}
	return s.recs[len(s.recs)-1]
}

// escrowed records escrowed keys.
type escrowed struct {
	mu   sync.Mutex
	keys map[string][]byte
	err  error
}

func (e *escrowed) Put(id string, secret []byte) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.err != nil {
		return e.err
	}
	if e.keys == nil {
		e.keys = map[string][]byte{}
	}
	e.keys[id] = append([]byte(nil), secret...)
	return nil
}

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

type fixture struct {
	t       testing.TB
	root    *pki.CA
	store   *FileStore
	srv     *Server
	http    *httptest.Server
	audit   *sink
	escrow  *escrowed
	nonces  *memNonces
	clock   *clock
	crlFile string
}

func newFixture(t testing.TB, mutate ...func(*Config)) *fixture {
	t.Helper()
	root, _, err := pki.NewRootCA(pki.IssueOptions{CommonName: "Terminal CA", Organization: []string{"gmgate test"}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	st, err := OpenFileStore(filepath.Join(dir, "store"), testpki.NewSealKeys(t, "enroll-store"))
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, root: root, store: st, audit: &sink{}, escrow: &escrowed{}, nonces: &memNonces{}, clock: &clock{t: time.Now()}, crlFile: filepath.Join(dir, "crl.pem")}
	ca, err := NewLocalCA([]*smx509.Certificate{root.Cert}, root.Key, []string{"http://ca.example/crl"})
	if err != nil {
		t.Fatal(err)
	}
	ca.now = f.clock.now
	cfg := Config{
		Issuer: ca, Store: st, Nonces: f.nonces, Escrow: f.escrow, Audit: f.audit, CRLFile: f.crlFile, Now: f.clock.now,
		Profiles: []Profile{{Name: "terminal", Organization: []string{"Acme Pay"}, OrganizationalUnit: []string{"terminals"},
			DNSNames: []string{"*.pos.example"}, Validity: 30 * 24 * time.Hour}},
		// Every test request comes from one address: the limits are tested on their own.
		Limits: Limits{RatePerMinute: 1 << 20, Burst: 1 << 20, MaxFailures: 1 << 20},
	}
	for _, m := range mutate {
		m(&cfg)
	}
	f.srv, err = NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// What the Caddy adapter does when the configuration starts: the first CRL.
	if err := f.srv.RefreshCRL(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.http = httptest.NewServer(f.srv)
	t.Cleanup(f.http.Close)
	return f
}

func (f *fixture) token(cn string, ttl time.Duration) string {
	f.t.Helper()
	tok, _, err := IssueToken(f.store, TokenOptions{Profile: "terminal", CommonName: cn, TTL: ttl, Now: f.clock.now()})
	if err != nil {
		f.t.Fatal(err)
	}
	return tok
}

func csrFor(t testing.TB, key *sm2.PrivateKey, tmpl *smx509.CertificateRequest) []byte {
	t.Helper()
	der, err := smx509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func newKey(t testing.TB) *sm2.PrivateKey {
	t.Helper()
	k, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func simpleCSR(t testing.TB, key *sm2.PrivateKey, cn string) []byte {
	return csrFor(t, key, &smx509.CertificateRequest{Subject: pkix.Name{CommonName: cn}})
}

// post sends body (already encoded) to op with headers; it returns status, body, code header.
func (f *fixture) post(op string, h http.Header, body []byte) (*http.Response, []byte) {
	f.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, f.http.URL+"/.well-known/est/"+op, strings.NewReader(string(body)))
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b := make([]byte, 0, 4096)
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b = append(b, buf[:n]...)
		if err != nil {
			break
		}
	}
	return resp, b
}

func b64(der []byte) []byte { return []byte(base64.StdEncoding.EncodeToString(der)) }

func enrolHeaders(tok string) http.Header {
	h := http.Header{}
	h.Set("Content-Type", MediaPKCS10)
	if tok != "" {
		h.Set("Authorization", "Bearer "+tok)
	}
	return h
}

// signedHeaders signs a request to op with key under keyID (http-sig-sm2, the scheme clients use).
func (f *fixture) signedHeaders(op, ctype string, body []byte, key *sm2.PrivateKey, keyID string, nonce string) http.Header {
	f.t.Helper()
	h := http.Header{}
	h.Set("Content-Type", ctype)
	m := &signing.Message{Kind: signing.Request, Method: http.MethodPost, Target: "/.well-known/est/" + op, Header: h, Body: body}
	if nonce == "" {
		var nb [8]byte
		_, _ = rand.Read(nb[:])
		nonce = hex.EncodeToString(nb[:])
	}
	if err := RequestScheme().Sign(m, signing.Key{Signer: key, KeyID: keyID}, f.clock.now(), nonce); err != nil {
		f.t.Fatal(err)
	}
	return h
}

func (e *escrowed) Get(id string) ([]byte, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	k, ok := e.keys[id]
	if !ok {
		return nil, ErrNotFound
	}
	return append([]byte(nil), k...), nil
}
