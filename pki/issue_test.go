package pki

import (
	"bytes"
	"crypto/rand"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"reflect"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
)

// pemRoundTrip encodes c and key (encrypted with pw) to PEM and parses them back.
func pemRoundTrip(t *testing.T, c *smx509.Certificate, key *sm2.PrivateKey, pw []byte) (*smx509.Certificate, *sm2.PrivateKey) {
	t.Helper()
	certs, err := ParseCertificatesPEM(EncodeCertificatesPEM(c))
	if err != nil || len(certs) != 1 || !bytes.Equal(certs[0].Raw, c.Raw) {
		t.Fatalf("certificate PEM round trip: %v", err)
	}
	if key == nil {
		return certs[0], nil
	}
	kp, err := MarshalPrivateKeyPEM(key, pw)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ParsePrivateKeyPEM(kp, pw)
	if err != nil {
		t.Fatal(err)
	}
	if !k.PublicKey.Equal(certs[0].PublicKey) {
		t.Fatal("key does not match certificate after round trip")
	}
	return certs[0], k
}

func TestIssueRoundTrip(t *testing.T) {
	nb := t0.Add(-time.Hour)
	root, rootKey, err := NewRootCA(IssueOptions{CommonName: "gmgate Root", Organization: []string{"gmgate"}, NotBefore: nb})
	if err != nil {
		t.Fatal(err)
	}
	if k, ok := root.Key.(*sm2.PrivateKey); !ok || k != rootKey {
		t.Fatal("root key")
	}
	inter, _, err := root.IssueIntermediateCA(IssueOptions{CommonName: "gmgate Issuing CA", NotBefore: nb, MaxPathLen: -1})
	if err != nil {
		t.Fatal(err)
	}
	leafOpts := IssueOptions{
		CommonName: "pay.example", Organization: []string{"gmgate"}, OrganizationalUnit: []string{"payments"},
		DNSNames: []string{"pay.example", "localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		EmailAddresses: []string{"ops@pay.example"}, NotBefore: nb,
	}
	server, err := inter.IssueServerPair(leafOpts)
	if err != nil {
		t.Fatal(err)
	}
	client, err := inter.IssueClientPair(IssueOptions{CommonName: "terminal-0001", NotBefore: nb})
	if err != nil {
		t.Fatal(err)
	}
	platform, err := inter.IssuePlatform(IssueOptions{CommonName: "gmgate platform", NotBefore: nb})
	if err != nil {
		t.Fatal(err)
	}

	// Round trip every certificate and key through PEM (keys encrypted), then verify.
	rootCert, _ := pemRoundTrip(t, root.Cert, rootKey, []byte("root pw"))
	interCert, _ := pemRoundTrip(t, inter.Cert, nil, nil)
	v, err := NewVerifier(VerifierOptions{Roots: []*smx509.Certificate{rootCert}, Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		iss  *Issued
		role Role
		eku  []smx509.ExtKeyUsage
		ku   smx509.KeyUsage
	}{
		{"server sign", server.Sign, RoleSign, []smx509.ExtKeyUsage{smx509.ExtKeyUsageServerAuth, smx509.ExtKeyUsageClientAuth}, kuSign},
		{"server enc", server.Enc, RoleEnc, []smx509.ExtKeyUsage{smx509.ExtKeyUsageServerAuth, smx509.ExtKeyUsageClientAuth}, kuEnc},
		{"client sign", client.Sign, RoleSign, []smx509.ExtKeyUsage{smx509.ExtKeyUsageClientAuth}, kuSign},
		{"client enc", client.Enc, RoleEnc, []smx509.ExtKeyUsage{smx509.ExtKeyUsageClientAuth}, kuEnc},
		{"platform", platform, RoleSign, nil, kuSign},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, k := pemRoundTrip(t, tc.iss.Cert, tc.iss.Key, []byte("leaf pw"))
			if r, err := ClassifyRole(c); err != nil || r != tc.role {
				t.Fatalf("role %v %v", r, err)
			}
			if c.KeyUsage != tc.ku || !reflect.DeepEqual(c.ExtKeyUsage, tc.eku) {
				t.Fatalf("usage %v eku %v", c.KeyUsage, c.ExtKeyUsage)
			}
			if c.SignatureAlgorithm != smx509.SM2WithSM3 || c.IsCA {
				t.Fatal("bad algorithm or IsCA")
			}
			if len(c.SubjectKeyId) != 20 || !bytes.Equal(c.AuthorityKeyId, interCert.SubjectKeyId) {
				t.Fatal("key identifiers")
			}
			chains, err := v.Verify(c, []*smx509.Certificate{interCert}, tc.role)
			if err != nil {
				t.Fatal(err)
			}
			if len(chains[0]) != 3 {
				t.Fatalf("chain length %d", len(chains[0]))
			}
			// The private key signs for its certificate.
			msg := []byte("order 42")
			sig, err := k.Sign(rand.Reader, msg, sm2.DefaultSM2SignerOpts)
			if err != nil || c.CheckSignature(smx509.SM2WithSM3, msg, sig) != nil {
				t.Fatalf("key does not sign for certificate: %v", err)
			}
		})
	}
	for _, c := range []*smx509.Certificate{rootCert, interCert} {
		if r, err := ClassifyRole(c); err != nil || r != RoleCA {
			t.Fatalf("CA role: %v %v", r, err)
		}
	}
	if !interCert.MaxPathLenZero || interCert.MaxPathLen != 0 {
		t.Fatal("MaxPathLen -1 should give pathLen 0")
	}
	// Pair: same subject and SANs, distinct keys and serials.
	s, e := server.Sign.Cert, server.Enc.Cert
	if !bytes.Equal(s.RawSubject, e.RawSubject) || !reflect.DeepEqual(s.DNSNames, e.DNSNames) ||
		!reflect.DeepEqual(s.IPAddresses, e.IPAddresses) || !reflect.DeepEqual(s.EmailAddresses, e.EmailAddresses) {
		t.Fatal("pair certificates differ in subject or SANs")
	}
	if s.Subject.CommonName != "pay.example" || s.Subject.OrganizationalUnit[0] != "payments" || len(s.DNSNames) != 2 {
		t.Fatalf("subject %v", s.Subject)
	}
	if server.Sign.Key.Equal(server.Enc.Key) || s.SerialNumber.Cmp(e.SerialNumber) == 0 {
		t.Fatal("pair shares key or serial")
	}
	if s.SerialNumber.BitLen() < 64 {
		t.Fatal("serial not random-looking")
	}
	// Defaults: leaf 1 year, CA 10 years.
	if d := s.NotAfter.Sub(s.NotBefore); d != DefaultLeafValidity {
		t.Fatalf("leaf validity %v", d)
	}
	if d := root.Cert.NotAfter.Sub(root.Cert.NotBefore); d != DefaultCAValidity {
		t.Fatalf("CA validity %v", d)
	}
}

