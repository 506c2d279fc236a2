package enroll

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/emmansun/gmsm/cfca"
	gmcipher "github.com/emmansun/gmsm/cipher"
	"github.com/emmansun/gmsm/pkcs7"
	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm4"
	"github.com/emmansun/gmsm/smx509"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/gmgate/gmgate/pki"
)

func (f *fixture) enrol(key *sm2.PrivateKey, cn string) *Response {
	f.t.Helper()
	resp, body := f.post(OpSimpleEnroll, enrolHeaders(f.token(cn, time.Hour)), b64(simpleCSR(f.t, key, cn)))
	if resp.StatusCode != http.StatusOK {
		f.t.Fatalf("enrol: %d %s", resp.StatusCode, body)
	}
	var r Response
	if err := json.Unmarshal(body, &r); err != nil {
		f.t.Fatal(err)
	}
	return &r
}

// TestEnrolRenewRevoke: the whole life of a terminal pair through the HTTP handler: enrol with
// a token, open the GM/T 0092 CSRResponse with the signing key (gmsm's parser), key-usage
// split, escrow, renewal signed by the current certificate, download, revocation by the
// holder, the CRL (file and /crl) listing both certificates, and renewal refused afterwards.
func TestEnrolRenewRevoke(t *testing.T) {
	f := newFixture(t)
	key := newKey(t)
	r := f.enrol(key, "T0001")

	cr, err := smx509.ParseCSRResponse(key, r.CSRResponse)
	if err != nil {
		t.Fatal(err)
	}
	sign, enc := cr.SignCerts[0], cr.EncryptCerts[0]
	if err := pki.CheckUsage(sign, pki.RoleSign); err != nil {
		t.Fatal(err)
	}
	if err := pki.CheckUsage(enc, pki.RoleEnc); err != nil {
		t.Fatal(err)
	}
	if sign.Subject.CommonName != "T0001" || sign.Subject.Organization[0] != "Acme Pay" || enc.Subject.CommonName != "T0001" {
		t.Fatalf("subjects: %v / %v", sign.Subject, enc.Subject)
	}
	if !sign.PublicKey.(*ecdsa.PublicKey).Equal(&key.PublicKey) {
		t.Fatal("signing certificate does not certify the terminal's key")
	}
	if !cr.EncryptPrivateKey.PublicKey.Equal(enc.PublicKey) {
		t.Fatal("delivered encryption key does not match the encryption certificate")
	}
	if len(sign.CRLDistributionPoints) != 1 || sign.CRLDistributionPoints[0] != "http://ca.example/crl" {
		t.Fatalf("CDP: %v", sign.CRLDistributionPoints)
	}
	if d := f.escrow.keys[r.EncSerial]; !bytes.Equal(d, cr.EncryptPrivateKey.D.FillBytes(make([]byte, 32))) {
		t.Fatal("escrowed key is not the delivered encryption key")
	}
	if a := f.audit.last(); a.Scheme != "enroll/simpleenroll" || a.Verdict != "accept" || a.CertSerial != r.Serial {
		t.Fatalf("audit: %+v", a)
	}

	// Download by signing key (a lost answer), signed with that key.
	resp, body := f.post(OpDownload, f.signedHeaders(OpDownload, "application/json", nil, key, "ski:"+hexSKI(sign), ""), nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("download: %d %s", resp.StatusCode, body)
	}
	var d Response
	_ = json.Unmarshal(body, &d)
	if d.Serial != r.Serial || !bytes.Equal(d.EncCert, r.EncCert) {
		t.Fatal("download returned another pair")
	}

	// Renewal with a new key, signed by the current certificate.
	key2 := newKey(t)
	csr2 := b64(simpleCSR(t, key2, "T0001"))
	resp, body = f.post(OpSimpleReenroll, f.signedHeaders(OpSimpleReenroll, MediaPKCS10, csr2, key, r.Serial, ""), csr2)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("reenroll: %d %s", resp.StatusCode, body)
	}
	var r2 Response
	_ = json.Unmarshal(body, &r2)
	if r2.Serial == r.Serial {
		t.Fatal("renewal kept the serial")
	}
	if _, err := smx509.ParseCSRResponse(key2, r2.CSRResponse); err != nil {
		t.Fatal(err)
	}
	// A second renewal of the same certificate (a stolen key racing the terminal) is refused.
	csr3 := b64(simpleCSR(t, newKey(t), "T0001"))
	resp, body = f.post(OpSimpleReenroll, f.signedHeaders(OpSimpleReenroll, MediaPKCS10, csr3, key, r.Serial, ""), csr3)
	if code := codeOf(body); code != CodeAlreadyRenewed {
		t.Fatalf("second renewal: %d %s", resp.StatusCode, body)
	}

	// The holder revokes the new pair.
	rb := []byte(`{}`)
	resp, body = f.post(OpRevoke, f.signedHeaders(OpRevoke, "application/json", rb, key2, r2.Serial, ""), rb)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke: %d %s", resp.StatusCode, body)
	}
	// The CRL file (what gm_verify / the TLCP listener of this instance read) revokes both.
	store, err := pki.NewCRLStore([]string{f.crlFile}, pki.CRLOptions{Issuers: []*smx509.Certificate{f.root.Cert}})
	if err != nil {
		t.Fatal(err)
	}
	v, _ := pki.NewVerifier(pki.VerifierOptions{Roots: []*smx509.Certificate{f.root.Cert}, CRLs: store})
	s2, _ := smx509.ParseCertificate(r2.SignCert)
	e2, _ := smx509.ParseCertificate(r2.EncCert)
	if _, err := v.Verify(s2, nil, pki.RoleSign); !errors.Is(err, pki.ErrRevoked) {
		t.Fatalf("revoked signing certificate: %v", err)
	}
	if _, err := v.Verify(e2, nil, pki.RoleEnc); !errors.Is(err, pki.ErrRevoked) {
		t.Fatalf("revoked encryption certificate: %v", err)
	}
	if _, err := v.Verify(sign, nil, pki.RoleSign); err != nil {
		t.Fatalf("the old, unrevoked certificate: %v", err)
	}
	// /crl serves the same, signed by the CA.
	cresp, err := http.Get(f.http.URL + "/.well-known/est/crl")
	if err != nil {
		t.Fatal(err)
	}
	defer cresp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(cresp.Body)
	rl, err := smx509.ParseRevocationList(buf.Bytes())
	if err != nil || rl.CheckSignatureFrom(f.root.Cert) != nil || len(rl.RevokedCertificateEntries) != 2 {
		t.Fatalf("/crl: %v, %d entries", err, len(rl.RevokedCertificateEntries))
	}

	// Renewal and download with the revoked certificate are refused.
	csr4 := b64(simpleCSR(t, newKey(t), "T0001"))
	_, body = f.post(OpSimpleReenroll, f.signedHeaders(OpSimpleReenroll, MediaPKCS10, csr4, key2, r2.Serial, ""), csr4)
	if code := codeOf(body); code != CodeCertRevoked {
		t.Fatalf("renewal with a revoked certificate: %s", body)
	}
	if a := f.audit.last(); a.Verdict != "reject" || a.Reason != string(CodeCertRevoked) {
		t.Fatalf("audit of the refusal: %+v", a)
	}
}

