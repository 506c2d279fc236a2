package cryptosvc

import (
	"bytes"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"testing"

	"github.com/emmansun/gmsm/pkcs7"
	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/refusal"
)

// externalCMS is a SignedData made outside the service (gmsm pkcs7 directly) by iss.
func externalCMS(t testing.TB, iss *pki.Issued, chain []*smx509.Certificate, data []byte, detached bool) []byte {
	t.Helper()
	sd, err := pkcs7.NewSignedData(data)
	if err != nil {
		t.Fatal(err)
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSM3)
	if err := sd.AddSignerChain(iss.Cert, iss.Key, chain, pkcs7.SignerInfoConfig{}); err != nil {
		t.Fatal(err)
	}
	if detached {
		sd.Detach()
	}
	der, err := sd.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func pemOf(c *smx509.Certificate) string { return string(pki.EncodeCertificatesPEM(c)) }

// TestSignMessage: SignedData attached and detached, standard and GM/T 0010 OIDs, verified back
// through the service (which names the signer) and independently with gmsm against the root;
// a changed content or detached data fails.
func TestSignMessage(t *testing.T) {
	p := loadTestPKI(t)
	sink := &recSink{}
	s := certService(t, p, sink)
	data := []byte("reconciliation file 2026-12-03, 1024 lines")
	for _, c := range []struct {
		name             string
		detached, gmOIDs bool
	}{{"attached", false, false}, {"detached", true, false}, {"attached-gm-oids", false, true}, {"detached-gm-oids", true, true}} {
		t.Run(c.name, func(t *testing.T) {
			r := mustOK(t, s, settlement, OpSignMessage, item{"key": "platform-sign", "data": b64(data), "detached": c.detached, "gm_oids": c.gmOIDs})
			if r.Signer == nil || r.Signer.Subject != p.platform.Cert.Subject.String() || r.KeyVersion != 1 {
				t.Fatalf("sign_message result %+v", r)
			}
			// Independent check: gmsm's own verification with the chain to our root.
			p7, err := pkcs7.Parse(r.CMS)
			if err != nil {
				t.Fatal(err)
			}
			if c.detached != (len(p7.Content) == 0) {
				t.Fatal("attached/detached form wrong")
			}
			if c.detached {
				p7.Content = data
			}
			pool := smx509.NewCertPool()
			pool.AddCert(p.root.Cert)
			if err := p7.VerifyWithChain(pool); err != nil {
				t.Fatalf("gmsm does not verify our SignedData: %v", err)
			}
			in := item{"cms": b64(r.CMS)}
			if c.detached {
				in["data"] = b64(data)
			}
			v := mustOK(t, s, risk, OpVerifyMessage, in)
			if !v.Valid || v.Signer.Serial != r.Signer.Serial || (!c.detached && !bytes.Equal(v.Content, data)) {
				t.Fatalf("verify_message %+v", v)
			}
			if c.detached {
				_, err := call(t, s, risk, OpVerifyMessage, item{"cms": b64(r.CMS), "data": b64([]byte("other file"))})
				mustCode(t, err, CodeBadSignature)
				_, err = call(t, s, risk, OpVerifyMessage, item{"cms": b64(r.CMS)})
				mustCode(t, err, CodeMalformed)
			}
		})
	}
	// An attached SignedData whose content is changed after signing.
	r := mustOK(t, s, settlement, OpSignMessage, item{"key": "platform-sign", "data": b64(data)})
	bad := bytes.Replace(r.CMS, data, []byte("reconciliation file 2026-12-03, 9024 lines"), 1)
	if bytes.Equal(bad, r.CMS) {
		t.Fatal("content not found in the DER")
	}
	_, err := call(t, s, risk, OpVerifyMessage, item{"cms": b64(bad)})
	mustCode(t, err, CodeBadSignature)
	// The key without a signing certificate role cannot sign messages: platform-enc's
	// certificate is an encryption certificate; its key still signs but pki refuses it.
	_, err = call(t, s, settlement, OpVerifyMessage, item{"cms": b64(externalCMS(t, p.clientPair.Enc, nil, data, false))})
	mustCode(t, err, CodeCertUntrusted)
}

// TestVerifyMessageSigners: messages signed outside the service, by signers pki must judge.
func TestVerifyMessageSigners(t *testing.T) {
	p := loadTestPKI(t)
	sink := &recSink{}
	s := certService(t, p, sink)
	data := []byte("transfer 100.00 to 6222...")
	rows := []struct {
		name   string
		signer *pki.Issued
		chain  []*smx509.Certificate
		want   refusal.Code
	}{
		{"good signer, chain in the message", p.signer, []*smx509.Certificate{p.inter.Cert}, refusal.OK},
		{"good signer, intermediate from the configuration", p.signer, nil, refusal.OK},
		{"expired signer", p.expired, nil, CodeCertExpired},
		{"revoked signer", p.revoked, nil, CodeCertRevoked},
		{"foreign root", p.foreignSigner, []*smx509.Certificate{p.foreign.Cert}, CodeCertUntrusted},
		{"encryption certificate as signer", p.clientPair.Enc, nil, CodeCertUntrusted},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			cms := externalCMS(t, r.signer, r.chain, data, false)
			resp, err := call(t, s, risk, OpVerifyMessage, item{"cms": b64(cms)})
			if r.want == refusal.OK {
				if err != nil {
					t.Fatal(err)
				}
				if res := resp.Results[0]; res.Signer.Subject != r.signer.Cert.Subject.String() || res.Signer.Role != "sign" {
					t.Fatalf("signer %+v", res.Signer)
				}
				return
			}
			mustCode(t, err, r.want)
			if rec := sink.last(t); rec.Reason != string(r.want) || !bytes.Equal(rec.SignedSM3, sm3sum(cms)) {
				t.Fatalf("audit entry %+v", rec)
			}
		})
	}
	// Two signers: refused (the result must name one signer).
	sd, _ := pkcs7.NewSignedData(data)
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSM3)
	sd.AddSigner(p.signer.Cert, p.signer.Key, pkcs7.SignerInfoConfig{})
	sd.AddSigner(p.platform.Cert, p.platform.Key, pkcs7.SignerInfoConfig{})
	two, _ := sd.Finish()
	_, err := call(t, s, risk, OpVerifyMessage, item{"cms": b64(two)})
	mustCode(t, err, CodeMalformed)
	_, err = call(t, s, risk, OpVerifyMessage, item{"cms": b64([]byte{0x30, 0x80, 0x06})})
	mustCode(t, err, CodeMalformed)
}

