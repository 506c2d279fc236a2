package cryptosvc

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"

	"github.com/emmansun/gmsm/pkcs7"
	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/envelope"
	"github.com/gmgate/gmgate/pki"
)

// maxSigners bounds the SignerInfos of a verified message: the service verifies exactly one.
const maxSigners = 1

// signMessage makes a PKCS#7/CMS SignedData of data with the key's certificate (GM/T 0029
// SignMessage): SM3 digest, SM2 signature over the authenticated attributes (content type,
// message digest, signing time) with the default user ID, the key's configured certificate
// chain included, attached or detached. Standard PKCS#7 content-type OIDs (what Tongsuo/OpenSSL
// `cms` read) unless gm_oids asks for GM/T 0010's.
//
// GM/T 0029 flags: digest ("data already hashed") is SM3(M) of the content M computed by the
// caller (the CMS messageDigest attribute, not SM3(Z_A||M)): the message is then detached;
// no_chain leaves the CA certificates out (the signer's certificate stays); include_crl adds the
// configured CRLs issued by a CA of the chain (crypto_revocation_unavailable when there is
// none).
func (s *Service) signMessage(key string, it *Item, res *Result) itemOutcome {
	var d []byte
	switch {
	case it.Data != nil && it.Digest != nil:
		return itemOutcome{err: fail(CodeMalformed, errors.New("both data and digest"))}
	case it.Digest != nil:
		if len(it.Digest) != sm3.Size {
			return itemOutcome{err: fail(CodeMalformed, fmt.Errorf("digest must be %d bytes (SM3 of the content)", sm3.Size))}
		}
		d = append([]byte(nil), it.Digest...)
	case it.Data != nil:
		d = sum(it.Data)
	default:
		return itemOutcome{err: fail(CodeMalformed, errors.New("data or digest is required"))}
	}
	signer, err := s.o.Keys.Signer(key)
	if err != nil {
		return itemOutcome{digest: d, err: keyCode(err)}
	}
	ver := versionOf(signer)
	certs, err := s.o.Keys.Certificate(key)
	if err != nil {
		return itemOutcome{digest: d, version: ver, err: keyCode(err)}
	}
	leaf := certs[0]
	if pub, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(signer.Public()) {
		return itemOutcome{digest: d, version: ver, err: fail(CodeKeyUnavailable, errors.New("the key's certificate does not carry the signing version"))}
	}
	var sd *pkcs7.SignedData
	switch {
	case it.GMOIDs && it.Digest != nil:
		sd, err = pkcs7.NewSMSignedDataWithDigest(it.Digest)
	case it.GMOIDs:
		sd, err = pkcs7.NewSMSignedData(it.Data)
	case it.Digest != nil:
		sd, err = pkcs7.NewSignedDataWithDigest(it.Digest)
	default:
		sd, err = pkcs7.NewSignedData(it.Data)
	}
	if err == nil && !it.GMOIDs {
		sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSM3)
	}
	parents := certs[1:]
	if it.NoChain {
		parents = nil
	}
	if err == nil {
		err = sd.AddSignerChain(leaf, defaultUIDSigner{signer}, parents, pkcs7.SignerInfoConfig{})
	}
	if err != nil {
		return itemOutcome{digest: d, version: ver, err: fail(CodeInternal, err)}
	}
	if it.IncludeCRL {
		crls := s.chainCRLs(certs)
		if len(crls) == 0 {
			return itemOutcome{digest: d, version: ver, err: fail(CodeRevocationUnavailable, errors.New("no configured CRL of the signer's chain"))}
		}
		sd.GetSignedData().CRLs = append(sd.GetSignedData().CRLs, crls...)
	}
	if it.Detached || it.Digest != nil {
		sd.Detach()
	}
	der, err := sd.Finish()
	if err != nil {
		return itemOutcome{digest: d, version: ver, err: fail(CodeInternal, err)}
	}
	res.CMS, res.KeyVersion, res.Signer = der, ver, certInfo(leaf)
	return itemOutcome{digest: d, version: ver}
}

