package signing

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"sort"
	"strings"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm3"
	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
)

// SigEncoding is the byte encoding of an SM2 signature.
type SigEncoding int

const (
	// DER is ASN.1 DER SEQUENCE { r INTEGER, s INTEGER } (at most 72 bytes).
	DER SigEncoding = iota
	// Raw is r||s, each 32 bytes big-endian (64 bytes), as RFC 9421 does for ECDSA.
	Raw
)

// String returns "der" or "raw".
func (e SigEncoding) String() string {
	if e == Raw {
		return "raw"
	}
	return "der"
}

// TextEncoding is how a signature is written as text.
type TextEncoding int

const (
	// Base64 is standard padded Base64 (RFC 4648 §4).
	Base64 TextEncoding = iota
	// Hex is lower-case hexadecimal (either case accepted when decoding).
	Hex
)

// String returns "base64" or "hex".
func (t TextEncoding) String() string {
	if t == Hex {
		return "hex"
	}
	return "base64"
}

// Encode writes b in text encoding t.
func (t TextEncoding) Encode(b []byte) string {
	if t == Hex {
		return hex.EncodeToString(b)
	}
	return base64.StdEncoding.EncodeToString(b)
}

// Decode reads s in text encoding t, strictly. Inputs longer than 1 KiB are rejected
// (no SM2 signature in any encoding comes close).
func (t TextEncoding) Decode(s string) ([]byte, error) {
	if len(s) > 1024 {
		return nil, errors.New("encoded signature too long")
	}
	if t == Hex {
		return hex.DecodeString(s)
	}
	return base64.StdEncoding.Strict().DecodeString(s)
}

const maxDERSig = 72 // 2 + 2*(2+33)

var sm2N = sm2.P256().Params().N

// SignSM2 signs msg with signer (SM3 with Z_A of uid; nil uid = default user ID) and returns the
// signature in enc. The signer is called exactly as gmsm's *sm2.PrivateKey expects:
// Sign(rand.Reader, msg, sm2.NewSM2SignerOption(true, uid)), and must return DER.
func SignSM2(signer crypto.Signer, msg, uid []byte, enc SigEncoding) ([]byte, error) {
	if signer == nil {
		return nil, errors.New("signing: no signer")
	}
	if len(uid) > MaxUserIDLen {
		return nil, errors.New("signing: user ID too long")
	}
	if len(msg) == 0 {
		return nil, errors.New("signing: empty message")
	}
	der, err := signer.Sign(rand.Reader, msg, sm2.NewSM2SignerOption(true, uid))
	if err != nil {
		return nil, fmt.Errorf("signing: SM2 sign: %w", err)
	}
	switch enc {
	case DER:
		if _, err := derToRaw(der); err != nil { // validate what the signer returned
			return nil, fmt.Errorf("signing: signer returned a malformed signature: %w", err)
		}
		return der, nil
	case Raw:
		return derToRaw(der)
	default:
		return nil, errors.New("signing: unknown signature encoding")
	}
}

// VerifySM2 verifies sig (in enc) over msg with pub, using SM3 with Z_A of uid (nil = default user
// ID). Any failure, including a malformed signature or a non-SM2 key, is ErrBadSignature.
func VerifySM2(pub *ecdsa.PublicKey, msg, sig, uid []byte, enc SigEncoding) error {
	if pub == nil || pub.Curve == nil || pub.Curve.Params() != sm2.P256().Params() {
		return errf(ErrBadSignature, "not an SM2 public key")
	}
	if len(uid) > MaxUserIDLen {
		return errf(ErrBadSignature, "user ID too long")
	}
	der := sig
	switch enc {
	case DER:
		if len(sig) > maxDERSig {
			return errf(ErrBadSignature, "signature too long")
		}
	case Raw:
		var err error
		if der, err = rawToDER(sig); err != nil {
			return errf(ErrBadSignature, "%v", err)
		}
	default:
		return errf(ErrBadSignature, "unknown signature encoding")
	}
	if !sm2.VerifyASN1WithSM2(pub, uid, msg, der) {
		return ErrBadSignature
	}
	return nil
}

