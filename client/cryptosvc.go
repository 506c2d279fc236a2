package client

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/smx509"
	"github.com/gmgate/gmgate/refusal"
	"github.com/gmgate/gmgate/signing"
)

// CryptoService is a client of gmgate's crypto service (the gm_crypto handler,
// docs/crypto-service.md) for the platform's internal systems: sign and verify, encrypt and
// decrypt with versioned vault keys, CMS messages, envelopes, certificates. The caller is
// identified by the client certificate of its TLCP (Config.TLCP.Sign/Enc) or TLS
// (Config.TLS.Certificates) connection. It is safe for concurrent use.
type CryptoService struct {
	base string
	hc   *http.Client

	// Signed requests (Config.Scheme set): each request is signed with key.
	scheme signing.Scheme
	key    signing.Key
	now    func() time.Time
	nonce  func() (string, error)
}

// CryptoError is a refusal of the service: the HTTP status and the crypto_* code and message
// of its body (unauthenticated text: a hint for logs and decisions, never proof).
type CryptoError struct {
	Status  int
	Code    string
	Message string
}

func (e *CryptoError) Error() string {
	return fmt.Sprintf("gmgate crypto service: %d %s: %s", e.Status, e.Code, e.Message)
}

// maxCryptoReply bounds a reply body (a full batch of large items).
const maxCryptoReply = 64 << 20

// NewCryptoService returns a client of the service at baseURL (e.g.
// "https://gmgate.internal:8443"; operations are POSTed to <baseURL>/shf/v1/<Operation>).
// cfg supplies the connection: TLCP (with the caller's Sign and Enc certificates), TLS,
// DialTimeout, MaxIdleConnsPerHost, or Transport.
//
// A caller without a client certificate signs its requests instead: set cfg.Scheme
// ("http-sig-sm2" or "wechatpay-v3-sm2", the schemes whose signature covers the method, the
// path and the body), cfg.Key (Signer, and Cert or KeyID: the key ID is the certificate's
// upper-case hex serial by default; MerchantID for wechatpay-v3-sm2) and optionally
// cfg.SchemeOptions, cfg.Now and cfg.Nonce. Every request then carries a fresh signature
// (timestamp and nonce) that gm_crypto verifies against the caller's configured certificate.
// Replies are not signed (the service answers over the authenticated TLCP/TLS channel).
func NewCryptoService(baseURL string, cfg Config) (*CryptoService, error) {
	if !strings.HasPrefix(baseURL, "https://") && !strings.HasPrefix(baseURL, "http://") {
		return nil, errors.New("client: crypto service base URL must be http:// or https://")
	}
	c := &CryptoService{base: strings.TrimRight(baseURL, "/"), now: cfg.Now, nonce: cfg.Nonce}
	if cfg.Scheme != "" {
		if cfg.Scheme != signing.HTTPSigName && cfg.Scheme != signing.WechatPayName {
			return nil, fmt.Errorf("client: crypto service requests are signed with %s or %s, not %s", signing.HTTPSigName, signing.WechatPayName, cfg.Scheme)
		}
		sch, err := signing.New(cfg.Scheme, cfg.SchemeOptions...)
		if err != nil {
			return nil, fmt.Errorf("client: %w", err)
		}
		if cfg.Key.Signer == nil {
			return nil, errors.New("client: signed crypto service requests need Config.Key.Signer")
		}
		c.scheme, c.key = sch, cfg.Key
		if c.key.KeyID == "" && c.key.Cert != nil {
			c.key.KeyID = signing.SerialHex(c.key.Cert.SerialNumber)
		}
		if c.key.KeyID == "" {
			return nil, errors.New("client: signed crypto service requests need Config.Key.KeyID or Config.Key.Cert")
		}
		if c.now == nil {
			c.now = time.Now
		}
		if c.nonce == nil {
			c.nonce = signing.NewNonce
		}
	}
	rt := cfg.Transport
	if rt == nil {
		tr, err := newHTTPTransport(cfg)
		if err != nil {
			return nil, err
		}
		rt = tr
	}
	c.hc = &http.Client{Transport: rt}
	return c, nil
}

