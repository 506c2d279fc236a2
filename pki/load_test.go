package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
)

// p256Cert returns a self-signed ECDSA P-256 certificate and key made with crypto/x509.
func p256Cert(t testing.TB) ([]byte, *ecdsa.PrivateKey) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "p256"},
		NotBefore: t0.Add(-time.Hour), NotAfter: t0.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	return der, k
}

func TestParseCertificatesPEMErrors(t *testing.T) {
	p256, _ := p256Cert(t)
	sm2c, _ := rawCert(t, &smx509.Certificate{Subject: pkix.Name{CommonName: "ok"}, NotBefore: t0, NotAfter: t0.Add(time.Hour)}, nil, nil)
	good := EncodeCertificatesPEM(sm2c)
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrMalformedPEM},
		{"garbage", []byte("hello world"), ErrMalformedPEM},
		{"key only", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}}), ErrMalformedPEM},
		{"truncated block", good[:len(good)-30], ErrMalformedPEM},
		{"bad DER", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{0x30, 0x03, 1, 2, 3}}), ErrMalformedCertificate},
		{"P-256 cert", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p256}), ErrNotSM2},
		{"sm2 then P-256", append(append([]byte{}, good...), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p256})...), ErrNotSM2},
		{"too large", append(bytes.Repeat([]byte{' '}, MaxPEMSize), good...), ErrInputTooLarge},
		{"too many", bytes.Repeat(good, MaxCertificatesPerPEM+1), ErrInputTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseCertificatesPEM(tc.in)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	// The P-256 error names the certificate.
	_, err := ParseCertificateDER(p256)
	var ve *VerifyError
	if !errors.As(err, &ve) || ve.Subject != "CN=p256" || ve.Serial != "7" {
		t.Fatalf("want VerifyError naming CN=p256 serial 7, got %#v", err)
	}
}

func TestParseCertificatesPEMOrderAndSkip(t *testing.T) {
	var certs []*smx509.Certificate
	for _, cn := range []string{"a", "b", "c"} {
		c, _ := rawCert(t, &smx509.Certificate{Subject: pkix.Name{CommonName: cn}, NotBefore: t0, NotAfter: t0.Add(time.Hour)}, nil, nil)
		certs = append(certs, c)
	}
	data := EncodeCertificatesPEM(certs[0])
	data = append(data, []byte("some comment\n")...)
	data = append(data, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2}})...)
	data = append(data, EncodeCertificatesPEM(certs[1], certs[2])...)
	got, err := ParseCertificatesPEM(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("got %d certs", len(got))
	}
	for i := range got {
		if !got[i].Equal(certs[i]) {
			t.Fatalf("cert %d out of order", i)
		}
	}
	// File forms: PEM and DER.
	dir := t.TempDir()
	fromPEM, err := LoadCertificatesFile(writeFile(t, dir, "c.pem", data))
	if err != nil || len(fromPEM) != 3 {
		t.Fatalf("LoadCertificatesFile PEM: %v %d", err, len(fromPEM))
	}
	fromDER, err := LoadCertificatesFile(writeFile(t, dir, "c.der", certs[1].Raw))
	if err != nil || len(fromDER) != 1 || !fromDER[0].Equal(certs[1]) {
		t.Fatalf("LoadCertificatesFile DER: %v", err)
	}
	if _, err := LoadCertificatesFile(writeFile(t, dir, "big.pem", bytes.Repeat([]byte("-----BEGIN"), MaxPEMSize/5))); !errors.Is(err, ErrInputTooLarge) {
		t.Fatalf("big file: %v", err)
	}
}

