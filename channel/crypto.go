package channel

import (
	"bytes"
	"crypto"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/emmansun/gmsm/padding"
	"github.com/emmansun/gmsm/pkcs"
	"github.com/emmansun/gmsm/pkcs7"
	"github.com/emmansun/gmsm/sm4"
	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/envelope"
)

// DataKey is a per-channel SM4 data key. *keyvault.SM4Key satisfies it; NewSM4DataKey makes an
// in-memory one (tests, development).
type DataKey interface {
	// SealGCM returns nonce(12) || ciphertext || tag(16).
	SealGCM(plaintext, aad []byte) ([]byte, error)
	// OpenGCM reverses SealGCM.
	OpenGCM(sealed, aad []byte) ([]byte, error)
	// EncryptCBC returns IV(16) || ciphertext, PKCS#7 padded.
	EncryptCBC(plaintext []byte) ([]byte, error)
	// DecryptCBC reverses EncryptCBC.
	DecryptCBC(data []byte) ([]byte, error)
}

// Encryption targets.
const (
	// TargetNone: no encryption.
	TargetNone = ""
	// TargetBody encrypts the whole body into the {"encAlg","encData"} wrapper.
	TargetBody = "body"
	// TargetFields encrypts the values of listed top-level fields of a JSON object or form body.
	TargetFields = "fields"
)

// Ciphers.
const (
	// CipherSM4GCM is SM4-GCM with the channel data key (default).
	CipherSM4GCM = "sm4-gcm"
	// CipherSM4CBC is SM4-CBC (PKCS#7 padding) with the channel data key.
	CipherSM4CBC = "sm4-cbc"
	// CipherEnvelope is an SM2 digital envelope (PKCS#7 EnvelopedData, GM/T 0010) with a fresh
	// SM4 key per message, to the bank's encryption certificate (requests) or to the
	// platform's (replies).
	CipherEnvelope = "sm2-envelope"
)

// Wire names.
const (
	// FieldEncAlg names the algorithm member of the body wrapper.
	FieldEncAlg = "encAlg"
	// FieldEncData names the ciphertext member of the body wrapper.
	FieldEncData = "encData"
	// FieldEncContentType names the original Content-Type member of the body wrapper.
	FieldEncContentType = "encContentType"
	// BodyAAD is the GCM additional data of a body ciphertext.
	BodyAAD = "body"
)

// MaxEncryptedFields bounds the number of listed fields.
const MaxEncryptedFields = 64

// Encryption is a channel's confidentiality rule. See docs/channel.md for the wire format.
type Encryption struct {
	// Target is TargetNone, TargetBody or TargetFields.
	Target string
	// Cipher is CipherSM4GCM (default), CipherSM4CBC or CipherEnvelope.
	Cipher string
	// Fields lists the top-level fields to encrypt (TargetFields).
	Fields []string
	// Key is the per-channel SM4 data key (sm4-gcm, sm4-cbc).
	Key DataKey
	// BankEncCert is the bank's encryption certificate (sm2-envelope requests). It is checked
	// for encryption usage and against the bank's roots at load.
	BankEncCert *smx509.Certificate
	// PlatformEncCert and PlatformDecrypter open sm2-envelope replies addressed to the
	// platform's encryption certificate.
	PlatformEncCert   *smx509.Certificate
	PlatformDecrypter crypto.Decrypter
	// AllowPlainReply accepts (verified) replies without the body wrapper (TargetBody), such
	// as a bank's plain error replies. Off by default: an unwrapped reply is malformed.
	AllowPlainReply bool
}

func (e *Encryption) enabled() bool { return e != nil && e.Target != TargetNone }

func (e *Encryption) algName() string {
	switch e.Cipher {
	case CipherSM4CBC:
		return "SM4-CBC"
	case CipherEnvelope:
		return "SM2-ENVELOPE"
	}
	return "SM4-GCM"
}

func (e *Encryption) check() error {
	if !e.enabled() {
		return nil
	}
	switch e.Target {
	case TargetBody, TargetFields:
	default:
		return fmt.Errorf("channel: unknown encryption target %q (body, fields)", e.Target)
	}
	switch e.Cipher {
	case "":
		e.Cipher = CipherSM4GCM
	case CipherSM4GCM, CipherSM4CBC, CipherEnvelope:
	default:
		return fmt.Errorf("channel: unknown cipher %q (sm4-gcm, sm4-cbc, sm2-envelope)", e.Cipher)
	}
	if e.Cipher == CipherEnvelope {
		if e.BankEncCert == nil {
			return errors.New("channel: sm2-envelope needs the bank's encryption certificate")
		}
		if (e.PlatformEncCert == nil) != (e.PlatformDecrypter == nil) {
			return errors.New("channel: sm2-envelope replies need both the platform encryption certificate and its key")
		}
	} else if e.Key == nil {
		return errors.New("channel: SM4 encryption needs a data key")
	}
	if e.Target == TargetFields {
		if len(e.Fields) == 0 || len(e.Fields) > MaxEncryptedFields {
			return fmt.Errorf("channel: field encryption needs 1..%d fields", MaxEncryptedFields)
		}
		for _, f := range e.Fields {
			if f == "" || len(f) > 256 {
				return errors.New("channel: bad field name")
			}
		}
	}
	return nil
}

