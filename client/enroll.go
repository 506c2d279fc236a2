package client

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/enroll"
	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/refusal"
	"github.com/gmgate/gmgate/signing"
)

// Enroller obtains and renews a terminal's dual certificate from a gm_enroll endpoint
// (docs/enrolment.md). The signing key is generated here (Enroll) or is the terminal's own
// (EnrollKey: a collaborative CoSigner, a vault key) and never leaves the terminal; the
// encryption key arrives enveloped to it (GM/T 0092 CSRResponse with a GB/T 35276
// SM2EnvelopedKey), and a pair is accepted only when it chains to Roots, has the right key
// usages, and its encryption key matches its encryption certificate.
type Enroller struct {
	// BaseURL is the enrolment endpoint's base, e.g. https://pay.example/.well-known/est.
	BaseURL string
	// Roots are the CA certificates the issued pairs must chain to (the terminal's trust
	// anchor; cacerts is not trusted on first use). Required.
	Roots []*smx509.Certificate
	// HTTP sends the requests. Default: a client with a 30s timeout.
	HTTP *http.Client
	// Now returns the current time. Default time.Now.
	Now func() time.Time
	// TLCP, when set, is how ReenrollTLCP reaches BaseURL (an https URL of a site behind the
	// tlcp listener wrapper, client_auth verify_if_given or require_and_verify): RootCAs,
	// ServerName, CipherSuites; its Sign and Enc are not used (ReenrollTLCP presents the pair
	// being renewed) and neither is its SessionCache (a re-enrolment always makes a full
	// handshake, so the server checks the certificate as it is now). Default: none.
	TLCP *TLCPConfig
}

// EnrolledPair is a terminal's dual certificate with both private keys.
type EnrolledPair struct {
	Sign *Identity // signing certificate and key (*sm2.PrivateKey, or the key given to EnrollKey)
	Enc  *Identity // encryption certificate and key (*sm2.PrivateKey)
	// Serial is the signing certificate's serial (hex), the pair's name at the server.
	Serial string
}

// EnrolError is a refusal from the enrolment endpoint.
type EnrolError struct {
	Status int
	// Code is the server's refusal code (enroll_token_used, ...), unauthenticated: a hint.
	Code    string
	Message string
}

func (e *EnrolError) Error() string {
	return fmt.Sprintf("client: enrolment refused: HTTP %d %s: %s", e.Status, e.Code, e.Message)
}

// ErrEnrolResponse reports a pair that does not verify (chain, usage, key match).
var ErrEnrolResponse = errors.New("client: enrolment response does not verify")

// maxEnrolResponse bounds a response body.
const maxEnrolResponse = 1 << 20

// Enroll generates a software signing key (*sm2.PrivateKey), sends a request for commonName
// (and dnsNames) authorised by the one-time token, and returns the verified pair.
func (e *Enroller) Enroll(ctx context.Context, token, commonName string, dnsNames []string) (*EnrolledPair, error) {
	key, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return e.EnrollKey(ctx, token, commonName, dnsNames, key)
}

// EnrollKey is Enroll with the terminal's own signing key: a crypto.Signer with an SM2 public
// key that is also a crypto.Decrypter for it (a *sm2.PrivateKey, a *CoSigner, a vault key). The
// PKCS#10 request is signed through key (with a CoSigner: co-signed through gm_cosign, so the
// proof of possession needs both shares) and the encryption key delivered enveloped to key's
// public key is opened through it (with a CoSigner: collaborative decryption).
func (e *Enroller) EnrollKey(ctx context.Context, token, commonName string, dnsNames []string, key crypto.Signer) (*EnrolledPair, error) {
	csr, err := newCSR(key, commonName, dnsNames)
	if err != nil {
		return nil, err
	}
	req, err := e.request(ctx, enroll.OpSimpleEnroll, enroll.MediaPKCS10, encodeB64(csr))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	return e.pair(req, key)
}

// Reenroll renews cur, authorised by a request signed with cur's signing key. A software key
// (*sm2.PrivateKey) is replaced by a fresh one (re-key); any other key (a *CoSigner, a vault
// key) is renewed for the same public key, since the terminal cannot generate one alone: a
// collaborative key keeps its joint key, whose shares rotate instead (CoSigner.Rotate). Use
// ReenrollKey for a new collaborative key. cur stays usable: the caller switches to the
// returned pair once it works.
func (e *Enroller) Reenroll(ctx context.Context, cur *EnrolledPair) (*EnrolledPair, error) {
	return e.ReenrollKey(ctx, cur, nil)
}

