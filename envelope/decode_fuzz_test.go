package envelope_test

import (
	"bytes"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"testing"

	"github.com/gmgate/gmgate/envelope"
)

// FuzzDecodeBody feeds arbitrary bodies to the DER/PEM/Base64 front of the envelope opener:
// refusals are ErrTooLarge or ErrFormat (both envelope.ErrInvalid), nothing over the bound is
// returned, DER is returned unchanged, and what was accepted decodes the same again when
// re-encoded as Base64 and as PEM.
func FuzzDecodeBody(f *testing.F) {
	der := []byte{0x30, 0x03, 0x02, 0x01, 0x01}
	f.Add(der, 64)
	f.Add([]byte(base64.StdEncoding.EncodeToString(der)), 64)
	f.Add([]byte(base64.RawURLEncoding.EncodeToString(der)+"\r\n"), 0)
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "PKCS7", Bytes: der}), 4)
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n"), 64)
	f.Fuzz(func(t *testing.T, body []byte, max int) {
		max %= 1 << 16
		bound := max
		if bound <= 0 {
			bound = envelope.DefaultMaxSize
		}
		out, err := envelope.DecodeBody(body, max)
		if err != nil {
			if out != nil || !(errors.Is(err, envelope.ErrTooLarge) || errors.Is(err, envelope.ErrFormat)) {
				t.Fatalf("refusal %v with output or outside ErrTooLarge/ErrFormat", err)
			}
			return
		}
		if len(out) > bound || len(out) == 0 {
			t.Fatalf("accepted %d bytes, bound %d", len(out), bound)
		}
		if body[0] == 0x30 && !bytes.Equal(out, body) {
			t.Fatal("DER body changed")
		}
		if out[0] != 0x30 {
			return // re-encodings of a non-DER result would be read as Base64 again
		}
		for _, enc := range [][]byte{[]byte(base64.StdEncoding.EncodeToString(out)), pem.EncodeToMemory(&pem.Block{Type: "PKCS7", Bytes: out})} {
			again, err := envelope.DecodeBody(enc, max)
			if err != nil && !errors.Is(err, envelope.ErrTooLarge) {
				t.Fatalf("re-encoded body refused: %v", err)
			}
			if err == nil && !bytes.Equal(again, out) {
				t.Fatal("re-encoded body decodes differently")
			}
		}
	})
}