// seal encrypts p (aad binds GCM ciphertexts to their place).
func (e *Encryption) seal(p []byte, aad string) ([]byte, error) {
	switch e.Cipher {
	case CipherSM4CBC:
		return e.Key.EncryptCBC(p)
	case CipherEnvelope:
		return pkcs7.EncryptSM(pkcs.SM4CBC, p, []*smx509.Certificate{e.BankEncCert})
	}
	return e.Key.SealGCM(p, []byte(aad))
}

// open decrypts c.
func (e *Encryption) open(c []byte, aad string) ([]byte, error) {
	switch e.Cipher {
	case CipherSM4CBC:
		return e.Key.DecryptCBC(c)
	case CipherEnvelope:
		if e.PlatformDecrypter == nil {
			return nil, errors.New("no platform encryption key for envelope replies")
		}
		return openEnvelope(c, e.PlatformEncCert, e.PlatformDecrypter)
	}
	return e.Key.OpenGCM(c, []byte(aad))
}

// openEnvelope opens a PKCS#7 EnvelopedData with envelope.Opener, the one opener of gmgate
// (structure, recipient, bounds, key size checked; parser panics turned into errors). The bank
// reply it opens was verified first.
func openEnvelope(der []byte, cert *smx509.Certificate, key crypto.Decrypter) ([]byte, error) {
	pt, err := (&envelope.Opener{Cert: cert, Key: key, MaxSize: len(der) + 1}).Open(der)
	if err != nil {
		return nil, errors.New("envelope cannot be opened")
	}
	return pt, nil
}

// encryptRequest applies the rule to a request body; it returns the new body and content type.
func (e *Encryption) encryptRequest(body []byte, contentType string) ([]byte, string, error) {
	if e.Target == TargetBody {
		ct, err := e.seal(body, BodyAAD)
		if err != nil {
			return nil, "", err
		}
		w := map[string]string{FieldEncAlg: e.algName(), FieldEncData: base64.StdEncoding.EncodeToString(ct)}
		if contentType != "" {
			w[FieldEncContentType] = contentType
		}
		out, err := json.Marshal(w)
		return out, "application/json", err
	}
	out, err := e.mapFields(body, contentType, func(name, v string) (string, error) {
		c, err := e.seal([]byte(v), name)
		if err != nil {
			return "", err
		}
		return base64.StdEncoding.EncodeToString(c), nil
	})
	return out, contentType, err
}

// decryptReply reverses the rule on a verified reply body.
func (e *Encryption) decryptReply(body []byte, contentType string, maxLen int) ([]byte, string, error) {
	if e.Target == TargetBody {
		w, ok := parseWrapper(body)
		if !ok {
			if e.AllowPlainReply {
				return body, contentType, nil
			}
			return nil, "", fail(CodeBankReplyMalformed, errors.New("reply is not an encrypted body"))
		}
		if w[FieldEncAlg] != e.algName() {
			return nil, "", fail(CodeBankReplyMalformed, errors.New("reply encryption algorithm does not match the channel"))
		}
		c, err := base64.StdEncoding.Strict().DecodeString(w[FieldEncData])
		if err != nil || len(c) == 0 || len(c) > maxLen {
			return nil, "", fail(CodeBankReplyMalformed, errors.New("reply ciphertext encoding"))
		}
		p, err := e.open(c, BodyAAD)
		if err != nil {
			return nil, "", fail(CodeBankDecryptFailed, err)
		}
		ct := w[FieldEncContentType]
		if ct == "" || len(ct) > 128 || strings.ContainsAny(ct, "\r\n") {
			ct = "application/json"
		}
		return p, ct, nil
	}
	out, err := e.mapFields(body, contentType, func(name, v string) (string, error) {
		c, err := base64.StdEncoding.Strict().DecodeString(v)
		if err != nil || len(c) > maxLen {
			return "", fail(CodeBankReplyMalformed, fmt.Errorf("field %q is not Base64", name))
		}
		p, err := e.open(c, name)
		if err != nil {
			return "", fail(CodeBankDecryptFailed, fmt.Errorf("field %q: %w", name, err))
		}
		return string(p), nil
	})
	if err != nil {
		var ce *Error
		if !errors.As(err, &ce) {
			err = fail(CodeBankReplyMalformed, err)
		}
		return nil, "", err
	}
	return out, contentType, nil
}

// parseWrapper reads the flat JSON object of an encrypted body (other members, such as a param
// scheme's signature fields, are allowed and ignored).
func parseWrapper(body []byte) (map[string]string, bool) {
	if !isJSONObject(body) {
		return nil, false
	}
	var raw map[string]json.RawMessage
	if json.Unmarshal(body, &raw) != nil {
		return nil, false
	}
	out := map[string]string{}
	for _, k := range []string{FieldEncAlg, FieldEncData, FieldEncContentType} {
		r, ok := raw[k]
		if !ok {
			continue
		}
		var s string
		if json.Unmarshal(r, &s) != nil {
			return nil, false
		}
		out[k] = s
	}
	if out[FieldEncAlg] == "" || out[FieldEncData] == "" {
		return nil, false
	}
	return out, true
}

