package tlcp

import (
	"crypto"
	"errors"
	"io"
	"testing"
)

// vaultFailure is a key error as the key vault reports it.
type vaultFailure struct{ unavailable bool }

func (e vaultFailure) Error() string     { return "keyvault: decrypt: token unavailable" }
func (e vaultFailure) Unavailable() bool { return e.unavailable }

// brokenDecrypter stands for an encryption key whose store fails.
type brokenDecrypter struct {
	pub crypto.PublicKey
	err error
}

func (b brokenDecrypter) Public() crypto.PublicKey { return b.pub }
func (b brokenDecrypter) Decrypt(io.Reader, []byte, crypto.DecrypterOpts) ([]byte, error) {
	return nil, b.err
}

// When the server's own encryption key fails (its token is gone), the client is told
// internal_error, not decrypt_error: the failure is not its ClientKeyExchange's.
func TestServerKeyFailureAlert(t *testing.T) {
	p := getPKI(t)
	for _, tc := range []struct {
		name string
		err  error
		want Alert
	}{
		{"token unavailable", vaultFailure{true}, AlertInternalError},
		{"bad ciphertext", vaultFailure{false}, AlertDecryptError},
		{"plain error", errors.New("sm2: decryption error"), AlertDecryptError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			enc := p.server.Enc
			enc.PrivateKey = brokenDecrypter{pub: p.server.Enc.PrivateKey.(crypto.Decrypter).Public(), err: tc.err}
			sc := &Config{SignCertificate: p.server.Sign, EncCertificate: enc, ClientCAs: p.pool}
			cc := clientConfig(p, false)
			cc.CipherSuites = []uint16{ECC_SM4_GCM_SM3}
			cliErr, srvErr := runPair(t, sc, cc, func(cli, srv *Conn) error { return nil })
			var ae *AlertError
			if !errors.As(srvErr, &ae) || ae.Alert != tc.want || ae.Remote {
				t.Fatalf("server error %v, want local %s", srvErr, tc.want)
			}
			if !errors.As(cliErr, &ae) || ae.Alert != tc.want || !ae.Remote {
				t.Fatalf("client error %v, want remote %s", cliErr, tc.want)
			}
		})
	}
}
