package client

import (
	"crypto"
	"errors"
	"fmt"
	"math"
	"mime"
	"strings"

	"github.com/emmansun/gmsm/pkcs"
	"github.com/emmansun/gmsm/pkcs7"
	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/envelope"
)

// EnvelopeContentType is the Content-Type of a sealed body (envelope.ContentType).
const EnvelopeContentType = envelope.ContentType

// HeaderInnerContentType carries the Content-Type of the body inside an envelope
// (envelope.HeaderInnerContentType).
const HeaderInnerContentType = envelope.HeaderInnerContentType

// maxEnvelopeOverhead bounds how much larger a sealed body may be than its plaintext.
const maxEnvelopeOverhead = 8 << 10

// Seal makes an SM2 digital envelope of content for recipient (an SM2 encryption
// certificate): GM/T 0010 EnvelopedData, a fresh SM4-CBC content key encrypted with SM2
// (ASN.1 ciphertext), DER. It is what the Transport does to request bodies.
func Seal(content []byte, recipient *smx509.Certificate) ([]byte, error) {
	return seal(content, recipient, pkcs.SM4CBC)
}

// SealGCM is Seal with SM4-GCM content encryption: what the Transport uses in sign-then-seal
// order, where the gateway decrypts before it can check the signature and so opens only
// authenticated encryption (a CBC envelope there would make it a padding oracle).
func SealGCM(content []byte, recipient *smx509.Certificate) ([]byte, error) {
	return seal(content, recipient, pkcs.SM4GCM)
}

func seal(content []byte, recipient *smx509.Certificate, c pkcs.Cipher) ([]byte, error) {
	if recipient == nil {
		return nil, errors.New("client: seal: no recipient certificate")
	}
	out, err := pkcs7.EncryptSM(c, content, []*smx509.Certificate{recipient})
	if err != nil {
		return nil, fmt.Errorf("client: seal: %w", err)
	}
	return out, nil
}

// Open opens an SM2 digital envelope (DER, PEM or Base64 of DER) addressed to cert with key
// through envelope.Opener, the gateway's own opener with its strict checks (structure,
// recipient, bounds, key size). Both the GM/T 0010 and the PKCS#7 OID sets are accepted. Input
// larger than limit bytes is refused. Errors wrap ErrReplyEnvelope and say nothing about the
// plaintext.
func Open(data []byte, cert *smx509.Certificate, key crypto.Decrypter, limit int64) ([]byte, error) {
	return open(data, cert, key, limit, false)
}

// open is Open; requireAEAD refuses SM4-CBC before decrypting (a sign-then-seal reply).
func open(data []byte, cert *smx509.Certificate, key crypto.Decrypter, limit int64, requireAEAD bool) ([]byte, error) {
	if cert == nil || key == nil {
		return nil, fmt.Errorf("%w: no decryption key configured", ErrReplyEnvelope)
	}
	if limit <= 0 || limit > math.MaxInt32 {
		limit = envelope.DefaultMaxSize
	}
	o := &envelope.Opener{Cert: cert, Key: key, MaxSize: int(limit), RequireAEAD: requireAEAD}
	plain, err := o.Open(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrReplyEnvelope, err)
	}
	return plain, nil
}

// isEnvelope reports whether a Content-Type names a PKCS#7 enveloped body.
func isEnvelope(contentType string) bool {
	if contentType == "" {
		return false
	}
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	switch mt {
	case "application/pkcs7-mime", "application/x-pkcs7-mime":
		st := strings.ToLower(params["smime-type"])
		return st == "" || st == "enveloped-data"
	}
	return false
}
