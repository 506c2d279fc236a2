package envelope

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha1" // RFC 5280 key identifier, not a security use
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/emmansun/gmsm/pkcs"
	"github.com/emmansun/gmsm/pkcs7"
	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
)

// Errors. Every one wraps ErrInvalid. Decryption failures of the content key and of the content
// are deliberately the same error (no padding or key oracle).
var (
	// ErrInvalid is the root of every envelope error: the envelope cannot be opened.
	ErrInvalid = errors.New("envelope cannot be opened")
	// ErrTooLarge: the body exceeds the configured bound.
	ErrTooLarge = fmt.Errorf("%w: too large", ErrInvalid)
	// ErrFormat: not DER/PEM/Base64 of a PKCS#7 EnvelopedData.
	ErrFormat = fmt.Errorf("%w: malformed", ErrInvalid)
	// ErrAlgorithm: content encryption other than SM4-CBC or SM4-GCM, or SM4-CBC where
	// Opener.RequireAEAD asks for authenticated encryption.
	ErrAlgorithm = fmt.Errorf("%w: unsupported algorithm", ErrInvalid)
	// ErrRecipient: the envelope is not addressed to the opener's certificate.
	ErrRecipient = fmt.Errorf("%w: not addressed to this recipient", ErrInvalid)
	// ErrDecrypt: the content key or the content could not be decrypted.
	ErrDecrypt = fmt.Errorf("%w: decryption failed", ErrInvalid)
	// ErrKeyUnavailable: the recipient's own key failed (an HSM token gone), not the input; it
	// does not wrap ErrInvalid, so nobody blames the sender.
	ErrKeyUnavailable = errors.New("envelope: the recipient key is unavailable")
)

// keyUnavailable returns err wrapped in ErrKeyUnavailable when the key reports the failure as
// its own (an Unavailable() true method, as the key vault's errors have), or nil.
func keyUnavailable(err error) error {
	var u interface{ Unavailable() bool }
	if errors.As(err, &u) && u.Unavailable() {
		return fmt.Errorf("%w: %w", ErrKeyUnavailable, err)
	}
	return nil
}

// Bounds of envelopes.
const (
	// DefaultMaxSize bounds a decoded envelope or JSON body (1 MiB).
	DefaultMaxSize = 1 << 20
	// MaxRecipients bounds the RecipientInfos of an envelope.
	MaxRecipients = 16
	// maxEncryptedKeyLen bounds an SM2-encrypted content key
	// (ASN.1 C1C3C2 of a 16..32-byte key is about 140 bytes).
	maxEncryptedKeyLen = 512
	sm4KeySize         = 16
)

var (
	oidSM4    = asn1.ObjectIdentifier{1, 2, 156, 10197, 1, 104}
	oidSM4CBC = asn1.ObjectIdentifier{1, 2, 156, 10197, 1, 104, 2}
	oidSM4GCM = asn1.ObjectIdentifier{1, 2, 156, 10197, 1, 104, 8}
)

// envContentInfo, envEnvelopedData and envEncryptedContentInfo mirror the
// outer PKCS#7 structures just enough to check type, recipient count and
// algorithm before gmsm's pkcs7 does the real work.
type envContentInfo struct {
	ContentType asn1.ObjectIdentifier
	Content     asn1.RawValue `asn1:"explicit,optional,tag:0"`
}

type envEnvelopedData struct {
	Version              int
	RecipientInfos       []asn1.RawValue `asn1:"set"`
	EncryptedContentInfo envEncryptedContentInfo
}

type envEncryptedContentInfo struct {
	ContentType                asn1.ObjectIdentifier
	ContentEncryptionAlgorithm pkix.AlgorithmIdentifier
	EncryptedContent           asn1.RawValue `asn1:"tag:0,optional"`
}

