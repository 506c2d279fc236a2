package enroll

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/asn1"
	"encoding/json"
	"errors"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/internal/attack"
	"github.com/gmgate/gmgate/pki"
)

// raSetup is a CA (gm_enroll with a LocalCA) and a registration authority (gm_enroll with an
// UpstreamIssuer) in front of it, optionally through a proxy that rewrites the CA's answers.
type raSetup struct {
	ca, ra *fixture
	raKey  *sm2.PrivateKey
	raCert *smx509.Certificate
	up     *UpstreamIssuer
	proxy  *attack.UpstreamCA
}

func newRASetup(t *testing.T) *raSetup {
	t.Helper()
	raCA, _, err := pki.NewRootCA(pki.IssueOptions{CommonName: "RA operators CA"})
	if err != nil {
		t.Fatal(err)
	}
	raID, err := raCA.IssuePlatform(pki.IssueOptions{CommonName: "ra-1"})
	if err != nil {
		t.Fatal(err)
	}
	s := &raSetup{raKey: raID.Key, raCert: raID.Cert}
	s.ca = newFixture(t, func(c *Config) {
		c.RA = func(name string) (*smx509.Certificate, error) {
			if name == "ra-1" {
				return raID.Cert, nil
			}
			return nil, errors.New("unknown registration authority")
		}
		c.RAScopes = map[string]RAScope{"ra-1": {Profiles: []string{"terminal"}, CommonName: `T[0-9]{4}`, DNSNames: []string{"*.pos.example"}}}
	})
	s.proxy = &attack.UpstreamCA{To: s.ca.http.URL, Record: "/" + OpRAEnroll}
	px := httptest.NewServer(s.proxy)
	t.Cleanup(px.Close)
	s.ra = newFixture(t, func(c *Config) {
		up, err := NewUpstreamIssuer(UpstreamConfig{URL: px.URL + "/.well-known/est", Chain: []*smx509.Certificate{s.ca.root.Cert},
			Key: s.raKey, Cert: raID.Cert, CRLCheckInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		s.up = up
		c.Issuer = up
	})
	return s
}

// TestUpstreamEnrolRenewRevoke: a terminal enrols, renews and revokes at the RA; the CA issues
// (Via ra:ra-1, escrowed and enveloped at the CA: the RA holds no encryption key), both sides
// audit with the RA's identity, the revocation reaches the CA, and the RA re-publishes the
// CA's CRL (crl endpoint and CRL file) listing the pair.
func TestUpstreamEnrolRenewRevoke(t *testing.T) {
	s := newRASetup(t)
	key := newKey(t)
	r := s.ra.enrol(key, "T0001")
	cr, err := smx509.ParseCSRResponse(key, r.CSRResponse)
	if err != nil {
		t.Fatal(err)
	}
	sign, enc := cr.SignCerts[0], cr.EncryptCerts[0]
	if sign.CheckSignatureFrom(s.ca.root.Cert) != nil || !sign.PublicKey.(*ecdsa.PublicKey).Equal(&key.PublicKey) || sign.Subject.CommonName != "T0001" {
		t.Fatal("the pair is not the CA's for the terminal's key")
	}
	if !cr.EncryptPrivateKey.PublicKey.Equal(enc.PublicKey) {
		t.Fatal("delivered key does not match")
	}
	caRec, err := s.ca.store.Cert(r.Serial)
	if err != nil || caRec.Via != "ra:ra-1" || !caRec.Escrowed {
		t.Fatalf("CA record: %+v %v", caRec, err)
	}
	if _, ok := s.ca.escrow.keys[r.EncSerial]; !ok {
		t.Fatal("the CA did not escrow the encryption key")
	}
	if raRec, _ := s.ra.store.Cert(r.Serial); raRec.Escrowed || len(s.ra.escrow.keys) != 0 {
		t.Fatal("the RA escrowed (so held) an encryption key")
	}
	if a := s.ca.audit.last(); a.Scheme != "enroll/raenroll" || a.KeyID != "ra:ra-1" || a.CertSerial != r.Serial || a.Verdict != "accept" {
		t.Fatalf("CA audit: %+v", a)
	}
	if a := s.ra.audit.last(); a.Scheme != "enroll/simpleenroll" || a.CertSerial != r.Serial {
		t.Fatalf("RA audit: %+v", a)
	}

	// Renewal at the RA (signed by the current certificate, the RA's own record), then the
	// holder revokes the renewed pair at the RA.
	key2 := newKey(t)
	csr2 := b64(simpleCSR(t, key2, "T0001"))
	resp, body := s.ra.post(OpSimpleReenroll, s.ra.signedHeaders(OpSimpleReenroll, MediaPKCS10, csr2, key, r.Serial, ""), csr2)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("reenroll: %d %s", resp.StatusCode, body)
	}
	var r2 Response
	_ = json.Unmarshal(body, &r2)
	if _, err := smx509.ParseCSRResponse(key2, r2.CSRResponse); err != nil {
		t.Fatal(err)
	}
	rb := []byte(`{}`)
	resp, body = s.ra.post(OpRevoke, s.ra.signedHeaders(OpRevoke, "application/json", rb, key2, r2.Serial, ""), rb)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke: %d %s", resp.StatusCode, body)
	}
	if rec, _ := s.ca.store.Cert(r2.Serial); !rec.Revoked || rec.RevokedBy != "ra:ra-1" {
		t.Fatalf("the revocation did not reach the CA: %+v", rec)
	}
	if a := s.ca.audit.last(); a.Scheme != "enroll/rarevoke" || a.KeyID != "ra:ra-1" || a.CertSerial != r2.Serial {
		t.Fatalf("CA audit of the forwarded revocation: %+v", a)
	}
	// The RA's crl endpoint serves the CA's CRL, listing the pair, at once.
	rl := s.raCRL(t)
	if !listed(rl, r2.Serial) || !listed(rl, r2.EncSerial) || listed(rl, r.Serial) {
		t.Fatalf("RA CRL entries: %v", rl.RevokedCertificateEntries)
	}
	if data, err := readFile(s.ra.crlFile); err != nil || !bytes.Contains(data, []byte("X509 CRL")) {
		t.Fatalf("RA CRL file: %v", err)
	}
	// An administrator's revocation at the RA is forwarded too (the CA records the RA).
	if _, err := s.ra.srv.RevokeLocal(context.Background(), r.Serial, "alice"); err != nil {
		t.Fatal(err)
	}
	if rec, _ := s.ca.store.Cert(r.Serial); !rec.Revoked || rec.RevokedBy != "ra:ra-1" {
		t.Fatalf("the administrator's revocation did not reach the CA: %+v", rec)
	}
	if rec, _ := s.ra.store.Cert(r.Serial); rec.RevokedBy != "admin:alice" {
		t.Fatalf("RA record: %+v", rec)
	}
	if rl := s.raCRL(t); !listed(rl, r.Serial) {
		t.Fatal("the RA's CRL does not list the administrator's revocation")
	}
	// The revoked pair cannot renew at the RA.
	csr3 := b64(simpleCSR(t, newKey(t), "T0001"))
	if _, body := s.ra.post(OpSimpleReenroll, s.ra.signedHeaders(OpSimpleReenroll, MediaPKCS10, csr3, key2, r2.Serial, ""), csr3); codeOf(body) != CodeCertRevoked {
		t.Fatalf("renewal of a revoked pair: %s", body)
	}
}

