package cryptosvc

import (
	"bytes"
	"crypto/rand"
	"encoding/asn1"
	"encoding/pem"
	"os"
	"testing"

	"github.com/emmansun/gmsm/pkcs7"
	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/refusal"
)

// gmtService is certService with a configured certificate set (verification by serial or
// DN), a chain-only verifier (level 1), the intermediate's CRL (include_crl) and minLevel.
func gmtService(t *testing.T, p *testPKI, minLevel *int) *Service {
	t.Helper()
	base := certService(t, p, nil)
	o := base.o
	o.CertificateSet = []*smx509.Certificate{p.signer.Cert, p.revoked.Cert, p.expired.Cert, p.foreignSigner.Cert}
	o.ChainCertificates = must(pki.NewVerifier(pki.VerifierOptions{Roots: []*smx509.Certificate{p.root.Cert},
		Intermediates: []*smx509.Certificate{p.inter.Cert}}))
	blk, _ := pem.Decode(must(os.ReadFile(p.crlPath)))
	o.CRLs = [][]byte{blk.Bytes}
	o.MinVerifyLevel = minLevel
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func serialHex(c *smx509.Certificate) string { return c.SerialNumber.Text(16) }

// TestVerifyByCertificateSet: GM/T 0029 VerifySignedData and ValidateCert by serial or subject
// DN from the configured certificate set, each use still verified through pki.
func TestVerifyByCertificateSet(t *testing.T) {
	p := loadTestPKI(t)
	s := gmtService(t, p, nil)
	data := []byte("settlement batch 42")
	sig := must(p.signer.Key.Sign(rand.Reader, data, sm2.DefaultSM2SignerOpts))
	for _, in := range []item{
		{"cert_serial": serialHex(p.signer.Cert)},
		{"cert_serial": "0x" + serialHex(p.signer.Cert)},
		{"cert_subject": p.signer.Cert.Subject.String()},
		{"cert_serial": serialHex(p.signer.Cert), "cert_subject": p.signer.Cert.Subject.String()},
	} {
		in["data"], in["signature"] = b64(data), b64(sig)
		r := mustOK(t, s, settlement, OpVerifyData, in)
		if !r.Valid || r.Signer.Subject != p.signer.Cert.Subject.String() || r.VerifyLevel == nil || *r.VerifyLevel != 2 {
			t.Fatalf("%v: %+v", in, r)
		}
	}
	rows := []struct {
		name string
		in   item
		code string
	}{
		{"unknown serial", item{"cert_serial": "ab"}, string(CodeCertUntrusted)},
		{"serial and subject of different certificates", item{"cert_serial": serialHex(p.signer.Cert), "cert_subject": p.revoked.Cert.Subject.String()}, string(CodeCertUntrusted)},
		{"named and given", item{"cert_serial": serialHex(p.signer.Cert), "certificate": pemOf(p.signer.Cert)}, string(CodeMalformed)},
		{"not hex", item{"cert_serial": "xyz"}, string(CodeMalformed)},
		{"revoked by serial", item{"cert_serial": serialHex(p.revoked.Cert)}, string(CodeCertRevoked)},
		{"expired by subject", item{"cert_subject": p.expired.Cert.Subject.String()}, string(CodeCertExpired)},
		{"foreign root by subject", item{"cert_subject": p.foreignSigner.Cert.Subject.String()}, string(CodeCertUntrusted)},
		// The service's floor (default 2) applies whatever the request asks.
		{"revoked asks level 1", item{"cert_serial": serialHex(p.revoked.Cert), "verify_level": 1}, string(CodeCertRevoked)},
		{"foreign asks level 0", item{"cert_subject": p.foreignSigner.Cert.Subject.String(), "verify_level": 0}, string(CodeCertUntrusted)},
		{"level 3", item{"cert_serial": serialHex(p.signer.Cert), "verify_level": 3}, string(CodeMalformed)},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			r.in["data"], r.in["signature"] = b64(data), b64(sig)
			_, err := call(t, s, settlement, OpVerifyData, r.in)
			mustCode(t, err, refusalCode(r.code))
		})
	}
	v := mustOK(t, s, settlement, OpValidateCert, item{"cert_serial": serialHex(p.signer.Cert)})
	if !v.Valid || v.Certificate.Serial == "" || *v.VerifyLevel != 2 {
		t.Fatalf("validate by serial: %+v", v)
	}
}