func TestIssueOtherInstitution(t *testing.T) {
	nb := t0.Add(-time.Hour)
	ours, _, _ := NewRootCA(IssueOptions{CommonName: "gmgate Root", NotBefore: nb})
	bank, _, _ := NewRootCA(IssueOptions{CommonName: "Bank Root", NotBefore: nb})
	bankServer, err := bank.IssueServerPair(IssueOptions{CommonName: "api.bank.example", DNSNames: []string{"api.bank.example"}, NotBefore: nb})
	if err != nil {
		t.Fatal(err)
	}
	bankPlatform, err := bank.IssuePlatform(IssueOptions{CommonName: "bank platform", NotBefore: nb})
	if err != nil {
		t.Fatal(err)
	}
	vBank, _ := NewVerifier(VerifierOptions{Roots: []*smx509.Certificate{bank.Cert}, Now: func() time.Time { return t0 }})
	vOurs, _ := NewVerifier(VerifierOptions{Roots: []*smx509.Certificate{ours.Cert}, Now: func() time.Time { return t0 }})
	for _, c := range []*smx509.Certificate{bankServer.Sign.Cert, bankPlatform.Cert} {
		if _, err := vBank.Verify(c, nil, RoleSign); err != nil {
			t.Fatal(err)
		}
		if _, err := vOurs.Verify(c, nil, RoleSign); !errors.Is(err, ErrUnknownIssuer) {
			t.Fatalf("bank cert accepted by our roots: %v", err)
		}
	}
	// Both roots trusted: both verify.
	vBoth, _ := NewVerifier(VerifierOptions{Roots: []*smx509.Certificate{ours.Cert, bank.Cert}, Now: func() time.Time { return t0 }})
	if _, err := vBoth.Verify(bankServer.Enc.Cert, nil, RoleEnc); err != nil {
		t.Fatal(err)
	}
}

