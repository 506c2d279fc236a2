package signing

import (
	"bytes"
	"crypto/ecdsa"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emmansun/gmsm/sm3"
)

// paramScheme is the shared core of form-sm2 and unionpay-sm2: a flat set of parameters in a
// form or JSON body, a sorted k=v&... string, and a signature field.
type paramScheme struct {
	name string
	c    config
	// digestHex signs the lower-case hex SM3 of the canonical string (UnionPay) instead of the
	// string itself.
	digestHex bool
	// requireSignType makes the sign type field mandatory on Parse.
	requireSignType bool
	// keyIDFromCert derives the key ID from Key.Cert (decimal serial) when Key.KeyID is empty.
	keyIDFromCert bool
}

// cst is UTC+8, the zone of payment timestamps written without an offset.
var cst = time.FixedZone("UTC+8", 8*3600)

type bodyFormat int

const (
	formBody bodyFormat = iota
	jsonBody
)

func detectFormat(m *Message) bodyFormat {
	if ct := m.Header.Get("Content-Type"); ct != "" {
		if strings.Contains(strings.ToLower(ct), "json") {
			return jsonBody
		}
		if strings.Contains(strings.ToLower(ct), "x-www-form-urlencoded") {
			return formBody
		}
	}
	if b := bytes.TrimLeft(m.Body, " \t\r\n"); len(b) > 0 && b[0] == '{' {
		return jsonBody
	}
	return formBody
}

// ParseParams reads a flat parameter set from a form (application/x-www-form-urlencoded) or a
// JSON object body. JSON values must be strings, numbers, booleans or null (null = empty);
// numbers keep their literal text. Duplicate names and more than MaxParams parameters are
// rejected (ErrMalformedBody).
func ParseParams(body []byte, isJSON bool) (map[string]string, error) {
	if isJSON {
		return parseJSONParams(body)
	}
	return parseFormParams(body)
}

func parseFormParams(body []byte) (map[string]string, error) {
	s := strings.TrimRight(string(body), "\r\n")
	out := map[string]string{}
	if s == "" {
		return out, nil
	}
	if strings.Count(s, "&") >= MaxParams {
		return nil, errf(ErrMalformedBody, "too many parameters")
	}
	for _, part := range strings.Split(s, "&") {
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		key, err := url.QueryUnescape(k)
		if err != nil || key == "" {
			return nil, errf(ErrMalformedBody, "bad parameter name")
		}
		val, err := url.QueryUnescape(v)
		if err != nil {
			return nil, errf(ErrMalformedBody, "bad parameter value")
		}
		if _, dup := out[key]; dup {
			return nil, errf(ErrMalformedBody, "duplicate parameter")
		}
		out[key] = val
	}
	return out, nil
}

func (p *paramScheme) exclude() []string {
	return append([]string{p.c.signField}, p.c.excluded...)
}

// checkUnambiguous refuses parameters whose signed string `k=v&k=v...` would split back (on '&',
// then on the first '=') into a different set: a name with '=' or '&', or a value with '&'. Without
// it, an attacker moves "&notify_url=..." into the nonce's value and drops notify_url: the signed
// bytes stay identical, the signature verifies and the "new" nonce passes the replay check.
//
// It also refuses two names equal but for letter case ("notify_url" and "Notify_url"), signed or
// not: an empty field is outside the signed string, and a back end that binds names
// case-insensitively (Go's encoding/json, ASP.NET) would read it in place of the signed one.
func (p *paramScheme) checkUnambiguous(params map[string]string) error {
	if err := checkCaseUnique(params); err != nil {
		return err
	}
	excl := p.exclude()
outer:
	for k, v := range params {
		if v == "" {
			continue
		}
		for _, e := range excl {
			if k == e {
				continue outer
			}
		}
		if strings.ContainsAny(k, "=&") || strings.IndexByte(v, '&') >= 0 {
			return fmt.Errorf("%w: field %q", ErrAmbiguousParams, truncateName(k))
		}
	}
	return nil
}

// checkCaseUnique refuses two parameter names that fold to the same name (Unicode simple case
// folding, as strings.EqualFold and encoding/json's field matching: "K" (Kelvin) and "ſ" too).
func checkCaseUnique(params map[string]string) error {
	if len(params) < 2 {
		return nil
	}
	seen := make(map[string]struct{}, len(params))
	for k := range params {
		f := strings.ToLower(strings.ToUpper(k))
		if _, dup := seen[f]; dup {
			return fmt.Errorf("%w: two fields named %q but for letter case", ErrAmbiguousParams, truncateName(f))
		}
		seen[f] = struct{}{}
	}
	return nil
}

