package client

import (
	"bytes"
	"context"
	"crypto"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/pbkdf2"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/sm4"

	"github.com/gmgate/gmgate/cosign"
	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/refusal"
)

// CoSignConfig says how a collaborative key reaches the platform's gm_cosign handler.
type CoSignConfig struct {
	// URL is gm_cosign's base URL (e.g. "https://pay.example.com/cosign"); the operations are
	// posted to URL+"/keygen", "/sign" and "/decrypt". Required.
	URL string
	// HTTPClient carries the calls: TLCP or TLS, with the terminal's client certificate when
	// gm_cosign authenticates by certificate. nil: an *http.Client with DefaultTimeout and Go's
	// default transport.
	HTTPClient *http.Client
	// Token returns a session token for op ("keygen", "sign", "decrypt" or "rotate"), sent as
	// "Authorization: Bearer"; nil sends none (certificate authentication).
	Token func(op string) (string, error)
	// SendInstruction sends the message being signed with each co-signature, for gm_cosign's
	// bind_instruction (the platform recomputes e from it). Only possible when Sign is given
	// the raw message (opts nil or a gmsm *sm2.SM2SignerOption with forceGMSign).
	SendInstruction bool
	// UserID is the SM2 user ID when Sign is called with nil opts (default 1234567812345678).
	UserID []byte
}

// CoSignError is a refusal by gm_cosign: its code (see docs/cosign.md) and message.
type CoSignError struct {
	Status  int
	Code    string
	Message string
}

func (e *CoSignError) Error() string {
	return fmt.Sprintf("client: gm_cosign refused (%d %s): %s", e.Status, e.Code, e.Message)
}

// ErrWrongPIN means a sealed collaborative key did not open: wrong PIN or altered file.
var ErrWrongPIN = errors.New("client: wrong PIN or altered key file")

// CoSigner is a terminal's half of a collaborative SM2 key (package cosign): a crypto.Signer and
// crypto.Decrypter whose public key is the joint key, so signing.Key, TLCP and envelope code use
// it unchanged. Each Sign and Decrypt is one round trip to gm_cosign; the signature is verified
// under the joint key before it is returned. Safe for concurrent use.
type CoSigner struct {
	cfg   CoSignConfig
	keyID string
	pub   *ecdsa.PublicKey
	mu    sync.RWMutex  // guards share (replaced by Rotate)
	share *cosign.Share // nil once destroyed
	rotMu sync.Mutex    // one Rotate at a time
}

// current returns the terminal's share (nil once destroyed).
func (c *CoSigner) current() *cosign.Share {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.share
}

var (
	_ crypto.Signer    = (*CoSigner)(nil)
	_ crypto.Decrypter = (*CoSigner)(nil)
)

// EnrollCoSigner creates a collaborative key named keyID: it draws the terminal's share d_1,
// asks gm_cosign for the platform's share (keygen), derives the joint key itself and checks it
// against the platform's. Store the result with Seal.
func EnrollCoSigner(cfg CoSignConfig, keyID string) (*CoSigner, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	d1, err := cosign.GenerateShare(rand.Reader)
	if err != nil {
		return nil, err
	}
	var resp struct {
		P2        []byte `json:"p2"`
		PublicKey []byte `json:"public_key"`
	}
	if err := cfg.call("keygen", map[string]any{"key_id": keyID, "p1": d1.PartialPublicKey()}, &resp); err != nil {
		d1.Destroy()
		return nil, err
	}
	pub, err := d1.JointPublicKey(resp.P2)
	if err != nil || !bytes.Equal(cosign.MarshalPublicKey(pub), resp.PublicKey) {
		d1.Destroy()
		return nil, errors.New("client: platform's partial key does not give the joint key it announced")
	}
	return &CoSigner{cfg: cfg, keyID: keyID, share: d1, pub: pub}, nil
}

func (cfg *CoSignConfig) check() error {
	if !strings.HasPrefix(cfg.URL, "https://") && !strings.HasPrefix(cfg.URL, "http://") {
		return errors.New("client: CoSignConfig.URL must be an http(s) URL")
	}
	return nil
}

// Public returns the joint public key (*ecdsa.PublicKey on the SM2 curve).
func (c *CoSigner) Public() crypto.PublicKey { return c.pub }

// KeyID is the key's name at gm_cosign.
func (c *CoSigner) KeyID() string { return c.keyID }

// Destroy wipes the terminal's share from memory.
func (c *CoSigner) Destroy() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.share != nil {
		c.share.Destroy()
		c.share = nil
	}
}

