package signing

import (
	"bytes"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
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
		return []byte(SM3Hex([]byte(s)))
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
// strings; keys come out sorted.
func rewriteJSON(orig []byte, params map[string]string) ([]byte, error) {
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
