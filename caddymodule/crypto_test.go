package caddymodule

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// TestCryptoValidateRefusesAmbiguousCallers: `gmgate validate` (Validate, no side effects)
// refuses two callers that one certificate could both match.
func TestCryptoValidateRefusesAmbiguousCallers(t *testing.T) {
	for _, c := range []struct {
		conf string
		ok   bool
	}{
		{"caller a subject_cn x\ncaller b subject_cn x", false},
		{"caller a subject_cn x\ncaller b fingerprint " + strings.Repeat("ab", 32), false},
		{"caller a subject_cn x fingerprint " + strings.Repeat("ab", 32) + "\ncaller b subject_cn x fingerprint " + strings.Repeat("cd", 32), true},
		{"caller a subject_cn x\ncaller b subject_cn y", true},
	} {
		var h Crypto
		if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("gm_crypto {\n" + c.conf + "\n}")); err != nil {
			t.Fatal(err)
		}
		if err := h.Validate(); (err == nil) != c.ok {
			t.Fatalf("%q: Validate: %v, want ok=%v", c.conf, err, c.ok)
		}
	}
}