// truncateName bounds a client-chosen field name quoted in an error.
func truncateName(k string) string {
	if len(k) > 64 {
		return k[:64] + "..."
	}
	return k
}

func (p *paramScheme) signedBytes(params map[string]string) []byte {
	s := CanonicalParams(params, p.exclude()...)
	if p.digestHex {
		sum := sm3.Sum([]byte(s))
		return hex.AppendEncode(make([]byte, 0, 2*len(sum)), sum[:]) // SM3Hex, two allocations fewer
	}
	return []byte(s)
}

func (p *paramScheme) formatTime(t time.Time) string {
	switch p.c.timestampLayout {
	case "unix":
		return strconv.FormatInt(t.Unix(), 10)
	case "unixms":
		return strconv.FormatInt(t.UnixMilli(), 10)
	}
	return t.In(cst).Format(p.c.timestampLayout)
}

func (p *paramScheme) parseTime(v string) (time.Time, error) {
	if len(v) > 64 {
		return time.Time{}, errors.New("too long")
	}
	switch p.c.timestampLayout {
	case "unix":
		return parseUnixSeconds(v)
	case "unixms":
		t, err := parseUnixSeconds(v)
		if err != nil {
			return t, err
		}
		return time.UnixMilli(t.Unix()), nil
	}
	return time.ParseInLocation(p.c.timestampLayout, v, cst)
}

func (p *paramScheme) sign(m *Message, k Key, now time.Time, nonce string) error {
	if m == nil {
		return errf(ErrMalformedBody, "nil message")
	}
	if m.Header == nil {
		m.Header = make(map[string][]string)
	}
	format := detectFormat(m)
	params, err := ParseParams(m.Body, format == jsonBody)
	if err != nil {
		return err
	}
	keyID := k.KeyID
	if keyID == "" && p.keyIDFromCert && k.Cert != nil {
		keyID = SerialDecimal(k.Cert.SerialNumber)
	}
	set := func(field, v string) {
		if field != "" && v != "" {
			params[field] = v
		}
	}
	setIfAbsent := func(field, v string) {
		if field != "" && params[field] == "" {
			set(field, v)
		}
	}
	setIfAbsent(p.c.merchantField, k.MerchantID)
	set(p.c.keyIDField, keyID)
	if p.c.timestampField != "" {
		setIfAbsent(p.c.timestampField, p.formatTime(now))
	}
	if p.c.nonceField != "" && params[p.c.nonceField] == "" {
		if nonce == "" {
			if nonce, err = NewNonce(); err != nil {
				return err
			}
		}
		set(p.c.nonceField, nonce)
	}
	set(p.c.signTypeField, p.c.signTypeValue)
	if p.c.embedCert && k.Cert != nil {
		set("signPubKeyCert", certPEM(k.Cert.Raw))
	}
	delete(params, p.c.signField)
	if len(params) >= MaxParams {
		return errf(ErrMalformedBody, "too many parameters")
	}
	if err := p.checkUnambiguous(params); err != nil {
		return err
	}
	if format == jsonBody {
		// encoding/json writes invalid UTF-8 as U+FFFD: the body would carry other bytes
		// than the ones signed, and the signature would never verify.
		for k, v := range params {
			if !utf8.ValidString(k) || !utf8.ValidString(v) {
				return errf(ErrMalformedBody, "JSON parameter is not valid UTF-8")
			}
		}
	}
	uid := k.UserID
	if uid == nil {
		if p.c.uidMode == UserIDFromKeyID && keyID == "" {
			return errf(ErrMissingComponent, "user ID from key ID, but no key ID")
		}
		uid = p.c.uidFor(keyID)
	}
	sig, err := SignSM2(k.Signer, p.signedBytes(params), uid, p.c.sigEnc)
	if err != nil {
		return err
	}
	params[p.c.signField] = p.c.textEnc.Encode(sig)
	if format == jsonBody {
		m.Body, err = rewriteJSON(m.Body, params)
		return err
	}
	vals := make(url.Values, len(params))
	for k, v := range params {
		vals.Set(k, v)
	}
	m.Body = []byte(vals.Encode())
	return nil
}

