package caddymodule

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/emmansun/gmsm/smx509"
	"go.uber.org/zap"

	"github.com/gmgate/gmgate/cryptosvc"
	"github.com/gmgate/gmgate/keyvault"
)

// countingKeys is a key vault that knows no key and counts every use.
type countingKeys struct{ n atomic.Int32 }

func (k *countingKeys) use() error                                 { k.n.Add(1); return keyvault.ErrKeyNotFound }
func (k *countingKeys) Signer(string) (crypto.Signer, error)       { return nil, k.use() }
func (k *countingKeys) PublicKey(string) (crypto.PublicKey, error) { return nil, k.use() }
func (k *countingKeys) Decrypter(string) (crypto.Decrypter, error) { return nil, k.use() }
func (k *countingKeys) Certificate(string) ([]*smx509.Certificate, error) {
	return nil, k.use()
}
func (k *countingKeys) SymmetricKey(string) (cryptosvc.SymmetricKey, error) { return nil, k.use() }
func (k *countingKeys) Versions(string) ([]int, int, error)                 { return nil, 0, k.use() }
func (k *countingKeys) Rotate(string) (int, error)                          { return 0, k.use() }

// TestAttackCryptoBrowserRequest: a browser holding the client certificate of a caller allowed
// to rotate is made, by a page of another site, to POST RotateKey (a no-cors fetch or a
// text/plain form carries the JSON body). gm_crypto refuses it as a browser request before the
// vault is touched; the same request from a system is served.
func TestAttackCryptoBrowserRequest(t *testing.T) {
	h, keys, cert := opsRotateHandler(t)
	rows := []struct {
		name   string
		header map[string]string
		code   string
		used   bool
	}{
		{"system", map[string]string{"Content-Type": "application/json"}, "crypto_unknown_key", true},
		{"cross-site form", map[string]string{"Origin": "https://evil.example", "Content-Type": "text/plain"}, "crypto_forbidden", false},
		{"no-cors fetch", map[string]string{"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"}, "crypto_forbidden", false},
	}
	for _, tc := range rows {
		t.Run(tc.name, func(t *testing.T) {
			keys.n.Store(0)
			r := httptest.NewRequest(http.MethodPost, "https://gmgate.internal/shf/v1/RotateKey", strings.NewReader(`{"key":"pii"}`))
			r.TLS = &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{cert}}}
			for k, v := range tc.header {
				r.Header.Set(k, v)
			}
			w := httptest.NewRecorder()
			if err := h.ServeHTTP(w, r, nil); err != nil {
				t.Fatal(err)
			}
			if got := w.Header().Get(cryptosvc.HeaderCode); got != tc.code {
				t.Fatalf("code %q (status %d), want %q", got, w.Code, tc.code)
			}
			if used := keys.n.Load() > 0; used != tc.used {
				t.Fatalf("vault used: %v, want %v", used, tc.used)
			}
		})
	}
}

// TestAttackCryptoEncodedPath: an operation named through percent-encoding
// (/shf/v1/Rotate%4Bey) slips past a proxy or route that refuses /shf/v1/RotateKey by its
// literal path; gm_crypto serves operations only at their literal path.
func TestAttackCryptoEncodedPath(t *testing.T) {
	h, keys, cert := opsRotateHandler(t)
	rows := []struct {
		path string
		code string
		used bool
	}{
		{"/shf/v1/RotateKey", "crypto_unknown_key", true},
		{"/shf/v1/Rotate%4Bey", "crypto_unknown_operation", false},
		{"/shf/v1/%52otateKey", "crypto_unknown_operation", false},
		{"/shf%2Fv1/RotateKey", "crypto_unknown_operation", false},
		{"/shf/v1/RotateKey%2F", "crypto_unknown_operation", false},
	}
	for _, tc := range rows {
		t.Run(tc.path, func(t *testing.T) {
			keys.n.Store(0)
			r := httptest.NewRequest(http.MethodPost, "https://gmgate.internal"+tc.path, strings.NewReader(`{"key":"pii"}`))
			r.TLS = &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{cert}}}
			w := httptest.NewRecorder()
			if err := h.ServeHTTP(w, r, nil); err != nil {
				t.Fatal(err)
			}
			if got := w.Header().Get(cryptosvc.HeaderCode); got != tc.code {
				t.Fatalf("code %q (status %d), want %q", got, w.Code, tc.code)
			}
			if used := keys.n.Load() > 0; used != tc.used {
				t.Fatalf("vault used: %v, want %v", used, tc.used)
			}
		})
	}
}

// opsRotateHandler is gm_crypto's handler over a policy letting caller "ops" (its client
// certificate's CN) rotate key "pii", with a vault that counts the calls reaching it.
func opsRotateHandler(t *testing.T) (*Crypto, *countingKeys, *x509.Certificate) {
	t.Helper()
	p, err := cryptosvc.NewPolicy(cryptosvc.PolicyConfig{
		Callers: []cryptosvc.CallerConfig{{Name: "ops", SubjectCN: "ops"}},
		Rules:   []cryptosvc.Rule{{Caller: "ops", Ops: []cryptosvc.Op{cryptosvc.OpRotate}, Key: "pii"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	keys := &countingKeys{}
	svc, err := cryptosvc.New(cryptosvc.Options{Keys: keys, Policy: p})
	if err != nil {
		t.Fatal(err)
	}
	cert := &x509.Certificate{Raw: []byte("ops certificate"), SerialNumber: big.NewInt(7),
		Subject: pkix.Name{Names: []pkix.AttributeTypeAndValue{{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: "ops"}}}}
	return &Crypto{svc: svc, logger: zap.NewNop()}, keys, cert
}