// sign adds the request signature to hr (whose body is body).
func (c *CryptoService) sign(hr *http.Request, body []byte) error {
	nonce, err := c.nonce()
	if err != nil {
		return fmt.Errorf("%w: nonce: %v", ErrRequestSigning, err)
	}
	authority := hr.Host
	if authority == "" {
		authority = hr.URL.Host
	}
	m := &signing.Message{Kind: signing.Request, Method: hr.Method, Target: hr.URL.RequestURI(),
		Authority: authority, Scheme: hr.URL.Scheme, Header: hr.Header, Body: body}
	if err := c.scheme.Sign(m, c.key, c.now(), nonce); err != nil {
		return fmt.Errorf("%w: %v", ErrRequestSigning, err)
	}
	if !bytes.Equal(m.Body, body) {
		return fmt.Errorf("%w: the scheme rewrote the body", ErrRequestSigning)
	}
	return nil
}

// Call POSTs req (marshalled to JSON) to /shf/v1/<operation> and decodes the reply into resp.
// A refusal is a *CryptoError.
func (c *CryptoService) Call(ctx context.Context, operation string, req, resp any) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/shf/v1/"+operation, bytes.NewReader(body))
	if err != nil {
		return err
	}
	hr.Header.Set("Content-Type", "application/json")
	if c.scheme != nil {
		if err := c.sign(hr, body); err != nil {
			return err
		}
	}
	r, err := c.hc.Do(hr)
	if err != nil {
		return err
	}
	defer r.Body.Close()
	out, err := readAllBounded(r.Body, maxCryptoReply)
	if err != nil {
		return err
	}
	if r.StatusCode != http.StatusOK {
		code, msg, _ := refusal.ParseBody(out)
		return &CryptoError{Status: r.StatusCode, Code: code, Message: msg}
	}
	if resp == nil {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	if err := dec.Decode(resp); err != nil {
		return fmt.Errorf("client: crypto service reply: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("client: crypto service reply: trailing data")
	}
	return nil
}

// CryptoItem is one input of an operation (only the fields the operation takes may be set).
type CryptoItem struct {
	Data        []byte   `json:"data,omitempty"`
	Digest      []byte   `json:"digest,omitempty"`
	UserID      *string  `json:"user_id,omitempty"`
	Signature   []byte   `json:"signature,omitempty"`
	KeyVersion  int      `json:"key_version,omitempty"`
	Plaintext   []byte   `json:"plaintext,omitempty"`
	Ciphertext  string   `json:"ciphertext,omitempty"`
	Context     []byte   `json:"context,omitempty"`
	HMAC        string   `json:"hmac,omitempty"`
	Bytes       int      `json:"bytes,omitempty"`
	WrappedOnly bool     `json:"wrapped_only,omitempty"`
	Certificate string   `json:"certificate,omitempty"`
	Chain       []string `json:"chain,omitempty"`
	CMS         []byte   `json:"cms,omitempty"`
	Detached    bool     `json:"detached,omitempty"`
	Envelope    []byte   `json:"envelope,omitempty"`
	GMOIDs      bool     `json:"gm_oids,omitempty"`
	GCM         bool     `json:"gcm,omitempty"`
}

// CryptoCert is the parsed identity of a certificate in a result.
type CryptoCert struct {
	Subject string `json:"subject"`
	Issuer  string `json:"issuer"`
	Serial  string `json:"serial"`
	SM3     string `json:"fingerprint_sm3"`
	Role    string `json:"role"`
}

// CryptoResult is the outcome of one item. In a batch, a failed item has Code and Message.
type CryptoResult struct {
	Signature     []byte      `json:"signature"`
	Valid         bool        `json:"valid"`
	Ciphertext    string      `json:"ciphertext"`
	Plaintext     []byte      `json:"plaintext"`
	HMAC          string      `json:"hmac"`
	Random        []byte      `json:"random"`
	KeyVersion    int         `json:"key_version"`
	Versions      []int       `json:"versions"`
	LatestVersion int         `json:"latest_version"`
	Signer        *CryptoCert `json:"signer"`
	Certificate   *CryptoCert `json:"certificate"`
	CMS           []byte      `json:"cms"`
	Content       []byte      `json:"content"`
	Envelope      []byte      `json:"envelope"`
	Certificates  []string    `json:"certificates"`
	PublicKey     string      `json:"public_key"`
	UserID        string      `json:"user_id"`
	VerifyLevel   *int        `json:"verify_level"`
	Code          string      `json:"code"`
	Message       string      `json:"message"`
}

// Err returns the item's refusal as a *CryptoError (nil for a successful item).
func (r *CryptoResult) Err() error {
	if r.Code == "" {
		return nil
	}
	return &CryptoError{Status: refusal.Code(r.Code).Status(), Code: r.Code, Message: r.Message}
}

// One runs operation on key ("" for keyless operations) with one item.
func (c *CryptoService) One(ctx context.Context, operation, key string, it CryptoItem) (*CryptoResult, error) {
	req := struct {
		Key string `json:"key,omitempty"`
		CryptoItem
	}{key, it}
	var res CryptoResult
	if err := c.Call(ctx, operation, req, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

// Batch runs operation on key with many items in one round trip; each result carries its own
// outcome (check CryptoResult.Err).
func (c *CryptoService) Batch(ctx context.Context, operation, key string, items []CryptoItem) ([]CryptoResult, error) {
	req := struct {
		Key   string       `json:"key,omitempty"`
		Batch []CryptoItem `json:"batch_input"`
	}{key, items}
	var res struct {
		Results []CryptoResult `json:"batch_results"`
	}
	if err := c.Call(ctx, operation, req, &res); err != nil {
		return nil, err
	}
	if len(res.Results) != len(items) {
		return nil, fmt.Errorf("client: crypto service answered %d results for %d items", len(res.Results), len(items))
	}
	return res.Results, nil
}

// Sign signs data with the vault key (SM2, the key's user ID when userID is "") and returns the
// DER signature and the key version.
func (c *CryptoService) Sign(ctx context.Context, key string, data []byte, userID string) ([]byte, int, error) {
	it := CryptoItem{Data: data}
	if userID != "" {
		it.UserID = &userID
	}
	r, err := c.One(ctx, "Sign", key, it)
	if err != nil {
		return nil, 0, err
	}
	return r.Signature, r.KeyVersion, nil
}

// Verify checks an SM2 signature of data with the vault key (version 0: the one in use). A
// signature that does not verify is a *CryptoError with code crypto_bad_signature.
func (c *CryptoService) Verify(ctx context.Context, key string, data, sig []byte, userID string, version int) error {
	it := CryptoItem{Data: data, Signature: sig, KeyVersion: version}
	if userID != "" {
		it.UserID = &userID
	}
	r, err := c.One(ctx, "Verify", key, it)
	if err == nil && !r.Valid {
		err = errors.New("client: crypto service answered without valid")
	}
	return err
}

// Encrypt encrypts plaintext under the key's newest version, bound to context (may be nil),
// and returns the "gm:v<N>:…" ciphertext.
func (c *CryptoService) Encrypt(ctx context.Context, key string, plaintext, context []byte) (string, error) {
	if plaintext == nil {
		plaintext = []byte{}
	}
	r, err := c.One(ctx, "Encrypt", key, CryptoItem{Plaintext: plaintext, Context: context})
	if err != nil {
		return "", err
	}
	return r.Ciphertext, nil
}

// Decrypt decrypts a "gm:v<N>:…" ciphertext of key made with the same context.
func (c *CryptoService) Decrypt(ctx context.Context, key, ciphertext string, context []byte) ([]byte, error) {
	r, err := c.One(ctx, "Decrypt", key, CryptoItem{Ciphertext: ciphertext, Context: context})
	if err != nil {
		return nil, err
	}
	if r.Plaintext == nil {
		return []byte{}, nil
	}
	return r.Plaintext, nil
}

// Rewrap moves a ciphertext to the key's newest version without the plaintext leaving the
// service.
func (c *CryptoService) Rewrap(ctx context.Context, key, ciphertext string, context []byte) (string, error) {
	r, err := c.One(ctx, "Rewrap", key, CryptoItem{Ciphertext: ciphertext, Context: context})
	if err != nil {
		return "", err
	}
	return r.Ciphertext, nil
}

// Rotate adds a new version of an SM4 key in the vault (RotateKey, policy operation rotate) and
// returns its number: it encrypts from now on, older versions still decrypt.
func (c *CryptoService) Rotate(ctx context.Context, key string) (int, error) {
	r, err := c.One(ctx, "RotateKey", key, CryptoItem{})
	if err != nil {
		return 0, err
	}
	return r.KeyVersion, nil
}

// SignMessage makes a PKCS#7/CMS SignedData of data with the key's certificate.
func (c *CryptoService) SignMessage(ctx context.Context, key string, data []byte, detached bool) ([]byte, error) {
	r, err := c.One(ctx, "SignMessage", key, CryptoItem{Data: data, Detached: detached})
	if err != nil {
		return nil, err
	}
	return r.CMS, nil
}

// VerifyMessage verifies a SignedData (data for a detached one) and returns its signer and,
// when attached, its content.
func (c *CryptoService) VerifyMessage(ctx context.Context, cms, data []byte) (*CryptoCert, []byte, error) {
	r, err := c.One(ctx, "VerifyMessage", "", CryptoItem{CMS: cms, Data: data})
	if err != nil {
		return nil, nil, err
	}
	if !r.Valid || r.Signer == nil {
		return nil, nil, errors.New("client: crypto service answered without a signer")
	}
	return r.Signer, r.Content, nil
}

// HTTPClient returns the HTTP client the service client uses (for requests the typed methods
// do not cover).
func (c *CryptoService) HTTPClient() *http.Client { return c.hc }

// SignHasher is GM/T 0029's SignData Init/Update/Final as client-side hashing: the data is
// hashed here (Write, any size; nothing crosses the wire) into e = SM3(Z_A || M) with the key's
// public key and user ID, and Sign sends only e (Sign with digest: "data already hashed").
type SignHasher struct {
	svc *CryptoService
	key string
	pub *ecdsa.PublicKey
	h   hash.Hash
}

// NewSignHasher (Init) reads the key's public key and user ID (KeyInfo) and starts the hash;
// userID "" is the key's configured user ID (else the default 1234567812345678), as Sign.
func (c *CryptoService) NewSignHasher(ctx context.Context, key, userID string) (*SignHasher, error) {
	info, err := c.One(ctx, "KeyInfo", key, CryptoItem{})
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode([]byte(info.PublicKey))
	if blk == nil {
		return nil, errors.New("client: the key has no SM2 public key")
	}
	pk, err := smx509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("client: the key's public key: %w", err)
	}
	pub, ok := pk.(*ecdsa.PublicKey)
	if !ok {
		return nil, errors.New("client: the key is not an SM2 key")
	}
	if userID == "" {
		userID = info.UserID
	}
	h, err := zaHash(pub, userID)
	if err != nil {
		return nil, err
	}
	return &SignHasher{svc: c, key: key, pub: pub, h: h}, nil
}

// zaHash returns SM3 started with Z_A of pub and userID ("" = 1234567812345678).
func zaHash(pub *ecdsa.PublicKey, userID string) (hash.Hash, error) {
	var uid []byte
	if userID != "" {
		uid = []byte(userID)
	}
	za, err := sm2.CalculateZA(pub, uid)
	if err != nil {
		return nil, fmt.Errorf("client: Z_A: %w", err)
	}
	h := sm3.New()
	h.Write(za)
	return h, nil
}

// Write (Update) hashes more data.
func (h *SignHasher) Write(p []byte) (int, error) { return h.h.Write(p) }

// Sign (Final) asks the service to sign e and checks the signature with the public key read
// at Init (a key rotated meanwhile fails here rather than returning a signature of another key).
func (h *SignHasher) Sign(ctx context.Context) ([]byte, int, error) {
	e := h.h.Sum(nil)
	r, err := h.svc.One(ctx, "Sign", h.key, CryptoItem{Digest: e})
	if err != nil {
		return nil, 0, err
	}
	if !sm2.VerifyASN1(h.pub, e, r.Signature) {
		return nil, 0, errors.New("client: the service's signature does not verify with the key read at Init")
	}
	return r.Signature, r.KeyVersion, nil
}

// MessageHasher is GM/T 0029's SignMessage Init/Update/Final as client-side hashing: SM3(M) is
// computed here and SignMessage sends only the digest; the SignedData is detached (verify it
// with the content).
type MessageHasher struct {
	svc *CryptoService
	key string
	h   hash.Hash
}

// NewMessageHasher (Init) starts the content hash for a SignedData by key.
func (c *CryptoService) NewMessageHasher(key string) *MessageHasher {
	return &MessageHasher{svc: c, key: key, h: sm3.New()}
}

// Write (Update) hashes more content.
func (h *MessageHasher) Write(p []byte) (int, error) { return h.h.Write(p) }

// SignMessage (Final) returns the detached SignedData over the content written.
func (h *MessageHasher) SignMessage(ctx context.Context) ([]byte, error) {
	r, err := h.svc.One(ctx, "SignMessage", h.key, CryptoItem{Digest: h.h.Sum(nil)})
	if err != nil {
		return nil, err
	}
	return r.CMS, nil
}

// VerifyMessageHasher is GM/T 0029's VerifySignedMessage Init/Update/Final as client-side
// hashing: SM3(M) of the content of a detached SignedData is computed here and VerifyMessage
// sends only the SignedData and the digest (the content never crosses the wire). The
// SignedData must have signed attributes (the service compares their messageDigest with the
// digest); one without is refused crypto_content_required: verify it with VerifyMessage and
// the content.
type VerifyMessageHasher struct {
	svc *CryptoService
	cms []byte
	h   hash.Hash
}

// NewVerifyMessageHasher (Init) starts the content hash for the detached SignedData cms.
func (c *CryptoService) NewVerifyMessageHasher(cms []byte) *VerifyMessageHasher {
	return &VerifyMessageHasher{svc: c, cms: append([]byte(nil), cms...), h: sm3.New()}
}

// Write (Update) hashes more content.
func (h *VerifyMessageHasher) Write(p []byte) (int, error) { return h.h.Write(p) }

// Verify (Final) asks the service to verify the SignedData over the content written; the
// result names the signer, whose certificate the service checked through its PKI. A signature
// that does not verify (or content other than what was signed) is a *CryptoError
// crypto_bad_signature.
func (h *VerifyMessageHasher) Verify(ctx context.Context) (*CryptoCert, error) {
	r, err := h.svc.One(ctx, "VerifyMessage", "", CryptoItem{CMS: h.cms, Digest: h.h.Sum(nil)})
	if err != nil {
		return nil, err
	}
	if !r.Valid || r.Signer == nil {
		return nil, errors.New("client: crypto service answered without a signer")
	}
	return r.Signer, nil
}

// VerifyHasher is GM/T 0029's VerifySignedData Init/Update/Final by certificate as client-side
// hashing: e = SM3(Z_A || M) with the certificate's key, and VerifySignedData sends the digest
// with the certificate, which the service verifies through its PKI first.
type VerifyHasher struct {
	svc  *CryptoService
	cert *smx509.Certificate
	h    hash.Hash
}

// NewVerifyHasher (Init) starts the hash for a signature by cert's key with userID ("" =
// 1234567812345678).
func (c *CryptoService) NewVerifyHasher(cert *smx509.Certificate, userID string) (*VerifyHasher, error) {
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return nil, errors.New("client: not an SM2 certificate")
	}
	h, err := zaHash(pub, userID)
	if err != nil {
		return nil, err
	}
	return &VerifyHasher{svc: c, cert: cert, h: h}, nil
}

// Write (Update) hashes more data.
func (h *VerifyHasher) Write(p []byte) (int, error) { return h.h.Write(p) }

// Verify (Final) checks sig over the data written; the result names the signer. A signature
// that does not verify is a *CryptoError crypto_bad_signature.
func (h *VerifyHasher) Verify(ctx context.Context, sig []byte) (*CryptoCert, error) {
	pemCert := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: h.cert.Raw}))
	r, err := h.svc.One(ctx, "VerifySignedData", "", CryptoItem{Digest: h.h.Sum(nil), Signature: sig, Certificate: pemCert})
	if err != nil {
		return nil, err
	}
	if !r.Valid {
		return nil, errors.New("client: crypto service answered without valid")
	}
	return r.Signer, nil
}