// Opener opens SM2 digital envelopes (PKCS#7 / GM/T 0010
// EnvelopedData, SM2-encrypted SM4 content key) addressed to the platform
// encryption certificate.
type Opener struct {
	// Cert is the platform encryption certificate; the envelope must name it
	// (issuer and serial, or subject key identifier). Required.
	Cert *smx509.Certificate
	// Key is the matching private key. Decrypt is called with the ASN.1
	// (GM/T 0009, C1C3C2) SM2 ciphertext of the content key and nil options,
	// which is the convention of gmsm's *sm2.PrivateKey. Required.
	Key crypto.Decrypter
	// MaxSize bounds the decoded envelope (default DefaultMaxSize).
	MaxSize int
	// AllowCFCA also accepts content keys encrypted in the legacy CFCA form
	// (raw C1C2C3 without the 0x04 prefix), tried only after the ASN.1 form
	// failed; Key must then also accept gmsm's *sm2.DecrypterOpts.
	AllowCFCA bool
	// RequireAEAD refuses content encrypted with SM4-CBC before anything is
	// decrypted (ErrAlgorithm): only SM4-GCM, whose tag rejects any
	// change to a captured envelope, is opened. Set it wherever decryption
	// precedes the signature check (sign-then-seal): there a CBC envelope makes
	// the gateway a padding oracle for captured envelopes.
	RequireAEAD bool
}

func (o *Opener) maxSize() int {
	if o.MaxSize > 0 {
		return o.MaxSize
	}
	return DefaultMaxSize
}

// DecodeBody returns the DER bytes of a body that is DER, PEM or
// Base64 (standard or URL alphabet, padded or not, whitespace ignored).
func DecodeBody(body []byte, max int) ([]byte, error) {
	if max <= 0 {
		max = DefaultMaxSize
	}
	if len(body) > max/3*4+4096 {
		return nil, ErrTooLarge
	}
	if len(body) > 0 && body[0] == 0x30 { // DER: binary, never trimmed
		if len(body) > max {
			return nil, ErrTooLarge
		}
		return body, nil
	}
	b := bytes.TrimSpace(body)
	if len(b) == 0 {
		return nil, ErrFormat
	}
	var der []byte
	switch {
	case bytes.HasPrefix(b, []byte("-----BEGIN ")):
		blk, _ := pem.Decode(b)
		if blk == nil {
			return nil, ErrFormat
		}
		switch blk.Type {
		case "PKCS7", "CMS", "ENVELOPED DATA":
		default:
			return nil, ErrFormat
		}
		der = blk.Bytes
	default:
		compact := make([]byte, 0, len(b))
		for _, c := range b {
			switch c {
			case ' ', '\t', '\r', '\n':
			default:
				compact = append(compact, c)
			}
		}
		var err error
		der, err = decodeBase64Any(compact)
		if err != nil {
			return nil, ErrFormat
		}
	}
	if len(der) == 0 { // an empty PEM block: nothing to open (FuzzDecodeBody)
		return nil, ErrFormat
	}
	if len(der) > max {
		return nil, ErrTooLarge
	}
	return der, nil
}

// decodeBase64Any accepts the standard and URL alphabets, padded or not.
func decodeBase64Any(s []byte) ([]byte, error) {
	enc := base64.StdEncoding
	if bytes.ContainsAny(s, "-_") {
		enc = base64.URLEncoding
	}
	if len(s)%4 != 0 {
		enc = enc.WithPadding(base64.NoPadding)
	}
	out := make([]byte, enc.DecodedLen(len(s)))
	n, err := enc.Strict().Decode(out, s)
	if err != nil {
		return nil, err
	}
	return out[:n], nil
}

