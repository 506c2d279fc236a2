package attack

import (
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
)

// Versioned ciphertexts of the crypto service ("gm:v<N>:<base64>", docs/crypto-service.md): what
// an attacker holding one (a database dump, a captured response) can do to it without the key.

func splitVersioned(ct string) (int, []byte, error) {
	rest, ok := strings.CutPrefix(ct, "gm:v")
	if !ok {
		return 0, nil, errors.New("attack: not a gm:v ciphertext")
	}
	num, b64, ok := strings.Cut(rest, ":")
	if !ok {
		return 0, nil, errors.New("attack: not a gm:v ciphertext")
	}
	v, err := strconv.Atoi(num)
	if err != nil {
		return 0, nil, err
	}
	body, err := base64.StdEncoding.DecodeString(b64)
	return v, body, err
}

func joinVersioned(v int, body []byte) string {
	return "gm:v" + strconv.Itoa(v) + ":" + base64.StdEncoding.EncodeToString(body)
}

// FlipCiphertextBit flips the lowest bit of byte i of the sealed body (nonce ‖ ciphertext ‖ tag;
// negative i counts from the end) and keeps the version prefix.
func FlipCiphertextBit(ct string, i int) (string, error) {
	v, body, err := splitVersioned(ct)
	if err != nil {
		return "", err
	}
	if i < 0 {
		i += len(body)
	}
	if i < 0 || i >= len(body) {
		return "", errors.New("attack: byte index out of range")
	}
	body[i] ^= 1
	return joinVersioned(v, body), nil
}

// RelabelCiphertextVersion rewrites the version prefix (to make an old ciphertext pass for a
// newer version a caller may decrypt, or the reverse) and keeps the sealed body.
func RelabelCiphertextVersion(ct string, version int) (string, error) {
	_, body, err := splitVersioned(ct)
	if err != nil {
		return "", err
	}
	return joinVersioned(version, body), nil
}

// TruncateCiphertext keeps the first n bytes of the sealed body.
func TruncateCiphertext(ct string, n int) (string, error) {
	v, body, err := splitVersioned(ct)
	if err != nil {
		return "", err
	}
	if n > len(body) {
		n = len(body)
	}
	return joinVersioned(v, body[:n]), nil
}
