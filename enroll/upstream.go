package enroll

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/refusal"
	"github.com/gmgate/gmgate/signing"
)

// UpstreamConfig configures an UpstreamIssuer.
type UpstreamConfig struct {
	// URL is the base of the upstream CA's gm_enroll, e.g. https://ca.example/.well-known/est
	// (raenroll, rarevoke and crl are appended). Required; http or https.
	URL string
	// Chain is the upstream CA's chain, issuing CA first, root last: every certificate it
	// returns must be issued by Chain[0] and chain to the root, and its CRL must verify against
	// Chain[0]. Configured, never learnt from the upstream (cacerts is not trusted). Required.
	Chain []*smx509.Certificate
	// Key is the RA's signing key (a vault key); Cert its certificate, which the CA lists in
	// its ra_certs. Requests are signed with keyid "ra:<Name>". Required.
	Key  crypto.Signer
	Cert *smx509.Certificate
	// Name is the RA's name at the CA. Default: Cert's subject common name.
	Name string
	// HTTP sends the requests. Default: a client with Timeout.
	HTTP *http.Client
	// Timeout bounds one request to the CA. Default 30s.
	Timeout time.Duration
	// CRLCheckInterval is the least time between two fetches of the CA's CRL for revocation
	// checks (the RA's CRL loop fetches at its own interval). Default 10s.
	CRLCheckInterval time.Duration
	// Now returns the current time. Default time.Now.
	Now func() time.Time
}

// UpstreamIssuer is a registration authority's Issuer: it forwards the terminal's request
// (already checked by the Server: proof of possession, token or renewal right, profile) to
// another gmgate's gm_enroll acting as the CA (raenroll, a request signed with the RA key), and
// returns the CA's pair with the CA's key delivery: the encryption key pair is generated and
// escrowed at the CA (its key management role) and enveloped there to the terminal's signing
// key, so the RA never sees the encryption private key. Revocations are forwarded (rarevoke);
// the CA's CRL is fetched through pki.CRLStore (signature against Chain[0], no rollback) and
// re-published by the Server (CRLSource).
type UpstreamIssuer struct {
	cfg    UpstreamConfig
	base   *url.URL
	scheme signing.Scheme

	crlOnce sync.Mutex
	crls    *pki.CRLStore
}

// maxUpstreamResponse bounds an answer of the CA.
const maxUpstreamResponse = 1 << 20