// verifyMessage verifies a PKCS#7/CMS SignedData (GM/T 0029 VerifySignedMessage) with exactly
// one signer: the signer's certificate through pki as a signing certificate (chain to a
// configured root with the message's certificates as intermediates, validity, key usage, CRL),
// then the signature over the (attached, or given as data when detached) content. The result
// names the signer; an attached content is returned.
//
// A detached message may instead be given by digest, SM3(M) of its content M (GM/T 0029
// VerifySignedMessage Init/Update/Final, the content hashed by the caller): the signer's
// messageDigest attribute is compared with it in constant time and the SM2 signature is checked
// over the DER SET of the signed attributes (gmsm's VerifyAsDigest). That needs signed
// attributes: without them the signature is over the content itself
// (crypto_content_required). A digest for an attached message is refused like data for one.
func (s *Service) verifyMessage(it *Item, res *Result) itemOutcome {
	if it.CMS == nil {
		return itemOutcome{err: fail(CodeMalformed, errors.New("cms is required"))}
	}
	d := sum(it.CMS)
	switch {
	case it.Data != nil && it.Digest != nil:
		return itemOutcome{digest: d, err: fail(CodeMalformed, errors.New("both data and digest"))}
	case it.Digest != nil && len(it.Digest) != sm3.Size:
		return itemOutcome{digest: d, err: fail(CodeMalformed, fmt.Errorf("digest must be %d bytes (SM3 of the content)", sm3.Size))}
	}
	byDigest := it.Digest != nil
	p7, err := parsePKCS7(it.CMS)
	if err != nil {
		return itemOutcome{digest: d, err: fail(CodeMalformed, err)}
	}
	if len(p7.Signers) != maxSigners {
		return itemOutcome{digest: d, err: fail(CodeMalformed, fmt.Errorf("%d signers, want %d", len(p7.Signers), maxSigners))}
	}
	attached := len(p7.Content) > 0
	switch {
	case attached && it.Data != nil:
		return itemOutcome{digest: d, err: fail(CodeMalformed, errors.New("data given for a message with attached content"))}
	case attached && byDigest:
		return itemOutcome{digest: d, err: fail(CodeMalformed, errors.New("digest given for a message with attached content"))}
	case !attached && it.Data == nil && !byDigest:
		return itemOutcome{digest: d, err: fail(CodeMalformed, errors.New("detached message: data or digest is required"))}
	case !attached && byDigest:
		p7.Content = append([]byte(nil), it.Digest...)
	case !attached:
		p7.Content = it.Data
	}
	if err := checkSignedAttributes(p7, byDigest); err != nil {
		return itemOutcome{digest: d, err: err}
	}
	signer := p7.GetOnlySigner()
	if signer == nil {
		return itemOutcome{digest: d, err: fail(CodeCertUntrusted, errors.New("the signer's certificate is not in the message"))}
	}
	normalizeSM2Algorithm(p7)
	var others []*smx509.Certificate
	for _, c := range p7.Certificates {
		if c != signer {
			others = append(others, c)
		}
	}
	if len(others) > pki.MaxPeerIntermediates {
		return itemOutcome{digest: d, err: fail(CodeTooLarge, errors.New("too many certificates in the message"))}
	}
	level, err := s.checkCertLevel(signer, others, pki.RoleSign, it.VerifyLevel)
	if err != nil {
		return itemOutcome{digest: d, err: err}
	}
	if byDigest {
		err = p7.VerifyAsDigest() // checkSignedAttributes made sure there are signed attributes
	} else {
		err = p7.Verify()
	}
	if err != nil {
		return itemOutcome{digest: d, err: fail(CodeBadSignature, err)}
	}
	res.Valid, res.Signer, res.VerifyLevel = true, certInfo(signer), &level
	if attached {
		res.Content = p7.Content
	}
	return itemOutcome{digest: d}
}

// maxSignedAttributes bounds the signed attributes of a verified signer (content type, message
// digest and signing time are the usual ones).
const maxSignedAttributes = 32