// derToRaw converts a DER SM2 signature to 64-byte r||s. It is strict: minimal DER, no trailing
// data, 1 <= r, s < n.
func derToRaw(der []byte) ([]byte, error) {
	if len(der) > maxDERSig {
		return nil, errors.New("DER signature too long")
	}
	var inner cryptobyte.String
	var r, s []byte
	in := cryptobyte.String(der)
	if !in.ReadASN1(&inner, asn1.SEQUENCE) || !in.Empty() ||
		!inner.ReadASN1Integer(&r) || !inner.ReadASN1Integer(&s) || !inner.Empty() {
		return nil, errors.New("malformed DER signature")
	}
	out := make([]byte, 64)
	if err := putScalar(out[:32], r); err != nil {
		return nil, err
	}
	if err := putScalar(out[32:], s); err != nil {
		return nil, err
	}
	return out, nil
}

func putScalar(dst, v []byte) error {
	for len(v) > 0 && v[0] == 0 {
		v = v[1:]
	}
	if len(v) == 0 || len(v) > 32 {
		return errors.New("signature scalar out of range")
	}
	if new(big.Int).SetBytes(v).Cmp(sm2N) >= 0 {
		return errors.New("signature scalar out of range")
	}
	copy(dst[32-len(v):], v)
	return nil
}

// rawToDER converts a 64-byte r||s SM2 signature to DER. It requires exactly 64 bytes and
// 1 <= r, s < n.
func rawToDER(raw []byte) ([]byte, error) {
	if len(raw) != 64 {
		return nil, errors.New("raw signature must be 64 bytes")
	}
	for _, half := range [][]byte{raw[:32], raw[32:]} {
		v := new(big.Int).SetBytes(half)
		if v.Sign() == 0 || v.Cmp(sm2N) >= 0 {
			return nil, errors.New("signature scalar out of range")
		}
	}
	var b cryptobyte.Builder
	b.AddASN1(asn1.SEQUENCE, func(b *cryptobyte.Builder) {
		addInt(b, raw[:32])
		addInt(b, raw[32:])
	})
	return b.Bytes()
}

func addInt(b *cryptobyte.Builder, v []byte) {
	for len(v) > 1 && v[0] == 0 {
		v = v[1:]
	}
	b.AddASN1(asn1.INTEGER, func(c *cryptobyte.Builder) {
		if v[0]&0x80 != 0 {
			c.AddUint8(0)
		}
		c.AddBytes(v)
	})
}

// SM3 returns the SM3 digest of b.
func SM3(b []byte) []byte {
	h := sm3.Sum(b)
	return h[:]
}

// SM3Hex returns the SM3 digest of b as lower-case hex.
func SM3Hex(b []byte) string { return hex.EncodeToString(SM3(b)) }

// ContentDigest returns the RFC 9530 Content-Digest field value for body with SM3:
// `sm3=:BASE64:`.
func ContentDigest(body []byte) string {
	return "sm3=:" + base64.StdEncoding.EncodeToString(SM3(body)) + ":"
}

// CanonicalParams builds the sorted `k1=v1&k2=v2...` string used by form and UnionPay signatures:
// every parameter with a non-empty value whose key is not in exclude, sorted by key in byte
// (ASCII) order, values not URL-encoded.
func CanonicalParams(params map[string]string, exclude ...string) string {
	keys := make([]string, 0, len(params))
	size := 0
outer:
	for k, v := range params {
		if v == "" {
			continue
		}
		for _, e := range exclude {
			if k == e {
				continue outer
			}
		}
		keys = append(keys, k)
		size += len(k) + len(v) + 2
	}
	sort.Strings(keys)
	var sb strings.Builder
	sb.Grow(size) // one allocation for the whole string
	for i, k := range keys {
		if i > 0 {
			sb.WriteByte('&')
		}
		sb.WriteString(k)
		sb.WriteByte('=')
		sb.WriteString(params[k])
	}
	return sb.String()
}

// NewNonce returns a fresh random nonce: 32 upper-case hexadecimal characters (128 bits).
func NewNonce() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("signing: nonce: %w", err)
	}
	return strings.ToUpper(hex.EncodeToString(b[:])), nil
}

// SerialDecimal returns a certificate serial number in decimal (UnionPay certId).
func SerialDecimal(serial *big.Int) string {
	if serial == nil {
		return ""
	}
	return serial.String()
}

// SerialHex returns a certificate serial number in upper-case hexadecimal (WeChat Pay serial_no).
func SerialHex(serial *big.Int) string {
	if serial == nil {
		return ""
	}
	return strings.ToUpper(serial.Text(16))
}