var errDestroyed = errors.New("client: key destroyed")

// Sign signs with gmsm semantics: opts nil (raw message, CoSignConfig.UserID), a gmsm
// *sm2.SM2SignerOption (raw message and its user ID when forceGMSign, else a 32-byte digest),
// or any other opts (msg is the 32-byte digest e = SM3(Z_A || M)). The result is a DER SM2
// signature under the joint key, verified before it is returned. rand is not used: the
// ephemeral w_1 always comes from crypto/rand.
func (c *CoSigner) Sign(_ io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	raw, uid := false, c.cfg.UserID
	switch o := opts.(type) {
	case nil:
		raw = true
	case *sm2.SM2SignerOption:
		u, gm := pki.SM2SignerOptionFields(o)
		raw = gm
		if gm {
			uid = u
		}
	}
	var e, instruction []byte
	if raw {
		if len(uid) == 0 {
			uid = []byte(pki.DefaultUserID)
		}
		d, err := cosign.Digest(c.pub, uid, msg)
		if err != nil {
			return nil, err
		}
		e = d
		if c.cfg.SendInstruction {
			instruction = msg
		}
	} else {
		if len(msg) != sm3.Size {
			return nil, errors.New("client: digest must be 32 bytes")
		}
		if c.cfg.SendInstruction {
			return nil, errors.New("client: bind_instruction needs the raw message, not a digest")
		}
		e = msg
	}
	sg, err := cosign.StartSign(rand.Reader, c.pub, e)
	if err != nil {
		return nil, err
	}
	req := map[string]any{"key_id": c.keyID, "e": e, "q1": sg.Q1()}
	if instruction != nil {
		req["instruction"] = instruction
	}
	var resp struct {
		PartialSignature []byte `json:"partial_signature"`
	}
	if err := c.cfg.call("sign", req, &resp); err != nil {
		return nil, err
	}
	r, s1, err := cosign.ParsePartialSignature(resp.PartialSignature)
	if err != nil {
		return nil, fmt.Errorf("client: platform's partial signature: %w", err)
	}
	share := c.current()
	if share == nil {
		return nil, errDestroyed
	}
	return sg.Finish(share, r, s1)
}

// Decrypt decrypts an SM2 ciphertext to the joint key (ASN.1, or C1C3C2 with an uncompressed
// C1; opts is ignored) with one round trip to gm_cosign, which sees only the blinded T_1.
func (c *CoSigner) Decrypt(_ io.Reader, msg []byte, _ crypto.DecrypterOpts) ([]byte, error) {
	return c.decryptContext(context.Background(), msg)
}

// maxCoSignReply bounds gm_cosign's reply.
const maxCoSignReply = 16 << 10

func (cfg *CoSignConfig) call(op string, req any, resp any) error {
	return cfg.callContext(context.Background(), op, req, resp)
}

func (cfg *CoSignConfig) callContext(ctx context.Context, op string, req any, resp any) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(cfg.URL, "/")+"/"+op, bytes.NewReader(body))
	if err != nil {
		return err
	}
	hreq.Header.Set("Content-Type", "application/json")
	if cfg.Token != nil {
		tokenOp := op
		if op == "confirm" {
			tokenOp = "rotate" // one session right covers both steps of a rotation
		}
		tok, err := cfg.Token(tokenOp)
		if err != nil {
			return fmt.Errorf("client: session token: %w", err)
		}
		hreq.Header.Set("Authorization", "Bearer "+tok)
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: DefaultTimeout}
	}
	hresp, err := hc.Do(hreq)
	if err != nil {
		return fmt.Errorf("client: gm_cosign %s: %w", op, err)
	}
	defer hresp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(hresp.Body, maxCoSignReply+1))
	if err != nil || len(data) > maxCoSignReply {
		return fmt.Errorf("client: gm_cosign %s: reply unreadable or too large", op)
	}
	if hresp.StatusCode != http.StatusOK {
		code, msg, _ := refusal.ParseBody(data)
		return &CoSignError{Status: hresp.StatusCode, Code: code, Message: msg}
	}
	if err := json.Unmarshal(data, resp); err != nil {
		return fmt.Errorf("client: gm_cosign %s: malformed reply", op)
	}
	return nil
}