// NewUpstreamIssuer checks cfg. It does not contact the CA.
func NewUpstreamIssuer(cfg UpstreamConfig) (*UpstreamIssuer, error) {
	u, err := url.Parse(strings.TrimRight(cfg.URL, "/"))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("enroll: upstream URL %q is not an http(s) URL", cfg.URL)
	}
	if len(cfg.Chain) == 0 {
		return nil, errors.New("enroll: upstream CA chain required")
	}
	for _, c := range cfg.Chain {
		if err := pki.CheckUsage(c, pki.RoleCA); err != nil {
			return nil, fmt.Errorf("enroll: upstream CA chain: %w", err)
		}
	}
	if cfg.Key == nil || cfg.Cert == nil {
		return nil, errors.New("enroll: RA key and certificate required")
	}
	if pub, ok := cfg.Key.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(cfg.Cert.PublicKey) {
		return nil, errors.New("enroll: the RA key is not the RA certificate's key")
	}
	if cfg.Name == "" {
		cfg.Name = cfg.Cert.Subject.CommonName
	}
	if cfg.Name == "" || strings.ContainsAny(cfg.Name, " \t\r\n\",") {
		return nil, errors.New("enroll: RA name empty or with spaces, quotes or commas")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.HTTP == nil {
		// No redirects: a signed RA request goes to the configured CA only.
		cfg.HTTP = &http.Client{Timeout: cfg.Timeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.CRLCheckInterval <= 0 {
		cfg.CRLCheckInterval = pki.DefaultCRLCheckInterval
	}
	cfg.Chain = append([]*smx509.Certificate(nil), cfg.Chain...)
	return &UpstreamIssuer{cfg: cfg, base: u, scheme: RequestScheme()}, nil
}

// Chain returns the configured upstream CA chain, issuing CA first.
func (u *UpstreamIssuer) Chain() []*smx509.Certificate {
	return append([]*smx509.Certificate(nil), u.cfg.Chain...)
}

// IssuePair forwards the request to the CA's raenroll and returns its pair and key delivery
// (checked by the Server before anything is stored or delivered).
func (u *UpstreamIssuer) IssuePair(ctx context.Context, req *PairRequest) (*Pair, error) {
	if req == nil || req.Profile == nil || len(req.CSR) == 0 {
		return nil, errors.New("enroll: IssuePair: incomplete request")
	}
	body, err := json.Marshal(RAEnrollRequest{CSR: req.CSR, Profile: req.Profile.Name, CommonName: req.CommonName, DNSNames: req.DNSNames})
	if err != nil {
		return nil, err
	}
	out, err := u.call(ctx, OpRAEnroll, body)
	if err != nil {
		return nil, err
	}
	var r Response
	if err := json.Unmarshal(out, &r); err != nil {
		return nil, fmt.Errorf("%w: answer: %v", errUpstreamAnswer, err)
	}
	sign, err := smx509.ParseCertificate(r.SignCert)
	if err != nil {
		return nil, fmt.Errorf("%w: signing certificate: %v", errUpstreamAnswer, err)
	}
	enc, err := smx509.ParseCertificate(r.EncCert)
	if err != nil {
		return nil, fmt.Errorf("%w: encryption certificate: %v", errUpstreamAnswer, err)
	}
	d := r.Delivery
	return &Pair{Sign: sign, Enc: enc, Delivery: &d}, nil
}

// errUpstreamAnswer is an answer of the CA that does not parse: the pair check refuses it too,
// but it never reaches it. The Server answers enroll_upstream_invalid.
var errUpstreamAnswer = errors.New("enroll: the upstream CA's answer does not parse")

// RevokePair forwards a revocation to the CA's rarevoke, then fetches the CA's CRL at once so
// that the Server re-publishes it.
func (u *UpstreamIssuer) RevokePair(ctx context.Context, rec CertRecord, _ string) error {
	body, err := json.Marshal(RevokeRequest{Serial: rec.Serial})
	if err != nil {
		return err
	}
	if _, err := u.call(ctx, OpRARevoke, body); err != nil {
		return err
	}
	if st, err := u.crlStore(); err == nil {
		_ = st.Reload() // failures are LastError; the Server's refresh reports them
	}
	return nil
}

// UpstreamCRL fetches the CA's CRL now (If-None-Match: cheap when unchanged) and returns the
// newest one held, verified against the issuing CA; a CRL older than the held one is refused
// (pki.ErrCRLRollback).
func (u *UpstreamIssuer) UpstreamCRL(context.Context) (*smx509.RevocationList, error) {
	st, err := u.crlStore()
	if err != nil {
		return nil, err
	}
	// A failed fetch (unreachable, a forged or rolled-back CRL) is reported: the store keeps the
	// CRL it held, and the Server keeps serving it until its nextUpdate.
	if err := st.Reload(); err != nil {
		return nil, err
	}
	return st.Latest(u.cfg.Chain[0])
}

// crlStore creates the CRL store on first use (no network at construction).
func (u *UpstreamIssuer) crlStore() (*pki.CRLStore, error) {
	u.crlOnce.Lock()
	defer u.crlOnce.Unlock()
	if u.crls != nil {
		return u.crls, nil
	}
	st, err := pki.NewCRLStore([]string{u.base.String() + "/" + OpCRL}, pki.CRLOptions{
		CheckInterval: u.cfg.CRLCheckInterval, Issuers: u.cfg.Chain[:1], Now: u.cfg.Now})
	if err != nil {
		return nil, err
	}
	u.crls = st
	return st, nil
}

// call sends a signed POST to op and returns the body of a 200 answer. A refusal by the CA is
// an error wrapping ErrUpstreamRefused with the CA's code (for the logs: unauthenticated).
func (u *UpstreamIssuer) call(ctx context.Context, op string, body []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, u.cfg.Timeout)
	defer cancel()
	target := u.base.String() + "/" + op
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	var nb [16]byte
	if _, err := rand.Read(nb[:]); err != nil {
		return nil, err
	}
	m := &signing.Message{Kind: signing.Request, Method: req.Method, Target: req.URL.RequestURI(), Authority: req.URL.Host,
		Scheme: req.URL.Scheme, Header: req.Header, Body: body}
	if err := u.scheme.Sign(m, signing.Key{Signer: u.cfg.Key, KeyID: "ra:" + u.cfg.Name}, u.cfg.Now(), hex.EncodeToString(nb[:])); err != nil {
		return nil, fmt.Errorf("enroll: signing the upstream request: %w", err)
	}
	resp, err := u.cfg.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("enroll: upstream %s: %w", op, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, maxUpstreamResponse+1))
	if err != nil {
		return nil, fmt.Errorf("enroll: upstream %s: %w", op, err)
	}
	if len(out) > maxUpstreamResponse {
		return nil, fmt.Errorf("%w: answer larger than %d bytes", errUpstreamAnswer, maxUpstreamResponse)
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		return out, nil
	case resp.StatusCode >= 500 && resp.StatusCode != http.StatusBadGateway:
		code, _, _ := refusal.ParseBody(out)
		return nil, fmt.Errorf("enroll: upstream %s: HTTP %d %s", op, resp.StatusCode, code)
	default:
		code, _, _ := refusal.ParseBody(out)
		return nil, fmt.Errorf("%w: %s: HTTP %d %s", ErrUpstreamRefused, op, resp.StatusCode, code)
	}
}
