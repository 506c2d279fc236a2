package caddymodule

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/enroll"
	"github.com/gmgate/gmgate/pki"
)

// EnrollUpstream makes gm_enroll a registration authority (RA) in front of an upstream CA: the
// terminals' requests are checked here (token or renewal right, proof of possession, profile)
// and forwarded to the CA, which generates, escrows and envelopes the encryption key (the RA
// never sees it); revocations are forwarded and the CA's CRL re-published (enroll.UpstreamIssuer,
// docs/enrolment.md "Upstream CAs"). The upstream is another gmgate's gm_enroll listing this RA
// in its ra_certs.
type EnrollUpstream struct {
	// URL is the base of the upstream gm_enroll (raenroll, rarevoke and crl are appended), e.g.
	// https://ca.example/.well-known/est. Required.
	URL string `json:"url"`
	// RAKey names the vault SM2 key of the RA; its certificate (the vault key's `certificate`)
	// is the RA certificate the CA authorises (keyid "ra:<its common name>"). Required.
	RAKey string `json:"ra_key"`
	// CAChain are PEM files of the upstream CA's chain, issuing CA first, root last: what every
	// returned certificate must chain to and what the CA's CRL must verify against. Required.
	CAChain []string `json:"ca_chain"`
	// Timeout bounds one request to the CA. Default 30s.
	Timeout caddy.Duration `json:"timeout,omitempty"`
}

// upstreamIssuer builds the RA's issuer (no network, no vault login: the RA key is opened at its
// first use).
func (h *Enroll) upstreamIssuer(app *App) (*enroll.UpstreamIssuer, error) {
	u := h.Upstream
	signer, err := app.Signer(u.RAKey)
	if err != nil {
		return nil, fmt.Errorf("gm_enroll: upstream: ra_key %q: %w", u.RAKey, err)
	}
	certs, err := app.Certificates(u.RAKey)
	if err != nil || len(certs) == 0 {
		return nil, fmt.Errorf("gm_enroll: upstream: ra_key %q has no certificate", u.RAKey)
	}
	chain, err := pki.LoadCertificatesFiles(u.CAChain...)
	if err != nil {
		return nil, fmt.Errorf("gm_enroll: upstream: ca_chain: %w", err)
	}
	up, err := enroll.NewUpstreamIssuer(enroll.UpstreamConfig{URL: u.URL, Chain: chain, Key: signer, Cert: certs[0],
		Timeout: time.Duration(u.Timeout), CRLCheckInterval: time.Duration(h.CRLCheckInterval)})
	if err != nil {
		return nil, fmt.Errorf("gm_enroll: upstream: %w", err)
	}
	return up, nil
}

// validateUpstream checks the RA and CA-for-RAs options without side effects.
func (h *Enroll) validateUpstream() error {
	if len(h.RACerts) > 0 && len(h.RARoots) == 0 {
		return errors.New("gm_enroll: ra_roots required with ra_certs")
	}
	if len(h.RACRLs) > 0 && len(h.RACerts) == 0 {
		return errors.New("gm_enroll: ra_crls without ra_certs")
	}
	if len(h.RAScopes) > 0 && len(h.RACerts) == 0 {
		return errors.New("gm_enroll: ra_scope without ra_certs")
	}
	if _, err := h.raScopes(); err != nil {
		return err
	}
	u := h.Upstream
	if u == nil {
		return nil
	}
	switch {
	case h.CAKey != "" || len(h.CAChain) > 0:
		return errors.New("gm_enroll: upstream and ca_key/ca_chain exclude each other (the upstream CA issues)")
	case !strings.HasPrefix(u.URL, "https://") && !strings.HasPrefix(u.URL, "http://"):
		return fmt.Errorf("gm_enroll: upstream: URL %q is not http(s)", u.URL)
	case u.RAKey == "":
		return errors.New("gm_enroll: upstream: ra_key required")
	case len(u.CAChain) == 0:
		return errors.New("gm_enroll: upstream: ca_chain required (the upstream CA's certificates, issuing CA first)")
	case u.Timeout < 0:
		return errors.New("gm_enroll: upstream: negative timeout")
	case h.EscrowKey != "":
		return errors.New("gm_enroll: upstream: escrow_key is the CA's (it generates and escrows the encryption keys)")
	case len(h.CRLURLs) > 0:
		return errors.New("gm_enroll: upstream: crl_urls is the CA's (it writes them into the certificates)")
	}
	return nil
}

