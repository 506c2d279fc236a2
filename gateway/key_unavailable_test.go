package gateway

import (
	"crypto"
	"errors"
	"io"
	"net/http"
	"testing"

	"github.com/emmansun/gmsm/pkcs"
	"github.com/emmansun/gmsm/pkcs7"
	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/envelope"
)

// vaultErr is a key failure as keyvault reports it: Unavailable says whether it is the key's
// own (token gone, vault closed) or the input's.
type vaultErr struct{ unavailable bool }

func (e vaultErr) Error() string     { return "keyvault: decrypt: token unavailable" }
func (e vaultErr) Unavailable() bool { return e.unavailable }

// failingDecrypter fails every decryption with err.
type failingDecrypter struct {
	pub crypto.PublicKey
	err error
}

func (f failingDecrypter) Public() crypto.PublicKey { return f.pub }
func (f failingDecrypter) Decrypt(io.Reader, []byte, crypto.DecrypterOpts) ([]byte, error) {
	return nil, f.err
}

// When the gateway's own key fails (token unavailable), the request is refused with 503
// key_unavailable, not blamed on the client as envelope_invalid (400); a key failure caused by the
// input stays envelope_invalid.
func TestKeyUnavailableIsNotTheClientsFault(t *testing.T) {
	key := newSM2Key(t)
	cert := newEncCert(t, key)
	env, err := pkcs7.EncryptSM(pkcs.SM4CBC, []byte(`{"amount":1}`), []*smx509.Certificate{cert})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		err    error
		code   Code
		status int
	}{
		{"token unavailable", vaultErr{true}, CodeKeyUnavailable, http.StatusServiceUnavailable},
		{"wrapped token unavailable", errors.Join(errors.New("pool"), vaultErr{true}), CodeKeyUnavailable, http.StatusServiceUnavailable},
		{"bad input", vaultErr{false}, CodeEnvelopeInvalid, http.StatusBadRequest},
		{"plain error", errors.New("sm2: decryption error"), CodeEnvelopeInvalid, http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := failingDecrypter{pub: &key.PublicKey, err: tc.err}
			_, err := (&envelope.Opener{Cert: cert, Key: d}).Open(env)
			if c := CodeOf(err); c != tc.code || c.Status() != tc.status {
				t.Errorf("envelope: %v -> %s (%d), want %s (%d)", err, c, c.Status(), tc.code, tc.status)
			}
			// The Verifier keeps the code (it maps other opener errors to envelope_invalid).
			v := &Verifier{o: VerifierOptions{Opener: &envelope.Opener{Cert: cert, Key: d}}}
			if _, err := v.open(env); CodeOf(err) != tc.code {
				t.Errorf("verifier: %v -> %s, want %s", err, CodeOf(err), tc.code)
			}
		})
	}
}