func (s *raSetup) raCRL(t *testing.T) *smx509.RevocationList {
	t.Helper()
	resp, err := http.Get(s.ra.http.URL + "/.well-known/est/crl")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	der, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("RA crl: %d %s", resp.StatusCode, der)
	}
	rl, err := smx509.ParseRevocationList(der)
	if err != nil || rl.CheckSignatureFrom(s.ca.root.Cert) != nil {
		t.Fatalf("RA CRL does not verify against the CA: %v", err)
	}
	return rl
}

func listed(rl *smx509.RevocationList, serial string) bool {
	for _, e := range rl.RevokedCertificateEntries {
		if serialHex(e.SerialNumber) == serial {
			return true
		}
	}
	return false
}

// TestRAEndpointRefusals: raenroll and rarevoke at the CA accept only a request signed by an
// authorised RA's key, once; the RA's key serves no terminal operation; the CA re-checks what
// the RA forwards; an RA revokes only its own terminals.
func TestRAEndpointRefusals(t *testing.T) {
	s := newRASetup(t)
	ca := s.ca
	key := newKey(t)
	body, _ := json.Marshal(RAEnrollRequest{CSR: simpleCSR(t, key, "T0100"), Profile: "terminal", CommonName: "T0100"})
	jsonH := http.Header{"Content-Type": {"application/json"}}
	other := newKey(t)
	direct := ca.enrol(newKey(t), "T0101") // enrolled at the CA with a token, not by the RA

	rawCSR := simpleCSR(t, key, "T0100")
	badSig := bytes.Clone(rawCSR)
	badSig[len(badSig)-5] ^= 1
	mk := func(m func(*RAEnrollRequest)) []byte {
		r := RAEnrollRequest{CSR: rawCSR, Profile: "terminal", CommonName: "T0100"}
		m(&r)
		b, _ := json.Marshal(r)
		return b
	}
	replayed := ca.signedHeaders(OpRAEnroll, "application/json", body, s.raKey, "ra:ra-1", "fixed-nonce-1")
	if resp, b := ca.post(OpRAEnroll, replayed, body); resp.StatusCode != http.StatusOK {
		t.Fatalf("authorised raenroll: %d %s", resp.StatusCode, b)
	}
	cases := []struct {
		name string
		op   string
		h    http.Header
		body []byte
		want Code
	}{
		{"RA credential missing", OpRAEnroll, jsonH, body, CodeAuthInvalid},
		{"unknown RA", OpRAEnroll, ca.signedHeaders(OpRAEnroll, "application/json", body, s.raKey, "ra:ra-2", ""), body, CodeAuthInvalid},
		{"RA name with another key", OpRAEnroll, ca.signedHeaders(OpRAEnroll, "application/json", body, other, "ra:ra-1", ""), body, CodeAuthInvalid},
		{"replayed RA request", OpRAEnroll, replayed, body, CodeReplay},
		// the same terminal request signed again with a fresh nonce (a nonce store that forgot,
		// a retrying or hostile RA): one CSR gets one pair
		{"same CSR, fresh nonce", OpRAEnroll, ca.signedHeaders(OpRAEnroll, "application/json", body, s.raKey, "ra:ra-1", ""), body, CodeReplay},
		{"terminal key on raenroll", OpRAEnroll, ca.signedHeaders(OpRAEnroll, "application/json", body, newKey(t), direct.Serial, ""), body, CodeAuthInvalid},
		{"administrator on raenroll", OpRAEnroll, ca.signedHeaders(OpRAEnroll, "application/json", body, other, "admin:alice", ""), body, CodeAuthInvalid},
		{"RA key on download", OpDownload, ca.signedHeaders(OpDownload, "application/json", nil, s.raKey, "ra:ra-1", ""), nil, CodeAuthInvalid},
		{"RA key on revoke", OpRevoke, ca.signedHeaders(OpRevoke, "application/json", []byte(`{"serial":"`+direct.Serial+`"}`), s.raKey, "ra:ra-1", ""), []byte(`{"serial":"` + direct.Serial + `"}`), CodeAuthInvalid},
		{"RA revokes a pair it did not enrol", OpRARevoke, ca.signedHeaders(OpRARevoke, "application/json", []byte(`{"serial":"`+direct.Serial+`"}`), s.raKey, "ra:ra-1", ""), []byte(`{"serial":"` + direct.Serial + `"}`), CodeAuthInvalid},
		{"RA revokes without a serial", OpRARevoke, ca.signedHeaders(OpRARevoke, "application/json", []byte(`{}`), s.raKey, "ra:ra-1", ""), []byte(`{}`), CodeRequestInvalid},
	}
	for _, c := range []struct {
		name string
		b    []byte
		want Code
	}{
		{"approved name differs from the request", mk(func(r *RAEnrollRequest) { r.CommonName = "T0999" }), CodeNameForbidden},
		{"approved name missing", mk(func(r *RAEnrollRequest) { r.CommonName = "" }), CodeRequestInvalid},
		{"approved DNS names differ", mk(func(r *RAEnrollRequest) { r.DNSNames = []string{"a.pos.example"} }), CodeNameForbidden},
		// a profile outside the RA's scope, whether the CA has it or not (TestAttackRAOutOfScope)
		{"unknown profile", mk(func(r *RAEnrollRequest) { r.Profile = "vip" }), CodeRAOutOfScope},
		{"request signature broken", mk(func(r *RAEnrollRequest) { r.CSR = badSig }), CodeCSRInvalid},
		{"not a request", mk(func(r *RAEnrollRequest) { r.CSR = []byte("junk") }), CodeCSRInvalid},
		{"unknown field", []byte(`{"csr":"","profile":"terminal","common_name":"T0100","admin":true}`), CodeRequestInvalid},
		{"trailing data", append(mk(func(*RAEnrollRequest) {}), []byte(`{}`)...), CodeRequestInvalid},
	} {
		cases = append(cases, struct {
			name string
			op   string
			h    http.Header
			body []byte
			want Code
		}{c.name, OpRAEnroll, ca.signedHeaders(OpRAEnroll, "application/json", c.b, s.raKey, "ra:ra-1", ""), c.b, c.want})
	}
	cases = append(cases, struct {
		name string
		op   string
		h    http.Header
		body []byte
		want Code
	}{"wrong media type", OpRAEnroll, ca.signedHeaders(OpRAEnroll, MediaPKCS10, body, s.raKey, "ra:ra-1", ""), body, CodeMediaType})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, b := ca.post(c.op, c.h, c.body)
			if got := codeOf(b); got != c.want {
				t.Fatalf("got %s (%s), want %s", got, b, c.want)
			}
			if a := ca.audit.last(); a.Verdict != "reject" || a.Reason != string(c.want) {
				t.Fatalf("audit: %+v", a)
			}
		})
	}
	if rec, _ := ca.store.Cert(direct.Serial); rec.Revoked {
		t.Fatal("a refused request revoked a pair")
	}
}

