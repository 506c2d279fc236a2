package gateway

import (
	"bytes"
	"crypto"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm4"
)

// FieldMode selects how listed JSON fields are encrypted (see docs/envelope.md).
type FieldMode int

const (
	// FieldModeSM2 : each field value is Base64 (standard, padded) of the SM2
	// ciphertext of the UTF-8 plaintext, ASN.1 encoded (GM/T 0009:
	// SEQUENCE{x, y, C3 hash, C2 ciphertext}).
	FieldModeSM2 FieldMode = iota
	// FieldModeSM4GCM : the object carries KeyField, Base64 of the SM2 ASN.1
	// ciphertext of a 16-byte SM4 content key; each field value is Base64 of
	// nonce(12) || SM4-GCM ciphertext || tag(16), with the field path (e.g.
	// "payer.card_no") as additional data. KeyField is removed when opened.
	FieldModeSM4GCM
)

// Bounds of JSON field encryption.
const (
	// DefaultFieldKeyName is the default KeyField for FieldModeSM4GCM.
	DefaultFieldKeyName = "encrypt_key"
	// MaxJSONDepth bounds nesting of a JSON body.
	MaxJSONDepth = 64
	// MaxEncryptedFields bounds the number of listed fields.
	MaxEncryptedFields = 64
	gcmNonceSize       = 12
	gcmTagSize         = 16
)

// EncryptedFields opens and seals JSON bodies with listed encrypted fields.
// Field paths are dot-separated object keys ("card_no", "payer.card_no");
// arrays are not traversed. Opening keeps the key order of the body, rejects
// duplicate keys and replaces each encrypted value by its plaintext as a JSON
// string. Fields absent from the body are skipped unless Required.
type EncryptedFields struct {
	// Fields lists the encrypted field paths.
	Fields []string
	// Mode is FieldModeSM2 (default) or FieldModeSM4GCM.
	Mode FieldMode
	// KeyField names the wrapped content key for FieldModeSM4GCM (default
	// DefaultFieldKeyName); it must be a top-level key.
	KeyField string
	// Required makes a missing listed field an error.
	Required bool
	// MaxSize bounds the body (default DefaultMaxEnvelopeSize).
	MaxSize int
}

func (f *EncryptedFields) keyField() string {
	if f.KeyField != "" {
		return f.KeyField
	}
	return DefaultFieldKeyName
}

func (f *EncryptedFields) check() error {
	if len(f.Fields) == 0 || len(f.Fields) > MaxEncryptedFields {
		return fmt.Errorf("%w: between 1 and %d encrypted fields must be listed", ErrEnvelope, MaxEncryptedFields)
	}
	for _, p := range f.Fields {
		if p == "" || strings.HasPrefix(p, ".") || strings.HasSuffix(p, ".") || strings.Contains(p, "..") {
			return fmt.Errorf("%w: bad field path %q", ErrEnvelope, p)
		}
	}
	if f.Mode != FieldModeSM2 && f.Mode != FieldModeSM4GCM {
		return fmt.Errorf("%w: unknown field mode", ErrEnvelope)
	}
	return nil
}