// rewriteJSON keeps the original JSON values (numbers, booleans) and writes the changed ones as
// strings; keys come out sorted. Its output is byte for byte rewriteJSONMarshal's (json.Marshal
// of a map[string]json.RawMessage): an object whose keys and string values need no escaping is
// written directly from the body's bytes (a handful of allocations instead of one or more per
// member); any other body, and every error, is left to rewriteJSONMarshal.
// FuzzRewriteJSONDifferential compares the two.
func rewriteJSON(orig []byte, params map[string]string) ([]byte, error) {
	if out, ok := rewriteJSONPlain(orig, params); ok {
		return out, nil
	}
	return rewriteJSONMarshal(orig, params)
}

// rewriteJSONMarshal is rewriteJSON through encoding/json: the reference, and the path of bodies
// rewriteJSONPlain leaves.
func rewriteJSONMarshal(orig []byte, params map[string]string) ([]byte, error) {
	raw := map[string]json.RawMessage{}
	if len(bytes.TrimSpace(orig)) > 0 {
		if err := json.Unmarshal(orig, &raw); err != nil {
			return nil, errf(ErrMalformedBody, "bad JSON")
		}
	}
	out := make(map[string]json.RawMessage, len(params))
	for k, v := range params {
		if r, ok := raw[k]; ok && jsonText(r) == v {
			out[k] = r
			continue
		}
		b, _ := json.Marshal(v)
		out[k] = b
	}
	for k, r := range raw { // keep nulls and other empty values as they were
		if _, ok := out[k]; !ok {
			out[k] = r
		}
	}
	return json.Marshal(out)
}

// jsonMember is one member of an object read by rewriteJSONPlain: its key, the raw bytes of its
// value, and the value as jsonText gives it (plain strings, numbers, booleans; "\x00" for null).
type jsonMember struct {
	key  string
	raw  []byte
	text string
}

// rewriteJSONPlain is rewriteJSON for a flat object (or an empty body) whose keys and string
// values are plain (jsonPlain: json.Marshal writes them unchanged between quotes), without
// duplicate keys, and with nothing but JSON whitespace around its tokens; ok is false for any
// other body, which rewriteJSONMarshal handles (and refuses when encoding/json does).
func rewriteJSONPlain(orig []byte, params map[string]string) ([]byte, bool) {
	var stack [32]jsonMember
	members := stack[:0]
	if len(bytes.TrimSpace(orig)) > 0 {
		p := jsonScan{b: orig, s: string(orig)}
		p.space()
		if !p.eat('{') {
			return nil, false
		}
		p.space()
		if !p.eat('}') {
			for {
				p.space()
				key, ok := p.plainString()
				if !ok {
					return nil, false
				}
				p.space()
				if !p.eat(':') {
					return nil, false
				}
				p.space()
				m := jsonMember{key: key}
				start := p.i
				if p.i >= len(p.b) {
					return nil, false
				}
				switch p.b[p.i] {
				case '"':
					if m.text, ok = p.plainString(); !ok {
						return nil, false
					}
				case 'n':
					if _, err := p.literal("null", ""); err != nil {
						return nil, false
					}
					m.text = "\x00" // as jsonText: kept only for that exact parameter value
				case '{', '[':
					return nil, false
				default:
					v, err := p.value() // numbers (their text) and booleans
					if err != nil {
						return nil, false
					}
					m.text = v
				}
				m.raw = p.b[start:p.i]
				members = append(members, m)
				p.space()
				if p.eat(',') {
					continue
				}
				if p.eat('}') {
					break
				}
				return nil, false
			}
		}
		p.space()
		if p.i != len(p.b) {
			return nil, false
		}
	}
	slices.SortFunc(members, func(a, b jsonMember) int { return strings.Compare(a.key, b.key) })
	for i := 1; i < len(members); i++ {
		if members[i].key == members[i-1].key {
			return nil, false // encoding/json keeps the last: left to it
		}
	}
	find := func(k string) (jsonMember, bool) {
		i, ok := slices.BinarySearchFunc(members, k, func(m jsonMember, k string) int { return strings.Compare(m.key, k) })
		if !ok {
			return jsonMember{}, false
		}
		return members[i], true
	}

	// The output's members: every parameter (its original value when the text is unchanged),
	// then the original members that are not parameters, sorted by key.
	type outMember struct {
		key, val string
		raw      []byte // nil: val as a JSON string
	}
	size := 2
	all := make([]outMember, 0, len(params)+len(members))
	for k, v := range params {
		o := outMember{key: k, val: v}
		if m, ok := find(k); ok && m.text == v {
			o.raw = m.raw
		}
		all = append(all, o)
		size += len(k) + len(v) + 6
	}
	for _, m := range members {
		if _, ok := params[m.key]; !ok {
			all = append(all, outMember{key: m.key, raw: m.raw})
			size += len(m.key) + len(m.raw) + 4
		}
	}
	slices.SortFunc(all, func(a, b outMember) int { return strings.Compare(a.key, b.key) })
	out := make([]byte, 0, size)
	out = append(out, '{')
	for i, o := range all {
		if i > 0 {
			out = append(out, ',')
		}
		out = appendJSONString(out, o.key)
		out = append(out, ':')
		if o.raw != nil {
			out = append(out, o.raw...)
		} else {
			out = appendJSONString(out, o.val)
		}
	}
	return append(out, '}'), true
}

