package enroll

import (
	"bytes"
	"context"
	"errors"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/internal/attack"
)

// signingIssuer is a local CA: an Issuer that signs its CRLs.
type signingIssuer interface {
	Issuer
	CRLSigner
}

// flakyIssuer fails IssuePair while fail > 0 (a CA or vault error), counting issued pairs.
type flakyIssuer struct {
	signingIssuer
	fail   atomic.Int32
	issued atomic.Int32
}

func (f *flakyIssuer) IssuePair(ctx context.Context, req *PairRequest) (*Pair, error) {
	if f.fail.Add(-1) >= 0 {
		return nil, errors.New("CA key unavailable")
	}
	p, err := f.signingIssuer.IssuePair(ctx, req)
	if err == nil {
		f.issued.Add(1)
	}
	return p, err
}

// TestTokenSpentOnlyWhenIssued: a token whose issuance fails (CA or vault error, escrow error)
// is given back: the same token then enrols. Before, the first failure spent it for good.
// Renewal behaves the same. A spent token stays spent.
func TestTokenSpentOnlyWhenIssued(t *testing.T) {
	iss := &flakyIssuer{}
	f := newFixture(t, func(c *Config) {
		iss.signingIssuer = c.Issuer.(signingIssuer)
		c.Issuer = iss
		c.TokenLedger = &memNonces{}
	})
	tok := f.token("T0900", time.Hour)
	iss.fail.Store(1)
	if code := f.enrolCode(tok, "T0900"); code != CodeUnavailable {
		t.Fatalf("CA failure: %s", code)
	}
	f.escrow.err = errors.New("escrow down")
	if code := f.enrolCode(tok, "T0900"); code != CodeUnavailable {
		t.Fatalf("escrow failure: %s", code)
	}
	f.escrow.err = nil
	if toks, _ := f.store.Tokens(); len(toks) != 1 || toks[0].Used || toks[0].Reserved {
		t.Fatalf("token after failed issuances: %+v", toks)
	}
	key := newKey(t)
	resp, body := f.post(OpSimpleEnroll, enrolHeaders(tok), b64(simpleCSR(t, key, "T0900")))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("enrolment after the failures: %s", body)
	}
	if code := f.enrolCode(tok, "T0900"); code != CodeTokenUsed {
		t.Fatalf("reuse: %s", code)
	}
	if toks, _ := f.store.Tokens(); !toks[0].Used {
		t.Fatal("token not marked spent")
	}
	// Renewal: a CA failure does not use up the certificate's one renewal.
	r, _ := f.store.Certs()
	serial := r[0].Serial
	iss.fail.Store(1)
	csr := b64(simpleCSR(t, newKey(t), "T0900"))
	if _, body := f.post(OpSimpleReenroll, f.signedHeaders(OpSimpleReenroll, MediaPKCS10, csr, key, serial, ""), csr); codeOf(body) != CodeUnavailable {
		t.Fatalf("renewal, CA failure: %s", body)
	}
	if resp, body := f.post(OpSimpleReenroll, f.signedHeaders(OpSimpleReenroll, MediaPKCS10, csr, key, serial, ""), csr); resp.StatusCode != http.StatusOK {
		t.Fatalf("renewal after the failure: %s", body)
	}
	if _, body := f.post(OpSimpleReenroll, f.signedHeaders(OpSimpleReenroll, MediaPKCS10, csr, key, serial, ""), csr); codeOf(body) != CodeAlreadyRenewed {
		t.Fatalf("second renewal: %s", body)
	}
}