// ReenrollKey renews cur for key (nil: Reenroll's choice), authorised by a request signed with
// cur's signing key; key must be able to enrol (EnrollKey).
func (e *Enroller) ReenrollKey(ctx context.Context, cur *EnrolledPair, key crypto.Signer) (*EnrolledPair, error) {
	if cur == nil || cur.Sign == nil || cur.Sign.Certificate == nil {
		return nil, ErrNoPair
	}
	key, csr, err := e.renewalRequest(cur, key)
	if err != nil {
		return nil, err
	}
	curKey := cur.Sign.Key.(crypto.Signer) // renewalRequest checked
	req, err := e.signed(ctx, enroll.OpSimpleReenroll, enroll.MediaPKCS10, encodeB64(csr), curKey, cur.Serial)
	if err != nil {
		return nil, err
	}
	return e.pair(req, key)
}

// ReenrollTLCP renews cur like ReenrollKey, authorised by TLCP client authentication instead
// of a signed request: the request goes over a new TLCP connection (Enroller.TLCP) presenting
// cur's signing and encryption certificates, and gm_enroll accepts it when that signing
// certificate is the one it issued under its serial, valid and unrevoked. For terminals whose
// signing key can take part in a TLCP handshake but should not sign arbitrary HTTP requests.
func (e *Enroller) ReenrollTLCP(ctx context.Context, cur *EnrolledPair, key crypto.Signer) (*EnrolledPair, error) {
	if e.TLCP == nil {
		return nil, errors.New("client: ReenrollTLCP needs Enroller.TLCP")
	}
	if cur == nil || cur.Sign == nil || cur.Sign.Certificate == nil || cur.Enc == nil || cur.Enc.Certificate == nil {
		return nil, ErrNoPair
	}
	key, csr, err := e.renewalRequest(cur, key)
	if err != nil {
		return nil, err
	}
	req, err := e.request(ctx, enroll.OpSimpleReenroll, enroll.MediaPKCS10, encodeB64(csr))
	if err != nil {
		return nil, err
	}
	if req.URL.Scheme != "https" {
		return nil, fmt.Errorf("client: ReenrollTLCP needs an https BaseURL, not %q", e.BaseURL)
	}
	nd := &net.Dialer{Timeout: DefaultDialTimeout}
	tc := *e.TLCP
	tc.SessionCache = nil
	d, err := tc.dialer(nd, DefaultDialTimeout, cur.Sign, cur.Enc)
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{Proxy: nil, DialTLSContext: d.DialContext, DisableKeepAlives: true, DisableCompression: true}
	defer tr.CloseIdleConnections()
	body, err := e.doWith(&http.Client{Timeout: 30 * time.Second, Transport: tr}, req)
	if err != nil {
		return nil, err
	}
	return e.openResponse(body, key)
}

// renewalRequest picks the renewed pair's signing key (key, or ReenrollKey's choice when nil)
// and makes its PKCS#10 request for cur's subject.
func (e *Enroller) renewalRequest(cur *EnrolledPair, key crypto.Signer) (crypto.Signer, []byte, error) {
	curKey, ok := cur.Sign.Key.(crypto.Signer)
	if !ok {
		return nil, nil, errors.New("client: the current pair's signing key is not a crypto.Signer")
	}
	if key == nil {
		key = curKey
		if _, software := curKey.(*sm2.PrivateKey); software {
			k, err := sm2.GenerateKey(rand.Reader)
			if err != nil {
				return nil, nil, err
			}
			key = k
		}
	}
	csr, err := newCSR(key, cur.Sign.Certificate.Subject.CommonName, cur.Sign.Certificate.DNSNames)
	if err != nil {
		return nil, nil, err
	}
	return key, csr, nil
}

// Download fetches the pair last issued for signKey (after a lost enrolment answer),
// authorised by a request signed with that key, and opens it with signKey (which must be a
// crypto.Decrypter too, as for EnrollKey).
func (e *Enroller) Download(ctx context.Context, signKey crypto.Signer) (*EnrolledPair, error) {
	if _, _, err := enrolKey(signKey); err != nil {
		return nil, err
	}
	spki, err := smx509.MarshalPKIXPublicKey(signKey.Public())
	if err != nil {
		return nil, err
	}
	ski := pkiSKI(spki)
	req, err := e.signed(ctx, enroll.OpDownload, "application/json", nil, signKey, "ski:"+ski)
	if err != nil {
		return nil, err
	}
	return e.pair(req, signKey)
}

