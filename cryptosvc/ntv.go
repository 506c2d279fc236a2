package cryptosvc

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
)

// GM/T 0136-2024 (密码应用HTTP接口规范) carries parameters as items of Name, Type and Value in a
// "Data" array: {"Data":[{"Name":"KeyId","Type":"Raw","Value":"pii"},{"Name":"PlainText",
// "Type":"Base64","Value":"…"}]}. This is the part of its body encoding that public
// descriptions of the standard confirm (docs/crypto-service.md says what is not confirmed). The
// service accepts it as an alternative encoding of one item (no batches) and answers in the same
// shape; it is translated to and from the native request, so every check of the native parser
// applies unchanged.

// MaxNTVItems bounds the items of a GM/T 0136 "Data" array.
const MaxNTVItems = 32

// ntvKind is how a native field takes a value.
type ntvKind int

const (
	ntvBytes   ntvKind = iota // []byte field: Base64 in native JSON
	ntvString                 // string field
	ntvInt                    // number
	ntvBool                   // boolean
	ntvStrings                // list of strings (chain)
)

// ntvFields maps GM/T 0136-style names (the standard's KeyId, PlainText, CipherText,
// Certificate, Signature; gmgate's own fields in the same CamelCase) to native fields.
// PlainText is the message for signature and HMAC operations and the plaintext for encryption.
var ntvFields = map[string]struct {
	native string
	kind   ntvKind
}{
	"KeyId":       {"key", ntvString},
	"CipherText":  {"ciphertext", ntvString},
	"Certificate": {"certificate", ntvString},
	"Chain":       {"chain", ntvStrings},
	"Signature":   {"signature", ntvBytes},
	"Digest":      {"digest", ntvBytes},
	"UserId":      {"user_id", ntvString},
	"KeyVersion":  {"key_version", ntvInt},
	"Context":     {"context", ntvBytes},
	"Hmac":        {"hmac", ntvString},
	"Length":      {"bytes", ntvInt},
	"WrappedOnly": {"wrapped_only", ntvBool},
	"Cms":         {"cms", ntvBytes},
	"Detached":    {"detached", ntvBool},
	"Envelope":    {"envelope", ntvBytes},
	"GmOids":      {"gm_oids", ntvBool},
	"Gcm":         {"gcm", ntvBool},
	"CertSerial":  {"cert_serial", ntvString},
	"CertSubject": {"cert_subject", ntvString},
	"VerifyLevel": {"verify_level", ntvInt},
	"IncludeCrl":  {"include_crl", ntvBool},
	"NoChain":     {"no_chain", ntvBool},
}

// plainTextField is the native field of PlainText for op.
func plainTextField(op Op) string {
	switch op {
	case OpEncrypt, OpSeal:
		return "plaintext"
	}
	return "data"
}

type ntvItem struct {
	Name  string          `json:"Name"`
	Type  string          `json:"Type"`
	Value json.RawMessage `json:"Value"`
}

// IsNTV reports whether body is meant as a GM/T 0136 request: a JSON object whose first member
// is "Data" (exact case) holding an array. It looks at the first bytes only (the hot path pays
// nothing); DecodeNTV then refuses any other member. A native request never starts so (its
// "data" is a Base64 string), so the choice is unambiguous.
func IsNTV(body []byte) bool {
	rest := bytes.TrimLeft(body, " \t\r\n")
	for _, want := range []string{"{", `"Data"`, ":", "["} {
		if !bytes.HasPrefix(rest, []byte(want)) {
			return false
		}
		rest = bytes.TrimLeft(rest[len(want):], " \t\r\n")
	}
	return true
}