// TestConcurrentTokenUseOneCertificate: many concurrent enrolments with one token, while the
// CA fails some of them, yield exactly one pair; the others are refused (used, or
// unavailable for those the CA failed).
func TestConcurrentTokenUseOneCertificate(t *testing.T) {
	for round := 0; round < 3; round++ {
		iss := &flakyIssuer{}
		f := newFixture(t, func(c *Config) {
			iss.signingIssuer = c.Issuer.(signingIssuer)
			c.Issuer = iss
			c.TokenLedger = &memNonces{}
		})
		iss.fail.Store(int32(round * 2)) // round 0: no failure; then the first 2 and 4 attempts fail
		tok := f.token("T0910", time.Hour)
		const n = 16
		csrs := make([][]byte, n)
		for i := range csrs {
			csrs[i] = b64(simpleCSR(t, newKey(t), "T0910"))
		}
		var wg sync.WaitGroup
		var ok atomic.Int32
		codes := make([]Code, n)
		start := make(chan struct{})
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				<-start
				req, _ := http.NewRequest(http.MethodPost, f.http.URL+"/.well-known/est/"+OpSimpleEnroll, bytes.NewReader(csrs[i]))
				req.Header = enrolHeaders(tok)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				defer resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					ok.Add(1)
					codes[i] = "ok"
					return
				}
				var b [512]byte
				m, _ := resp.Body.Read(b[:])
				codes[i] = codeOf(b[:m])
			}(i)
		}
		close(start)
		wg.Wait()
		certs, _ := f.store.Certs()
		if ok.Load() > 1 || len(certs) > 1 || iss.issued.Load() > 1 {
			t.Fatalf("round %d: %d answers ok, %d records, %d pairs issued: %v", round, ok.Load(), len(certs), iss.issued.Load(), codes)
		}
		for _, c := range codes {
			if c != "ok" && c != CodeTokenUsed && c != CodeUnavailable {
				t.Fatalf("round %d: unexpected code %s", round, c)
			}
		}
		// Whatever happened, the token yields at most one pair from now on.
		for i := 0; i < 6; i++ { // more than the CA failures left
			code := f.enrolCode(tok, "T0910")
			if code == "ok" {
				ok.Add(1)
			}
		}
		if certs, _ := f.store.Certs(); ok.Load() != 1 || len(certs) != 1 {
			t.Fatalf("round %d: %d pairs in total", round, len(certs))
		}
	}
}

// countingIssuer counts CRL signatures.
type countingIssuer struct {
	signingIssuer
	crls atomic.Int32
}

func (c *countingIssuer) SignCRL(ctx context.Context, revoked []smx509.RevocationListEntry, number *big.Int, this, next time.Time) ([]byte, error) {
	c.crls.Add(1)
	return c.signingIssuer.SignCRL(ctx, revoked, number, this, next)
}

// TestNewServerHasNoSideEffects: building a server (what `gmgate validate` does through the
// Caddy adapter) signs no CRL and writes no CRL file; the first signed request signs it first,
// so the revocations of the previous CRL file hold from the first request on.
func TestNewServerHasNoSideEffects(t *testing.T) {
	f, _, _ := storeFixture(t)
	k := newKey(t)
	r := f.enrol(k, "T0920")
	before, err := attack.TakeSnapshot(f.store.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.srv.RevokeLocal(context.Background(), r.Serial, "admin:test"); err != nil {
		t.Fatal(err)
	}
	// Restart with the pre-revocation record put back and the markers gone.
	if err := before.Restore(f.store.Dir(), true); err != nil {
		t.Fatal(err)
	}
	cfg := f.srv.cfg
	ci := &countingIssuer{signingIssuer: cfg.Issuer.(signingIssuer)}
	cfg.Issuer = ci
	crlFile := filepath.Join(t.TempDir(), "new-crl.pem")
	cfg2 := cfg
	cfg2.CRLFile = crlFile
	if _, err := NewServer(cfg2); err != nil {
		t.Fatal(err)
	}
	if ci.crls.Load() != 0 {
		t.Fatal("NewServer signed a CRL")
	}
	if _, err := os.Stat(crlFile); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("NewServer wrote the CRL file: %v", err)
	}
	srv, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.srv = srv
	f.http.Config.Handler = srv
	resp, body := f.post(OpDownload, f.signedHeaders(OpDownload, "application/json", nil, k, r.Serial, ""), nil)
	if resp.StatusCode == http.StatusOK || codeOf(body) != CodeCertRevoked {
		t.Fatalf("first request after a restart over a rolled-back store: %d %s", resp.StatusCode, body)
	}
	if ci.crls.Load() != 1 {
		t.Fatalf("%d CRLs signed", ci.crls.Load())
	}
}
