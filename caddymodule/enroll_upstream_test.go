package caddymodule

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/gmgate/gmgate/enroll"
)

// TestEnrollUpstreamCaddyfile: the RA options (upstream block) and the CA's RA options reach
// their JSON fields; Validate refuses contradictory or incomplete RA configurations.
func TestEnrollUpstreamCaddyfile(t *testing.T) {
	src := `{
	gmgate
}
http://:1 {
	route /est/* {
		gm_enroll {
			upstream https://ca.example/.well-known/est {
				ra_key ra-sign
				ca_chain /etc/gmgate/terminal-ca.pem /etc/gmgate/root.pem
				timeout 10s
			}
			profile terminal
		}
	}
	route /ca/* {
		gm_enroll {
			ca_key terminal-ca
			ra_certs /etc/gmgate/ra-1.pem
			ra_roots /etc/gmgate/ra-ca.pem
			ra_crls /etc/gmgate/ra-ca.crl
			ra_scope ra-1 {
				profiles terminal
				common_name T[0-9]{4}
				dns_names *.shop-1.example pos.example
			}
			profile terminal
		}
	}
}
`
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(src), nil)
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	for _, want := range []string{`"upstream":{"ca_chain":["/etc/gmgate/terminal-ca.pem","/etc/gmgate/root.pem"],"ra_key":"ra-sign","timeout":10000000000,"url":"https://ca.example/.well-known/est"}`,
		`"ra_certs":["/etc/gmgate/ra-1.pem"]`, `"ra_roots":["/etc/gmgate/ra-ca.pem"]`, `"ra_crls":["/etc/gmgate/ra-ca.crl"]`,
		`"ra_scopes":[{"common_name":"T[0-9]{4}","dns_names":["*.shop-1.example","pos.example"],"name":"ra-1","profiles":["terminal"]}]`} {
		if !strings.Contains(s, want) {
			t.Errorf("adapted config lacks %s:\n%s", want, s)
		}
	}
	for old, new := range map[string]string{
		"timeout 10s":           "timeouts 10s",            // unknown upstream option
		"profiles terminal":     "profile terminal",        // unknown ra_scope option
		"ra_scope ra-1 {":       "ra_scope {",              // no RA name
		"common_name T[0-9]{4}": "common_name T[0-9]{4} U", // one pattern
	} {
		bad := strings.Replace(src, old, new, 1)
		if _, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(bad), nil); err == nil {
			t.Errorf("%q accepted", new)
		}
	}

	up := func() *EnrollUpstream {
		return &EnrollUpstream{URL: "https://ca.example/est", RAKey: "ra", CAChain: []string{"ca.pem"}}
	}
	prof := []EnrollProfile{{Name: "terminal"}}
	if err := (&Enroll{Profiles: prof, Upstream: up()}).Validate(); err != nil {
		t.Fatalf("valid RA refused: %v", err)
	}
	for name, h := range map[string]*Enroll{
		"upstream with ca_key":      {Profiles: prof, Upstream: up(), CAKey: "ca"},
		"upstream with escrow_key":  {Profiles: prof, Upstream: up(), EscrowKey: "escrow"},
		"upstream with crl_urls":    {Profiles: prof, Upstream: up(), CRLURLs: []string{"https://ra.example/crl"}},
		"upstream without ra_key":   {Profiles: prof, Upstream: &EnrollUpstream{URL: "https://ca.example", CAChain: []string{"a"}}},
		"upstream without ca_chain": {Profiles: prof, Upstream: &EnrollUpstream{URL: "https://ca.example", RAKey: "ra"}},
		"upstream not http":         {Profiles: prof, Upstream: &EnrollUpstream{URL: "ftp://ca.example", RAKey: "ra", CAChain: []string{"a"}}},
		"ra_certs without ra_roots": {Profiles: prof, RACerts: []string{"ra.pem"}},
		"ra_crls without ra_certs":  {Profiles: prof, RACRLs: []string{"ra.crl"}},
		"ra_scope without ra_certs": {Profiles: prof, RAScopes: []EnrollRAScope{{Name: "ra-1", Profiles: []string{"terminal"}, CommonName: ".*"}}},
		"ra_scope twice": {Profiles: prof, RACerts: []string{"ra.pem"}, RARoots: []string{"ca.pem"},
			RAScopes: []EnrollRAScope{{Name: "ra-1", Profiles: []string{"terminal"}, CommonName: ".*"}, {Name: "ra-1", Profiles: []string{"terminal"}, CommonName: ".*"}}},
	} {
		if err := h.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestRAScopeRequired: every RA of ra_certs needs an ra_scope, and the provisioning error names
// the fix; a scope naming no RA certificate is refused too (a typo would leave the RA
// unscoped, so refused everything).
func TestRAScopeRequired(t *testing.T) {
	scope := enroll.RAScope{Profiles: []string{"terminal"}, CommonName: ".*"}
	if err := checkRAScopeNames([]string{"ra-1"}, map[string]enroll.RAScope{"ra-1": scope}); err != nil {
		t.Fatalf("scoped RA refused: %v", err)
	}
	err := checkRAScopeNames([]string{"ra-1", "ra-2"}, map[string]enroll.RAScope{"ra-1": scope})
	if err == nil || !strings.Contains(err.Error(), `"ra-2"`) || !strings.Contains(err.Error(), "ra_scope ra-2 {") || !strings.Contains(err.Error(), "docs/enrolment.md") {
		t.Fatalf("RA without a scope: %v", err)
	}
	err = checkRAScopeNames([]string{"ra-1"}, map[string]enroll.RAScope{"ra-1": scope, "ra-l": scope})
	if err == nil || !strings.Contains(err.Error(), `"ra-l"`) {
		t.Fatalf("scope without an RA certificate: %v", err)
	}
	// The scope's own rules are the core's (enroll.TestRAScopeConfig): checked at provision.
	if err := enroll.CheckRAScopes(map[string]enroll.RAScope{"ra-1": {Profiles: []string{"vip"}, CommonName: ".*"}}, []enroll.Profile{{Name: "terminal"}}); err == nil {
		t.Fatal("scope with an unknown profile accepted")
	}
}
