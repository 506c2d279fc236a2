package client

import (
	"bytes"
	"crypto"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"fmt"
	"mime"
	"strings"

	"github.com/emmansun/gmsm/pkcs"
	"github.com/emmansun/gmsm/pkcs7"
	"github.com/emmansun/gmsm/smx509"
)

// EnvelopeContentType is the Content-Type of a sealed body: DER PKCS#7 EnvelopedData.
const EnvelopeContentType = "application/pkcs7-mime; smime-type=enveloped-data"

// HeaderInnerContentType carries the Content-Type of the body inside an envelope, so that the
// gateway can restore it before forwarding.
const HeaderInnerContentType = "Gm-Inner-Content-Type"

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

// Open opens an SM2 digital envelope (DER, or Base64 of DER) addressed to cert with key. Both
// the GM/T 0010 and the PKCS#7 OID sets are accepted. Input larger than limit bytes is refused.
// Errors wrap ErrReplyEnvelope and say nothing about the plaintext.
func Open(data []byte, cert *smx509.Certificate, key crypto.Decrypter, limit int64) (plain []byte, err error) {
	if cert == nil || key == nil {
		return nil, fmt.Errorf("%w: no decryption key configured", ErrReplyEnvelope)
	}
	if limit > 0 && int64(len(data)) > limit {
		return nil, fmt.Errorf("%w: envelope too large", ErrReplyEnvelope)
	}
	der := data
	if t := bytes.TrimSpace(data); len(t) > 0 && t[0] != 0x30 {
		d, derr := base64.StdEncoding.DecodeString(string(t))
		if derr != nil {
			return nil, fmt.Errorf("%w: neither DER nor Base64", ErrReplyEnvelope)
		}
		der = d
	}
	defer func() {
		// The BER/DER parser sees untrusted input: a panic in it must not kill the terminal.
		if r := recover(); r != nil {
			plain, err = nil, fmt.Errorf("%w: malformed envelope", ErrReplyEnvelope)
		}
	}()
	var outer asn1.RawValue
	if rest, err := asn1.Unmarshal(der, &outer); err != nil || len(rest) != 0 {
		return nil, fmt.Errorf("%w: not a single DER structure", ErrReplyEnvelope)
	}
	p7, err := pkcs7.Parse(der)
	if err != nil {
		return nil, fmt.Errorf("%w: malformed envelope", ErrReplyEnvelope)
	}
	plain, err = p7.Decrypt(cert, key)
	if err != nil {
		return nil, fmt.Errorf("%w: cannot decrypt (wrong recipient or corrupted)", ErrReplyEnvelope)
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