// jsonPlain reports whether json.Marshal writes s unchanged between quotes: valid UTF-8 with no
// byte below 0x20, no '"', '\\', and none of the characters it escapes for HTML ('<', '>', '&',
// U+2028, U+2029).
func jsonPlain(s string) bool {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
				return false
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 || r == '\u2028' || r == '\u2029' {
			return false
		}
		i += n
	}
	return true
}

// appendJSONString appends s as json.Marshal writes a string.
func appendJSONString(dst []byte, s string) []byte {
	if jsonPlain(s) {
		dst = append(dst, '"')
		dst = append(dst, s...)
		return append(dst, '"')
	}
	b, _ := json.Marshal(s)
	return append(dst, b...)
}

// plainString reads a JSON string at p.i whose content is plain (jsonPlain, hence no escapes)
// and returns that content; ok is false for any other string.
func (p *jsonScan) plainString() (string, bool) {
	if !p.eat('"') {
		return "", false
	}
	start := p.i
	for p.i < len(p.b) && p.b[p.i] != '"' {
		p.i++
	}
	if p.i >= len(p.b) {
		return "", false
	}
	s := p.text(start, p.i)
	p.i++
	return s, jsonPlain(s)
}

func jsonText(r json.RawMessage) string {
	p := jsonScan{b: r}
	p.space()
	if p.i < len(p.b) && p.b[p.i] == 'n' {
		return "\x00" // null is kept as it was, never equal to a parameter
	}
	v, err := p.value()
	p.space()
	if err != nil || p.i != len(p.b) {
		return "\x00"
	}
	return v
}

func (p *paramScheme) parse(m *Message) (*Signed, error) {
	if m == nil {
		return nil, ErrMissingSignature
	}
	params, err := ParseParams(m.Body, detectFormat(m) == jsonBody)
	if err != nil {
		return nil, err
	}
	sigText := params[p.c.signField]
	if sigText == "" {
		return nil, ErrMissingSignature
	}
	if p.c.signTypeField != "" {
		st := params[p.c.signTypeField]
		if st == "" && p.requireSignType {
			return nil, errf(ErrMissingComponent, "%s absent", p.c.signTypeField)
		}
		if st != "" && !strings.EqualFold(st, p.c.signTypeValue) {
			return nil, errf(ErrUnsupportedAlgorithm, "%s is not %s", p.c.signTypeField, p.c.signTypeValue)
		}
	}
	if err := p.checkUnambiguous(params); err != nil {
		return nil, err
	}
	sig, err := p.c.textEnc.Decode(sigText)
	if err != nil || len(sig) == 0 {
		return nil, errf(ErrMalformedBody, "signature encoding")
	}
	s := &Signed{Scheme: p.name, Signature: sig, Encoding: p.c.sigEnc, Params: params}
	if p.c.keyIDField != "" {
		s.KeyID = params[p.c.keyIDField]
	}
	if p.c.merchantField != "" {
		s.MerchantID = params[p.c.merchantField]
	}
	if p.c.nonceField != "" {
		s.Nonce = params[p.c.nonceField]
	}
	if p.c.timestampField != "" && params[p.c.timestampField] != "" {
		if s.Timestamp, err = p.parseTime(params[p.c.timestampField]); err != nil {
			return nil, errf(ErrMalformedBody, "bad %s", p.c.timestampField)
		}
	}
	if p.c.uidMode == UserIDFromKeyID {
		if s.KeyID == "" {
			return nil, errf(ErrMissingComponent, "%s absent", p.c.keyIDField)
		}
		if len(s.KeyID) > MaxUserIDLen {
			return nil, errf(ErrMalformedBody, "key ID too long")
		}
	}
	s.UserID = p.c.uidFor(s.KeyID)
	s.SignedBytes = p.signedBytes(params)
	return s, nil
}

func (p *paramScheme) verify(s *Signed, pub *ecdsa.PublicKey) error { return verifySigned(s, pub) }