// checkSignedAttributes checks the only signer's authenticated attributes (RFC 5652 §5.3,
// §11): when present there are at most maxSignedAttributes, exactly one content-type attribute
// with one value naming data (PKCS#7 1.2.840.113549.1.7.1 or GM/T 0010 1.2.156.10197.6.1.4.2.1:
// the service verifies data only, and gmsm does not check this attribute) and exactly one
// messageDigest attribute with one value (gmsm compares the first one it finds). When the
// content is given by digest they must be present, and the signer's digest algorithm must be
// SM3.
func checkSignedAttributes(p7 *pkcs7.PKCS7, byDigest bool) error {
	si := &p7.Signers[0]
	attrs := si.AuthenticatedAttributes
	if len(attrs) == 0 {
		if byDigest {
			return fail(CodeContentRequired, errors.New("no signed attributes: the signature is over the content itself; verify with data"))
		}
		return nil
	}
	if byDigest && !si.DigestAlgorithm.Algorithm.Equal(oidSM3) {
		return fail(CodeMalformed, errors.New("the signer's digest algorithm is not SM3"))
	}
	if len(attrs) > maxSignedAttributes {
		return fail(CodeTooLarge, fmt.Errorf("%d signed attributes, limit %d", len(attrs), maxSignedAttributes))
	}
	var contentTypes, digests int
	for _, a := range attrs {
		switch {
		case a.Type.Equal(pkcs7.OIDAttributeContentType):
			contentTypes++
			var ct asn1.ObjectIdentifier
			if rest, err := asn1.Unmarshal(a.Value.Bytes, &ct); err != nil || len(rest) != 0 {
				return fail(CodeMalformed, errors.New("the content-type attribute is not one OID"))
			}
			if !ct.Equal(pkcs7.OIDData) && !ct.Equal(pkcs7.SM2OIDData) {
				return fail(CodeMalformed, fmt.Errorf("the signed content type %v is not data", ct))
			}
		case a.Type.Equal(pkcs7.OIDAttributeMessageDigest):
			digests++
			var md []byte
			if rest, err := asn1.Unmarshal(a.Value.Bytes, &md); err != nil || len(rest) != 0 {
				return fail(CodeMalformed, errors.New("the messageDigest attribute is not one OCTET STRING"))
			}
		}
	}
	if contentTypes != 1 || digests != 1 {
		return fail(CodeMalformed, fmt.Errorf("%d content-type and %d messageDigest attributes, want one each", contentTypes, digests))
	}
	return nil
}

var (
	oidSM2WithSM3 = asn1.ObjectIdentifier{1, 2, 156, 10197, 1, 501}
	oidSM3        = asn1.ObjectIdentifier{1, 2, 156, 10197, 1, 401}
)

// normalizeSM2Algorithm reads a SignerInfo whose digestEncryptionAlgorithm is sm2sign-with-sm3
// (1.2.156.10197.1.501, what OpenSSL and Tongsuo `cms -sign` write) with an SM3 digest as
// GM/T 0010's SM2-1 (1.2.156.10197.1.301.1), which gmsm v0.44.1's pkcs7 verifies: the same
// signature (SM2 over SM3 with the default user ID). Other algorithms are left for gmsm to
// refuse.
func normalizeSM2Algorithm(p7 *pkcs7.PKCS7) {
	for i := range p7.Signers {
		si := &p7.Signers[i]
		if si.DigestEncryptionAlgorithm.Algorithm.Equal(oidSM2WithSM3) && si.DigestAlgorithm.Algorithm.Equal(oidSM3) {
			si.DigestEncryptionAlgorithm.Algorithm = pkcs7.OIDDigestEncryptionAlgorithmSM2
		}
	}
}

