// Package channel is gmgate's bank-channel side (渠道前置): it takes the plain requests of the
// legacy payment back end, encrypts their sensitive data with SM4 (or an SM2 digital envelope),
// signs them with the platform key under the bank's signature scheme, sends them to the bank
// (over TLCP with mutual authentication, see UseTLCP), and accepts only replies whose
// signature verifies with the bank's platform certificate, decrypting them only after that.
//
// A BankChannel is one bank's profile; a Transport is the http.RoundTripper that applies it
// around an inner transport. Every failure becomes a synthesized reply with a JSON
// {"code","message"} body (see Code), an audit entry and a metric; an unverified reply body is
// never forwarded. The wire formats are described in docs/channel.md.
package channel

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/signing"
)

// Config describes one bank channel.
type Config struct {
	// Name identifies the bank in metrics, audit entries and logs.
	Name string
	// Scheme is the signature scheme with its per-bank settings.
	Scheme signing.Settings

	// PlatformSigner is the platform signing key (vault- or HSM-backed crypto.Signer).
	PlatformSigner crypto.Signer
	// PlatformCert is the platform signing certificate; its public key must match the signer.
	PlatformCert *smx509.Certificate
	// PlatformKeyID overrides the key ID sent to the bank (default: the certificate serial,
	// decimal for unionpay-sm2 and form-sm2, upper-case hex for the others).
	PlatformKeyID string
	// MerchantID is the merchant or institution ID (mchid, merId, app_id) where the scheme
	// needs one.
	MerchantID string

	// BankCerts are the bank's platform signing certificates used to verify replies (several
	// during a rotation). Each is verified against BankRoots (with BankIntermediates) for the
	// sign role at load.
	BankCerts         []*smx509.Certificate
	BankRoots         []*smx509.Certificate
	BankIntermediates []*smx509.Certificate
	// Verifier, if set, replaces BankRoots/BankIntermediates (e.g. one with CRLs).
	Verifier *pki.Verifier

	// Encryption is the confidentiality rule (zero: none).
	Encryption Encryption

	// ReplyWindow is the largest accepted |now - signed time| of a reply whose scheme carries
	// its own signing time (wechatpay-v3-sm2, http-sig-sm2 created, a configured form-sm2 time
	// field; not unionpay-sm2, whose txnTime echoes the request and whose orderId echo binds the
	// reply instead). Zero: DefaultReplyWindow; negative: not checked.
	ReplyWindow time.Duration

	// Now is the clock; time.Now if nil.
	Now func() time.Time
}

// BankChannel is a loaded, checked bank profile. It is safe for concurrent use.
type BankChannel struct {
	name       string
	scheme     signing.Scheme
	schemeName string
	nonceField string // the body parameter carrying the request's nonce (body schemes)
	key        signing.Key
	certs      map[string]*smx509.Certificate
	enc        Encryption
	now        func() time.Time
	check      signing.ReplyCheck
	seen       *replySeen
	bankCheck  *certRecheck
}

// MaxBankCerts bounds the configured bank certificates.
const MaxBankCerts = 16

// DefaultReplyWindow is the default ReplyWindow: a signed reply older or newer than this is stale.
const DefaultReplyWindow = 5 * time.Minute