// TestCertificates: validate (chain, validity, usage, CRL) and parse; verify_data by certificate.
func TestCertificates(t *testing.T) {
	p := loadTestPKI(t)
	s := certService(t, p, nil)
	rows := []struct {
		name string
		cert string
		want refusal.Code
		role string
	}{
		{"signing certificate", pemOf(p.signer.Cert), refusal.OK, "sign"},
		{"encryption certificate, DER base64", b64(p.clientPair.Enc.Cert.Raw), refusal.OK, "enc"},
		{"expired", pemOf(p.expired.Cert), CodeCertExpired, ""},
		{"revoked", pemOf(p.revoked.Cert), CodeCertRevoked, ""},
		{"revoked encryption certificate", pemOf(p.revokedEncPair.Enc.Cert), CodeCertRevoked, ""},
		{"foreign root", pemOf(p.foreignSigner.Cert), CodeCertUntrusted, ""},
		{"a CA certificate", pemOf(p.inter.Cert), CodeCertUntrusted, ""},
		{"garbage", b64([]byte("not a certificate")), CodeMalformed, ""},
		{"two PEM blocks", pemOf(p.signer.Cert) + pemOf(p.inter.Cert), CodeMalformed, ""},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			resp, err := call(t, s, risk, OpValidateCert, item{"certificate": r.cert})
			if r.want != refusal.OK {
				mustCode(t, err, r.want)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c := resp.Results[0].Certificate; c.Role != r.role || c.SM3 == "" || c.Issuer != p.inter.Cert.Subject.String() {
				t.Fatalf("certificate info %+v", c)
			}
		})
	}
	// parse_certificate tells who, not whether to trust: an expired certificate parses.
	r := mustOK(t, s, settlement, OpParseCert, item{"certificate": pemOf(p.expired.Cert)})
	if r.Certificate.Subject != p.expired.Cert.Subject.String() || r.Valid {
		t.Fatalf("parse %+v", r)
	}

	// verify_data: a raw SM2 signature checked with a certificate the caller sends.
	msg := []byte("refund 12.00")
	sig, _ := p.signer.Key.Sign(nil, msg, sm2.NewSM2SignerOption(true, []byte("risk-uid")))
	v := mustOK(t, s, settlement, OpVerifyData, item{"data": b64(msg), "user_id": "risk-uid", "signature": b64(sig), "certificate": pemOf(p.signer.Cert)})
	if !v.Valid || v.Signer.Subject != p.signer.Cert.Subject.String() {
		t.Fatalf("verify_data %+v", v)
	}
	_, err := call(t, s, settlement, OpVerifyData, item{"data": b64(msg), "signature": b64(sig), "certificate": pemOf(p.signer.Cert)})
	mustCode(t, err, CodeBadSignature) // default user ID: another Z_A
	rsig, _ := p.revoked.Key.Sign(nil, msg, nil)
	_, err = call(t, s, settlement, OpVerifyData, item{"data": b64(msg), "signature": b64(rsig), "certificate": pemOf(p.revoked.Cert)})
	mustCode(t, err, CodeCertRevoked)
	// KeyInfo exports the key's certificate chain (GM/T 0029 ExportCert).
	ki := mustOK(t, s, settlement, OpKeyInfo, item{"key": "platform-sign"})
	if len(ki.Certificates) != 2 || ki.Certificates[0] != pemOf(p.platform.Cert) {
		t.Fatalf("key_info certificates %d", len(ki.Certificates))
	}
}

