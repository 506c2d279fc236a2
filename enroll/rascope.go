package enroll

import (
	"errors"
	"fmt"
	"regexp"
	"slices"

	"github.com/emmansun/gmsm/smx509"
)

// RAScope is what one registration authority may ask the CA for: the profiles it may request
// on raenroll and the names (subject common name, DNS names) it may enrol, in the name-rule
// syntax of a Profile (matched by the same code). Every pair is checked against its profile
// too; the scope narrows what the RA may ask for, and so what a compromised RA can enrol.
// rarevoke is held to the scope as well: an RA revokes only pairs it enrolled whose profile
// and names are still in its scope.
type RAScope struct {
	// Profiles are the names of the profiles the RA may request. At least one.
	Profiles []string
	// CommonName is a regular expression (anchored at both ends) every subject common name
	// the RA asks for must match. Required: there is no default, so that two RAs cannot share
	// names by omission (".*" states that one may enrol any common name its profiles allow).
	CommonName string
	// DNSNames are the DNS names the RA may ask for, as Profile.DNSNames (exact names or
	// "*.suffix"). Empty: a request with a DNS name is refused.
	DNSNames []string

	cn *regexp.Regexp
}

// maxRAScopes bounds Config.RAScopes (and the profiles of one scope).
const maxRAScopes = 1024

// compileRAScopes checks the scopes against the profiles and compiles their name rules.
func compileRAScopes(scopes map[string]RAScope, profiles map[string]*Profile) (map[string]*RAScope, error) {
	if len(scopes) > maxRAScopes {
		return nil, fmt.Errorf("enroll: more than %d registration authority scopes", maxRAScopes)
	}
	out := make(map[string]*RAScope, len(scopes))
	for name, sc := range scopes {
		if name == "" || len(name) > maxCNLen {
			return nil, fmt.Errorf("enroll: registration authority scope %q: name of 1-%d characters", name, maxCNLen)
		}
		if len(sc.Profiles) == 0 || len(sc.Profiles) > maxRAScopes {
			return nil, fmt.Errorf("enroll: registration authority %s: scope needs 1-%d profiles", name, maxRAScopes)
		}
		for _, p := range sc.Profiles {
			if _, ok := profiles[p]; !ok {
				return nil, fmt.Errorf("enroll: registration authority %s: scope names unknown profile %q", name, p)
			}
		}
		if sc.CommonName == "" {
			return nil, fmt.Errorf("enroll: registration authority %s: scope needs common_name (a regular expression; .* for any)", name)
		}
		re, err := compileNameRules(sc.CommonName, sc.DNSNames)
		if err != nil {
			return nil, fmt.Errorf("enroll: registration authority %s: scope: %w", name, err)
		}
		sc.Profiles, sc.DNSNames, sc.cn = slices.Clone(sc.Profiles), slices.Clone(sc.DNSNames), re
		out[name] = &sc
	}
	return out, nil
}

// CheckRAScopes checks scopes against profiles as NewServer does, for a configuration check
// that builds no server.
func CheckRAScopes(scopes map[string]RAScope, profiles []Profile) error {
	byName := make(map[string]*Profile, len(profiles))
	for i := range profiles {
		p := profiles[i]
		if err := p.compile(); err != nil {
			return err
		}
		byName[p.Name] = &p
	}
	_, err := compileRAScopes(scopes, byName)
	return err
}

// raScope returns the scope of registration authority ra; an RA without one may do nothing
// (fails closed: enroll_ra_out_of_scope).
func (s *Server) raScope(ra string) (*RAScope, error) {
	sc, ok := s.raScopes[ra]
	if !ok {
		return nil, failf(CodeRAOutOfScope, "no scope configured for this registration authority")
	}
	return sc, nil
}

// allowsProfile refuses a profile outside the scope.
func (sc *RAScope) allowsProfile(profile string) error {
	if !slices.Contains(sc.Profiles, profile) {
		return failf(CodeRAOutOfScope, "profile outside the registration authority's scope")
	}
	return nil
}

// allowsNames refuses a common name or DNS name outside the scope.
func (sc *RAScope) allowsNames(cn string, dns []string) error {
	if !sc.cn.MatchString(cn) {
		return failf(CodeRAOutOfScope, "common name outside the registration authority's scope")
	}
	for _, d := range dns {
		if !dnsMatch(sc.DNSNames, d) {
			return failf(CodeRAOutOfScope, "DNS name outside the registration authority's scope")
		}
	}
	return nil
}

// allowsRecord refuses an issued pair whose profile or names are outside the scope.
func (sc *RAScope) allowsRecord(rec CertRecord) error {
	if err := sc.allowsProfile(rec.Profile); err != nil {
		return err
	}
	cert, err := smx509.ParseCertificate(rec.SignCert)
	if err != nil {
		return fail(CodeInternal, errors.New("enroll: stored signing certificate does not parse"))
	}
	return sc.allowsNames(rec.CommonName, cert.DNSNames)
}