// New checks cfg and returns the bank channel: the scheme is built, the platform certificate must
// be a sign certificate matching the signer, every bank certificate must chain to the bank's
// roots as a sign certificate, the envelope certificate as an enc certificate.
func New(cfg Config) (*BankChannel, error) {
	if cfg.Name == "" || !isSafeText(cfg.Name) {
		return nil, errors.New("channel: bank name must be short printable ASCII")
	}
	sch, err := cfg.Scheme.Build()
	if err != nil {
		return nil, err
	}
	if cfg.PlatformSigner == nil || cfg.PlatformCert == nil {
		return nil, errors.New("channel: platform signer and certificate are required")
	}
	if err := pki.CheckUsage(cfg.PlatformCert, pki.RoleSign); err != nil {
		return nil, fmt.Errorf("channel: platform certificate: %w", err)
	}
	if !samePublicKey(cfg.PlatformSigner.Public(), cfg.PlatformCert.PublicKey) {
		return nil, errors.New("channel: platform signer does not match the platform certificate")
	}
	if len(cfg.BankCerts) == 0 || len(cfg.BankCerts) > MaxBankCerts {
		return nil, fmt.Errorf("channel: 1..%d bank certificates are required", MaxBankCerts)
	}
	v := cfg.Verifier
	if v == nil {
		if len(cfg.BankRoots) == 0 {
			return nil, errors.New("channel: the bank's root certificates (or a verifier) are required")
		}
		if v, err = pki.NewVerifier(pki.VerifierOptions{Roots: cfg.BankRoots, Intermediates: cfg.BankIntermediates, Now: cfg.Now}); err != nil {
			return nil, fmt.Errorf("channel: bank roots: %w", err)
		}
	}
	bc := &BankChannel{name: cfg.Name, scheme: sch, schemeName: cfg.Scheme.Name, nonceField: cfg.Scheme.NonceField,
		certs: map[string]*smx509.Certificate{}, enc: cfg.Encryption, now: cfg.Now}
	if bc.now == nil {
		bc.now = time.Now
	}
	if f, ok := signing.SchemeFacts(cfg.Scheme.Name); ok && bc.nonceField == "" {
		bc.nonceField = f.NonceField
	}
	window := cfg.ReplyWindow
	switch {
	case window == 0:
		window = DefaultReplyWindow
	case window < 0:
		window = 0
	}
	if signing.ReplyEchoesNonce(cfg.Scheme.Name) {
		// unionpay-sm2 replies echo the request's txnTime (a query carries the original order's
		// time): the echo of orderId binds them to the request instead of a window.
		window = 0
	}
	// A bank certificate is checked again (chain, validity of every CA, usage, the verifier's
	// CRLs) when a reply names it, at most once per certRecheckTTL: a bank key revoked after
	// the channel was loaded must not keep vouching for replies.
	bc.bankCheck = &certRecheck{v: v, now: bc.now, role: pki.RoleSign}
	bc.check = signing.ReplyCheck{Scheme: sch, Window: window, Now: bc.now,
		Lookup:    func(keyID string) *smx509.Certificate { return bc.certs[keyID] },
		CheckCert: bc.bankCheck.check}
	bc.seen = newReplySeen(window)
	for _, c := range cfg.BankCerts {
		if c == nil {
			return nil, errors.New("channel: nil bank certificate")
		}
		if _, err := v.Verify(c, nil, pki.RoleSign); err != nil {
			return nil, fmt.Errorf("channel: bank certificate: %w", err)
		}
		for _, id := range keyIDsOf(c) {
			bc.certs[id] = c
		}
	}
	if err := bc.enc.check(); err != nil {
		return nil, err
	}
	if bc.enc.enabled() && bc.enc.Cipher == CipherEnvelope {
		if _, err := v.Verify(bc.enc.BankEncCert, nil, pki.RoleEnc); err != nil {
			return nil, fmt.Errorf("channel: bank encryption certificate: %w", err)
		}
		if bc.enc.PlatformEncCert != nil {
			if err := pki.CheckUsage(bc.enc.PlatformEncCert, pki.RoleEnc); err != nil {
				return nil, fmt.Errorf("channel: platform encryption certificate: %w", err)
			}
			if !samePublicKey(bc.enc.PlatformDecrypter.Public(), bc.enc.PlatformEncCert.PublicKey) {
				return nil, errors.New("channel: platform decrypter does not match its certificate")
			}
		}
	}
	keyID := cfg.PlatformKeyID
	if keyID == "" {
		if !signing.SignsInHeader(cfg.Scheme.Name) {
			keyID = signing.SerialDecimal(cfg.PlatformCert.SerialNumber)
		} else {
			keyID = signing.SerialHex(cfg.PlatformCert.SerialNumber)
		}
	}
	bc.key = signing.Key{Signer: cfg.PlatformSigner, KeyID: keyID, Cert: cfg.PlatformCert, MerchantID: cfg.MerchantID}
	return bc, nil
}

// Name returns the bank's name.
func (b *BankChannel) Name() string { return b.name }

// SchemeName returns the signature scheme's name.
func (b *BankChannel) SchemeName() string { return b.schemeName }

// PlatformKeyID returns the key ID the platform signs with.
func (b *BankChannel) PlatformKeyID() string { return b.key.KeyID }

// keyIDsOf lists the names under which a bank certificate may be referred to: its serial in
// decimal, upper- and lower-case hex.
func keyIDsOf(c *smx509.Certificate) []string {
	h := signing.SerialHex(c.SerialNumber)
	return []string{signing.SerialDecimal(c.SerialNumber), h, strings.ToLower(h)}
}

type publicKeyEqualer interface{ Equal(crypto.PublicKey) bool }

func samePublicKey(a, b crypto.PublicKey) bool {
	e, ok := a.(publicKeyEqualer)
	return ok && e.Equal(b)
}