// chainCRLs returns the configured CRLs issued by a certificate of chain or a trusted root
// (matched by issuer name and verified with that certificate's key), as SignedData's crls
// field takes them.
func (s *Service) chainCRLs(chain []*smx509.Certificate) []pkix.CertificateList {
	if s.o.Certificates != nil { // the chain's root is usually not in the key's configured chain
		chain = append(append([]*smx509.Certificate(nil), chain...), s.o.Certificates.RootCertificates()...)
	}
	var out []pkix.CertificateList
	for _, der := range s.o.CRLs {
		rl, err := smx509.ParseRevocationList(der)
		if err != nil {
			continue
		}
		for _, c := range chain {
			if !bytes.Equal(rl.RawIssuer, c.RawSubject) || rl.CheckSignatureFrom(c) != nil {
				continue
			}
			var cl pkix.CertificateList
			if rest, err := asn1.Unmarshal(der, &cl); err == nil && len(rest) == 0 {
				out = append(out, cl)
			}
			break
		}
	}
	return out
}

// parsePKCS7 parses with gmsm, turning a panic of the parser on hostile input into an error
// (the input is bounded by the item size).
func parsePKCS7(der []byte) (p7 *pkcs7.PKCS7, err error) {
	defer func() {
		if r := recover(); r != nil {
			p7, err = nil, errors.New("unparseable PKCS#7")
		}
	}()
	p7, err = pkcs7.Parse(der)
	if err == nil && p7 == nil {
		err = errors.New("empty PKCS#7")
	}
	return p7, err
}

// sealEnvelope seals plaintext to a recipient's encryption certificate (an SM2 digital
// envelope, PKCS#7 EnvelopedData, package envelope): the certificate must pass pki as an
// encryption certificate first (chain, validity, usage, CRL), so nothing is sealed to a revoked
// or foreign key.
func (s *Service) sealEnvelope(it *Item, res *Result) itemOutcome {
	if it.Plaintext == nil {
		return itemOutcome{err: fail(CodeMalformed, errors.New("plaintext is required"))}
	}
	c, chain, err := s.itemCert(it)
	if err == nil {
		err = s.checkCert(c, chain, pki.RoleEnc) // always the full check: nothing is sealed to a revoked key
	}
	if err != nil {
		return itemOutcome{err: err}
	}
	env, err := envelope.Seal(it.Plaintext, c, envelope.SealOptions{GCM: it.GCM, StandardOIDs: !it.GMOIDs})
	if err != nil {
		return itemOutcome{err: fail(CodeInternal, err)}
	}
	res.Envelope, res.Certificate = env, certInfo(c)
	return itemOutcome{digest: sum(env)}
}

// openEnvelope opens an envelope addressed to the key's certificate (package envelope's
// Opener: structure, recipient, bounds; one error for every failure to decrypt).
func (s *Service) openEnvelope(key string, it *Item, res *Result) itemOutcome {
	if it.Envelope == nil {
		return itemOutcome{err: fail(CodeMalformed, errors.New("envelope is required"))}
	}
	d := sum(it.Envelope)
	dec, err := s.o.Keys.Decrypter(key)
	if err != nil {
		return itemOutcome{digest: d, err: keyCode(err)}
	}
	ver := versionOf(dec)
	certs, err := s.o.Keys.Certificate(key)
	if err != nil {
		return itemOutcome{digest: d, version: ver, err: keyCode(err)}
	}
	o := &envelope.Opener{Cert: certs[0], Key: dec, MaxSize: s.o.MaxItemSize}
	pt, err := o.Open(it.Envelope)
	if err != nil {
		if errors.Is(err, envelope.ErrKeyUnavailable) {
			return itemOutcome{digest: d, version: ver, err: fail(CodeKeyUnavailable, err)}
		}
		if errors.Is(err, envelope.ErrTooLarge) {
			return itemOutcome{digest: d, version: ver, err: fail(CodeTooLarge, err)}
		}
		return itemOutcome{digest: d, version: ver, err: fail(CodeBadCiphertext, err)}
	}
	if pt == nil {
		pt = []byte{}
	}
	res.Plaintext, res.KeyVersion = pt, ver
	return itemOutcome{digest: d, version: ver}
}