// Revoke asks the server to revoke cur (e.g. the terminal is decommissioned).
func (e *Enroller) Revoke(ctx context.Context, cur *EnrolledPair) error {
	key, _ := cur.Sign.Key.(crypto.Signer)
	req, err := e.signed(ctx, enroll.OpRevoke, "application/json", []byte(`{}`), key, cur.Serial)
	if err != nil {
		return err
	}
	_, err = e.do(req)
	return err
}

func pkiSKI(spki []byte) string {
	sum := sm3Sum(spki)
	return hex.EncodeToString(sum[:20])
}

func encodeB64(der []byte) []byte { return []byte(base64.StdEncoding.EncodeToString(der)) }

// newCSR is the PKCS#10 request for key, signed through it (proof of possession).
func newCSR(key crypto.Signer, cn string, dns []string) ([]byte, error) {
	if _, _, err := enrolKey(key); err != nil {
		return nil, err
	}
	csr, err := smx509.CreateCertificateRequest(rand.Reader, &smx509.CertificateRequest{Subject: pkix.Name{CommonName: cn}, DNSNames: dns}, key)
	if err != nil {
		return nil, fmt.Errorf("client: certificate request: %w", err)
	}
	return csr, nil
}

func (e *Enroller) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

func (e *Enroller) request(ctx context.Context, op, ctype string, body []byte) (*http.Request, error) {
	u, err := url.Parse(strings.TrimRight(e.BaseURL, "/") + "/" + op)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("client: enrolment BaseURL %q is not an http(s) URL", e.BaseURL)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", ctype)
	return req, nil
}

// signed builds a request signed with http-sig-sm2 (enroll.RequestScheme) by key, keyid keyID.
func (e *Enroller) signed(ctx context.Context, op, ctype string, body []byte, key crypto.Signer, keyID string) (*http.Request, error) {
	if key == nil {
		return nil, errors.New("client: enrolment needs the signing key as a crypto.Signer")
	}
	req, err := e.request(ctx, op, ctype, body)
	if err != nil {
		return nil, err
	}
	var nb [16]byte
	if _, err := rand.Read(nb[:]); err != nil {
		return nil, err
	}
	m := &signing.Message{Kind: signing.Request, Method: req.Method, Target: req.URL.RequestURI(), Authority: req.URL.Host,
		Scheme: req.URL.Scheme, Header: req.Header, Body: body}
	if err := enroll.RequestScheme().Sign(m, signing.Key{Signer: key, KeyID: keyID}, e.now(), hex.EncodeToString(nb[:])); err != nil {
		return nil, fmt.Errorf("client: signing the enrolment request: %w", err)
	}
	return req, nil
}

func (e *Enroller) do(req *http.Request) ([]byte, error) {
	hc := e.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	return e.doWith(hc, req)
}

func (e *Enroller) doWith(hc *http.Client, req *http.Request) ([]byte, error) {
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxEnrolResponse+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxEnrolResponse {
		return nil, fmt.Errorf("%w: response too large", ErrEnrolResponse)
	}
	if resp.StatusCode != http.StatusOK {
		code, msg, _ := refusal.ParseBody(body)
		return nil, &EnrolError{Status: resp.StatusCode, Code: code, Message: msg}
	}
	return body, nil
}

// pair sends req and verifies the issued pair for signKey.
func (e *Enroller) pair(req *http.Request, signKey crypto.Signer) (*EnrolledPair, error) {
	body, err := e.do(req)
	if err != nil {
		return nil, err
	}
	return e.openResponse(body, signKey)
}

// openResponse parses an enrolment answer and verifies the issued pair for signKey.
func (e *Enroller) openResponse(body []byte, signKey crypto.Signer) (*EnrolledPair, error) {
	var r enroll.Response
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrEnrolResponse, err)
	}
	return e.openPair(&r, signKey)
}