func TestIssueForAndCSR(t *testing.T) {
	nb := t0.Add(-time.Hour)
	root, _, _ := NewRootCA(IssueOptions{CommonName: "Root", NotBefore: nb})
	v, _ := NewVerifier(VerifierOptions{Roots: []*smx509.Certificate{root.Cert}, Now: func() time.Time { return t0 }})
	ext, _ := sm2.GenerateKey(rand.Reader)
	for _, role := range []Role{RoleSign, RoleEnc, RoleCA} {
		c, err := root.IssueFor(ext.Public(), role, IssueOptions{CommonName: "vault " + role.String(), NotBefore: nb})
		if err != nil {
			t.Fatal(err)
		}
		if r, err := ClassifyRole(c); err != nil || r != role {
			t.Fatalf("%v: got %v %v", role, r, err)
		}
		if !ext.PublicKey.Equal(c.PublicKey) {
			t.Fatal("public key")
		}
		if _, err := v.Verify(c, nil, role); err != nil {
			t.Fatalf("%v: %v", role, err)
		}
	}
	_, p256 := p256Cert(t)
	if _, err := root.IssueFor(p256.Public(), RoleSign, IssueOptions{CommonName: "x"}); !errors.Is(err, ErrNotSM2) {
		t.Fatalf("P-256 key: %v", err)
	}
	// CSR.
	csrDER, err := smx509.CreateCertificateRequest(rand.Reader, &smx509.CertificateRequest{
		Subject: pkix.Name{CommonName: "terminal-7", Organization: []string{"Shop"}}, DNSNames: []string{"t7.shop.example"},
	}, ext)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := smx509.ParseCertificateRequest(csrDER)
	if err != nil {
		t.Fatal(err)
	}
	c, err := root.SignCSR(csr, RoleEnc, IssueOptions{NotBefore: nb})
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject.CommonName != "terminal-7" || c.Subject.Organization[0] != "Shop" || c.DNSNames[0] != "t7.shop.example" {
		t.Fatalf("CSR subject not used: %v %v", c.Subject, c.DNSNames)
	}
	if r, _ := ClassifyRole(c); r != RoleEnc {
		t.Fatal("role")
	}
	c2, err := root.SignCSR(csr, RoleSign, IssueOptions{CommonName: "override", DNSNames: []string{"o.example"}, NotBefore: nb})
	if err != nil || c2.Subject.CommonName != "override" || !reflect.DeepEqual(c2.DNSNames, []string{"o.example"}) {
		t.Fatalf("override: %v", err)
	}
	// Tampered CSR signature.
	bad := *csr
	bad.Signature = append([]byte(nil), csr.Signature...)
	bad.Signature[len(bad.Signature)-2] ^= 1
	if _, err := root.SignCSR(&bad, RoleSign, IssueOptions{}); err == nil {
		t.Fatal("tampered CSR accepted")
	}
}