// TestEnvelopes: seal to a verified encryption certificate, open with the vault key; a revoked
// recipient, a signing certificate, an envelope for someone else and a changed envelope fail.
func TestEnvelopes(t *testing.T) {
	p := loadTestPKI(t)
	s := certService(t, p, nil)
	secret := []byte("card 6222 0212 3456 7890, cvv 123")
	for _, gcm := range []bool{false, true} {
		env := mustOK(t, s, settlement, OpSeal, item{"plaintext": b64(secret), "certificate": pemOf(p.platformEnc.Cert), "gcm": gcm})
		r := mustOK(t, s, settlement, OpOpen, item{"key": "platform-enc", "envelope": b64(env.Envelope)})
		if !bytes.Equal(r.Plaintext, secret) {
			t.Fatal("open does not give the plaintext back")
		}
		bad := append([]byte(nil), env.Envelope...)
		bad[len(bad)-1] ^= 1
		_, err := call(t, s, settlement, OpOpen, item{"key": "platform-enc", "envelope": b64(bad)})
		mustCode(t, err, CodeBadCiphertext)
	}
	// Sealed to the client: opens with the client's key (independently, gmsm), not with ours.
	env := mustOK(t, s, settlement, OpSeal, item{"plaintext": b64(secret), "certificate": pemOf(p.clientPair.Enc.Cert)}).Envelope
	p7, err := pkcs7.Parse(env)
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := p7.Decrypt(p.clientPair.Enc.Cert, p.clientPair.Enc.Key); err != nil || !bytes.Equal(pt, secret) {
		t.Fatalf("client cannot open its envelope: %v", err)
	}
	_, err = call(t, s, settlement, OpOpen, item{"key": "platform-enc", "envelope": b64(env)})
	mustCode(t, err, CodeBadCiphertext)
	_, err = call(t, s, settlement, OpSeal, item{"plaintext": b64(secret), "certificate": pemOf(p.revokedEncPair.Enc.Cert)})
	mustCode(t, err, CodeCertRevoked)
	_, err = call(t, s, settlement, OpSeal, item{"plaintext": b64(secret), "certificate": pemOf(p.signer.Cert)})
	mustCode(t, err, CodeCertUntrusted)
}