func hexSKI(c *smx509.Certificate) string { return serialHexBytes(c.SubjectKeyId) }

func serialHexBytes(b []byte) string {
	const h = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, x := range b {
		out = append(out, h[x>>4], h[x&15])
	}
	return string(out)
}

func codeOf(body []byte) Code {
	var b struct {
		Code Code `json:"code"`
	}
	_ = json.Unmarshal(body, &b)
	return b.Code
}

// TestSM2EnvelopedKeyASN1 checks the delivered key field by field against GB/T 35276-2017:
//
//	SM2EnvelopedKey ::= SEQUENCE {
//	  symAlgID               AlgorithmIdentifier,  -- SM4 (1.2.156.10197.1.104[.1] ECB)
//	  symEncryptedKey        SM2Cipher,            -- the SM4 key, SM2-encrypted to the signing key
//	  sm2PublicKey           SM2PublicKey,         -- BIT STRING 04||X||Y of the encryption key
//	  sm2EncryptedPrivateKey BIT STRING }          -- SM4(d), 32 bytes
//	SM2Cipher ::= SEQUENCE { XCoordinate INTEGER, YCoordinate INTEGER,
//	                         HASH OCTET STRING SIZE(32), CipherText OCTET STRING }
//
// and opens it with SM2 decryption and SM4-ECB directly (not through ParseEnvelopedPrivateKey).
func TestSM2EnvelopedKeyASN1(t *testing.T) {
	f := newFixture(t)
	key := newKey(t)
	r := f.enrol(key, "T0002")
	enc, err := smx509.ParseCertificate(r.EncCert)
	if err != nil {
		t.Fatal(err)
	}
	in := cryptobyte.String(r.EnvelopedKey)
	var seq, alg, cipherSeq cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() {
		t.Fatal("outer SEQUENCE")
	}
	// symAlgID
	var oid asn1.ObjectIdentifier
	var algParams cryptobyte.String
	if !seq.ReadASN1(&alg, cbasn1.SEQUENCE) || !alg.ReadASN1ObjectIdentifier(&oid) {
		t.Fatal("symAlgID")
	}
	if !oid.Equal(asn1.ObjectIdentifier{1, 2, 156, 10197, 1, 104, 1}) && !oid.Equal(asn1.ObjectIdentifier{1, 2, 156, 10197, 1, 104}) {
		t.Fatalf("symAlgID %v is not SM4", oid)
	}
	if !alg.Empty() && (!alg.ReadASN1(&algParams, cbasn1.NULL) || !alg.Empty()) {
		t.Fatal("symAlgID parameters: absent or NULL")
	}
	// symEncryptedKey: SM2Cipher
	var whole cryptobyte.String
	if !seq.ReadASN1Element(&whole, cbasn1.SEQUENCE) {
		t.Fatal("symEncryptedKey")
	}
	cipherSeq = whole
	var inner cryptobyte.String
	cipherSeq.ReadASN1(&inner, cbasn1.SEQUENCE)
	x, y := new(big.Int), new(big.Int)
	var hash, ct []byte
	if !inner.ReadASN1Integer(x) || !inner.ReadASN1Integer(y) ||
		!inner.ReadASN1Bytes(&hash, cbasn1.OCTET_STRING) || !inner.ReadASN1Bytes(&ct, cbasn1.OCTET_STRING) || !inner.Empty() {
		t.Fatal("SM2Cipher fields")
	}
	if len(hash) != 32 || len(ct) != 16 {
		t.Fatalf("SM2Cipher HASH %d bytes, CipherText %d bytes (want 32, 16: an SM4 key)", len(hash), len(ct))
	}
	if !sm2.P256().IsOnCurve(x, y) {
		t.Fatal("SM2Cipher C1 not on the curve")
	}
	// sm2PublicKey
	var pubBits, privBits asn1.BitString
	if !seq.ReadASN1BitString(&pubBits) || !seq.ReadASN1BitString(&privBits) || !seq.Empty() {
		t.Fatal("sm2PublicKey / sm2EncryptedPrivateKey")
	}
	encPub := enc.PublicKey.(*ecdsa.PublicKey)
	want := append([]byte{4}, append(encPub.X.FillBytes(make([]byte, 32)), encPub.Y.FillBytes(make([]byte, 32))...)...)
	if pubBits.BitLength != 65*8 || !bytes.Equal(pubBits.Bytes, want) {
		t.Fatal("sm2PublicKey is not the encryption certificate's key")
	}
	if privBits.BitLength != 32*8 {
		t.Fatalf("sm2EncryptedPrivateKey is %d bits", privBits.BitLength)
	}
	// Open by hand: SM2-decrypt the SM4 key with the signing key, SM4-ECB the private key.
	symKey, err := key.Decrypt(rand.Reader, whole, sm2.ASN1DecrypterOpts)
	if err != nil || len(symKey) != 16 {
		t.Fatalf("SM2 decryption of symEncryptedKey: %v", err)
	}
	block, _ := sm4.NewCipher(symKey)
	d := make([]byte, 32)
	gmcipher.NewECBDecrypter(block).CryptBlocks(d, privBits.Bytes)
	got, err := sm2.NewPrivateKey(d)
	if err != nil || !got.PublicKey.Equal(encPub) {
		t.Fatal("decrypted private key does not match the encryption certificate")
	}
	// Nobody but the signing key holder opens it.
	if _, err := sm2.ParseEnvelopedPrivateKey(newKey(t), r.EnvelopedKey); err == nil {
		t.Fatal("another key opened the envelope")
	}
}