func TestIssueErrors(t *testing.T) {
	nb := t0.Add(-time.Hour)
	root, _, _ := NewRootCA(IssueOptions{CommonName: "Root", NotBefore: nb, Validity: 48 * time.Hour})
	// Clamp to the issuer's NotAfter.
	p, err := root.IssuePlatform(IssueOptions{CommonName: "p", NotBefore: nb})
	if err != nil || !p.Cert.NotAfter.Equal(root.Cert.NotAfter) {
		t.Fatalf("clamp: %v %v %v", err, p.Cert.NotAfter, root.Cert.NotAfter)
	}
	if _, err := root.IssuePlatform(IssueOptions{CommonName: "p", NotBefore: root.Cert.NotAfter.Add(time.Hour)}); err == nil {
		t.Fatal("certificate after issuer expiry accepted")
	}
	if _, err := root.IssuePlatform(IssueOptions{}); err == nil {
		t.Fatal("empty CommonName accepted")
	}
	if _, err := root.IssuePlatform(IssueOptions{CommonName: "p", SerialNumber: big.NewInt(-1)}); err == nil {
		t.Fatal("negative serial accepted")
	}
	if _, err := root.IssueFor(&p.Key.PublicKey, Role(9), IssueOptions{CommonName: "p"}); err == nil {
		t.Fatal("unknown role accepted")
	}
	// A leaf cannot act as a CA.
	notCA := &CA{Cert: p.Cert, Key: p.Key}
	if _, err := notCA.IssuePlatform(IssueOptions{CommonName: "x"}); !errors.Is(err, ErrWrongUsage) {
		t.Fatalf("leaf as CA: %v", err)
	}
	if _, err := (&CA{}).IssuePlatform(IssueOptions{CommonName: "x"}); err == nil {
		t.Fatal("empty CA accepted")
	}
	// Explicit serial: the pair uses serial and serial+1.
	pair, err := root.IssueServerPair(IssueOptions{CommonName: "s", SerialNumber: big.NewInt(1000), NotBefore: nb})
	if err != nil || pair.Sign.Cert.SerialNumber.Int64() != 1000 || pair.Enc.Cert.SerialNumber.Int64() != 1001 {
		t.Fatalf("serials: %v", err)
	}
}

func TestCreateCRL(t *testing.T) {
	nb := t0.Add(-time.Hour)
	root, _, _ := NewRootCA(IssueOptions{CommonName: "Root", NotBefore: nb})
	pair, _ := root.IssueClientPair(IssueOptions{CommonName: "c", NotBefore: nb})
	der, err := root.CreateCRLAt([]smx509.RevocationListEntry{{SerialNumber: pair.Sign.Cert.SerialNumber}}, big.NewInt(3), t0, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	rl, err := ParseCRL(EncodeCRLPEM(der))
	if err != nil {
		t.Fatal(err)
	}
	if rl.Number.Int64() != 3 || rl.CheckSignatureFrom(root.Cert) != nil || len(rl.RevokedCertificateEntries) != 1 {
		t.Fatal("CRL content")
	}
	path := writeFile(t, t.TempDir(), "root.crl", EncodeCRLPEM(der))
	store, err := NewCRLStore([]string{path}, CRLOptions{Issuers: []*smx509.Certificate{root.Cert}, Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	v, _ := NewVerifier(VerifierOptions{Roots: []*smx509.Certificate{root.Cert}, CRLs: store, Now: func() time.Time { return t0 }})
	if _, err := v.Verify(pair.Sign.Cert, nil, RoleSign); !errors.Is(err, ErrRevoked) {
		t.Fatalf("sign: %v", err)
	}
	if _, err := v.Verify(pair.Enc.Cert, nil, RoleEnc); err != nil {
		t.Fatalf("enc: %v", err)
	}
	// CreateCRL with real time and defaults.
	if der, err := root.CreateCRL(nil, nil, 0); err != nil {
		t.Fatal(err)
	} else if rl, _ := ParseCRL(der); rl.NextUpdate.Sub(rl.ThisUpdate) != DefaultCRLValidity {
		t.Fatal("default NextUpdate")
	}
	if _, err := root.CreateCRL([]smx509.RevocationListEntry{{}}, nil, 0); err == nil {
		t.Fatal("entry without serial accepted")
	}
}
