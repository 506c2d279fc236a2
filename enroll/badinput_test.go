package enroll

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"
)

func extReq(t testing.TB, id asn1.ObjectIdentifier, v any, critical bool) pkix.Extension {
	t.Helper()
	b, err := asn1.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return pkix.Extension{Id: id, Value: b, Critical: critical}
}

// TestEnrolBadInput: every refusal of simpleenroll, with the code the client sees, and the
// rule that a refused request does not spend the token.
func TestEnrolBadInput(t *testing.T) {
	f := newFixture(t)
	key := newKey(t)
	good := simpleCSR(t, key, "T0100")

	badSig := append([]byte(nil), good...)
	badSig[len(badSig)-3] ^= 0x01                               // inside the signature
	kuBits := asn1.BitString{Bytes: []byte{0x04}, BitLength: 6} // keyCertSign (bit 5)
	bc := struct{ IsCA bool }{true}
	eku := []asn1.ObjectIdentifier{{1, 3, 6, 1, 5, 5, 7, 3, 1}} // serverAuth

	cases := []struct {
		name   string
		tok    func() string
		ctype  string
		body   []byte
		want   Code
		status int
	}{
		{"no token", func() string { return "" }, MediaPKCS10, b64(good), CodeTokenInvalid, 401},
		{"garbage token", func() string { return "gmet1.xxx.yyy" }, MediaPKCS10, b64(good), CodeTokenInvalid, 401},
		{"wrong secret", func() string {
			tok := f.token("T0100", time.Hour)
			return tok[:len(tok)-4] + "AAAA"
		}, MediaPKCS10, b64(good), CodeTokenInvalid, 401},
		{"expired token", func() string {
			tok := f.token("T0100", time.Minute)
			f.clock.add(2 * time.Minute)
			return tok
		}, MediaPKCS10, b64(good), CodeTokenExpired, 401},
		{"signature mismatch", func() string { return f.token("T0100", time.Hour) }, MediaPKCS10, b64(badSig), CodeCSRInvalid, 400},
		{"name other than the token's", func() string { return f.token("T0999", time.Hour) }, MediaPKCS10, b64(good), CodeNameForbidden, 403},
		{"IP address SAN", func() string { return f.token("T0100", time.Hour) }, MediaPKCS10,
			b64(csrFor(t, key, &smx509.CertificateRequest{Subject: pkix.Name{CommonName: "T0100"}, IPAddresses: []net.IP{net.IPv4(10, 0, 0, 1)}})), CodeNameForbidden, 403},
		{"DNS name outside the profile", func() string { return f.token("T0100", time.Hour) }, MediaPKCS10,
			b64(csrFor(t, key, &smx509.CertificateRequest{Subject: pkix.Name{CommonName: "T0100"}, DNSNames: []string{"bank.example"}})), CodeNameForbidden, 403},
		{"keyCertSign requested", func() string { return f.token("T0100", time.Hour) }, MediaPKCS10,
			b64(csrFor(t, key, &smx509.CertificateRequest{Subject: pkix.Name{CommonName: "T0100"}, ExtraExtensions: []pkix.Extension{extReq(t, oidExtKeyUsage, kuBits, true)}})), CodeUsageForbidden, 403},
		{"CA requested", func() string { return f.token("T0100", time.Hour) }, MediaPKCS10,
			b64(csrFor(t, key, &smx509.CertificateRequest{Subject: pkix.Name{CommonName: "T0100"}, ExtraExtensions: []pkix.Extension{extReq(t, oidExtBasicConstraints, bc, true)}})), CodeUsageForbidden, 403},
		{"serverAuth requested", func() string { return f.token("T0100", time.Hour) }, MediaPKCS10,
			b64(csrFor(t, key, &smx509.CertificateRequest{Subject: pkix.Name{CommonName: "T0100"}, ExtraExtensions: []pkix.Extension{extReq(t, oidExtExtKeyUsage, eku, false)}})), CodeUsageForbidden, 403},
		{"unknown critical extension", func() string { return f.token("T0100", time.Hour) }, MediaPKCS10,
			b64(csrFor(t, key, &smx509.CertificateRequest{Subject: pkix.Name{CommonName: "T0100"}, ExtraExtensions: []pkix.Extension{extReq(t, asn1.ObjectIdentifier{1, 2, 3, 4}, 1, true)}})), CodeUsageForbidden, 403},
		{"not base64", func() string { return f.token("T0100", time.Hour) }, MediaPKCS10, []byte("%%%not base64%%%"), CodeCSRInvalid, 400},
		{"not a request", func() string { return f.token("T0100", time.Hour) }, MediaPKCS10, b64([]byte{0x30, 0x03, 0x02, 0x01, 0x01}), CodeCSRInvalid, 400},
		{"truncated request", func() string { return f.token("T0100", time.Hour) }, MediaPKCS10, b64(good[:len(good)/2]), CodeCSRInvalid, 400},
		{"wrong media type", func() string { return f.token("T0100", time.Hour) }, "application/json", b64(good), CodeMediaType, 415},
		{"oversized", func() string { return f.token("T0100", time.Hour) }, MediaPKCS10, []byte(strings.Repeat("A", DefaultMaxRequestSize+1)), CodeTooLarge, 413},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := enrolHeaders(tc.tok())
			h.Set("Content-Type", tc.ctype)
			resp, body := f.post(OpSimpleEnroll, h, tc.body)
			if resp.StatusCode != tc.status || codeOf(body) != tc.want {
				t.Fatalf("got %d %s, want %d %s", resp.StatusCode, body, tc.status, tc.want)
			}
		})
	}

	// A refused request did not spend its token: the same token then enrols once, and only once.
	tok := f.token("T0100", time.Hour)
	resp, body := f.post(OpSimpleEnroll, enrolHeaders(tok), b64(badSig))
	if codeOf(body) != CodeCSRInvalid {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if resp, body = f.post(OpSimpleEnroll, enrolHeaders(tok), b64(good)); resp.StatusCode != 200 {
		t.Fatalf("token burnt by a refused request: %d %s", resp.StatusCode, body)
	}
	if resp, body = f.post(OpSimpleEnroll, enrolHeaders(tok), b64(good)); codeOf(body) != CodeTokenUsed {
		t.Fatalf("reused token: %d %s", resp.StatusCode, body)
	}
	if a := f.audit.last(); a.Reason != string(CodeTokenUsed) || a.Verdict != "reject" {
		t.Fatalf("audit: %+v", a)
	}
}

