package enroll

import (
	"bytes"
	"crypto/rand"
	"crypto/x509/pkix"
	"encoding/base64"
	"testing"

	"github.com/emmansun/gmsm/cfca"
	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
)

// FuzzParseRequest: a hostile PKCS#10 body (standard or CFCA) never panics the parser or the
// profile checks, and nothing but a verifying SM2 request passes them.
func FuzzParseRequest(f *testing.F) {
	key, _ := sm2.GenerateKey(rand.Reader)
	std, _ := smx509.CreateCertificateRequest(rand.Reader, &smx509.CertificateRequest{Subject: pkix.Name{CommonName: "T1"}, DNSNames: []string{"a.pos.example"}}, key)
	tmp, _ := sm2.GenerateKey(rand.Reader)
	dbl, _ := cfca.CreateCertificateRequest(rand.Reader, &smx509.CertificateRequest{Subject: pkix.Name{CommonName: "T1"}}, key, tmp.Public(), "pw")
	f.Add(std)
	f.Add(dbl)
	f.Add([]byte{0x30, 0x80})
	p := &Profile{Name: "p", DNSNames: []string{"*.pos.example"}}
	if err := p.compile(); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, der []byte) {
		csr, err := parseCSR(der)
		if err != nil {
			return
		}
		if _, _, err := p.checkRequest(&csr.CertificateRequest, ""); err == nil {
			if csr.CheckSignature() != nil || !sm2.IsSM2PublicKey(csr.PublicKey) {
				t.Fatal("an unverifiable request passed the checks")
			}
		}
	})
}

// FuzzParseToken: token parsing is bounded and total, and accepts only the canonical encoding
// (what IssueToken writes), so one token has one ID string.
func FuzzParseToken(f *testing.F) {
	f.Add("gmet1.AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	f.Add("gmet1..")
	f.Fuzz(func(t *testing.T, s string) {
		id, sec, ok := parseToken(s)
		if ok && (!validID(id) || len(sec) != tokenSecLen || tokenPrefix+id+"."+b64url.EncodeToString(sec) != s) {
			t.Fatalf("accepted a malformed or non-canonical token %q", s)
		}
	})
}

// FuzzDecodeBase64Body: the EST body decoder never panics, refuses with enroll_csr_invalid,
// never returns more than 3/4 of the body or nothing, and what it returns survives a
// re-encoding.
func FuzzDecodeBase64Body(f *testing.F) {
	f.Add([]byte("MIIB\r\nAAAA"))
	f.Add([]byte("===="))
	f.Fuzz(func(t *testing.T, b []byte) {
		der, err := DecodeBase64Body(b)
		if err != nil {
			if der != nil || CodeOf(err) != CodeCSRInvalid {
				t.Fatalf("refusal %v (code %s) with output", err, CodeOf(err))
			}
			return
		}
		if len(der) == 0 || len(der) > len(b)*3/4 {
			t.Fatalf("decoded %d bytes from %d", len(der), len(b))
		}
		again, err := DecodeBase64Body([]byte(base64.StdEncoding.EncodeToString(der)))
		if err != nil || !bytes.Equal(again, der) {
			t.Fatalf("re-encoded body decodes differently: %v", err)
		}
	})
}
