package enroll

import (
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/pki"
)

// raScopeSetup is a CA with two profiles (p1, p2) and three registration authorities: ra-a
// (scoped to p1 and the names a-* / *.a.example), ra-b (p1 and p2, names b-* / *.b.example),
// ra-c (authenticated, no scope).
type raScopeSetup struct {
	ca   *fixture
	keys map[string]*sm2.PrivateKey
}

func newRAScopeSetup(t *testing.T) *raScopeSetup {
	t.Helper()
	raCA, _, err := pki.NewRootCA(pki.IssueOptions{CommonName: "RA operators CA"})
	if err != nil {
		t.Fatal(err)
	}
	s := &raScopeSetup{keys: map[string]*sm2.PrivateKey{}}
	certs := map[string]*smx509.Certificate{}
	for _, n := range []string{"ra-a", "ra-b", "ra-c"} {
		id, err := raCA.IssuePlatform(pki.IssueOptions{CommonName: n})
		if err != nil {
			t.Fatal(err)
		}
		s.keys[n], certs[n] = id.Key, id.Cert
	}
	s.ca = newFixture(t, func(c *Config) {
		// Both profiles allow both RAs' names: only the scopes keep the RAs apart.
		c.Profiles = []Profile{
			{Name: "p1", CommonName: `[ab]-[0-9a-z]+`, DNSNames: []string{"*.a.example", "*.b.example"}},
			{Name: "p2", DNSNames: []string{"*.a.example", "*.b.example"}},
		}
		c.RA = func(name string) (*smx509.Certificate, error) {
			if cert, ok := certs[name]; ok {
				return cert, nil
			}
			return nil, errors.New("unknown registration authority")
		}
		c.RAScopes = map[string]RAScope{
			"ra-a": {Profiles: []string{"p1"}, CommonName: `a-[0-9]+`, DNSNames: []string{"*.a.example"}},
			"ra-b": {Profiles: []string{"p1", "p2"}, CommonName: `b[-_][0-9]+`, DNSNames: []string{"*.b.example"}},
		}
	})
	return s
}

// raenroll sends a raenroll signed by ra for a fresh key; it returns the answer's code and,
// when accepted, the serial.
func (s *raScopeSetup) raenroll(t *testing.T, ra, profile, cn string, dns ...string) (Code, string) {
	t.Helper()
	csr := csrFor(t, newKey(t), &smx509.CertificateRequest{Subject: pkix.Name{CommonName: cn}, DNSNames: dns})
	body, _ := json.Marshal(RAEnrollRequest{CSR: csr, Profile: profile, CommonName: cn, DNSNames: dns})
	resp, b := s.ca.post(OpRAEnroll, s.ca.signedHeaders(OpRAEnroll, "application/json", body, s.keys[ra], "ra:"+ra, ""), body)
	if resp.StatusCode != http.StatusOK {
		return codeOf(b), ""
	}
	var r Response
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return "", r.Serial
}

func (s *raScopeSetup) rarevoke(t *testing.T, ra, serial string) Code {
	t.Helper()
	body := []byte(`{"serial":"` + serial + `"}`)
	resp, b := s.ca.post(OpRARevoke, s.ca.signedHeaders(OpRARevoke, "application/json", body, s.keys[ra], "ra:"+ra, ""), body)
	if resp.StatusCode != http.StatusOK {
		return codeOf(b)
	}
	return ""
}