// TestSignedRequestAttacks: replayed nonce, a request signed for one operation presented to
// another, a holder revoking someone else's pair, a forged signature, an expired certificate,
// and a request outside the time window.
func TestSignedRequestAttacks(t *testing.T) {
	f := newFixture(t)
	key := newKey(t)
	r := f.enrol(key, "T0200")
	other := f.enrol(newKey(t), "T0201")

	csr := b64(simpleCSR(t, newKey(t), "T0200"))
	h := f.signedHeaders(OpSimpleReenroll, MediaPKCS10, csr, key, r.Serial, "nonce-1")

	// Signed for simplereenroll, presented to download (the path is covered).
	if _, body := f.post(OpDownload, h, csr); codeOf(body) != CodeAuthInvalid {
		t.Fatalf("cross-operation: %s", body)
	}
	// Forged: signed by another key under this serial.
	hf := f.signedHeaders(OpSimpleReenroll, MediaPKCS10, csr, newKey(t), r.Serial, "")
	if _, body := f.post(OpSimpleReenroll, hf, csr); codeOf(body) != CodeAuthInvalid {
		t.Fatalf("forged: %s", body)
	}
	// Body rewritten under a valid signature.
	csr2 := b64(simpleCSR(t, newKey(t), "T0200"))
	if _, body := f.post(OpSimpleReenroll, h, csr2); codeOf(body) != CodeAuthInvalid {
		t.Fatalf("rewritten body: %s", body)
	}
	// Outside the window.
	stale := f.signedHeaders(OpDownload, "application/json", nil, key, r.Serial, "")
	f.clock.add(10 * time.Minute)
	if _, body := f.post(OpDownload, stale, nil); codeOf(body) != CodeReplay {
		t.Fatalf("stale: %s", body)
	}
	// Replay of the same nonce.
	hd := f.signedHeaders(OpDownload, "application/json", nil, key, r.Serial, "nonce-2")
	if resp, body := f.post(OpDownload, hd, nil); resp.StatusCode != 200 {
		t.Fatalf("download: %s", body)
	}
	if _, body := f.post(OpDownload, hd, nil); codeOf(body) != CodeReplay {
		t.Fatalf("replay: %s", body)
	}
	// Nonce store down: fail closed.
	f.nonces.err = errors.New("redis down")
	if _, body := f.post(OpDownload, f.signedHeaders(OpDownload, "application/json", nil, key, r.Serial, ""), nil); codeOf(body) != CodeUnavailable {
		t.Fatalf("nonce store down: %s", body)
	}
	f.nonces.err = nil
	// A holder cannot revoke another terminal's pair.
	rb := []byte(`{"serial":"` + other.Serial + `"}`)
	if _, body := f.post(OpRevoke, f.signedHeaders(OpRevoke, "application/json", rb, key, r.Serial, ""), rb); codeOf(body) != CodeAuthInvalid {
		t.Fatalf("cross-holder revoke: %s", body)
	}
	if rec, _ := f.store.Cert(other.Serial); rec.Revoked {
		t.Fatal("other pair revoked")
	}
	// Renewal with an expired certificate.
	f.clock.add(31 * 24 * time.Hour)
	if _, body := f.post(OpSimpleReenroll, f.signedHeaders(OpSimpleReenroll, MediaPKCS10, csr, key, r.Serial, ""), csr); codeOf(body) != CodeCertExpired {
		t.Fatalf("expired certificate: %s", body)
	}
}

