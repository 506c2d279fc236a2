package pki

import (
	"bytes"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/emmansun/gmsm/pkcs"
	"github.com/emmansun/gmsm/pkcs8"
	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/internal/testenv"
)

// tongsuoSeeds returns the Tongsuo PEM files matching pattern, if present.
func tongsuoSeeds(pattern string) [][]byte {
	files, _ := filepath.Glob(filepath.Join(testenv.SharedDir(), "interop", "tongsuo", "pki", pattern)) // seeds only: optional
	var out [][]byte
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil {
			out = append(out, b)
		}
	}
	return out
}

func FuzzParseCertificatesPEM(f *testing.F) {
	for _, s := range tongsuoSeeds("*cert*.pem") {
		f.Add(s)
	}
	for _, s := range tongsuoSeeds("ca.pem") {
		f.Add(s)
	}
	root, _, err := NewRootCA(IssueOptions{CommonName: "fuzz root", NotBefore: t0})
	if err != nil {
		f.Fatal(err)
	}
	pair, _ := root.IssueServerPair(IssueOptions{CommonName: "fuzz", DNSNames: []string{"a.example"}, NotBefore: t0})
	f.Add(EncodeCertificatesPEM(pair.Sign.Cert, pair.Enc.Cert, root.Cert))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		certs, err := ParseCertificatesPEM(data)
		if err != nil {
			if certs != nil {
				t.Fatal("certificates returned with an error")
			}
			return
		}
		if len(certs) == 0 || len(certs) > MaxCertificatesPerPEM {
			t.Fatalf("%d certificates", len(certs))
		}
		for _, c := range certs {
			if !isSM2PublicKey(c.PublicKey) || c.SignatureAlgorithm != smx509.SM2WithSM3 {
				t.Fatal("non-SM2 certificate accepted")
			}
			_ = Describe(c)
			_, _ = ClassifyRole(c)
		}
		again, err := ParseCertificatesPEM(EncodeCertificatesPEM(certs...))
		if err != nil || len(again) != len(certs) {
			t.Fatalf("re-encoding: %v", err)
		}
	})
}

var fuzzPassword = []byte("fuzz-pw")

func FuzzParsePrivateKeyPEM(f *testing.F) {
	for _, s := range tongsuoSeeds("*key*.pem") {
		f.Add(s)
	}
	key, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	plain, _ := MarshalPrivateKeyPEM(key, nil)
	f.Add(plain)
	sec1, _ := smx509.MarshalSM2PrivateKey(key)
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}))
	// Encrypted seed with a small iteration count to keep executions fast.
	der, err := pkcs8.MarshalPrivateKey(key, fuzzPassword, pkcs.NewPBESEncrypter(pkcs.SM4CBC, pkcs.NewPBKDF2Opts(pkcs.SM3, 8, 16)))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: der}))
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := ParsePrivateKeyPEM(data, fuzzPassword)
		if err != nil {
			if k != nil {
				t.Fatal("key returned with an error")
			}
			return
		}
		if !isSM2PublicKey(&k.PublicKey) {
			t.Fatal("non-SM2 key accepted")
		}
		// A parsed key round-trips.
		enc, err := MarshalPrivateKeyPEM(k, nil)
		if err != nil {
			return // e.g. a scalar out of range that smx509 refuses to encode
		}
		k2, err := ParsePrivateKeyPEM(enc, nil)
		if err != nil || k2.D.Cmp(k.D) != 0 {
			t.Fatalf("round trip: %v", err)
		}
	})
}

func FuzzParseCRL(f *testing.F) {
	root, _, err := NewRootCA(IssueOptions{CommonName: "fuzz root", NotBefore: t0})
	if err != nil {
		f.Fatal(err)
	}
	der, err := root.CreateCRLAt([]smx509.RevocationListEntry{{SerialNumber: big.NewInt(5)}, {SerialNumber: big.NewInt(99), ReasonCode: 1}}, big.NewInt(2), t0, t0.Add(time.Hour))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(der)
	f.Add(EncodeCRLPEM(der))
	f.Add(append(EncodeCRLPEM(der), EncodeCRLPEM(der)...))
	f.Fuzz(func(t *testing.T, data []byte) {
		rl, err := ParseCRL(data)
		if err != nil {
			if rl != nil {
				t.Fatal("CRL returned with an error")
			}
			if len(data) > MaxCRLSize && !errors.Is(err, ErrInputTooLarge) {
				t.Fatal("oversized input not reported as too large")
			}
			return
		}
		_ = rl.CheckSignatureFrom(root.Cert)
		// The store path must not panic either.
		s := &CRLStore{opts: CRLOptions{Now: func() time.Time { return t0 }}}
		lc := &loadedCRL{rl: rl, revoked: map[string]struct{}{}, sigOK: map[[32]byte]bool{}}
		s.files = []*crlFile{{path: "fuzz", crls: []*loadedCRL{lc}}}
		s.lastCheck = t0
		s.opts.CheckInterval = time.Hour
		_, _ = s.IsRevoked(root.Cert, root.Cert)
		if bytes.Equal(data, der) && rl.Number.Int64() != 2 {
			t.Fatal("seed CRL misparsed")
		}
	})
}

// FuzzParseCertificateDER feeds arbitrary DER (a peer's certificate list arrives as DER) to the
// parser and what it accepts to the chain check as a leaf and as a peer-sent intermediate: no
// panic, and nothing verifies that the fixture's root did not issue.
func FuzzParseCertificateDER(f *testing.F) {
	fx := newFixture(f, okRange, okRange, okRange)
	v := fx.verifier(f, nil, t0)
	f.Add(fx.sign.Raw)
	f.Add(fx.inter.Raw)
	f.Add(fx.root.Raw)
	for _, s := range tongsuoSeeds("*cert*.pem") {
		if certs, err := ParseCertificatesPEM(s); err == nil {
			f.Add(certs[0].Raw)
		}
	}
	f.Fuzz(func(t *testing.T, der []byte) {
		c, err := ParseCertificateDER(der)
		if err != nil {
			if c != nil {
				t.Fatal("certificate returned with an error")
			}
			return
		}
		_ = Describe(c)
		for _, role := range []Role{RoleSign, RoleEnc} {
			if chains, err := v.Verify(c, []*smx509.Certificate{fx.inter}, role); err == nil {
				if !chains[0][len(chains[0])-1].Equal(fx.root) {
					t.Fatal("verified to another root")
				}
			}
			_, _ = v.Verify(fx.sign, []*smx509.Certificate{c}, role)
		}
	})
}