func isJSONObject(b []byte) bool {
	b = bytes.TrimLeft(b, " \t\r\n")
	return len(b) > 0 && b[0] == '{'
}

func isJSONType(ct string) bool { return strings.Contains(strings.ToLower(ct), "json") }

// mapFields applies f to every listed top-level field present with a non-empty string or
// number value, in a JSON object body or a form body (chosen by content type, then by
// sniffing). Other members are kept (JSON members come out sorted by name).
func (e *Encryption) mapFields(body []byte, contentType string, f func(name, v string) (string, error)) ([]byte, error) {
	asJSON := isJSONType(contentType) || (!strings.Contains(strings.ToLower(contentType), "form") && isJSONObject(body))
	if asJSON {
		var raw map[string]json.RawMessage
		d := json.NewDecoder(bytes.NewReader(body))
		d.UseNumber()
		if err := d.Decode(&raw); err != nil || raw == nil {
			return nil, errors.New("body is not a JSON object")
		}
		if d.More() {
			return nil, errors.New("trailing data after JSON object")
		}
		for _, name := range e.Fields {
			r, ok := raw[name]
			if !ok {
				continue
			}
			v, ok := jsonScalar(r)
			if !ok {
				return nil, fmt.Errorf("field %q is not a string or number", name)
			}
			if v == "" {
				continue
			}
			nv, err := f(name, v)
			if err != nil {
				return nil, err
			}
			b, _ := json.Marshal(nv)
			raw[name] = b
		}
		return json.Marshal(raw)
	}
	vals, err := url.ParseQuery(strings.TrimRight(string(body), "\r\n"))
	if err != nil {
		return nil, errors.New("body is not a form")
	}
	for _, name := range e.Fields {
		vs, ok := vals[name]
		if !ok {
			continue
		}
		if len(vs) != 1 {
			return nil, fmt.Errorf("field %q repeated", name)
		}
		if vs[0] == "" {
			continue
		}
		nv, err := f(name, vs[0])
		if err != nil {
			return nil, err
		}
		vals[name] = []string{nv}
	}
	return []byte(vals.Encode()), nil
}

// jsonScalar returns the text of a JSON string or number (null is empty).
func jsonScalar(r json.RawMessage) (string, bool) {
	r = bytes.TrimSpace(r)
	if len(r) == 0 {
		return "", false
	}
	switch {
	case r[0] == '"':
		var s string
		if json.Unmarshal(r, &s) != nil {
			return "", false
		}
		return s, true
	case bytes.Equal(r, []byte("null")):
		return "", true
	case r[0] == '-' || (r[0] >= '0' && r[0] <= '9'):
		var n json.Number
		if json.Unmarshal(r, &n) != nil {
			return "", false
		}
		return n.String(), true
	}
	return "", false
}

// sm4Key is an in-memory DataKey.
type sm4Key struct {
	block cipher.Block
	gcm   cipher.AEAD
}

// NewSM4DataKey returns an in-memory DataKey for a 16-byte SM4 key (tests, development; use
// the key vault in production). The key bytes are copied by the cipher; the caller may wipe key.
func NewSM4DataKey(key []byte) (DataKey, error) {
	if len(key) != 16 {
		return nil, errors.New("channel: SM4 key must be 16 bytes")
	}
	b, err := sm4.NewCipher(key)
	if err != nil {
		return nil, err
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		return nil, err
	}
	return &sm4Key{block: b, gcm: g}, nil
}

func (k *sm4Key) SealGCM(p, aad []byte) ([]byte, error) {
	nonce := make([]byte, 12, 12+len(p)+16)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return k.gcm.Seal(nonce, nonce, p, aad), nil
}

func (k *sm4Key) OpenGCM(s, aad []byte) ([]byte, error) {
	if len(s) < 28 {
		return nil, errors.New("sealed data too short")
	}
	p, err := k.gcm.Open(nil, s[:12], s[12:], aad)
	if err != nil {
		return nil, errors.New("authentication failed")
	}
	return p, nil
}

func (k *sm4Key) EncryptCBC(p []byte) ([]byte, error) {
	pad := padding.NewPKCS7Padding(16)
	pp := pad.Pad(p)
	out := make([]byte, 16+len(pp))
	if _, err := rand.Read(out[:16]); err != nil {
		return nil, err
	}
	cipher.NewCBCEncrypter(k.block, out[:16]).CryptBlocks(out[16:], pp)
	return out, nil
}

func (k *sm4Key) DecryptCBC(d []byte) ([]byte, error) {
	if len(d) < 32 || len(d)%16 != 0 {
		return nil, errors.New("bad CBC data length")
	}
	pt := make([]byte, len(d)-16)
	cipher.NewCBCDecrypter(k.block, d[:16]).CryptBlocks(pt, d[16:])
	out, err := padding.NewPKCS7Padding(16).ConstantTimeUnpad(pt)
	if err != nil {
		return nil, errors.New("bad padding")
	}
	return out, nil
}