// GB/T 35275 (GM/T 0010) EnvelopedData, as the test reads the standard:
//
//	ContentInfo ::= SEQUENCE { contentType envelopedData (1.2.156.10197.6.1.4.2.3),
//	                           content [0] EXPLICIT EnvelopedData }
//	EnvelopedData ::= SEQUENCE { version INTEGER (1), recipientInfos SET OF RecipientInfo,
//	                             encryptedContentInfo EncryptedContentInfo }
//	RecipientInfo ::= SEQUENCE { version INTEGER (1), issuerAndSerialNumber,
//	                             keyEncryptionAlgorithm (SM2-3, 1.2.156.10197.1.301.3),
//	                             encryptedKey OCTET STRING (an SM2Cipher, GB/T 35276) }
//	EncryptedContentInfo ::= SEQUENCE { contentType data (1.2.156.10197.6.1.4.2.1),
//	                             contentEncryptionAlgorithm (SM4-CBC 1.2.156.10197.1.104.2, IV),
//	                             encryptedContent [0] IMPLICIT OCTET STRING }
//	SM2Cipher ::= SEQUENCE { XCoordinate INTEGER, YCoordinate INTEGER, HASH OCTET STRING (32),
//	                         CipherText OCTET STRING }
//
// Both versions are 1 where PKCS#7 v1.5 (RFC 2315) has 0: "the syntax version of this
// standard". The standard's text was not available to the author; the versions are those gmsm's
// pkcs7 documents for GB/T 35275-2017 (envelope.go, AddRecipient), the OIDs those of GM/T
// 0010-2012 §5, which GB/T 35275 took over.
type gbContentInfo struct {
	ContentType asn1.ObjectIdentifier
	Content     asn1.RawValue `asn1:"explicit,tag:0"`
}
type gbEnvelopedData struct {
	Version              int
	RecipientInfos       []gbRecipientInfo `asn1:"set"`
	EncryptedContentInfo gbEncryptedContentInfo
}
type gbIssuerAndSerial struct {
	Issuer asn1.RawValue
	Serial *big.Int
}
type gbRecipientInfo struct {
	Version                int
	IssuerAndSerialNumber  gbIssuerAndSerial
	KeyEncryptionAlgorithm pkix.AlgorithmIdentifier
	EncryptedKey           []byte
}
type gbEncryptedContentInfo struct {
	ContentType                asn1.ObjectIdentifier
	ContentEncryptionAlgorithm pkix.AlgorithmIdentifier
	EncryptedContent           []byte `asn1:"tag:0"`
}
type gbSM2Cipher struct {
	X, Y       *big.Int
	Hash       []byte
	CipherText []byte
}