// openPair checks the GM/T 0092 CSRResponse's pair (chain to Roots, usages, the signing
// certificate is signKey's) and only then opens the enveloped encryption key through signKey
// (for a CoSigner a co-decryption at gm_cosign: never spent on an unverified answer).
func (e *Enroller) openPair(r *enroll.Response, signKey crypto.Signer) (*EnrolledPair, error) {
	signPub, dec, err := enrolKey(signKey)
	if err != nil {
		return nil, err
	}
	if len(r.CSRResponse) == 0 {
		return nil, fmt.Errorf("%w: no CSRResponse", ErrEnrolResponse)
	}
	cr, err := parseCSRResponse(r.CSRResponse)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrEnrolResponse, err)
	}
	sign, enc := cr.sign, cr.enc
	if !signPub.Equal(sign.PublicKey) {
		return nil, fmt.Errorf("%w: the signing certificate is not for this terminal's key", ErrEnrolResponse)
	}
	if len(e.Roots) == 0 {
		return nil, fmt.Errorf("%w: Enroller.Roots is empty", ErrEnrolResponse)
	}
	v, err := pki.NewVerifier(pki.VerifierOptions{Roots: e.Roots, Now: e.Now})
	if err != nil {
		return nil, err
	}
	// r.Chain is the CA chain, issuing CA first: intermediates for path building only (the
	// trust comes from Roots).
	var inter []*smx509.Certificate
	for i, der := range r.Chain {
		if i >= pki.MaxPeerIntermediates {
			break
		}
		c, err := smx509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("%w: chain: %v", ErrEnrolResponse, err)
		}
		inter = append(inter, c)
	}
	if _, err := v.Verify(sign, inter, pki.RoleSign); err != nil {
		return nil, fmt.Errorf("%w: signing certificate: %v", ErrEnrolResponse, err)
	}
	if _, err := v.Verify(enc, inter, pki.RoleEnc); err != nil {
		return nil, fmt.Errorf("%w: encryption certificate: %v", ErrEnrolResponse, err)
	}
	if !bytes.Equal(sign.RawSubject, enc.RawSubject) {
		return nil, fmt.Errorf("%w: the two certificates name different subjects", ErrEnrolResponse)
	}
	encKey, err := openEnvelopedKey(dec, cr.envelope)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrEnrolResponse, err)
	}
	if !encKey.PublicKey.Equal(enc.PublicKey) {
		encKey.D.SetInt64(0)
		return nil, fmt.Errorf("%w: the encryption key does not match the encryption certificate", ErrEnrolResponse)
	}
	return &EnrolledPair{
		Sign:   &Identity{Certificate: sign, Chain: inter, Key: signKey},
		Enc:    &Identity{Certificate: enc, Chain: inter, Key: encKey},
		Serial: strings.ToLower(sign.SerialNumber.Text(16)),
	}, nil
}

func sm3Sum(b []byte) [32]byte { return sm3.Sum(b) }

// AdminRevoke revokes the pair whose signing certificate has serial (hex), as the administrator
// name (keyid "admin:<name>", the common name of its certificate in gm_enroll's admin_certs),
// signing with adminKey.
func (e *Enroller) AdminRevoke(ctx context.Context, name string, adminKey crypto.Signer, serial string) error {
	body, _ := json.Marshal(enroll.RevokeRequest{Serial: serial})
	req, err := e.signed(ctx, enroll.OpRevoke, "application/json", body, adminKey, "admin:"+name)
	if err != nil {
		return err
	}
	_, err = e.do(req)
	return err
}

// AdminRecover recovers the escrowed encryption key of the pair with serial (signing or
// encryption certificate, hex): the server envelopes it to adminKey's public key; it is opened
// here and checked against the encryption certificate. The recovery is an audit entry at the
// server. adminKey must be a crypto.Decrypter too (a *sm2.PrivateKey, a vault key).
func (e *Enroller) AdminRecover(ctx context.Context, name string, adminKey crypto.Signer, serial string) (*sm2.PrivateKey, *smx509.Certificate, error) {
	_, dec, err := enrolKey(adminKey)
	if err != nil {
		return nil, nil, err
	}
	body, _ := json.Marshal(enroll.RecoverRequest{Serial: serial})
	req, err := e.signed(ctx, enroll.OpRecover, "application/json", body, adminKey, "admin:"+name)
	if err != nil {
		return nil, nil, err
	}
	b, err := e.do(req)
	if err != nil {
		return nil, nil, err
	}
	var rk enroll.Recovered
	if err := json.Unmarshal(b, &rk); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrEnrolResponse, err)
	}
	enc, err := smx509.ParseCertificate(rk.EncCert)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrEnrolResponse, err)
	}
	key, err := openEnvelopedKey(dec, rk.EnvelopedKey)
	if err != nil || !key.PublicKey.Equal(enc.PublicKey) {
		return nil, nil, fmt.Errorf("%w: recovered key does not open or does not match", ErrEnrolResponse)
	}
	return key, enc, nil
}