// SealRequest encrypts (per the channel's rule) and signs m in place: body, Content-Type and
// the scheme's headers or fields. m.Kind must be signing.Request.
func (b *BankChannel) SealRequest(m *signing.Message) error {
	if m == nil || m.Kind != signing.Request {
		return fail(CodeInternal, errors.New("not a request"))
	}
	if m.Header == nil {
		m.Header = map[string][]string{}
	}
	if b.enc.enabled() {
		body, ct, err := b.enc.encryptRequest(m.Body, m.Header.Get("Content-Type"))
		if err != nil {
			return fail(CodeRequestEncryptFailed, err)
		}
		m.Body = body
		if ct != "" {
			m.Header.Set("Content-Type", ct)
		}
	}
	if err := b.scheme.Sign(m, b.key, b.now(), ""); err != nil {
		return fail(CodeRequestSignFailed, err)
	}
	return nil
}

// Reply is a verified, decrypted bank reply.
type Reply struct {
	// Body is the plain body; ContentType its type.
	Body        []byte
	ContentType string
	// Signed is the verified signature (evidence: signed bytes and signature).
	Signed *signing.Signed
	// Cert is the bank certificate that verified it.
	Cert *smx509.Certificate
}

// RequestNonce returns the nonce of a signed request m when the scheme's replies echo it
// (signing.ReplyEchoesNonce) and it is the back end's own value (plain, the body the back end
// sent, carries it in the clear: a nonce generated for an enveloped body is not what the bank
// echoes), for OpenReply's binding check; "" otherwise.
func (b *BankChannel) RequestNonce(m *signing.Message, plain []byte) string {
	if !signing.ReplyEchoesNonce(b.schemeName) {
		return ""
	}
	// The back end's own nonce first: without one (the common case) the signed request need
	// not be parsed again.
	trimmed := bytes.TrimSpace(plain)
	params, err := signing.ParseParams(trimmed, len(trimmed) > 0 && trimmed[0] == '{')
	if err != nil || params[b.nonceField] == "" {
		return ""
	}
	s, err := b.scheme.Parse(&signing.Message{Kind: signing.Request, Method: m.Method, Target: m.Target,
		Authority: m.Authority, Scheme: m.Scheme, Header: m.Header, Body: m.Body})
	if err != nil || s.Nonce == "" || params[b.nonceField] != s.Nonce {
		return "" // the nonce was drawn for an enveloped body: the bank echoes the inner one
	}
	return s.Nonce
}

// OpenReply verifies m (a bank reply: Status, Header, Body) with the bank's certificate through
// the shared reply check (signing.ReplyCheck: key, validity, signature, time window, and for a
// scheme that echoes it the nonce of the request, requestNonce), refuses a reply already
// accepted once (a captured reply replayed within the window), and only then decrypts it. On
// failure it returns an *Error (see Code) and, when the signature could be parsed, the parsed
// Signed for the audit entry.
func (b *BankChannel) OpenReply(m *signing.Message, requestNonce string, maxLen int) (*Reply, *signing.Signed, error) {
	if m == nil {
		return nil, nil, fail(CodeInternal, errors.New("nil reply"))
	}
	s, cert, err := b.check.Verify(m, requestNonce)
	if err != nil {
		switch {
		case s == nil && errors.Is(err, signing.ErrMissingSignature):
			return nil, nil, fail(CodeBankSignatureMissing, err)
		case s == nil:
			return nil, nil, fail(CodeBankReplyMalformed, err)
		case errors.Is(err, signing.ErrReplyUnknownKey):
			return nil, s, failf(CodeBankCertificateUnknown, "key ID not configured for this bank")
		case errors.Is(err, signing.ErrReplyCertificate):
			return nil, s, fail(CodeBankCertificateInvalid, err)
		case errors.Is(err, signing.ErrReplyStale):
			return nil, s, fail(CodeBankReplyStale, err)
		case errors.Is(err, signing.ErrReplyUnbound):
			return nil, s, fail(CodeBankReplyUnbound, err)
		}
		return nil, s, fail(CodeBankSignatureInvalid, err)
	}
	if s.Nonce != "" && !signing.ReplyEchoesNonce(b.schemeName) {
		// A reply with its own signed nonce is accepted once: the same signed bytes again are a
		// captured reply put in front of another request.
		if err := b.seen.add(signing.SM3(s.SignedBytes), b.now()); err != nil {
			return nil, s, err
		}
	}
	r := &Reply{Body: m.Body, ContentType: m.Header.Get("Content-Type"), Signed: s, Cert: cert}
	if b.enc.enabled() {
		body, ct, err := b.enc.decryptReply(m.Body, r.ContentType, maxLen)
		if err != nil {
			if CodeOf(err) == CodeInternal {
				err = fail(CodeBankDecryptFailed, err)
			}
			return nil, s, err
		}
		r.Body, r.ContentType = body, ct
	}
	return r, s, nil
}

func ecdsaPublic(c *smx509.Certificate) (*ecdsa.PublicKey, error) {
	pub, ok := c.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return nil, errors.New("bank certificate key is not SM2")
	}
	return pub, nil
}