// checkStructure validates the outer structure of a DER envelope and
// reports whether its content encryption is authenticated (SM4-GCM).
func checkStructure(der []byte) (aead bool, err error) {
	var ci envContentInfo
	rest, err := asn1.Unmarshal(der, &ci)
	if err != nil || len(rest) != 0 {
		return false, ErrFormat
	}
	if !ci.ContentType.Equal(pkcs7.OIDEnvelopedData) && !ci.ContentType.Equal(pkcs7.SM2OIDEnvelopedData) {
		return false, ErrFormat
	}
	var ed envEnvelopedData
	rest, err = asn1.Unmarshal(ci.Content.Bytes, &ed)
	if err != nil || len(rest) != 0 {
		return false, ErrFormat
	}
	if len(ed.RecipientInfos) == 0 || len(ed.RecipientInfos) > MaxRecipients {
		return false, ErrFormat
	}
	alg := ed.EncryptedContentInfo.ContentEncryptionAlgorithm
	switch {
	case alg.Algorithm.Equal(oidSM4GCM):
		aead = true
	case alg.Algorithm.Equal(oidSM4CBC):
	case alg.Algorithm.Equal(oidSM4) && len(alg.Parameters.FullBytes) > 0:
		// bare SM4 OID with an IV parameter: gmsm treats it as SM4-CBC
	default:
		return false, ErrAlgorithm
	}
	if len(ed.EncryptedContentInfo.EncryptedContent.Bytes) == 0 {
		return false, ErrFormat
	}
	return aead, nil
}

// decrypterSession adapts a crypto.Decrypter to gmsm's pkcs7.Session and
// remembers the content key so it can be wiped after use.
type decrypterSession struct {
	pkcs7.DefaultSession
	d         crypto.Decrypter
	allowCFCA bool
	key       []byte
	keyErr    error // the key's own failure (ErrKeyUnavailable), not the input's
}

// DecryptDataKey implements pkcs7.Session.
func (s *decrypterSession) DecryptDataKey(enc []byte, _ crypto.PrivateKey, _ *smx509.Certificate, _ any) ([]byte, error) {
	if len(enc) == 0 || len(enc) > maxEncryptedKeyLen {
		return nil, ErrDecrypt
	}
	k, err := s.d.Decrypt(rand.Reader, enc, nil)
	if err != nil && s.allowCFCA && enc[0] != 0x04 {
		raw := make([]byte, len(enc)+1)
		raw[0] = 0x04
		copy(raw[1:], enc)
		k, err = s.d.Decrypt(rand.Reader, raw, sm2.NewPlainDecrypterOpts(sm2.C1C2C3))
	}
	if err != nil {
		s.keyErr = keyUnavailable(err)
		return nil, ErrDecrypt
	}
	if len(k) != sm4KeySize {
		wipe(k)
		return nil, ErrDecrypt
	}
	s.key = k
	return k, nil
}

func wipe(b []byte) {
	for i := range b {
		b[i] = 0
	}
}

// Open decrypts body (DER, PEM or Base64 of an EnvelopedData) and returns the
// plaintext. Errors wrap ErrInvalid (or are ErrKeyUnavailable) and carry no key material.
//
// Verify the request signature over the envelope bytes before calling Open:
// an unauthenticated caller must not be able to use the gateway as a
// decryption oracle for captured envelopes.
func (o *Opener) Open(body []byte) (plain []byte, err error) {
	if o.Cert == nil || o.Key == nil {
		return nil, fmt.Errorf("%w: opener has no certificate or key", ErrInvalid)
	}
	der, err := DecodeBody(body, o.maxSize())
	if err != nil {
		return nil, err
	}
	aead, err := checkStructure(der)
	if err != nil {
		return nil, err
	}
	if o.RequireAEAD && !aead {
		return nil, ErrAlgorithm
	}
	sess := &decrypterSession{d: o.Key, allowCFCA: o.AllowCFCA}
	defer func() {
		wipe(sess.key)
		if r := recover(); r != nil { // defence in depth around the ASN.1 library
			plain, err = nil, ErrFormat
		}
	}()
	p7, err := pkcs7.ParseWithSession(sess, der)
	if err != nil {
		return nil, ErrFormat
	}
	recips, err := p7.GetRecipients()
	if err != nil || !addressedTo(recips, o.Cert) {
		return nil, ErrRecipient
	}
	plain, err = p7.Decrypt(o.Cert, o.Key)
	if err != nil {
		if sess.keyErr != nil {
			return nil, sess.keyErr
		}
		return nil, ErrDecrypt
	}
	return plain, nil
}