// hostileCA answers raenroll itself with the CA's key (an upstream that holds the key but
// misbehaves, or a man in the middle with a rogue CA): build makes the answer from the
// terminal's request.
func (s *raSetup) hostileCA(t *testing.T, build func(csr *smx509.CertificateRequest) (*Response, int, []byte)) {
	s.proxy.SetHook(func(w http.ResponseWriter, r *http.Request, body []byte) bool {
		if !strings.HasSuffix(r.URL.Path, "/"+OpRAEnroll) {
			return false
		}
		var req RAEnrollRequest
		if err := json.Unmarshal(body, &req); err != nil {
			t.Error(err)
			return false
		}
		csr, err := smx509.ParseCertificateRequest(req.CSR)
		if err != nil {
			t.Error(err)
			return false
		}
		resp, status, raw := build(csr)
		if raw == nil {
			raw, _ = json.Marshal(resp)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write(raw)
		return true
	})
}

// answerOpts describes one (possibly hostile) answer.
type answerOpts struct {
	signKey, encKeyPub any // nil: the request's key / a fresh encryption key
	issuer             *pki.CA
	sign, enc          pki.IssueOptions
	signRole, encRole  pki.Role
	envelopeOther      bool // envelope another key than the encryption certificate's
	csrRespSign        *smx509.Certificate
	cfca               string
}

// answer issues a consistent pair per o (certificates, SM2EnvelopedKey and CSRResponse to the
// terminal's key) so that each case breaks exactly one rule.
func answer(t *testing.T, ca *pki.CA, csr *smx509.CertificateRequest, o answerOpts) *Response {
	t.Helper()
	if o.issuer == nil {
		o.issuer = ca
	}
	if o.signRole == 0 {
		o.signRole = pki.RoleSign
	}
	if o.encRole == 0 {
		o.encRole = pki.RoleEnc
	}
	base := func(io pki.IssueOptions) pki.IssueOptions {
		if io.CommonName == "" {
			io.CommonName = csr.Subject.CommonName
		}
		if io.Organization == nil {
			io.Organization = []string{"Acme Pay"}
		}
		if io.OrganizationalUnit == nil {
			io.OrganizationalUnit = []string{"terminals"}
		}
		if io.ExtKeyUsage == nil {
			io.ExtKeyUsage = []smx509.ExtKeyUsage{smx509.ExtKeyUsageClientAuth}
		}
		if io.Validity == 0 {
			io.Validity = 24 * time.Hour
		}
		return io
	}
	signPub := csr.PublicKey
	if o.signKey != nil {
		signPub = o.signKey
	}
	encKey := newKey(t)
	var encPub any = &encKey.PublicKey
	if o.encKeyPub != nil {
		encPub = o.encKeyPub
	}
	sign, err := o.issuer.IssueFor(signPub, o.signRole, base(o.sign))
	if err != nil {
		t.Fatal(err)
	}
	enc, err := o.issuer.IssueFor(encPub, o.encRole, base(o.enc))
	if err != nil {
		t.Fatal(err)
	}
	envKey := encKey
	if o.envelopeOther {
		envKey = newKey(t)
	}
	termPub := csr.PublicKey.(*ecdsa.PublicKey)
	env, err := sm2.MarshalEnvelopedPrivateKey(randReader(), termPub, envKey)
	if err != nil {
		t.Fatal(err)
	}
	crSign := sign
	if o.csrRespSign != nil {
		crSign = o.csrRespSign
	}
	// MarshalCSRResponse insists on the key matching its certificate: build it for a matching
	// encryption certificate and splice the parts per the case.
	cr, err := marshalCSRResponse(crSign, termPub, envKey, enc)
	if err != nil {
		t.Fatal(err)
	}
	return &Response{Serial: serialHex(sign.SerialNumber), EncSerial: serialHex(enc.SerialNumber), NotAfter: sign.NotAfter,
		SignCert: sign.Raw, EncCert: enc.Raw, Chain: [][]byte{ca.Cert.Raw},
		Delivery: Delivery{EnvelopedKey: env, CSRResponse: cr, CFCAEncryptedKey: o.cfca}}
}

// TestUpstreamHostileAnswers: the RA refuses every answer of a hostile upstream that does not
// give the terminal exactly what it asked for (enroll_upstream_invalid, or the CA's refusal /
// unavailability), stores nothing and delivers nothing; the control case is accepted.
func TestUpstreamHostileAnswers(t *testing.T) {
	s := newRASetup(t)
	ca := s.ca.root
	rogue, _, err := pki.NewRootCA(pki.IssueOptions{CommonName: "Terminal CA", Organization: []string{"gmgate test"}})
	if err != nil {
		t.Fatal(err)
	}
	otherKey := newKey(t)
	existing := s.ra.enrol(newKey(t), "T0200") // a pair the RA holds (its serial must not be overwritten)
	existingSerial, _ := new(big.Int).SetString(existing.Serial, 16)
	ok := func(o answerOpts) func(*smx509.CertificateRequest) (*Response, int, []byte) {
		return func(csr *smx509.CertificateRequest) (*Response, int, []byte) {
			return answer(t, ca, csr, o), http.StatusOK, nil
		}
	}
	raw := func(status int, body string) func(*smx509.CertificateRequest) (*Response, int, []byte) {
		return func(*smx509.CertificateRequest) (*Response, int, []byte) { return nil, status, []byte(body) }
	}
	cases := []struct {
		name  string
		build func(*smx509.CertificateRequest) (*Response, int, []byte)
		want  Code
	}{
		{"control: a correct answer", ok(answerOpts{}), ""},
		{"signing certificate for another key", ok(answerOpts{signKey: &otherKey.PublicKey}), CodeUpstreamInvalid},
		{"another subject", ok(answerOpts{sign: pki.IssueOptions{CommonName: "T9999"}, enc: pki.IssueOptions{CommonName: "T9999"}}), CodeUpstreamInvalid},
		{"another organization", ok(answerOpts{sign: pki.IssueOptions{Organization: []string{"Evil"}}, enc: pki.IssueOptions{Organization: []string{"Evil"}}}), CodeUpstreamInvalid},
		{"a DNS name not approved", ok(answerOpts{sign: pki.IssueOptions{DNSNames: []string{"bank.example"}}, enc: pki.IssueOptions{DNSNames: []string{"bank.example"}}}), CodeUpstreamInvalid},
		{"signing certificate with encryption usage", ok(answerOpts{signRole: pki.RoleEnc}), CodeUpstreamInvalid},
		{"encryption certificate with signing usage", ok(answerOpts{encRole: pki.RoleSign}), CodeUpstreamInvalid},
		{"a CA certificate", ok(answerOpts{signRole: pki.RoleCA}), CodeUpstreamInvalid},
		{"serverAuth extended key usage", ok(answerOpts{sign: pki.IssueOptions{ExtKeyUsage: []smx509.ExtKeyUsage{smx509.ExtKeyUsageServerAuth}}}), CodeUpstreamInvalid},
		{"unchained: a rogue CA of the same name", ok(answerOpts{issuer: rogue}), CodeUpstreamInvalid},
		{"expired", ok(answerOpts{sign: pki.IssueOptions{NotBefore: time.Now().Add(-48 * time.Hour), Validity: time.Hour}}), CodeUpstreamInvalid},
		{"encryption certificate of another subject", ok(answerOpts{enc: pki.IssueOptions{CommonName: "T9999"}}), CodeUpstreamInvalid},
		{"encryption certificate for the signing key", func(csr *smx509.CertificateRequest) (*Response, int, []byte) {
			return answer(t, ca, csr, answerOpts{encKeyPub: csr.PublicKey}), http.StatusOK, nil
		}, CodeUpstreamInvalid},
		{"serial of a pair the RA holds", ok(answerOpts{sign: pki.IssueOptions{SerialNumber: existingSerial}}), CodeUpstreamInvalid},
		{"enveloped key is not the certified one", ok(answerOpts{envelopeOther: true}), CodeUpstreamInvalid},
		{"CSRResponse carries another signing certificate", func(csr *smx509.CertificateRequest) (*Response, int, []byte) {
			other, _ := ca.IssueFor(csr.PublicKey, pki.RoleSign, pki.IssueOptions{CommonName: csr.Subject.CommonName, Organization: []string{"Acme Pay"}})
			return answer(t, ca, csr, answerOpts{csrRespSign: other}), http.StatusOK, nil
		}, CodeUpstreamInvalid},
		{"CFCA key for a standard request", ok(answerOpts{cfca: "AAAA"}), CodeUpstreamInvalid},
		{"delivery missing", func(csr *smx509.CertificateRequest) (*Response, int, []byte) {
			r := answer(t, ca, csr, answerOpts{})
			r.Delivery = Delivery{}
			return r, http.StatusOK, nil
		}, CodeUpstreamInvalid},
		{"not JSON", raw(http.StatusOK, "<html>"), CodeUpstreamInvalid},
		{"certificate not DER", raw(http.StatusOK, `{"sign_cert":"AAAA","enc_cert":"AAAA"}`), CodeUpstreamInvalid},
		{"oversized answer", raw(http.StatusOK, `{"serial":"`+strings.Repeat("a", maxUpstreamResponse)+`"}`), CodeUpstreamInvalid},
		{"CA refuses", raw(http.StatusForbidden, `{"code":"enroll_name_forbidden","message":"no"}`), CodeUpstreamRefused},
		{"CA unavailable", raw(http.StatusServiceUnavailable, `{"code":"enroll_unavailable","message":"later"}`), CodeUnavailable},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s.hostileCA(t, c.build)
			before, _ := s.ra.store.Certs()
			cn := "T03" + string(rune('0'+i/10)) + string(rune('0'+i%10))
			key := newKey(t)
			resp, body := s.ra.post(OpSimpleEnroll, enrolHeaders(s.ra.token(cn, time.Hour)), b64(simpleCSR(t, key, cn)))
			after, _ := s.ra.store.Certs()
			if c.want == "" {
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("control refused: %s", body)
				}
				var r Response
				_ = json.Unmarshal(body, &r)
				if _, err := smx509.ParseCSRResponse(key, r.CSRResponse); err != nil {
					t.Fatalf("control pair does not open: %v", err)
				}
				return
			}
			if got := codeOf(body); got != c.want {
				t.Fatalf("got %d %s, want %s", resp.StatusCode, body, c.want)
			}
			if len(after) != len(before) {
				t.Fatal("a refused answer was stored")
			}
			if rec, _ := s.ra.store.Cert(existing.Serial); !bytes.Equal(rec.SignCert, existing.SignCert) {
				t.Fatal("an answer overwrote a record")
			}
		})
	}
}

