package cryptosvc

import (
	"bytes"
	"crypto/sha256"
	"encoding/asn1"
	"testing"

	"github.com/emmansun/gmsm/pkcs7"
	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/refusal"
)

// cmsBuild makes a SignedData of data by iss with gmsm directly; edit (optional) changes the
// SignedData before the signer is added; noAttrs signs without authenticated attributes
// (the signature is then over the content itself).
func cmsBuild(t testing.TB, iss *pki.Issued, chain []*smx509.Certificate, data []byte, detached, noAttrs bool,
	cfg pkcs7.SignerInfoConfig, edit func(*pkcs7.SignedData)) []byte {
	t.Helper()
	sd, err := pkcs7.NewSignedData(data)
	if err != nil {
		t.Fatal(err)
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSM3)
	if edit != nil {
		edit(sd)
	}
	if noAttrs {
		err = sd.SignWithoutAttr(iss.Cert, iss.Key, cfg)
	} else {
		err = sd.AddSignerChain(iss.Cert, iss.Key, chain, cfg)
	}
	if err != nil {
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

// flipAt returns der with the byte at the start (first) or end (!first) of the first occurrence
// of sub flipped.
func flipAt(t testing.TB, der, sub []byte, first bool) []byte {
	t.Helper()
	i := bytes.Index(der, sub)
	if i < 0 || len(sub) == 0 {
		t.Fatal("bytes to tamper with not found in the DER")
	}
	out := append([]byte(nil), der...)
	if first {
		out[i] ^= 1
	} else {
		out[i+len(sub)-1] ^= 1
	}
	return out
}

// TestVerifyMessageByDigest: GM/T 0029 VerifySignedMessage with the content given as its SM3
// digest. A detached SignedData verifies by digest and names its signer, as by data; every
// row that is not OK is refused with its code and audited with the SignedData's SM3.
func TestVerifyMessageByDigest(t *testing.T) {
	p := loadTestPKI(t)
	sink := &recSink{}
	s := certService(t, p, sink)
	data := []byte("settlement file 2026-12-04, 4096 lines")
	other := []byte("settlement file 2026-12-04, 4097 lines")
	md, mdOther := sm3sum(data), sm3sum(other)
	none := pkcs7.SignerInfoConfig{}

	detached := cmsBuild(t, p.signer, nil, data, true, false, none, nil)
	withChain := cmsBuild(t, p.signer, []*smx509.Certificate{p.inter.Cert}, data, true, false, none, nil)
	attached := cmsBuild(t, p.signer, nil, data, false, false, none, nil)
	noAttrs := cmsBuild(t, p.signer, nil, data, true, true, none, nil)
	// The signature's last byte, and the messageDigest attribute's first byte, flipped.
	p7, err := pkcs7.Parse(detached)
	if err != nil {
		t.Fatal(err)
	}
	sigFlipped := flipAt(t, detached, p7.Signers[0].EncryptedDigest, false)
	mdTampered := flipAt(t, detached, md, true)
	mdOfTampered := append([]byte(nil), md...)
	mdOfTampered[0] ^= 1
	// A signer whose signed content type is not data (gmsm does not check this attribute).
	tstInfo := asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 1, 4}
	notData := cmsBuild(t, p.signer, nil, data, true, false, none, func(sd *pkcs7.SignedData) {
		sd.GetSignedData().ContentInfo.ContentType = tstInfo
	})
	// A second messageDigest attribute naming other content.
	twoDigests := cmsBuild(t, p.signer, nil, data, true, false, pkcs7.SignerInfoConfig{ExtraSignedAttributes: []pkcs7.Attribute{
		{Type: pkcs7.OIDAttributeMessageDigest, Value: mdOther}}}, nil)
	// 33 extra signed attributes (36 in all), over the bound.
	var many []pkcs7.Attribute
	for i := range 33 {
		many = append(many, pkcs7.Attribute{Type: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, i + 1}, Value: i})
	}
	manyAttrs := cmsBuild(t, p.signer, nil, data, true, false, pkcs7.SignerInfoConfig{ExtraSignedAttributes: many}, nil)
	// A signer digesting with SHA-256 (SM2 signature still): its messageDigest is SHA-256(M).
	shaSum := sha256.Sum256(data)
	sha := cmsBuild(t, p.signer, nil, data, true, false, none, func(sd *pkcs7.SignedData) {
		sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	})
	// The service's own detached SignedData, standard and GM/T 0010 OIDs, and made from a digest.
	ours := mustOK(t, s, settlement, OpSignMessage, item{"key": "platform-sign", "data": b64(data), "detached": true}).CMS
	oursGM := mustOK(t, s, settlement, OpSignMessage, item{"key": "platform-sign", "data": b64(data), "detached": true, "gm_oids": true}).CMS
	oursDigest := mustOK(t, s, settlement, OpSignMessage, item{"key": "platform-sign", "digest": b64(md)}).CMS

	rows := []struct {
		name   string
		cms    []byte
		in     item // besides cms
		want   refusal.Code
		signer *pki.Issued
	}{
		{"valid digest names the signer", detached, item{"digest": b64(md)}, refusal.OK, p.signer},
		{"valid digest, intermediate in the message", withChain, item{"digest": b64(md)}, refusal.OK, p.signer},
		{"service's detached SignedData", ours, item{"digest": b64(md)}, refusal.OK, p.platform},
		{"service's detached SignedData, GM/T 0010 OIDs", oursGM, item{"digest": b64(md)}, refusal.OK, p.platform},
		{"service's SignedData made from a digest", oursDigest, item{"digest": b64(md)}, refusal.OK, p.platform},
		{"control: the same message by data", detached, item{"data": b64(data)}, refusal.OK, p.signer},
		{"digest of other content", detached, item{"digest": b64(mdOther)}, CodeBadSignature, nil},
		{"signature bit flipped", sigFlipped, item{"digest": b64(md)}, CodeBadSignature, nil},
		{"messageDigest attribute tampered", mdTampered, item{"digest": b64(md)}, CodeBadSignature, nil},
		{"messageDigest attribute tampered, its digest given", mdTampered, item{"digest": b64(mdOfTampered)}, CodeBadSignature, nil},
		{"digest of 31 bytes", detached, item{"digest": b64(md[:31])}, CodeMalformed, nil},
		{"digest of 33 bytes", detached, item{"digest": b64(append(append([]byte(nil), md...), 0))}, CodeMalformed, nil},
		{"digest of 64 bytes (hex text)", detached, item{"digest": b64([]byte(hexs(md)))}, CodeMalformed, nil},
		{"both data and digest", detached, item{"data": b64(data), "digest": b64(md)}, CodeMalformed, nil},
		{"digest with attached content", attached, item{"digest": b64(md)}, CodeMalformed, nil},
		{"no signed attributes", noAttrs, item{"digest": b64(md)}, CodeContentRequired, nil},
		{"control: no signed attributes, by data", noAttrs, item{"data": b64(data)}, refusal.OK, p.signer},
		{"signed content type is not data, by digest", notData, item{"digest": b64(md)}, CodeMalformed, nil},
		{"signed content type is not data, by data", notData, item{"data": b64(data)}, CodeMalformed, nil},
		{"too many signed attributes", manyAttrs, item{"digest": b64(md)}, CodeTooLarge, nil},
		{"two messageDigest attributes", twoDigests, item{"digest": b64(md)}, CodeMalformed, nil},
		{"SHA-256 signer given its SHA-256 digest", sha, item{"digest": b64(shaSum[:])}, CodeMalformed, nil},
		{"expired signer", cmsBuild(t, p.expired, nil, data, true, false, none, nil), item{"digest": b64(md)}, CodeCertExpired, nil},
		{"revoked signer", cmsBuild(t, p.revoked, nil, data, true, false, none, nil), item{"digest": b64(md)}, CodeCertRevoked, nil},
		{"foreign root", cmsBuild(t, p.foreignSigner, []*smx509.Certificate{p.foreign.Cert}, data, true, false, none, nil),
			item{"digest": b64(md)}, CodeCertUntrusted, nil},
		{"encryption certificate as signer", cmsBuild(t, p.clientPair.Enc, nil, data, true, false, none, nil),
			item{"digest": b64(md)}, CodeCertUntrusted, nil},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			in := item{"cms": b64(r.cms)}
			for k, v := range r.in {
				in[k] = v
			}
			resp, err := call(t, s, risk, OpVerifyMessage, in)
			if r.want == refusal.OK {
				if err != nil {
					t.Fatal(err)
				}
				res := resp.Results[0]
				if !res.Valid || res.Signer == nil || res.Signer.Subject != r.signer.Cert.Subject.String() || res.Signer.Role != "sign" ||
					res.VerifyLevel == nil || *res.VerifyLevel != 2 || res.Content != nil {
					t.Fatalf("result %+v", res)
				}
				return
			}
			mustCode(t, err, r.want)
			if rec := sink.last(t); rec.Reason != string(r.want) || !bytes.Equal(rec.SignedSM3, sm3sum(r.cms)) {
				t.Fatalf("audit entry %+v", rec)
			}
		})
	}
}

// TestVerifyMessageByDigestBatch: a batch mixes data and digest items; each item is judged on
// its own.
func TestVerifyMessageByDigestBatch(t *testing.T) {
	p := loadTestPKI(t)
	s := certService(t, p, nil)
	data := []byte("batch content")
	cms := b64(cmsBuild(t, p.signer, nil, data, true, false, pkcs7.SignerInfoConfig{}, nil))
	resp, err := call(t, s, risk, OpVerifyMessage, map[string]any{"batch_input": []item{
		{"cms": cms, "digest": b64(sm3sum(data))},
		{"cms": cms, "data": b64(data)},
		{"cms": cms, "digest": b64(sm3sum([]byte("other")))},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if r := resp.Results; !r[0].Valid || !r[1].Valid || r[2].Code != CodeBadSignature {
		t.Fatalf("batch results %+v", r)
	}
}