func TestPrivateKeyRoundTrip(t *testing.T) {
	key, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, pw := range [][]byte{nil, []byte("correct horse")} {
		enc, err := MarshalPrivateKeyPEM(key, pw)
		if err != nil {
			t.Fatal(err)
		}
		wantType := "PRIVATE KEY"
		if pw != nil {
			wantType = "ENCRYPTED PRIVATE KEY"
		}
		if b, _ := pem.Decode(enc); b == nil || b.Type != wantType {
			t.Fatalf("PEM type: want %s", wantType)
		}
		got, err := ParsePrivateKeyPEM(enc, pw)
		if err != nil {
			t.Fatal(err)
		}
		if got.D.Cmp(key.D) != 0 || got.X.Cmp(key.X) != 0 {
			t.Fatal("key mismatch")
		}
		if pw != nil {
			if _, err := ParsePrivateKeyPEM(enc, []byte("wrong")); !errors.Is(err, ErrBadPassword) {
				t.Fatalf("wrong password: %v", err)
			}
			if _, err := ParsePrivateKeyPEM(enc, nil); !errors.Is(err, ErrBadPassword) {
				t.Fatalf("no password: %v", err)
			}
			if strings.Contains(func() string { _, e := ParsePrivateKeyPEM(enc, []byte("Xyzzy-42")); return e.Error() }(), "Xyzzy") {
				t.Fatal("error echoes the password")
			}
		}
	}
	// SEC1 "EC PRIVATE KEY".
	sec1, err := smx509.MarshalSM2PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParsePrivateKeyPEM(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}), nil)
	if err != nil || got.D.Cmp(key.D) != 0 {
		t.Fatalf("SEC1: %v", err)
	}
	// File.
	enc, _ := MarshalPrivateKeyPEM(key, []byte("pw"))
	p := writeFile(t, t.TempDir(), "k.pem", enc)
	if got, err := LoadPrivateKeyFile(p, []byte("pw")); err != nil || got.D.Cmp(key.D) != 0 {
		t.Fatalf("LoadPrivateKeyFile: %v", err)
	}
}