// TestUpstreamRevocationForwardRetry: when the CA is unreachable at revocation time, the pair is
// revoked at the RA at once (enroll_unavailable to the caller) and forwarded by the CRL loop as
// soon as the CA is back; offline revocations (the store written by the revoke command) too.
func TestUpstreamRevocationForwardRetry(t *testing.T) {
	s := newRASetup(t)
	key := newKey(t)
	r := s.ra.enrol(key, "T0400")
	r2 := s.ra.enrol(newKey(t), "T0401")
	s.proxy.SetDown(true)
	rb := []byte(`{}`)
	if _, body := s.ra.post(OpRevoke, s.ra.signedHeaders(OpRevoke, "application/json", rb, key, r.Serial, ""), rb); codeOf(body) != CodeUnavailable {
		t.Fatalf("revoke with the CA down: %s", body)
	}
	if rec, _ := s.ra.store.Cert(r.Serial); !rec.Revoked {
		t.Fatal("the RA did not keep the revocation")
	}
	if _, err := s.ra.store.Revoke(r2.Serial, "operator:root", time.Now()); err != nil { // gmgate enroll revoke --store
		t.Fatal(err)
	}
	if err := s.ra.srv.RefreshCRL(context.Background()); err == nil {
		t.Fatal("refresh with the CA down succeeded")
	}
	s.proxy.SetDown(false)
	if err := s.ra.srv.RefreshCRL(context.Background()); err != nil {
		t.Fatalf("refresh: %v", err)
	}
	for _, sn := range []string{r.Serial, r2.Serial} {
		if rec, _ := s.ca.store.Cert(sn); !rec.Revoked || rec.RevokedBy != "ra:ra-1" {
			t.Fatalf("forwarded revocation of %s: %+v", sn, rec)
		}
	}
	if err := s.ra.srv.RefreshCRL(context.Background()); err != nil {
		t.Fatal(err)
	}
	rl := s.raCRL(t)
	if !listed(rl, r.Serial) || !listed(rl, r2.Serial) {
		t.Fatal("the RA's CRL does not list the forwarded revocations")
	}
	var fwd int
	for _, a := range s.ra.audit.recs {
		if a.Scheme == "enroll/forward-revoke" && a.Verdict == "accept" {
			fwd++
		}
	}
	if fwd != 2 {
		t.Fatalf("forward audit entries: %d", fwd)
	}

	// A CA that refuses a revocation for good is asked again with backoff, not at every check.
	r3 := s.ra.enrol(newKey(t), "T0402")
	if _, err := s.ra.store.Revoke(r3.Serial, "operator:root", time.Now()); err != nil {
		t.Fatal(err)
	}
	s.proxy.SetHook(func(w http.ResponseWriter, r *http.Request, _ []byte) bool {
		if !strings.HasSuffix(r.URL.Path, "/"+OpRARevoke) {
			return false
		}
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"code":"enroll_not_found","message":"no"}`))
		return true
	})
	refused := func() int {
		n := 0
		s.ra.audit.mu.Lock()
		defer s.ra.audit.mu.Unlock()
		for _, a := range s.ra.audit.recs {
			if a.Scheme == "enroll/forward-revoke" && a.Verdict == "reject" && a.CertSerial == r3.Serial {
				if a.Reason != string(CodeUpstreamRefused) {
					t.Errorf("refused forward reason: %s", a.Reason)
				}
				n++
			}
		}
		return n
	}
	for i, want := range []int{1, 1, 2} {
		if i == 2 {
			s.ra.clock.add(minForwardDelay + time.Second)
		}
		if err := s.ra.srv.RefreshCRL(context.Background()); err == nil && want > 1 {
			t.Fatal("a refused forward was not reported")
		}
		if got := refused(); got != want {
			t.Fatalf("check %d: %d refused forwards, want %d", i, got, want)
		}
	}
	s.proxy.SetHook(nil)
	s.ra.clock.add(2*minForwardDelay + time.Second)
	if err := s.ra.srv.RefreshCRL(context.Background()); err != nil {
		t.Fatal(err)
	}
	if rec, _ := s.ca.store.Cert(r3.Serial); !rec.Revoked {
		t.Fatal("the revocation was not forwarded once the CA took it")
	}
}

// TestUpstreamCRLRollbackAndForgery: the RA refuses a CRL older than the one it serves (a
// replayed CRL cannot un-revoke a terminal) and one not signed by the issuing CA.
func TestUpstreamCRLRollbackAndForgery(t *testing.T) {
	s := newRASetup(t)
	ca := s.ca.root
	old, err := ca.CreateCRLAt(nil, big.NewInt(1), time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	r := s.ra.enrol(newKey(t), "T0500")
	sn, _ := new(big.Int).SetString(r.Serial, 16)
	cur, err := ca.CreateCRLAt([]smx509.RevocationListEntry{{SerialNumber: sn, RevocationTime: time.Now()}}, big.NewInt(time.Now().UnixMilli()+60_000), time.Now(), time.Now().Add(time.Hour)) // newer than the CA CRL the RA may hold already (numbered by time)
	if err != nil {
		t.Fatal(err)
	}
	rogue, _, _ := pki.NewRootCA(pki.IssueOptions{CommonName: "Terminal CA", Organization: []string{"gmgate test"}})
	forged, _ := rogue.CreateCRLAt(nil, big.NewInt(9), time.Now(), time.Now().Add(time.Hour))
	var mu sync.Mutex
	serve := cur
	s.proxy.SetHook(func(w http.ResponseWriter, r *http.Request, _ []byte) bool {
		if !strings.HasSuffix(r.URL.Path, "/crl") {
			return false
		}
		mu.Lock()
		defer mu.Unlock()
		w.Header().Set("Content-Type", MediaCRL)
		_, _ = w.Write(serve)
		return true
	})
	if err := s.ra.srv.RefreshCRL(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		der  []byte
		want error
	}{{"older CRL", old, pki.ErrCRLRollback}, {"forged CRL", forged, nil}} {
		mu.Lock()
		serve = c.der
		mu.Unlock()
		err := s.ra.srv.RefreshCRL(context.Background())
		if err == nil || (c.want != nil && !errors.Is(err, c.want)) {
			t.Fatalf("%s: refresh: %v", c.name, err)
		}
		if rl := s.raCRL(t); !listed(rl, r.Serial) {
			t.Fatalf("%s: the RA un-revoked the terminal", c.name)
		}
	}
}

// TestUpstreamIssuerConfig: the RA key must be its certificate's; the chain must be CAs; the
// URL http(s).
func TestUpstreamIssuerConfig(t *testing.T) {
	root, _, _ := pki.NewRootCA(pki.IssueOptions{CommonName: "CA"})
	id, _ := root.IssuePlatform(pki.IssueOptions{CommonName: "ra-1"})
	good := UpstreamConfig{URL: "https://ca.example/est", Chain: []*smx509.Certificate{root.Cert}, Key: id.Key, Cert: id.Cert}
	if _, err := NewUpstreamIssuer(good); err != nil {
		t.Fatal(err)
	}
	for name, m := range map[string]func(*UpstreamConfig){
		"ftp URL":        func(c *UpstreamConfig) { c.URL = "ftp://ca.example" },
		"no chain":       func(c *UpstreamConfig) { c.Chain = nil },
		"leaf as CA":     func(c *UpstreamConfig) { c.Chain = []*smx509.Certificate{id.Cert} },
		"another key":    func(c *UpstreamConfig) { c.Key = newKey(t) },
		"no certificate": func(c *UpstreamConfig) { c.Cert = nil },
		"name with space": func(c *UpstreamConfig) {
			c.Name = "ra 1"
		},
	} {
		c := good
		m(&c)
		if _, err := NewUpstreamIssuer(c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func randReader() io.Reader { return rand.Reader }

func readFile(p string) ([]byte, error) { return os.ReadFile(p) }

// marshalCSRResponse builds a GM/T 0092 CSRResponse whatever its parts (gmsm's
// MarshalCSRResponse refuses inconsistent ones; the hostile cases need them): signCerts SET OF,
// [0] SM2EnvelopedKey of key to termPub, [1] the encryption certificate.
func marshalCSRResponse(sign *smx509.Certificate, termPub *ecdsa.PublicKey, key *sm2.PrivateKey, enc *smx509.Certificate) ([]byte, error) {
	env, err := sm2.MarshalEnvelopedPrivateKey(rand.Reader, termPub, key)
	if err != nil {
		return nil, err
	}
	return asn1.Marshal(struct {
		SignCerts []asn1.RawValue `asn1:"set"`
		Key       asn1.RawValue
		EncCerts  asn1.RawValue
	}{
		SignCerts: []asn1.RawValue{{FullBytes: sign.Raw}},
		Key:       asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: env},
		EncCerts:  asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 1, IsCompound: true, Bytes: enc.Raw},
	})
}

// FuzzUpstreamDelivery: the RA's checks of a key delivery it cannot open (the SM2EnvelopedKey
// and the GM/T 0092 CSRResponse from the upstream CA) never panic on hostile bytes, and accept
// only a delivery whose public keys and certificates are the issued pair's.
func FuzzUpstreamDelivery(f *testing.F) {
	root, _, err := pki.NewRootCA(pki.IssueOptions{CommonName: "CA"})
	if err != nil {
		f.Fatal(err)
	}
	term, encKey := newKey(f), newKey(f)
	sign, _ := root.IssueFor(&term.PublicKey, pki.RoleSign, pki.IssueOptions{CommonName: "T1"})
	enc, _ := root.IssueFor(&encKey.PublicKey, pki.RoleEnc, pki.IssueOptions{CommonName: "T1"})
	d, err := envelopeTo(&term.PublicKey, encKey, sign, enc)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(d.EnvelopedKey, d.CSRResponse)
	f.Add([]byte{0x30, 0x00}, []byte{0x30, 0x03, 0x31, 0x01, 0x00})
	f.Add(d.EnvelopedKey[:len(d.EnvelopedKey)/2], d.CSRResponse[:len(d.CSRResponse)-1])
	bad := func(format string, args ...any) error { return errors.New(format) }
	f.Fuzz(func(t *testing.T, env, cr []byte) {
		err := checkDelivery(&Pair{Sign: sign, Enc: enc, Delivery: &Delivery{EnvelopedKey: env, CSRResponse: cr}}, false, bad)
		if err != nil {
			return
		}
		pub, perr := envelopedPublicKey(env)
		if perr != nil || !pub.Equal(enc.PublicKey) {
			t.Fatal("accepted an enveloped key that is not the encryption certificate's")
		}
	})
}