// TestCFCADoubleRequest: a request made by gmsm's cfca package (signing key plus a temporary
// public key) enrols, and the key encrypted to the temporary key opens with
// cfca.ParseEscrowPrivateKey.
func TestCFCADoubleRequest(t *testing.T) {
	f := newFixture(t)
	signKey, tmpKey := newKey(t), newKey(t)
	der, err := cfca.CreateCertificateRequest(rand.Reader, &smx509.CertificateRequest{Subject: pkix.Name{CommonName: "CFCA-T1"}}, signKey, tmpKey.Public(), "111111")
	if err != nil {
		t.Fatal(err)
	}
	resp, body := f.post(OpSimpleEnroll, enrolHeaders(f.token("CFCA-T1", time.Hour)), b64(der))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	var r Response
	_ = json.Unmarshal(body, &r)
	if r.CFCAEncryptedKey == "" {
		t.Fatal("no CFCA key delivery")
	}
	encKey, err := cfca.ParseEscrowPrivateKey(tmpKey, []byte(r.CFCAEncryptedKey))
	if err != nil {
		t.Fatal(err)
	}
	enc, _ := smx509.ParseCertificate(r.EncCert)
	if !encKey.PublicKey.Equal(enc.PublicKey) {
		t.Fatal("CFCA-delivered key does not match the encryption certificate")
	}
	if _, err := cfca.ParseEscrowPrivateKey(signKey, []byte(r.CFCAEncryptedKey)); err == nil {
		t.Fatal("the CFCA delivery opened with a key other than the temporary one")
	}
}

// TestCACerts: cacerts is base64 PKCS#7 certs-only (RFC 7030 §4.1.3) holding the CA.
func TestCACerts(t *testing.T) {
	f := newFixture(t)
	resp, err := http.Get(f.http.URL + "/.well-known/est/cacerts")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	der, err := DecodeBase64Body(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	p7, err := pkcs7.Parse(der)
	if err != nil || len(p7.Certificates) != 1 || !p7.Certificates[0].Equal(f.root.Cert) {
		t.Fatalf("cacerts: %v", err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != MediaCACerts {
		t.Fatalf("content type %q", ct)
	}
}

func TestMain(m *testing.M) { os.Exit(m.Run()) }

var _ = context.Background
