package cryptosvc

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
)

// maxJSONDepth bounds the nesting of a request body (the deepest well-formed one, a GM/T 0136
// Chain value or a batch item's chain, is 4).
const maxJSONDepth = 6

// errMemberName is the refusal of a body whose member names are not spelt exactly once each.
var errMemberName = errors.New("member names must be spelt exactly (case-sensitive) and appear once per object")

// checkMemberNames refuses a JSON body with an object member whose name is not exactly one of
// names or that appears twice in its object, and one nested deeper than maxJSONDepth.
// encoding/json matches member names case-insensitively, with Unicode folding ("\u212aey",
// KELVIN SIGN, fills "key"), and lets the last of duplicate members win: without this check one
// body could name one key, item or plaintext to whatever reads it before the service (a proxy,
// a log, the caller's signing step) and another to the service. Escapes are read as JSON defines
// them ("k\u0065y" is "key").
func checkMemberNames(body []byte, names map[string]bool) error {
	type frame struct {
		obj     bool
		wantKey bool
		seen    map[string]bool
	}
	var stack []frame
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fail(CodeMalformed, errors.New("body is not JSON"))
		}
		if n := len(stack); n > 0 && stack[n-1].obj && stack[n-1].wantKey {
			if name, ok := tok.(string); ok {
				top := &stack[n-1]
				if !names[name] || top.seen[name] {
					return fail(CodeMalformed, errMemberName)
				}
				top.seen[name], top.wantKey = true, false
				continue
			}
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			if len(stack) >= maxJSONDepth {
				return fail(CodeMalformed, errors.New("body nested too deep"))
			}
			f := frame{obj: tok == json.Delim('{'), wantKey: true}
			if f.obj {
				f.seen = map[string]bool{}
			}
			stack = append(stack, f)
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		if n := len(stack); n > 0 && stack[n-1].obj { // a member's value is complete
			stack[n-1].wantKey = true
		}
	}
}

// jsonNames returns the JSON member names of the struct types of vs (their json tags, embedded
// structs included).
func jsonNames(vs ...any) map[string]bool {
	out := map[string]bool{}
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if f.Anonymous && f.Type.Kind() == reflect.Struct {
				walk(f.Type)
				continue
			}
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name != "" && name != "-" {
				out[name] = true
			}
		}
	}
	for _, v := range vs {
		walk(reflect.TypeOf(v))
	}
	return out
}

// requestNames are the member names of a native request; ntvNames those of a GM/T 0136 one.
var (
	requestNames = jsonNames(Request{})
	ntvNames     = jsonNames(ntvItem{}, struct {
		Data []ntvItem `json:"Data"`
	}{})
)
