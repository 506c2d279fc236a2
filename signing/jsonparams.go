package signing

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// parseJSONParams reads a flat JSON object in one pass over the bytes (it used to go token by
// token through encoding/json's Decoder, an interface value and an allocation per token: about
// 5 % of the egress's CPU on bank replies). Semantics are encoding/json's: whitespace is space,
// tab, CR and LF; numbers keep their literal text and follow the JSON grammar; true/false become
// "true"/"false", null "", nested values are refused; strings with escapes or bytes that are not
// plain UTF-8 are decoded by encoding/json itself. FuzzJSONParamsDifferential checks it against
// the Decoder version.
func parseJSONParams(body []byte) (map[string]string, error) {
	// One copy of the body as a string: plain keys and values are substrings of it (one
	// allocation for the whole object instead of one per key and value).
	p := jsonScan{b: body, s: string(body)}
	p.space()
	if !p.eat('{') {
		return nil, errf(ErrMalformedBody, "not a JSON object")
	}
	// Sized for the members the commas suggest (a hint only, capped at 64; commas inside strings
	// merely over-size it), so that the map is not regrown member by member.
	out := make(map[string]string, min(bytes.Count(body, []byte{','})+1, 64))
	p.space()
	if !p.eat('}') {
		for {
			p.space()
			key, ok := p.str()
			if !ok {
				if p.i < len(p.b) && p.b[p.i] != '"' && validJSONStart(p.b[p.i]) {
					return nil, errf(ErrMalformedBody, "bad JSON key")
				}
				return nil, errf(ErrMalformedBody, "bad JSON")
			}
			if key == "" {
				return nil, errf(ErrMalformedBody, "bad JSON key")
			}
			p.space()
			if !p.eat(':') {
				return nil, errf(ErrMalformedBody, "bad JSON")
			}
			p.space()
			val, err := p.value()
			if err != nil {
				return nil, err
			}
			if _, dup := out[key]; dup {
				return nil, errf(ErrMalformedBody, "duplicate parameter")
			}
			if len(out) >= MaxParams {
				return nil, errf(ErrMalformedBody, "too many parameters")
			}
			out[key] = val
			p.space()
			if p.eat(',') {
				continue
			}
			if p.eat('}') {
				break
			}
			return nil, errf(ErrMalformedBody, "bad JSON")
		}
	}
	p.space()
	if p.i != len(p.b) {
		return nil, errf(ErrMalformedBody, "trailing data after JSON object")
	}
	return out, nil
}

// validJSONStart reports whether c can start a JSON value.
func validJSONStart(c byte) bool {
	return c == '{' || c == '[' || c == '"' || c == '-' || c == 't' || c == 'f' || c == 'n' || (c >= '0' && c <= '9')
}

type jsonScan struct {
	b []byte
	s string // b as a string, when set: plain strings and numbers are substrings of it
	i int
}

// text returns b[start:end] as a string, sharing p.s when set.
func (p *jsonScan) text(start, end int) string {
	if p.s != "" {
		return p.s[start:end]
	}
	return string(p.b[start:end])
}

func (p *jsonScan) space() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\r', '\n':
			p.i++
		default:
			return
		}
	}
}

func (p *jsonScan) eat(c byte) bool {
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// str reads a JSON string at p.i.
func (p *jsonScan) str() (string, bool) {
	if !p.eat('"') {
		return "", false
	}
	start := p.i
	plain := true
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			end := p.i
			p.i++
			if plain {
				return p.text(start, end), true
			}
			// Escapes, or bytes that are not valid UTF-8 (encoding/json makes them U+FFFD):
			// encoding/json decodes the literal.
			var s string
			if json.Unmarshal(p.b[start-1:p.i], &s) != nil {
				return "", false
			}
			return s, true
		case c == '\\':
			plain = false
			p.i += 2 // the escaped byte cannot end the string; encoding/json checks the escape
		case c < 0x20:
			return "", false
		case c < utf8.RuneSelf:
			p.i++
		default:
			r, n := utf8.DecodeRune(p.b[p.i:])
			if r == utf8.RuneError && n == 1 {
				plain = false
			}
			p.i += n
		}
	}
	return "", false
}

// value reads a scalar JSON value as parameter text.
func (p *jsonScan) value() (string, error) {
	if p.i >= len(p.b) {
		return "", errf(ErrMalformedBody, "bad JSON")
	}
	switch c := p.b[p.i]; {
	case c == '"':
		s, ok := p.str()
		if !ok {
			return "", errf(ErrMalformedBody, "bad JSON")
		}
		return s, nil
	case c == '{' || c == '[':
		return "", errf(ErrMalformedBody, "nested JSON value")
	case c == 't':
		return p.literal("true", "true")
	case c == 'f':
		return p.literal("false", "false")
	case c == 'n':
		return p.literal("null", "")
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number()
	}
	return "", errf(ErrMalformedBody, "bad JSON")
}

func (p *jsonScan) literal(word, val string) (string, error) {
	if len(p.b)-p.i < len(word) || string(p.b[p.i:p.i+len(word)]) != word {
		return "", errf(ErrMalformedBody, "bad JSON")
	}
	p.i += len(word)
	return val, nil
}

// number reads -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? and returns its text.
func (p *jsonScan) number() (string, error) {
	start := p.i
	bad := func() (string, error) { return "", errf(ErrMalformedBody, "bad JSON") }
	digits := func() int {
		n := 0
		for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
			p.i++
			n++
		}
		return n
	}
	p.eat('-')
	if p.eat('0') {
		// a leading zero stands alone
	} else if digits() == 0 {
		return bad()
	}
	if p.eat('.') && digits() == 0 {
		return bad()
	}
	if p.eat('e') || p.eat('E') {
		if !p.eat('+') {
			p.eat('-')
		}
		if digits() == 0 {
			return bad()
		}
	}
	return p.text(start, p.i), nil
}