// TestEnvelopedDataGBT35275 checks a sealed envelope (gm_oids) field by field against the
// structure above, then decrypts the content key and the content by hand (SM2, SM4-CBC) to
// show the fields mean what they say.
func TestEnvelopedDataGBT35275(t *testing.T) {
	p := loadTestPKI(t)
	s := certService(t, p, nil)
	secret := []byte("envelope content for the structure test")
	env := mustOK(t, s, settlement, OpSeal, item{"plaintext": b64(secret), "certificate": pemOf(p.clientPair.Enc.Cert), "gm_oids": true}).Envelope

	var ci gbContentInfo
	if rest, err := asn1.Unmarshal(env, &ci); err != nil || len(rest) != 0 {
		t.Fatalf("ContentInfo: %v (%d trailing bytes)", err, len(rest))
	}
	if !ci.ContentType.Equal(asn1.ObjectIdentifier{1, 2, 156, 10197, 6, 1, 4, 2, 3}) {
		t.Fatalf("contentType %v, want envelopedData 1.2.156.10197.6.1.4.2.3", ci.ContentType)
	}
	var ed gbEnvelopedData
	if rest, err := asn1.Unmarshal(ci.Content.Bytes, &ed); err != nil || len(rest) != 0 {
		t.Fatalf("EnvelopedData: %v", err)
	}
	if ed.Version != 1 || len(ed.RecipientInfos) != 1 {
		t.Fatalf("version %d, %d recipients", ed.Version, len(ed.RecipientInfos))
	}
	ri := ed.RecipientInfos[0]
	if ri.Version != 1 {
		t.Fatalf("RecipientInfo version %d", ri.Version)
	}
	if !bytes.Equal(ri.IssuerAndSerialNumber.Issuer.FullBytes, p.clientPair.Enc.Cert.RawIssuer) ||
		ri.IssuerAndSerialNumber.Serial.Cmp(p.clientPair.Enc.Cert.SerialNumber) != 0 {
		t.Fatal("issuerAndSerialNumber does not name the recipient certificate")
	}
	if !ri.KeyEncryptionAlgorithm.Algorithm.Equal(asn1.ObjectIdentifier{1, 2, 156, 10197, 1, 301, 3}) {
		t.Fatalf("keyEncryptionAlgorithm %v, want SM2-3 1.2.156.10197.1.301.3", ri.KeyEncryptionAlgorithm.Algorithm)
	}
	var sc gbSM2Cipher
	if rest, err := asn1.Unmarshal(ri.EncryptedKey, &sc); err != nil || len(rest) != 0 {
		t.Fatalf("encryptedKey is not an SM2Cipher: %v", err)
	}
	if len(sc.Hash) != 32 || len(sc.CipherText) != 16 {
		t.Fatalf("SM2Cipher HASH %d bytes, CipherText %d bytes (want 32, 16)", len(sc.Hash), len(sc.CipherText))
	}
	eci := ed.EncryptedContentInfo
	if !eci.ContentType.Equal(asn1.ObjectIdentifier{1, 2, 156, 10197, 6, 1, 4, 2, 1}) {
		t.Fatalf("encryptedContentInfo contentType %v, want data 1.2.156.10197.6.1.4.2.1", eci.ContentType)
	}
	if !eci.ContentEncryptionAlgorithm.Algorithm.Equal(asn1.ObjectIdentifier{1, 2, 156, 10197, 1, 104, 2}) {
		t.Fatalf("contentEncryptionAlgorithm %v, want SM4-CBC", eci.ContentEncryptionAlgorithm.Algorithm)
	}
	var iv []byte
	if _, err := asn1.Unmarshal(eci.ContentEncryptionAlgorithm.Parameters.FullBytes, &iv); err != nil || len(iv) != 16 {
		t.Fatalf("SM4-CBC parameters are not a 16-byte IV: %v", err)
	}
	if len(eci.EncryptedContent) == 0 || len(eci.EncryptedContent)%16 != 0 {
		t.Fatalf("encryptedContent of %d bytes", len(eci.EncryptedContent))
	}
	// By hand: SM2-decrypt the key (ASN.1 form), SM4-CBC-decrypt the content, strip PKCS#7 padding.
	key, err := sm2.Decrypt(p.clientPair.Enc.Key, ri.EncryptedKey)
	if err != nil || len(key) != 16 {
		t.Fatalf("content key: %v", err)
	}
	pt := sm4CBCDecrypt(t, key, iv, eci.EncryptedContent)
	if !bytes.Equal(pt, secret) {
		t.Fatal("content does not decrypt to the plaintext")
	}
}