// TestVerifyLevels: with the floor lowered to 0 by the operator, level 1 skips the CRL and
// level 0 the chain, and the result states the level applied; validity and key usage are
// checked at every level; sealing always checks everything.
func TestVerifyLevels(t *testing.T) {
	p := loadTestPKI(t)
	zero := 0
	s := gmtService(t, p, &zero)
	for _, c := range []struct {
		name  string
		cert  *pki.Issued
		level int
		code  string
	}{
		{"revoked, level 2", p.revoked, 2, string(CodeCertRevoked)},
		{"revoked, level 1", p.revoked, 1, ""},
		{"foreign, level 1", p.foreignSigner, 1, string(CodeCertUntrusted)},
		{"foreign, level 0", p.foreignSigner, 0, ""},
		{"expired, level 0", p.expired, 0, string(CodeCertExpired)},
		{"good, level 0", p.signer, 0, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, err := call(t, s, risk, OpValidateCert, item{"certificate": pemOf(c.cert.Cert), "verify_level": c.level})
			if c.code != "" {
				mustCode(t, err, refusalCode(c.code))
				return
			}
			if err != nil || !r.Results[0].Valid || *r.Results[0].VerifyLevel != c.level {
				t.Fatalf("%v %+v", err, r)
			}
		})
	}
	// An encryption certificate is not a signer at any level.
	data := []byte("x")
	sig := must(p.clientPair.Enc.Key.Sign(rand.Reader, data, sm2.DefaultSM2SignerOpts))
	_, err := call(t, s, settlement, OpVerifyData, item{"certificate": pemOf(p.clientPair.Enc.Cert), "data": b64(data), "signature": b64(sig), "verify_level": 0})
	mustCode(t, err, CodeCertUntrusted)
	// Sealing to a revoked recipient is refused whatever the floor (no verify_level taken).
	_, err = call(t, s, settlement, OpSeal, item{"certificate": pemOf(p.revokedEncPair.Enc.Cert), "plaintext": b64(data)})
	mustCode(t, err, CodeCertRevoked)
	_, err = call(t, s, settlement, OpSeal, item{"certificate": pemOf(p.revokedEncPair.Enc.Cert), "plaintext": b64(data), "verify_level": 0})
	mustCode(t, err, CodeMalformed)
}

// TestSignMessageFlags: GM/T 0029 SignMessage flags. digest is SM3(M) (the messageDigest
// attribute; "data already hashed"), which makes a detached message that verifies over M
// (gmsm's verifier and the service's); no_chain leaves only the signer's certificate;
// include_crl adds the CRL of the signer's issuer.
func TestSignMessageFlags(t *testing.T) {
	p := loadTestPKI(t)
	s := gmtService(t, p, nil)
	data := []byte("reconciliation file, hashed by the caller")
	d := sm3.Sum(data)
	for _, gm := range []bool{false, true} {
		r := mustOK(t, s, settlement, OpSignMessage, item{"key": "platform-sign", "digest": b64(d[:]), "gm_oids": gm})
		p7 := must(pkcs7.Parse(r.CMS))
		if len(p7.Content) != 0 {
			t.Fatal("a message signed from a digest carries content")
		}
		p7.Content = data
		pool := smx509.NewCertPool()
		pool.AddCert(p.root.Cert)
		if err := p7.VerifyWithChain(pool); err != nil {
			t.Fatalf("gm_oids=%v: gmsm does not verify the SignedData made from a digest: %v", gm, err)
		}
		if v := mustOK(t, s, risk, OpVerifyMessage, item{"cms": b64(r.CMS), "data": b64(data)}); !v.Valid {
			t.Fatal("service does not verify it")
		}
		_, err := call(t, s, risk, OpVerifyMessage, item{"cms": b64(r.CMS), "data": b64([]byte("other"))})
		mustCode(t, err, CodeBadSignature)
	}
	_, err := call(t, s, settlement, OpSignMessage, item{"key": "platform-sign", "digest": b64(d[:16])})
	mustCode(t, err, CodeMalformed)
	_, err = call(t, s, settlement, OpSignMessage, item{"key": "platform-sign", "digest": b64(d[:]), "data": b64(data)})
	mustCode(t, err, CodeMalformed)

	full := must(pkcs7.Parse(mustOK(t, s, settlement, OpSignMessage, item{"key": "platform-sign", "data": b64(data)}).CMS))
	bare := must(pkcs7.Parse(mustOK(t, s, settlement, OpSignMessage, item{"key": "platform-sign", "data": b64(data), "no_chain": true}).CMS))
	if len(full.Certificates) != 2 || len(bare.Certificates) != 1 || !bare.Certificates[0].Equal(p.platform.Cert) || len(full.CRLs) != 0 {
		t.Fatalf("chain: full %d, no_chain %d certificates", len(full.Certificates), len(bare.Certificates))
	}
	withCRL := must(pkcs7.Parse(mustOK(t, s, settlement, OpSignMessage, item{"key": "platform-sign", "data": b64(data), "include_crl": true}).CMS))
	if len(withCRL.CRLs) != 1 || !bytes.Equal(must(asn1.Marshal(withCRL.CRLs[0].TBSCertList.Issuer)), p.inter.Cert.RawSubject) {
		t.Fatalf("include_crl: %d CRLs", len(withCRL.CRLs))
	}
	if err := withCRL.VerifyWithChain(nil); err != nil {
		t.Fatalf("SignedData with a CRL: %v", err)
	}
	// Without a CRL of the chain configured, include_crl fails closed.
	noCRL := certService(t, p, nil)
	_, err = call(t, noCRL, settlement, OpSignMessage, item{"key": "platform-sign", "data": b64(data), "include_crl": true})
	mustCode(t, err, CodeRevocationUnavailable)
}

func refusalCode(s string) refusal.Code { return refusal.Code(s) }