// PIN sealing of the terminal's share.
//
// A sealed collaborative key is
//
//	"GMCOSIGN1" | iterations (uint32) | salt (16) | len(keyID) (uint8) | keyID | joint key (65) | nonce (12) | SM4-GCM(d_1)
//
// with the SM4 key = PBKDF2-HMAC-SM3(PIN, salt, iterations, 16 bytes) and every byte before the
// nonce as additional data. PBKDF2-HMAC-SM3 keeps the terminal on GM algorithms only (scrypt and
// Argon2 are built on SHA-2/BLAKE2/Salsa20, which a GM-evaluated module may not use); its
// count, not memory hardness, is what slows a guesser, so the default is high. The PIN is a
// second line: the platform's lockout (gm_cosign max_failures) is what stops a thief with the
// phone from trying PINs online, and d_1 alone cannot sign.
const (
	// DefaultPINIterations is Seal's PBKDF2-HMAC-SM3 count (600 000, the OWASP 2023 figure for
	// PBKDF2-HMAC-SHA256; SM3 costs about the same).
	DefaultPINIterations = 600_000
	// MinPINIterations and MaxPINIterations bound the counts Seal writes and OpenCoSigner reads.
	MinPINIterations = 100_000
	MaxPINIterations = 10_000_000
)

const sealMagic = "GMCOSIGN1"

// Seal returns the key encrypted under pin with DefaultPINIterations.
func (c *CoSigner) Seal(pin []byte) ([]byte, error) {
	return c.SealWithIterations(pin, DefaultPINIterations)
}

// SealWithIterations is Seal with an explicit PBKDF2 count in [MinPINIterations, MaxPINIterations].
func (c *CoSigner) SealWithIterations(pin []byte, iterations int) ([]byte, error) {
	if len(pin) == 0 {
		return nil, errors.New("client: empty PIN")
	}
	if iterations < MinPINIterations || iterations > MaxPINIterations {
		return nil, errors.New("client: PBKDF2 count out of range")
	}
	var hdr bytes.Buffer
	hdr.WriteString(sealMagic)
	binary.Write(&hdr, binary.BigEndian, uint32(iterations))
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return nil, err
	}
	hdr.Write(salt)
	hdr.WriteByte(byte(len(c.keyID)))
	hdr.WriteString(c.keyID)
	hdr.Write(cosign.MarshalPublicKey(c.pub))
	aead, err := pinAEAD(pin, salt, iterations)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	share := c.current()
	if share == nil {
		return nil, errDestroyed
	}
	d := share.Bytes()
	defer clear(d)
	if d == nil {
		return nil, errDestroyed
	}
	out := append(hdr.Bytes(), nonce...)
	return aead.Seal(out, nonce, d, hdr.Bytes()), nil
}

// OpenCoSigner opens a sealed key with pin; ErrWrongPIN when the PIN is wrong or the file was
// altered.
func OpenCoSigner(cfg CoSignConfig, sealed, pin []byte) (*CoSigner, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	bad := errors.New("client: malformed sealed key")
	if len(sealed) > 1024 || !bytes.HasPrefix(sealed, []byte(sealMagic)) {
		return nil, bad
	}
	p := sealed[len(sealMagic):]
	if len(p) < 4+16+1 {
		return nil, bad
	}
	iterations := int(binary.BigEndian.Uint32(p))
	salt := p[4:20]
	idLen := int(p[20])
	p = p[21:]
	if iterations < MinPINIterations || iterations > MaxPINIterations || idLen == 0 || len(p) < idLen+cosign.PointSize+12+cosign.ScalarSize+16 {
		return nil, bad
	}
	keyID := string(p[:idLen])
	pub, err := cosign.ParsePublicKey(p[idLen : idLen+cosign.PointSize])
	if err != nil {
		return nil, bad
	}
	hdrLen := len(sealed) - len(p) + idLen + cosign.PointSize
	aead, err := pinAEAD(pin, salt, iterations)
	if err != nil {
		return nil, err
	}
	rest := sealed[hdrLen:]
	d, err := aead.Open(nil, rest[:12], rest[12:], sealed[:hdrLen])
	if err != nil {
		return nil, ErrWrongPIN
	}
	defer clear(d)
	share, err := cosign.ParseShare(d)
	if err != nil {
		return nil, bad
	}
	return &CoSigner{cfg: cfg, keyID: keyID, share: share, pub: pub}, nil
}

func pinAEAD(pin, salt []byte, iterations int) (cipher.AEAD, error) {
	kek, err := pbkdf2.Key(sm3.New, string(pin), salt, iterations, 16)
	if err != nil {
		return nil, err
	}
	defer clear(kek)
	block, err := sm4.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}
