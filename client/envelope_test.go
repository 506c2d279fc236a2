package client

import (
	"bytes"
	"crypto"
	"encoding/base64"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/emmansun/gmsm/pkcs"
	"github.com/emmansun/gmsm/pkcs7"
	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/signing"
)

func TestSealOpen(t *testing.T) {
	p := getPKI(t)
	msg := []byte(`{"card_no":"6222020000000000000","amount":100}`)
	env, err := Seal(msg, p.termEnc.Certificate)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(env, []byte("6222020000000000000")) {
		t.Fatal("plaintext visible in the envelope")
	}
	key := p.termEnc.Key.(crypto.Decrypter)
	// Envelopes made by gmsm directly, as another party would, in both OID sets and both modes.
	direct := func(f func(pkcs.Cipher, []byte, []*smx509.Certificate) ([]byte, error), c pkcs.Cipher) []byte {
		b, err := f(c, msg, []*smx509.Certificate{p.termEnc.Certificate})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	good := map[string][]byte{
		"Seal":              env,
		"Base64":            []byte(base64.StdEncoding.EncodeToString(env) + "\r\n"),
		"EncryptSM SM4-GCM": direct(pkcs7.EncryptSM, pkcs.SM4GCM),
		"Encrypt (PKCS#7)":  direct(pkcs7.Encrypt, pkcs.SM4CBC),
	}
	for name, in := range good {
		got, err := Open(in, p.termEnc.Certificate, key, 1<<20)
		if err != nil || !bytes.Equal(got, msg) {
			t.Errorf("%s: %q %v", name, got, err)
		}
	}
	flipped := append([]byte(nil), env...)
	flipped[len(flipped)-1] ^= 1
	bad := map[string]struct {
		in   []byte
		cert *smx509.Certificate
		key  crypto.Decrypter
	}{
		"trailing data":   {append(append([]byte(nil), env...), 0), p.termEnc.Certificate, key},
		"flipped byte":    {flipped, p.termEnc.Certificate, key},
		"wrong recipient": {env, p.platformEnc.Certificate, p.platformEnc.Key.(crypto.Decrypter)},
		"not base64":      {[]byte("%%%"), p.termEnc.Certificate, key},
		"empty":           {nil, p.termEnc.Certificate, key},
		"truncated":       {env[:len(env)/2], p.termEnc.Certificate, key},
		"no key":          {env, nil, nil},
		"too large":       {bytes.Repeat([]byte{0x30}, 2<<20), p.termEnc.Certificate, key},
	}
	for name, tc := range bad {
		if _, err := Open(tc.in, tc.cert, tc.key, 1<<20); !errors.Is(err, ErrReplyEnvelope) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := Seal(msg, nil); err == nil {
		t.Error("Seal without recipient")
	}
}

func TestIsEnvelope(t *testing.T) {
	for ct, want := range map[string]bool{
		EnvelopeContentType:                                   true,
		"application/pkcs7-mime":                              true,
		"Application/PKCS7-MIME; smime-type=Enveloped-Data":   true,
		"application/x-pkcs7-mime; smime-type=enveloped-data": true,
		"application/pkcs7-mime; smime-type=signed-data":      false,
		"application/json":                                    false,
		"":                                                    false,
		"application/pkcs7-mime; smime-type=\"":               false,
	} {
		if got := isEnvelope(ct); got != want {
			t.Errorf("isEnvelope(%q) = %v", ct, got)
		}
	}
}

// An enveloped reply without a configured key, and a plain reply when a sealed one is
// required, both fail with ErrReplyEnvelope after the signature is checked.
func TestEnvelopePolicy(t *testing.T) {
	p := getPKI(t)
	tr, err := NewTransport(baseConfig(t, p, signing.WechatPayName))
	if err != nil {
		t.Fatal(err)
	}
	env, err := Seal([]byte(`{"a":1}`), p.termEnc.Certificate)
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{"Content-Type": {EnvelopeContentType}}
	if _, _, err := tr.verifyReply(200, h, env); !errors.Is(err, ErrReplyEnvelope) {
		t.Errorf("enveloped reply without key: %v", err)
	}
	cfg := withEnvelope(baseConfig(t, p, signing.WechatPayName), p)
	tr, err = NewTransport(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rm := signedReply(t, p, signing.WechatPayName, []byte(`{"a":1}`), time.Now())
	if _, _, err := tr.verifyReply(200, rm.Header, rm.Body); !errors.Is(err, ErrReplyEnvelope) {
		t.Errorf("plain reply when sealed required: %v", err)
	}
	cfg.Envelope.RequireSealedReply = false
	tr, _ = NewTransport(cfg)
	if _, plain, err := tr.verifyReply(200, rm.Header, rm.Body); err != nil || string(plain) != `{"a":1}` {
		t.Errorf("plain reply allowed: %q %v", plain, err)
	}
}

// signedReply signs body as the platform would, in scheme, at now.
func signedReply(t testing.TB, p *testPKI, scheme string, body []byte, now time.Time) *signing.Message {
	t.Helper()
	sch, err := signing.Lookup(scheme)
	if err != nil {
		t.Fatal(err)
	}
	m := &signing.Message{Kind: signing.Response, Status: 200, Header: http.Header{}, Body: body}
	if scheme == signing.FormName || scheme == signing.UnionPayName {
		m.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	k := signing.Key{Signer: p.platformSign.Key.(crypto.Signer), Cert: p.platformSign.Certificate,
		KeyID: signing.SerialHex(p.platformSign.Certificate.SerialNumber)}
	if scheme == signing.UnionPayName {
		k.KeyID = ""
	}
	if err := sch.Sign(m, k, now, ""); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestSignThenSealReplyRefusesCBC: a sign-then-seal reply is opened before its signature is
// checked, so the SDK opens only SM4-GCM there unless EnvelopeConfig.AllowCBC: a man in the
// middle cannot learn a reply's plaintext from how the terminal reacts to its padding.
func TestSignThenSealReplyRefusesCBC(t *testing.T) {
	p := getPKI(t)
	msg := []byte(`{"ok":true}`)
	cbc, err := Seal(msg, p.termEnc.Certificate)
	if err != nil {
		t.Fatal(err)
	}
	gcm, err := SealGCM(msg, p.termEnc.Certificate)
	if err != nil {
		t.Fatal(err)
	}
	key, cert := p.termEnc.Key.(crypto.Decrypter), p.termEnc.Certificate
	if _, err := open(cbc, cert, key, 1<<20, true); err == nil {
		t.Fatal("CBC opened where authenticated encryption is required")
	}
	if got, err := open(gcm, cert, key, 1<<20, true); err != nil || string(got) != string(msg) {
		t.Fatalf("GCM: %q %v", got, err)
	}
	if got, err := Open(cbc, cert, key, 1<<20); err != nil || string(got) != string(msg) {
		t.Fatalf("CBC where allowed: %q %v", got, err)
	}
}