// TestEscrowAndAuditFailClosed: no pair is delivered when its key cannot be escrowed, and no
// answer is given when its audit entry cannot be written.
func TestEscrowAndAuditFailClosed(t *testing.T) {
	f := newFixture(t)
	f.escrow.err = errors.New("vault down")
	resp, body := f.post(OpSimpleEnroll, enrolHeaders(f.token("T0300", time.Hour)), b64(simpleCSR(t, newKey(t), "T0300")))
	if resp.StatusCode != http.StatusServiceUnavailable || codeOf(body) != CodeUnavailable {
		t.Fatalf("escrow down: %d %s", resp.StatusCode, body)
	}
	if certs, _ := f.store.Certs(); len(certs) != 0 {
		t.Fatal("a pair was recorded without escrow")
	}
	f.escrow.err = nil
	f.audit.err = errors.New("disk full")
	resp, body = f.post(OpSimpleEnroll, enrolHeaders(f.token("T0301", time.Hour)), b64(simpleCSR(t, newKey(t), "T0301")))
	if resp.StatusCode != http.StatusServiceUnavailable || strings.Contains(string(body), "csr_response") {
		t.Fatalf("audit down: %d %s", resp.StatusCode, body)
	}
}

// TestSKIIndex: the download lookup by key identifier reads the index (no scan), follows the
// newest pair of a key, survives rewrites of older records, and refuses an index naming
// another key's record.
func TestSKIIndex(t *testing.T) {
	f := newFixture(t)
	key := newKey(t)
	r1 := f.enrol(key, "T0700")
	r2 := f.enrol(key, "T0700") // the same signing key enrolled again (new token)
	rec1, _ := f.store.Cert(r1.Serial)
	got, err := f.store.CertBySKI(rec1.SKI)
	if err != nil || got.Serial != r2.Serial {
		t.Fatalf("newest pair of the key: %v %s", err, got.Serial)
	}
	if _, err := f.store.Revoke(r1.Serial, "holder", f.clock.now()); err != nil {
		t.Fatal(err)
	}
	if got, _ := f.store.CertBySKI(rec1.SKI); got.Serial != r2.Serial {
		t.Fatal("rewriting an older record moved the index")
	}
	other := f.enrol(newKey(t), "T0701")
	otherRec, _ := f.store.Cert(other.Serial)
	// An index entry written in clear, and the other key's (genuine) entry moved here: both
	// are refused, neither leads to the other key's record.
	if err := os.WriteFile(filepath.Join(f.store.Dir(), "ski", rec1.SKI), []byte(other.Serial), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.CertBySKI(rec1.SKI); !errors.Is(err, ErrIntegrity) {
		t.Fatalf("index naming another key's record: %v", err)
	}
	moved, err := os.ReadFile(filepath.Join(f.store.Dir(), "ski", otherRec.SKI))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.store.Dir(), "ski", rec1.SKI), moved, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.CertBySKI(rec1.SKI); !errors.Is(err, ErrIntegrity) {
		t.Fatalf("another key's index entry moved: %v", err)
	}
	if _, err := f.store.CertBySKI("../certs/x"); err == nil {
		t.Fatal("path in a key identifier accepted")
	}
}
