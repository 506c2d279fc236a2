package cryptosvc

import (
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
)

// ciphertextPrefix starts every ciphertext and HMAC the service returns: "gm:v<N>:<base64>".
const ciphertextPrefix = "gm:v"

// aadLabel starts the additional authenticated data of every ciphertext.
const aadLabel = "gmgate-cryptosvc-v1"

// aadFor is the additional authenticated data of a ciphertext: the label, the key name, the
// key version and the caller's context, NUL-separated (key names hold no NUL; the context is
// last). A ciphertext therefore opens only under the key and version that made it, with the
// same context: moving it to another key, or rewriting its version prefix, fails the tag.
func aadFor(key string, version int, context []byte) []byte {
	b := make([]byte, 0, len(aadLabel)+len(key)+len(context)+16)
	b = append(b, aadLabel...)
	b = append(b, 0)
	b = append(b, key...)
	b = append(b, 0)
	b = strconv.AppendInt(b, int64(version), 10)
	b = append(b, 0)
	return append(b, context...)
}

// formatVersioned renders "gm:v<N>:<base64 of body>".
func formatVersioned(version int, body []byte) string {
	return ciphertextPrefix + strconv.Itoa(version) + ":" + base64.StdEncoding.EncodeToString(body)
}

var errCiphertextFormat = errors.New(`want "gm:v<N>:<base64>"`)

// parseVersioned splits "gm:v<N>:<base64>" into N (1..999999999, no leading zero) and the
// decoded body (strict standard Base64).
func parseVersioned(s string) (int, []byte, error) {
	rest, ok := strings.CutPrefix(s, ciphertextPrefix)
	if !ok {
		return 0, nil, errCiphertextFormat
	}
	num, b64, ok := strings.Cut(rest, ":")
	if !ok || num == "" || len(num) > 9 || num[0] == '0' {
		return 0, nil, errCiphertextFormat
	}
	v := 0
	for i := 0; i < len(num); i++ {
		if num[i] < '0' || num[i] > '9' {
			return 0, nil, errCiphertextFormat
		}
		v = v*10 + int(num[i]-'0')
	}
	if strings.ContainsAny(b64, "\r\n") { // the decoder skips them: one ciphertext, one spelling
		return 0, nil, errCiphertextFormat
	}
	body, err := base64.StdEncoding.Strict().DecodeString(b64)
	if err != nil {
		return 0, nil, errCiphertextFormat
	}
	return v, body, nil
}