func TestParsePrivateKeyPEMErrors(t *testing.T) {
	_, p256 := p256Cert(t)
	p256PKCS8, err := x509.MarshalPKCS8PrivateKey(p256)
	if err != nil {
		t.Fatal(err)
	}
	p256SEC1, err := x509.MarshalECPrivateKey(p256)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := sm2.GenerateKey(rand.Reader)
	der, _ := smx509.MarshalPKCS8PrivateKey(key)
	legacy := &pem.Block{Type: "EC PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00"}, Bytes: der}
	tests := []struct {
		name string
		in   []byte
		pw   []byte
		want error
	}{
		{"empty", nil, nil, ErrMalformedPEM},
		{"cert only", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}}), nil, ErrMalformedPEM},
		{"bad pkcs8", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{0x30, 0}}), nil, ErrMalformedKey},
		{"bad sec1", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: []byte{0x30, 0}}), nil, ErrMalformedKey},
		{"p256 pkcs8", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p256PKCS8}), nil, ErrNotSM2},
		{"p256 sec1", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: p256SEC1}), nil, ErrNotSM2},
		{"rsa block", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: []byte{1}}), nil, ErrNotSM2},
		{"legacy encryption", pem.EncodeToMemory(legacy), []byte("x"), ErrMalformedKey},
		{"encrypted garbage", pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{0x30, 0}}), []byte("x"), ErrMalformedKey},
		{"too large", bytes.Repeat([]byte{' '}, MaxPEMSize+1), nil, ErrInputTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParsePrivateKeyPEM(tc.in, tc.pw)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

// TestPBKDF2IterationBound checks that an encrypted key asking for too many
// PBKDF2 iterations is rejected before any key derivation.
func TestPBKDF2IterationBound(t *testing.T) {
	key, _ := sm2.GenerateKey(rand.Reader)
	enc, err := MarshalPrivateKeyPEM(key, []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(enc)
	// Our own output carries pbkdf2Iterations as a 3-byte INTEGER; patch it to 0x7fffff.
	n := uint32(pbkdf2Iterations)
	iter := []byte{0x02, 0x03, byte(n >> 16), byte(n >> 8), byte(n)}
	i := bytes.Index(b.Bytes, iter)
	if i < 0 {
		t.Fatal("iteration count not found in DER")
	}
	patched := bytes.Clone(b.Bytes)
	copy(patched[i+2:], []byte{0x7f, 0xff, 0xff})
	start := time.Now()
	_, err = ParsePrivateKeyPEM(pem.EncodeToMemory(&pem.Block{Type: b.Type, Bytes: patched}), []byte("pw"))
	if !errors.Is(err, ErrMalformedKey) || !strings.Contains(err.Error(), "iteration") {
		t.Fatalf("got %v", err)
	}
	if time.Since(start) > time.Second {
		t.Fatal("bound checked too late")
	}
}

func TestTongsuoPKI(t *testing.T) {
	caPath := tongsuoPath(t, "ca.pem")
	cas, err := LoadCertificatesFile(caPath)
	if err != nil {
		t.Fatal(err)
	}
	if len(cas) != 1 {
		t.Fatalf("ca.pem: %d certs", len(cas))
	}
	if r, err := ClassifyRole(cas[0]); err != nil || r != RoleCA {
		t.Fatalf("ca role %v %v", r, err)
	}
	tests := []struct {
		base string
		role Role
	}{
		{"server_sign", RoleSign}, {"server_enc", RoleEnc},
		{"client_sign", RoleSign}, {"client_enc", RoleEnc},
	}
	for _, tc := range tests {
		t.Run(tc.base, func(t *testing.T) {
			certs, err := LoadCertificatesFile(tongsuoPath(t, tc.base+"_cert.pem"))
			if err != nil {
				t.Fatal(err)
			}
			c := certs[0]
			if err := c.CheckSignatureFrom(cas[0]); err != nil {
				t.Fatalf("not issued by ca.pem: %v", err)
			}
			r, err := ClassifyRole(c)
			if err != nil || r != tc.role {
				t.Fatalf("role %v %v, want %v", r, err, tc.role)
			}
			other := RoleSign
			if tc.role == RoleSign {
				other = RoleEnc
			}
			if err := CheckUsage(c, other); !errors.Is(err, ErrWrongUsage) {
				t.Fatalf("CheckUsage(%v) = %v", other, err)
			}
			key, err := LoadPrivateKeyFile(tongsuoPath(t, tc.base+"_key.pem"), nil)
			if err != nil {
				t.Fatal(err)
			}
			if !key.PublicKey.Equal(c.PublicKey) {
				t.Fatal("key does not match certificate")
			}
			// The key works with the certificate: sign/verify or encrypt/decrypt.
			msg := []byte("gmgate interop")
			switch tc.role {
			case RoleSign:
				sig, err := key.Sign(rand.Reader, msg, sm2.DefaultSM2SignerOpts)
				if err != nil {
					t.Fatal(err)
				}
				if !sm2.VerifyASN1WithSM2(c.PublicKey.(*ecdsa.PublicKey), nil, msg, sig) {
					t.Fatal("signature does not verify with certificate key")
				}
			case RoleEnc:
				ct, err := sm2.EncryptASN1(rand.Reader, c.PublicKey.(*ecdsa.PublicKey), msg)
				if err != nil {
					t.Fatal(err)
				}
				pt, err := key.Decrypt(nil, ct, nil)
				if err != nil || !bytes.Equal(pt, msg) {
					t.Fatalf("decrypt: %v", err)
				}
			}
		})
	}
	// A key from another pair does not match.
	k, _ := LoadPrivateKeyFile(tongsuoPath(t, "server_enc_key.pem"), nil)
	c, _ := LoadCertificatesFile(tongsuoPath(t, "server_sign_cert.pem"))
	if k.PublicKey.Equal(c[0].PublicKey) {
		t.Fatal("mismatched key reported as matching")
	}
}

// TestOpenSSLKeyInterop checks our plain PKCS#8 SM2 key against the system
// OpenSSL 3 and parses OpenSSL's PBES2 encrypted forms of it. Skipped when
// openssl is not installed.
func TestOpenSSLKeyInterop(t *testing.T) {
	bin, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed: skipping OpenSSL key interop")
	}
	key, _ := sm2.GenerateKey(rand.Reader)
	plain, _ := MarshalPrivateKeyPEM(key, nil)
	dir := t.TempDir()
	in := writeFile(t, dir, "plain.pem", plain)
	// OpenSSL reads our key and agrees on the public point.
	out, err := exec.Command(bin, "pkey", "-in", in, "-pubout", "-outform", "DER").Output()
	if err != nil {
		t.Skipf("this openssl cannot read SM2 keys: %v", err)
	}
	pub, err := smx509.ParsePKIXPublicKey(out)
	if err != nil || !key.PublicKey.Equal(pub) {
		t.Fatalf("OpenSSL public key differs: %v", err)
	}
	for _, cipher := range []string{"sm4-cbc", "aes-256-cbc"} {
		encPath := filepath.Join(dir, cipher+".pem")
		cmd := exec.Command(bin, "pkcs8", "-topk8", "-in", in, "-v2", cipher, "-passout", "pass:open sesame", "-out", encPath)
		if msg, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("openssl pkcs8 %s: %v %s", cipher, err, msg)
		}
		got, err := LoadPrivateKeyFile(encPath, []byte("open sesame"))
		if err != nil || got.D.Cmp(key.D) != 0 {
			t.Fatalf("%s: %v", cipher, err)
		}
		if _, err := LoadPrivateKeyFile(encPath, []byte("open sesame!")); !errors.Is(err, ErrBadPassword) {
			t.Fatalf("%s wrong password: %v", cipher, err)
		}
	}
}