// Open decrypts the listed fields of body with the platform key.
// key.Decrypt receives ASN.1 SM2 ciphertexts and nil options.
func (f *EncryptedFields) Open(body []byte, key crypto.Decrypter) ([]byte, error) {
	if err := f.check(); err != nil {
		return nil, err
	}
	if key == nil {
		return nil, fmt.Errorf("%w: no key", ErrEnvelope)
	}
	root, err := f.parse(body)
	if err != nil {
		return nil, err
	}
	var gcm cipher.AEAD
	if f.Mode == FieldModeSM4GCM {
		v, ok := root.get(f.keyField())
		s, isStr := v.(string)
		if !ok || !isStr {
			return nil, ErrEnvelopeField
		}
		ct, err := base64.StdEncoding.Strict().DecodeString(s)
		if err != nil || len(ct) > maxEncryptedKeyLen {
			return nil, ErrEnvelopeField
		}
		k, err := key.Decrypt(rand.Reader, ct, nil)
		if ku := keyUnavailable(err); ku != nil {
			return nil, ku
		}
		if err != nil || len(k) != sm4KeySize {
			wipe(k)
			return nil, ErrEnvelopeDecrypt
		}
		gcm, err = newSM4GCM(k)
		wipe(k)
		if err != nil {
			return nil, ErrEnvelopeDecrypt
		}
		root.remove(f.keyField())
	}
	for _, p := range f.Fields {
		obj, name, v, ok := root.lookup(p)
		if !ok {
			if f.Required {
				return nil, ErrEnvelopeField
			}
			continue
		}
		s, isStr := v.(string)
		if !isStr {
			return nil, ErrEnvelopeField
		}
		ct, err := base64.StdEncoding.Strict().DecodeString(s)
		if err != nil {
			return nil, ErrEnvelopeField
		}
		var pt []byte
		if gcm != nil {
			if len(ct) < gcmNonceSize+gcmTagSize {
				return nil, ErrEnvelopeDecrypt
			}
			pt, err = gcm.Open(nil, ct[:gcmNonceSize], ct[gcmNonceSize:], []byte(p))
		} else {
			pt, err = key.Decrypt(rand.Reader, ct, nil)
			if ku := keyUnavailable(err); ku != nil {
				return nil, ku
			}
		}
		if err != nil {
			return nil, ErrEnvelopeDecrypt
		}
		if !utf8.Valid(pt) {
			return nil, ErrEnvelopeField
		}
		obj.set(name, string(pt))
	}
	return root.encode()
}

// Seal encrypts the listed string fields of body for the client's SM2
// encryption public key (the inverse of Open). Absent fields are skipped
// unless Required; non-string values are an error.
func (f *EncryptedFields) Seal(body []byte, pub *ecdsa.PublicKey) ([]byte, error) {
	if err := f.check(); err != nil {
		return nil, err
	}
	if pub == nil || !sm2.IsSM2PublicKey(pub) {
		return nil, fmt.Errorf("%w: recipient key is not SM2", ErrEnvelope)
	}
	root, err := f.parse(body)
	if err != nil {
		return nil, err
	}
	var gcm cipher.AEAD
	if f.Mode == FieldModeSM4GCM {
		if _, exists := root.get(f.keyField()); exists {
			return nil, fmt.Errorf("%w: body already has key field %q", ErrEnvelopeField, f.keyField())
		}
		k := make([]byte, sm4KeySize)
		if _, err := rand.Read(k); err != nil {
			return nil, err
		}
		wrapped, err := sm2.EncryptASN1(rand.Reader, pub, k)
		if err == nil {
			gcm, err = newSM4GCM(k)
		}
		wipe(k)
		if err != nil {
			return nil, fmt.Errorf("gateway: seal fields: %w", err)
		}
		root.set(f.keyField(), base64.StdEncoding.EncodeToString(wrapped))
	}
	for _, p := range f.Fields {
		obj, name, v, ok := root.lookup(p)
		if !ok {
			if f.Required {
				return nil, ErrEnvelopeField
			}
			continue
		}
		s, isStr := v.(string)
		if !isStr {
			return nil, ErrEnvelopeField
		}
		var ct []byte
		if gcm != nil {
			nonce := make([]byte, gcmNonceSize, gcmNonceSize+len(s)+gcmTagSize)
			if _, err := rand.Read(nonce); err != nil {
				return nil, err
			}
			ct = gcm.Seal(nonce, nonce, []byte(s), []byte(p))
		} else {
			ct, err = sm2.EncryptASN1(rand.Reader, pub, []byte(s))
			if err != nil {
				return nil, fmt.Errorf("gateway: seal fields: %w", err)
			}
		}
		obj.set(name, base64.StdEncoding.EncodeToString(ct))
	}
	return root.encode()
}

