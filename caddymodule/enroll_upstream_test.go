package caddymodule

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
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
		`"ra_certs":["/etc/gmgate/ra-1.pem"]`, `"ra_roots":["/etc/gmgate/ra-ca.pem"]`, `"ra_crls":["/etc/gmgate/ra-ca.crl"]`} {
		if !strings.Contains(s, want) {
			t.Errorf("adapted config lacks %s:\n%s", want, s)
		}
	}
	bad := strings.Replace(src, "timeout 10s", "timeouts 10s", 1)
	if _, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(bad), nil); err == nil {
		t.Fatal("unknown upstream option accepted")
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
	} {
		if err := h.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