// addressedTo reports whether a recipient names cert: issuer and serial, or
// subject key identifier (the certificate's extension, or SHA-1 of its
// public key bits as RFC 5280 method 1, as gmsm computes it).
func addressedTo(recips []pkcs7.RecipientInfo, cert *smx509.Certificate) bool {
	var skis [][]byte
	if len(cert.SubjectKeyId) > 0 {
		skis = append(skis, cert.SubjectKeyId)
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if rest, err := asn1.Unmarshal(cert.RawSubjectPublicKeyInfo, &spki); err == nil && len(rest) == 0 {
		h := sha1.Sum(spki.PublicKey.RightAlign())
		skis = append(skis, h[:])
	}
	for _, r := range recips {
		if r.SerialNumber != nil && cert.SerialNumber != nil && r.SerialNumber.Cmp(cert.SerialNumber) == 0 &&
			bytes.Equal(r.RawIssuer, cert.RawIssuer) {
			return true
		}
		for _, k := range skis {
			if len(r.SubjectKeyIdentifier) > 0 && bytes.Equal(r.SubjectKeyIdentifier, k) {
				return true
			}
		}
	}
	return false
}

// SealOptions selects the form of a sealed envelope.
type SealOptions struct {
	// GCM uses SM4-GCM for the content instead of SM4-CBC.
	GCM bool
	// StandardOIDs uses the PKCS#7 (1.2.840.113549) content-type OIDs instead
	// of the GM/T 0010 (1.2.156.10197.6.1.4.2) ones.
	StandardOIDs bool
	// Base64 returns standard Base64 instead of DER.
	Base64 bool
}

// Seal encrypts plain for the client's encryption certificate
// (SM2-encrypted SM4 content key, ASN.1 key encoding, issuer-and-serial
// recipient), as gmsm's pkcs7.EncryptSM / pkcs7.Encrypt produce it.
func Seal(plain []byte, recipient *smx509.Certificate, opts SealOptions) ([]byte, error) {
	if recipient == nil {
		return nil, errors.New("envelope: seal: no recipient certificate")
	}
	pub, ok := recipient.PublicKey.(*ecdsa.PublicKey)
	if !ok || !sm2.IsSM2PublicKey(pub) {
		return nil, errors.New("envelope: seal: recipient certificate has no SM2 key")
	}
	if recipient.KeyUsage != 0 && recipient.KeyUsage&(smx509.KeyUsageKeyEncipherment|smx509.KeyUsageDataEncipherment|smx509.KeyUsageKeyAgreement) == 0 {
		return nil, errors.New("envelope: seal: recipient certificate is not an encryption certificate")
	}
	if len(plain) > DefaultMaxSize*16 {
		return nil, errors.New("envelope: seal: content too large")
	}
	var c pkcs.Cipher = pkcs.SM4CBC
	if opts.GCM {
		c = pkcs.SM4GCM
	}
	var der []byte
	var err error
	if opts.StandardOIDs {
		der, err = pkcs7.Encrypt(c, plain, []*smx509.Certificate{recipient})
	} else {
		der, err = pkcs7.EncryptSM(c, plain, []*smx509.Certificate{recipient})
	}
	if err != nil {
		return nil, fmt.Errorf("envelope: seal: %w", err)
	}
	if opts.Base64 {
		out := make([]byte, base64.StdEncoding.EncodedLen(len(der)))
		base64.StdEncoding.Encode(out, der)
		return out, nil
	}
	return der, nil
}