// DecodeNTV translates a GM/T 0136 body of op into the native request body. Member names
// (Data, Name, Type, Value) not spelt exactly or given twice, unknown item names, duplicate item names, unknown types, DateTime (no field takes a time), IV (the nonce is inside
// the ciphertext) and values that do not decode are refused (crypto_malformed).
func DecodeNTV(op Op, body []byte) ([]byte, error) {
	if len(body) > maxBody {
		return nil, fail(CodeTooLarge, errors.New("body over the parser's bound"))
	}
	var req struct {
		Data []ntvItem `json:"Data"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return nil, fail(CodeMalformed, errors.New("not a GM/T 0136 Data array of Name/Type/Value items"))
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fail(CodeMalformed, errors.New("trailing data after the request object"))
	}
	if err := checkMemberNames(body, ntvNames); err != nil {
		return nil, err
	}
	if len(req.Data) > MaxNTVItems {
		return nil, fail(CodeTooLarge, fmt.Errorf("%d items, limit %d", len(req.Data), MaxNTVItems))
	}
	out := map[string]any{}
	for _, it := range req.Data {
		native, kind := "", ntvString
		switch it.Name {
		case "PlainText":
			native, kind = plainTextField(op), ntvBytes
		case "IV":
			return nil, fail(CodeMalformed, errors.New("IV: the nonce is inside the ciphertext"))
		default:
			f, ok := ntvFields[it.Name]
			if !ok {
				return nil, fail(CodeMalformed, fmt.Errorf("unknown item name %q", trunc(it.Name)))
			}
			native, kind = f.native, f.kind
		}
		if _, dup := out[native]; dup {
			return nil, fail(CodeMalformed, fmt.Errorf("item %s given twice", it.Name))
		}
		v, err := ntvValue(it, kind, native == "certificate")
		if err != nil {
			return nil, fail(CodeMalformed, fmt.Errorf("item %s: %w", it.Name, err))
		}
		out[native] = v
	}
	return json.Marshal(out)
}

func trunc(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// ntvValue decodes an item's value for a field of kind.
func ntvValue(it ntvItem, kind ntvKind, certificate bool) (any, error) {
	if kind == ntvStrings {
		if it.Type != "Raw" {
			return nil, errors.New("a list takes Type Raw")
		}
		var list []string
		if err := json.Unmarshal(it.Value, &list); err != nil {
			return nil, errors.New("want a list of strings")
		}
		return list, nil
	}
	var raw []byte
	var s string
	switch err := json.Unmarshal(it.Value, &s); {
	case err == nil:
		raw = []byte(s)
	case it.Type == "Raw" && (kind == ntvInt || kind == ntvBool):
		raw = bytes.TrimSpace(it.Value) // a JSON number or boolean
	default:
		return nil, errors.New("Value must be a string")
	}
	switch it.Type {
	case "Raw":
	case "Base64":
		b, err := base64.StdEncoding.DecodeString(string(raw))
		if err != nil {
			return nil, errors.New("bad Base64")
		}
		raw = b
	case "Hex":
		b, err := hex.DecodeString(string(raw))
		if err != nil {
			return nil, errors.New("bad Hex")
		}
		raw = b
	case "DateTime":
		return nil, errors.New("no field takes a DateTime")
	default:
		return nil, fmt.Errorf("unknown Type %q (Raw, Base64, Hex, DateTime)", trunc(it.Type))
	}
	switch kind {
	case ntvBytes:
		return raw, nil // json.Marshal writes []byte as Base64: the native form
	case ntvInt:
		n, err := strconv.Atoi(string(raw))
		if err != nil {
			return nil, errors.New("want a whole number")
		}
		return n, nil
	case ntvBool:
		b, err := strconv.ParseBool(string(raw))
		if err != nil {
			return nil, errors.New("want true or false")
		}
		return b, nil
	}
	if certificate && it.Type != "Raw" {
		// A certificate given as Base64 or Hex DER: the native field takes Base64 DER.
		return base64.StdEncoding.EncodeToString(raw), nil
	}
	return string(raw), nil // text: Raw as is, Base64/Hex decoded
}

// ntvResultBytes are the result fields that hold bytes (written Base64).
var ntvResultBytes = map[string]bool{"signature": true, "plaintext": true, "random": true, "cms": true, "content": true, "envelope": true}

// ntvResultNames are the GM/T 0136-style names of result fields (CamelCase of the native ones,
// with the standard's spelling where it has one).
var ntvResultNames = map[string]string{"plaintext": "PlainText", "ciphertext": "CipherText", "cms": "Cms",
	"hmac": "Hmac", "key_version": "KeyVersion", "latest_version": "LatestVersion", "public_key": "PublicKey",
	"user_id": "UserId", "verify_level": "VerifyLevel", "min_version": "MinVersion"}

// EncodeNTV writes a single-item response in the GM/T 0136 shape: {"Data":[{"Name","Type",
// "Value"}…]} in name order; bytes are Base64, strings Raw, other values (numbers, booleans,
// lists, the signer's identity) Raw with their JSON value.
func EncodeNTV(r *Response) ([]byte, error) {
	if r.batch || len(r.Results) != 1 {
		return nil, errors.New("cryptosvc: GM/T 0136 encoding has no batches")
	}
	native, err := json.Marshal(r.Results[0])
	if err != nil {
		return nil, err
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(native, &fields); err != nil {
		return nil, err
	}
	names := make([]string, 0, len(fields))
	for k := range fields {
		names = append(names, k)
	}
	sort.Strings(names)
	items := make([]ntvItem, 0, len(names))
	for _, k := range names {
		it := ntvItem{Name: ntvName(k), Type: "Raw", Value: fields[k]}
		if ntvResultBytes[k] {
			it.Type = "Base64"
		}
		items = append(items, it)
	}
	return json.Marshal(struct {
		Data []ntvItem `json:"Data"`
	}{items})
}

// ntvName is the GM/T 0136-style name of a native result field.
func ntvName(k string) string {
	if n, ok := ntvResultNames[k]; ok {
		return n
	}
	parts := strings.Split(k, "_")
	for i, p := range parts {
		if p != "" {
			parts[i] = strings.ToUpper(p[:1]) + p[1:]
		}
	}
	return strings.Join(parts, "")
}
