package keyvault

import (
	"crypto/rand"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/emmansun/gmsm/pkcs8"
	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/internal/testenv"
)

type stdVectors struct {
	SM2Sign struct {
		D, X, Y, UserID, Message, R, S string
	}
	SM2Enc struct {
		Message, C1, C3, C2 string
	}
	SM4CBC struct{ Key, IV, Plaintext, Ciphertext string }
	SM4GCM struct{ Key, IV, AAD, Plaintext, Ciphertext, Tag string }
}

func loadVectors(t testing.TB) *stdVectors {
	t.Helper()
	path := filepath.Join(testenv.InteropDir(t), "standard-vectors.json")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var raw struct {
		SM2Sign map[string]string `json:"sm2_sign"`
		SM2Enc  map[string]string `json:"sm2_encrypt"`
		SM4CBC  map[string]string `json:"sm4_cbc"`
		SM4GCM  map[string]string `json:"sm4_gcm_rfc8998_a1"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatalf("vectors: %v", err)
	}
	v := &stdVectors{}
	v.SM2Sign.D, v.SM2Sign.X, v.SM2Sign.Y = raw.SM2Sign["private_key_d"], raw.SM2Sign["public_x"], raw.SM2Sign["public_y"]
	v.SM2Sign.UserID, v.SM2Sign.Message = raw.SM2Sign["user_id_ascii"], raw.SM2Sign["message_ascii"]
	v.SM2Sign.R, v.SM2Sign.S = raw.SM2Sign["r"], raw.SM2Sign["s"]
	v.SM2Enc.Message, v.SM2Enc.C1, v.SM2Enc.C3, v.SM2Enc.C2 = raw.SM2Enc["message_ascii"], raw.SM2Enc["c1"], raw.SM2Enc["c3"], raw.SM2Enc["c2"]
	v.SM4CBC.Key, v.SM4CBC.IV, v.SM4CBC.Plaintext, v.SM4CBC.Ciphertext = raw.SM4CBC["key"], raw.SM4CBC["iv"], raw.SM4CBC["plaintext"], raw.SM4CBC["ciphertext"]
	g := raw.SM4GCM
	v.SM4GCM.Key, v.SM4GCM.IV, v.SM4GCM.AAD, v.SM4GCM.Plaintext, v.SM4GCM.Ciphertext, v.SM4GCM.Tag = g["key"], g["iv"], g["aad"], g["plaintext"], g["ciphertext"], g["tag"]
	if v.SM2Sign.D == "" || v.SM2Enc.C1 == "" || v.SM4CBC.Key == "" || v.SM4GCM.Key == "" {
		t.Fatalf("vectors file lacks expected fields")
	}
	return v
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ToLower(s))
	if err != nil {
		t.Fatalf("hex %q: %v", s, err)
	}
	return b
}

func sm2PEM(t testing.TB, priv *sm2.PrivateKey, password []byte) []byte {
	t.Helper()
	if password == nil {
		der, err := smx509.MarshalPKCS8PrivateKey(priv)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	der, err := pkcs8.MarshalPrivateKey(priv, password, nil)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: der})
}

func newSM2(t testing.TB) *sm2.PrivateKey {
	t.Helper()
	k, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var objCounter atomic.Int64

// uniqueObject returns a fresh token object name (tests share tokens).
func uniqueObject(prefix string) string {
	return prefix + "-" + hex.EncodeToString([]byte{byte(objCounter.Add(1))}) + "-" + randHex(4)
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func mustKind(t testing.TB, err, kind error) {
	t.Helper()
	if err == nil {
		t.Fatalf("expected error %v, got nil", kind)
	}
	if !errors.Is(err, kind) {
		t.Fatalf("expected %v, got %v", kind, err)
	}
}

func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func pkixName(cn string) pkix.Name {
	return pkix.Name{CommonName: cn, Organization: []string{"gmgate"}}
}