// TestAttackRAOutOfScope: a registration authority (a compromised one, or one misconfigured)
// asks the CA for a name or a profile of another RA's scope, or revokes outside its scope: the
// CA refuses with enroll_ra_out_of_scope, audited with the RA's identity, and issues or revokes
// nothing. In-scope requests still work. Without the scope check every refused row issues.
func TestAttackRAOutOfScope(t *testing.T) {
	s := newRAScopeSetup(t)
	// In scope: works, for both RAs.
	if code, serial := s.raenroll(t, "ra-a", "p1", "a-1", "pos1.a.example"); code != "" || serial == "" {
		t.Fatalf("in-scope raenroll of ra-a refused: %s", code)
	}
	_, bSerial := s.raenroll(t, "ra-b", "p2", "b-1", "pos1.b.example")
	if bSerial == "" {
		t.Fatal("in-scope raenroll of ra-b refused")
	}
	before, _ := s.ca.store.Certs()

	for _, c := range []struct {
		name, ra, profile, cn string
		dns                   []string
		want                  Code
	}{
		{"common name of another RA's scope", "ra-a", "p1", "b-7", nil, CodeRAOutOfScope},
		{"DNS name of another RA's scope", "ra-a", "p1", "a-7", []string{"pos7.b.example"}, CodeRAOutOfScope},
		{"one DNS name in scope, one outside", "ra-a", "p1", "a-8", []string{"pos8.a.example", "pos8.b.example"}, CodeRAOutOfScope},
		{"profile outside the scope", "ra-a", "p2", "a-9", []string{"pos9.a.example"}, CodeRAOutOfScope},
		{"common name only prefixed like the scope", "ra-a", "p1", "a-1x", nil, CodeRAOutOfScope},
		{"RA without a scope", "ra-c", "p1", "a-10", nil, CodeRAOutOfScope},
		// in the RA's scope but not the profile's: the approved CN is checked like any other
		{"common name the profile does not allow", "ra-b", "p1", "b_1", nil, CodeNameForbidden},
	} {
		t.Run(c.name, func(t *testing.T) {
			if code, serial := s.raenroll(t, c.ra, c.profile, c.cn, c.dns...); code != c.want {
				t.Fatalf("got %q (serial %q), want %s", code, serial, c.want)
			}
			if a := s.ca.audit.last(); a.Scheme != "enroll/raenroll" || a.KeyID != "ra:"+c.ra || a.Verdict != "reject" || a.Reason != string(c.want) {
				t.Fatalf("audit: %+v", a)
			}
		})
	}
	if after, _ := s.ca.store.Certs(); len(after) != len(before) {
		t.Fatalf("refused requests issued pairs: %d records, want %d", len(after), len(before))
	}

	// Revocation: ra-a may not revoke ra-b's pair (not its own), nor its own pair once the
	// pair's names or profile left its scope (the operator moved them to another RA).
	_, moved := s.raenroll(t, "ra-a", "p1", "a-20", "pos20.a.example")
	_, kept := s.raenroll(t, "ra-a", "p1", "a-21", "pos21.a.example")
	if moved == "" || kept == "" {
		t.Fatal("in-scope raenroll refused")
	}
	narrowed, err := compileRAScopes(map[string]RAScope{
		"ra-a": {Profiles: []string{"p1"}, CommonName: `a-(1|21)`, DNSNames: []string{"*.a.example"}},
		"ra-b": {Profiles: []string{"p1", "p2"}, CommonName: `b[-_][0-9]+`, DNSNames: []string{"*.b.example"}},
	}, s.ca.srv.profiles)
	if err != nil {
		t.Fatal(err)
	}
	s.ca.srv.raScopes = narrowed
	for _, c := range []struct {
		name, serial string
		want         Code
	}{
		{"another RA's pair", bSerial, CodeAuthInvalid},
		{"own pair outside the scope", moved, CodeRAOutOfScope},
	} {
		t.Run("rarevoke "+c.name, func(t *testing.T) {
			if got := s.rarevoke(t, "ra-a", c.serial); got != c.want {
				t.Fatalf("got %q, want %s", got, c.want)
			}
			if a := s.ca.audit.last(); a.KeyID != "ra:ra-a" || a.Verdict != "reject" || a.Reason != string(c.want) {
				t.Fatalf("audit: %+v", a)
			}
			if rec, _ := s.ca.store.Cert(c.serial); rec.Revoked {
				t.Fatal("a refused rarevoke revoked the pair")
			}
		})
	}
	if got := s.rarevoke(t, "ra-a", kept); got != "" {
		t.Fatalf("in-scope rarevoke refused: %s", got)
	}
	if rec, _ := s.ca.store.Cert(kept); !rec.Revoked {
		t.Fatal("in-scope rarevoke did not revoke")
	}
}

// TestRAScopeConfig: NewServer refuses a scope that is incomplete or names an unknown profile.
func TestRAScopeConfig(t *testing.T) {
	prof := []Profile{{Name: "p1"}}
	for name, c := range map[string]struct {
		scope RAScope
		want  string
	}{
		"no profiles":           {RAScope{CommonName: ".*"}, "profiles"},
		"unknown profile":       {RAScope{Profiles: []string{"p9"}, CommonName: ".*"}, `unknown profile "p9"`},
		"no common name":        {RAScope{Profiles: []string{"p1"}}, "common_name"},
		"bad common name":       {RAScope{Profiles: []string{"p1"}, CommonName: "("}, "common_name"},
		"bad DNS name pattern":  {RAScope{Profiles: []string{"p1"}, CommonName: ".*", DNSNames: []string{"a.*.example"}}, "dns name pattern"},
		"empty DNS name":        {RAScope{Profiles: []string{"p1"}, CommonName: ".*", DNSNames: []string{""}}, "dns name pattern"},
		"wildcard without name": {RAScope{Profiles: []string{"p1"}, CommonName: ".*", DNSNames: []string{"*."}}, "dns name pattern"},
	} {
		t.Run(name, func(t *testing.T) {
			profiles := map[string]*Profile{}
			for i := range prof {
				p := prof[i]
				if err := p.compile(); err != nil {
					t.Fatal(err)
				}
				profiles[p.Name] = &p
			}
			_, err := compileRAScopes(map[string]RAScope{"ra-1": c.scope}, profiles)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "ra-1") {
				t.Fatalf("got %v, want an error naming ra-1 and %q", err, c.want)
			}
		})
	}
}
