package envelope

import (
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strings"
)

// The wire contract of an enveloped HTTP body, shared by the gateway, the bank channel and the
// terminal SDK.

// ContentType is the Content-Type of a body sealed as an SM2 digital envelope (DER PKCS#7
// EnvelopedData).
const ContentType = "application/pkcs7-mime; smime-type=enveloped-data"

// HeaderInnerContentType carries the Content-Type of the body inside an envelope: restored
// before a sign-then-seal body is verified and before an opened body is forwarded; set on sealed
// replies.
const HeaderInnerContentType = "Gm-Inner-Content-Type"

// maxInnerContentType bounds the restored content type.
const maxInnerContentType = 256

// Order is the order of signing and sealing of an enveloped body, in both directions.
type Order int

const (
	// OrderAuto picks the order from the scheme: SealThenSign for header schemes
	// (wechatpay-v3-sm2, http-sig-sm2), SignThenSeal for body schemes (form-sm2, unionpay-sm2).
	OrderAuto Order = iota
	// SealThenSign: the signature covers the envelope bytes as sent. The receiver verifies
	// first and opens after.
	SealThenSign
	// SignThenSeal: the signature covers the plaintext, which is sealed afterwards. The receiver
	// opens first and verifies the plaintext: only authenticated encryption (SM4-GCM) may be
	// opened there (Opener.RequireAEAD), or the receiver is a padding oracle.
	SignThenSeal
)

// String returns "auto", "seal_then_sign" or "sign_then_seal".
func (o Order) String() string {
	switch o {
	case SealThenSign:
		return "seal_then_sign"
	case SignThenSeal:
		return "sign_then_seal"
	}
	return "auto"
}

// ParseOrder reads "auto" (or ""), "seal_then_sign" or "sign_then_seal" ('-' may stand for '_').
func ParseOrder(s string) (Order, error) {
	switch strings.ReplaceAll(strings.ToLower(s), "-", "_") {
	case "", "auto":
		return OrderAuto, nil
	case "seal_then_sign":
		return SealThenSign, nil
	case "sign_then_seal":
		return SignThenSeal, nil
	}
	return OrderAuto, fmt.Errorf("unknown envelope order %q (auto, seal_then_sign, sign_then_seal)", s)
}

// Resolve returns the order used with a scheme that signs in headers (signsInHeader, from
// signing.SignsInHeader) or in body fields: o, or for OrderAuto the scheme's default.
// SealThenSign with a body scheme is an error: the signature is a field of the body, so the body
// cannot be sealed before it is signed.
func Resolve(o Order, signsInHeader bool) (Order, error) {
	switch o {
	case OrderAuto:
		if signsInHeader {
			return SealThenSign, nil
		}
		return SignThenSeal, nil
	case SealThenSign:
		if !signsInHeader {
			return o, errors.New("seal_then_sign needs a header scheme (this scheme signs body fields)")
		}
		return o, nil
	case SignThenSeal:
		return o, nil
	}
	return o, errors.New("unknown envelope order")
}

// InnerContentType returns the valid inner content type of h, or "".
func InnerContentType(h http.Header) string {
	v := strings.TrimSpace(h.Get(HeaderInnerContentType))
	if v == "" || len(v) > maxInnerContentType {
		return ""
	}
	if _, _, err := mime.ParseMediaType(v); err != nil {
		return ""
	}
	return v
}

// IsContentType reports whether a Content-Type names a PKCS#7 envelope.
func IsContentType(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && (mt == "application/pkcs7-mime" || mt == "application/x-pkcs7-mime")
}

// RestoreContentType sets h's Content-Type for an opened body: the inner type when the sender
// named one, none when the outer type named the envelope, and removes the inner type header.
func RestoreContentType(h http.Header) {
	if inner := InnerContentType(h); inner != "" {
		h.Set("Content-Type", inner)
	} else if IsContentType(h.Get("Content-Type")) {
		h.Del("Content-Type")
	}
	h.Del(HeaderInnerContentType)
}