// certAuthorizer names principals (administrators, registration authorities) by their
// certificate's common name and checks each certificate (chain to roots, validity, signing
// usage, and revocation when crls are given) on every use. It returns the principals' names
// too.
func certAuthorizer(certFiles, rootFiles, crlSources []string) (enroll.AdminAuthorizer, []string, error) {
	if len(rootFiles) == 0 {
		return nil, nil, errors.New("roots required with the certificates")
	}
	certs, err := pki.LoadCertificatesFiles(certFiles...)
	if err != nil {
		return nil, nil, fmt.Errorf("certificates: %w", err)
	}
	roots, err := pki.LoadCertificatesFiles(rootFiles...)
	if err != nil {
		return nil, nil, fmt.Errorf("roots: %w", err)
	}
	opts := pki.VerifierOptions{Roots: roots}
	if len(crlSources) > 0 {
		if opts.CRLs, err = pki.NewCRLStore(crlSources, pki.CRLOptions{Issuers: roots}); err != nil {
			return nil, nil, fmt.Errorf("crls: %w", err)
		}
	}
	v, err := pki.NewVerifier(opts)
	if err != nil {
		return nil, nil, fmt.Errorf("roots: %w", err)
	}
	byName := map[string]*smx509.Certificate{}
	var names []string
	for _, c := range certs {
		// Without CRLs a certificate is checked at load too (with CRLs, a CRL URL may not be
		// fetched yet: the check on use fails closed until it is).
		if len(crlSources) == 0 {
			if _, err := v.Verify(c, nil, pki.RoleSign); err != nil {
				return nil, nil, fmt.Errorf("certificate %q: %w", c.Subject.CommonName, err)
			}
		}
		if _, dup := byName[c.Subject.CommonName]; dup || c.Subject.CommonName == "" {
			return nil, nil, fmt.Errorf("certificates need distinct, non-empty common names (%q)", c.Subject.CommonName)
		}
		byName[c.Subject.CommonName] = c
		names = append(names, c.Subject.CommonName)
	}
	var mu sync.Mutex
	return func(name string) (*smx509.Certificate, error) {
		mu.Lock()
		c, ok := byName[name]
		mu.Unlock()
		if !ok {
			return nil, errors.New("unknown name")
		}
		if _, err := v.Verify(c, nil, pki.RoleSign); err != nil {
			return nil, err
		}
		return c, nil
	}, names, nil
}

// checkRAScopeNames requires a scope for every RA certificate and a certificate for every
// scope: an RA without a scope would be refused everything at run time (fail closed), and a
// scope without a certificate is a typo. The error names the fix.
func checkRAScopeNames(names []string, scopes map[string]enroll.RAScope) error {
	have := make(map[string]bool, len(names))
	for _, n := range names {
		have[n] = true
		if _, ok := scopes[n]; !ok {
			return fmt.Errorf("gm_enroll: registration authority %q (ra_certs) has no scope: add `ra_scope %s { profiles <profile...>; common_name <regexp>; dns_names <name or *.suffix...> }` naming what it may enrol (docs/enrolment.md, Registration authority scope)", n, n)
		}
	}
	for n := range scopes {
		if !have[n] {
			return fmt.Errorf("gm_enroll: ra_scope %q names no certificate of ra_certs (the scope's name is the RA certificate's common name)", n)
		}
	}
	return nil
}