func newSM4GCM(k []byte) (cipher.AEAD, error) {
	b, err := sm4.NewCipher(k)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

func (f *EncryptedFields) parse(body []byte) (*jsonObject, error) {
	max := f.MaxSize
	if max <= 0 {
		max = DefaultMaxEnvelopeSize
	}
	if len(body) > max {
		return nil, ErrEnvelopeTooLarge
	}
	return parseJSONObject(body)
}

// jsonObject is a JSON object that keeps its key order.
type jsonObject struct {
	keys []string
	vals []any // string, json.Number, bool, nil, *jsonObject, []any
}

func (o *jsonObject) index(k string) int {
	for i, key := range o.keys {
		if key == k {
			return i
		}
	}
	return -1
}

func (o *jsonObject) get(k string) (any, bool) {
	if i := o.index(k); i >= 0 {
		return o.vals[i], true
	}
	return nil, false
}

func (o *jsonObject) set(k string, v any) {
	if i := o.index(k); i >= 0 {
		o.vals[i] = v
		return
	}
	o.keys = append(o.keys, k)
	o.vals = append(o.vals, v)
}

func (o *jsonObject) remove(k string) {
	if i := o.index(k); i >= 0 {
		o.keys = append(o.keys[:i], o.keys[i+1:]...)
		o.vals = append(o.vals[:i], o.vals[i+1:]...)
	}
}

// lookup follows a dotted path to the object holding its last element.
func (o *jsonObject) lookup(path string) (*jsonObject, string, any, bool) {
	parts := strings.Split(path, ".")
	cur := o
	for _, p := range parts[:len(parts)-1] {
		v, ok := cur.get(p)
		if !ok {
			return nil, "", nil, false
		}
		next, isObj := v.(*jsonObject)
		if !isObj {
			return nil, "", nil, false
		}
		cur = next
	}
	last := parts[len(parts)-1]
	v, ok := cur.get(last)
	return cur, last, v, ok
}

var errJSONDepth = errors.New("too deep")

// parseJSONObject parses a JSON object strictly: one value, an object at the
// top, no duplicate keys, bounded depth, numbers kept verbatim.
func parseJSONObject(body []byte) (obj *jsonObject, err error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	v, err := parseJSONValue(dec, 0)
	if err != nil {
		return nil, ErrEnvelopeFormat
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, ErrEnvelopeFormat
	}
	o, ok := v.(*jsonObject)
	if !ok {
		return nil, ErrEnvelopeFormat
	}
	return o, nil
}

func parseJSONValue(dec *json.Decoder, depth int) (any, error) {
	if depth > MaxJSONDepth {
		return nil, errJSONDepth
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			o := &jsonObject{}
			seen := map[string]bool{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				k, ok := kt.(string)
				if !ok || seen[k] {
					return nil, errors.New("bad or duplicate key")
				}
				seen[k] = true
				v, err := parseJSONValue(dec, depth+1)
				if err != nil {
					return nil, err
				}
				o.keys = append(o.keys, k)
				o.vals = append(o.vals, v)
			}
			if _, err := dec.Token(); err != nil { // '}'
				return nil, err
			}
			return o, nil
		case '[':
			arr := []any{}
			for dec.More() {
				v, err := parseJSONValue(dec, depth+1)
				if err != nil {
					return nil, err
				}
				arr = append(arr, v)
			}
			if _, err := dec.Token(); err != nil { // ']'
				return nil, err
			}
			return arr, nil
		}
		return nil, errors.New("unexpected delimiter")
	default:
		return t, nil // string, json.Number, bool, nil
	}
}

// encode writes the value back as compact JSON in the original key order.
func (o *jsonObject) encode() ([]byte, error) {
	var b bytes.Buffer
	if err := encodeJSONValue(&b, o); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func encodeJSONValue(b *bytes.Buffer, v any) error {
	switch t := v.(type) {
	case *jsonObject:
		b.WriteByte('{')
		for i, k := range t.keys {
			if i > 0 {
				b.WriteByte(',')
			}
			writeJSONString(b, k)
			b.WriteByte(':')
			if err := encodeJSONValue(b, t.vals[i]); err != nil {
				return err
			}
		}
		b.WriteByte('}')
	case []any:
		b.WriteByte('[')
		for i, e := range t {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := encodeJSONValue(b, e); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	case string:
		writeJSONString(b, t)
	case json.Number:
		b.WriteString(t.String())
	case bool:
		if t {
			b.WriteString("true")
		} else {
			b.WriteString("false")
		}
	case nil:
		b.WriteString("null")
	default:
		return fmt.Errorf("gateway: unexpected JSON value %T", v)
	}
	return nil
}

func writeJSONString(b *bytes.Buffer, s string) {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	b.Truncate(b.Len() - 1) // Encode appends '\n'
}
