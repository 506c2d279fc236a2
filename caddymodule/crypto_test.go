package caddymodule

import (
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
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

// TestCryptoSignedRequestsConfig: signed requests are accepted only with a scheme whose
// signature covers the method, the path and the body, and with the callers' certificates.
func TestCryptoSignedRequestsConfig(t *testing.T) {
	const ids = "\nidentities {\n\tfile /etc/gmgate/callers.pem\n}\nclient_ca /etc/gmgate/ca.pem\n"
	for _, c := range []struct {
		conf string
		ok   bool
	}{
		{"scheme http-sig-sm2" + ids, true},
		{"scheme wechatpay-v3-sm2" + ids, true},
		{"scheme http-sig-sm2 {\n\tcomponents @method @path content-digest\n}" + ids, true},
		{"scheme form-sm2" + ids, false},                                            // covers the body's fields only: an operation could be swapped
		{"scheme unionpay-sm2" + ids, false},                                        // the same
		{"scheme http-sig-sm2 {\n\tcomponents @method @target-uri\n}" + ids, false}, // body not covered
		{"scheme http-sig-sm2 {\n\tcomponents @target-uri content-digest\n}" + ids, false},
		{"scheme http-sig-sm2 {\n\tcomponents @method content-digest\n}" + ids, false},
		{"scheme http-sig-sm2\nclient_ca /etc/gmgate/ca.pem", false}, // no identities
		{"client_ca /etc/gmgate/ca.pem" + ids, true},                 // http-sig-sm2 by default
	} {
		var h Crypto
		if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("gm_crypto {\ncaller a subject_cn a\n" + c.conf + "\n}")); err != nil {
			t.Fatalf("%q: %v", c.conf, err)
		}
		if err := h.Validate(); (err == nil) != c.ok {
			t.Fatalf("%q: Validate: %v, want ok=%v", c.conf, err, c.ok)
		}
	}
	var h Crypto
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("gm_crypto {\nscheme http-sig-sm2 {\n\tuser_id 1234\n}" + ids +
		"client_crls /a.crl /b.crl\nclient_intermediates /i.pem\nreplay {\n\twindow 2m\n\tstore redis\n\tredis_address 127.0.0.1:6379\n}\n}")); err != nil {
		t.Fatal(err)
	}
	sr := h.SignedRequests
	if sr == nil || sr.Scheme != "http-sig-sm2" || sr.SchemeOptions.UserID != "1234" || len(sr.Identities.Files) != 1 ||
		len(sr.ClientCA) != 1 || len(sr.ClientCRLs) != 2 || len(sr.ClientIntermediates) != 1 || sr.Replay.Store != "redis" ||
		sr.Replay.Window != caddy.Duration(2*time.Minute) {
		t.Fatalf("parsed %+v", sr)
	}
}

// TestCryptoGMT0029Options: the certificate set and the verify-level floor.
func TestCryptoGMT0029Options(t *testing.T) {
	var h Crypto
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("gm_crypto {\ncertificates /a.pem /b.pem\nmin_verify_level 1\n}")); err != nil {
		t.Fatal(err)
	}
	if len(h.Certificates) != 2 || h.MinVerifyLevel == nil || *h.MinVerifyLevel != 1 || h.Validate() != nil {
		t.Fatalf("parsed %+v", h)
	}
	three := 3
	h.MinVerifyLevel = &three
	if h.Validate() == nil {
		t.Fatal("min_verify_level 3 accepted")
	}
}
