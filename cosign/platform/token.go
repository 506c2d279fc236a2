package platform

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Operations a terminal session may be allowed.
const (
	OpKeygen  = "keygen"
	OpSign    = "sign"
	OpDecrypt = "decrypt"
)

// TokenMAC computes and checks HMAC-SM3 tags under a vault key (a *keyvault.SM4Key).
type TokenMAC interface {
	HMACSM3(data []byte) ([]byte, error)
	VerifyHMACSM3(data, mac []byte) error
}

const tokenPrefix = "cs1."

// maxTokenSize bounds the Authorization value read.
const maxTokenSize = 1024

var errToken = errors.New("token invalid")

// IssueToken makes a short-lived session token for keyID allowing ops until exp: what the
// operator's login service hands a terminal after authenticating its user. The token is
//
//	"cs1." base64url(keyID "\n" exp-unix "\n" op[,op...]) "." base64url(HMAC-SM3(tokenLabel || payload))
//
// under the vault key named in gm_cosign's token_key.
func IssueToken(mac TokenMAC, keyID string, ops []string, exp time.Time) (string, error) {
	if !validKeyID(keyID) || len(ops) == 0 {
		return "", errors.New("cosign: invalid token request")
	}
	for _, op := range ops {
		if op != OpKeygen && op != OpSign && op != OpDecrypt && op != OpRotate {
			return "", fmt.Errorf("cosign: unknown operation %q", op)
		}
	}
	payload := []byte(keyID + "\n" + strconv.FormatInt(exp.Unix(), 10) + "\n" + strings.Join(ops, ","))
	tag, err := mac.HMACSM3(tokenMessage(payload))
	if err != nil {
		return "", err
	}
	return tokenPrefix + base64.RawURLEncoding.EncodeToString(payload) + "." + base64.RawURLEncoding.EncodeToString(tag), nil
}

func tokenMessage(payload []byte) []byte {
	return append([]byte("gmgate cosign session token v1\x00"), payload...)
}

// checkToken verifies a token and returns the key ID it names; it refuses a token that is
// expired, lives longer than maxLife from now, or does not allow op.
func checkToken(mac TokenMAC, tok, op string, now time.Time, maxLife time.Duration) (string, error) {
	if len(tok) > maxTokenSize || !strings.HasPrefix(tok, tokenPrefix) {
		return "", errToken
	}
	p64, t64, ok := strings.Cut(tok[len(tokenPrefix):], ".")
	if !ok {
		return "", errToken
	}
	payload, err1 := base64.RawURLEncoding.DecodeString(p64)
	tag, err2 := base64.RawURLEncoding.DecodeString(t64)
	if err1 != nil || err2 != nil || len(tag) == 0 {
		return "", errToken
	}
	if err := mac.VerifyHMACSM3(tokenMessage(payload), tag); err != nil {
		return "", errToken
	}
	parts := bytes.Split(payload, []byte("\n"))
	if len(parts) != 3 {
		return "", errToken
	}
	exp, err := strconv.ParseInt(string(parts[1]), 10, 64)
	if err != nil {
		return "", errToken
	}
	expT := time.Unix(exp, 0)
	if !now.Before(expT) || expT.Sub(now) > maxLife {
		return "", errors.New("token expired or too long-lived")
	}
	allowed := false
	for _, o := range strings.Split(string(parts[2]), ",") {
		allowed = allowed || o == op
	}
	if !allowed {
		return "", errors.New("token does not allow " + op)
	}
	return string(parts[0]), nil
}

// validKeyID: 1..128 bytes of [A-Za-z0-9._:-].
func validKeyID(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-') {
			return false
		}
	}
	return true
}
