package enroll

import (
	"crypto/x509/pkix"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/pki"
)

// peerCerts plays the TLCP listener: the certificate a connection's client authenticated with
// (keyed by a test header standing for the connection; production reads the TLCP state).
type peerCerts struct {
	mu sync.Mutex
	m  map[string]*smx509.Certificate
}

func (p *peerCerts) set(conn string, c *smx509.Certificate) {
	p.mu.Lock()
	p.m[conn] = c
	p.mu.Unlock()
}

func (p *peerCerts) get(r *http.Request) *smx509.Certificate {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.m[r.Header.Get("X-Test-Conn")]
}

// TestReenrolByTLCPClientAuth: re-enrolment authorised by the terminal's current signing
// certificate presented in the TLCP handshake instead of a signed request. The new request must
// name the certificate's subject; a revoked, expired, foreign or substituted certificate, or
// none, is refused; the certificate renews once either way.
func TestReenrolByTLCPClientAuth(t *testing.T) {
	peers := &peerCerts{m: map[string]*smx509.Certificate{}}
	f := newFixture(t, func(c *Config) { c.PeerCertificate = peers.get; c.TokenLedger = &memNonces{} })
	k1, k2 := newKey(t), newKey(t)
	r1, r2 := f.enrol(k1, "T1000"), f.enrol(k2, "T1001")
	c1, _ := smx509.ParseCertificate(r1.SignCert)
	c2, _ := smx509.ParseCertificate(r2.SignCert)
	reenrol := func(conn string, csr []byte) (int, Code) {
		t.Helper()
		h := http.Header{}
		h.Set("Content-Type", MediaPKCS10)
		h.Set("X-Test-Conn", conn)
		resp, body := f.post(OpSimpleReenroll, h, b64(csr))
		if resp.StatusCode == http.StatusOK {
			return 200, "ok"
		}
		return resp.StatusCode, codeOf(body)
	}
	// No TLCP client certificate and no signature.
	if _, code := reenrol("none", simpleCSR(t, newKey(t), "T1000")); code != CodeAuthInvalid {
		t.Fatalf("no client certificate: %s", code)
	}
	peers.set("a", c1)
	// Another subject than the certificate's.
	if _, code := reenrol("a", simpleCSR(t, newKey(t), "T1001")); code != CodeNameForbidden {
		t.Fatalf("other common name: %s", code)
	}
	other := csrFor(t, newKey(t), &smx509.CertificateRequest{Subject: pkix.Name{CommonName: "T1000", Organization: []string{"Evil Corp"}}})
	if _, code := reenrol("a", other); code != CodeNameForbidden {
		t.Fatalf("other organisation: %s", code)
	}
	// A certificate of another CA, and a substitute carrying a stored serial.
	rogue, _, err := pki.NewRootCA(pki.IssueOptions{CommonName: "Rogue CA"})
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := rogue.IssuePlatform(pki.IssueOptions{CommonName: "T1000"})
	if err != nil {
		t.Fatal(err)
	}
	peers.set("foreign", foreign.Cert)
	if _, code := reenrol("foreign", simpleCSR(t, newKey(t), "T1000")); code != CodeAuthInvalid {
		t.Fatalf("foreign certificate: %s", code)
	}
	substitute := *foreign.Cert
	substitute.SerialNumber = c1.SerialNumber
	peers.set("substitute", &substitute)
	if _, code := reenrol("substitute", simpleCSR(t, newKey(t), "T1000")); code != CodeAuthInvalid {
		t.Fatalf("substitute certificate: %s", code)
	}
	// The genuine certificate renews, once, audited as a TLCP renewal.
	newSign := newKey(t)
	if st, code := reenrol("a", simpleCSR(t, newSign, "T1000")); st != 200 {
		t.Fatalf("TLCP re-enrolment: %d %s", st, code)
	}
	if a := f.audit.last(); a.Scheme != "enroll/simplereenroll" || a.KeyID != "tlcp:"+r1.Serial || a.Verdict != "accept" {
		t.Fatalf("audit: %+v", a)
	}
	if _, code := reenrol("a", simpleCSR(t, newKey(t), "T1000")); code != CodeAlreadyRenewed {
		t.Fatalf("second renewal: %s", code)
	}
	// Revoked: refused.
	peers.set("b", c2)
	if _, err := f.srv.RevokeLocal(t.Context(), r2.Serial, "ops"); err != nil {
		t.Fatal(err)
	}
	if _, code := reenrol("b", simpleCSR(t, newKey(t), "T1001")); code != CodeCertRevoked {
		t.Fatalf("revoked certificate: %s", code)
	}
	// Expired: refused.
	k3 := newKey(t)
	r3 := f.enrol(k3, "T1002")
	c3, _ := smx509.ParseCertificate(r3.SignCert)
	peers.set("c", c3)
	f.clock.add(31 * 24 * time.Hour)
	if _, code := reenrol("c", simpleCSR(t, newKey(t), "T1002")); code != CodeCertExpired {
		t.Fatalf("expired certificate: %s", code)
	}
}
