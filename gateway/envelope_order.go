package gateway

import (
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strings"

	"github.com/gmgate/gmgate/signing"
)

// EnvelopeContentType is the Content-Type of a body sealed as an SM2 digital
// envelope (DER PKCS#7 EnvelopedData). The client SDK uses the same value.
const EnvelopeContentType = "application/pkcs7-mime; smime-type=enveloped-data"

// HeaderInnerContentType carries the Content-Type of the body inside an
// envelope. The gateway restores it before verifying a sign-then-seal body
// and before forwarding an opened body; it is set on sealed replies.
const HeaderInnerContentType = "Gm-Inner-Content-Type"

// maxInnerContentType bounds the restored content type.
const maxInnerContentType = 256

// EnvelopeOrder is the order of signing and sealing of an enveloped body, in
// both directions. The client SDK (client.EnvelopeOrder) has the same values
// and the same default rule.
type EnvelopeOrder int

const (
	// OrderAuto picks the order from the scheme: SealThenSign for header
	// schemes (wechatpay-v3-sm2, http-sig-sm2), SignThenSeal for body schemes
	// (form-sm2, unionpay-sm2).
	OrderAuto EnvelopeOrder = iota
	// SealThenSign: the signature covers the envelope bytes as sent. The
	// gateway verifies the request first and opens it after; it seals a reply
	// first and signs the envelope.
	SealThenSign
	// SignThenSeal: the signature covers the plaintext, which is sealed
	// afterwards. The gateway opens the request first and verifies the
	// plaintext; it signs a reply first and seals the signed body.
	SignThenSeal
)

// String returns "auto", "seal_then_sign" or "sign_then_seal".
func (o EnvelopeOrder) String() string {
	switch o {
	case SealThenSign:
		return "seal_then_sign"
	case SignThenSeal:
		return "sign_then_seal"
	}
	return "auto"
}

// ParseEnvelopeOrder reads "auto" (or ""), "seal_then_sign" or "sign_then_seal"
// ('-' may stand for '_').
func ParseEnvelopeOrder(s string) (EnvelopeOrder, error) {
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

// HeaderScheme reports whether the named scheme carries its signature in
// headers (wechatpay-v3-sm2, http-sig-sm2) rather than in body fields.
func HeaderScheme(name string) bool {
	return name == signing.WechatPayName || name == signing.HTTPSigName
}

// ResolveEnvelopeOrder returns the order used with the named scheme: o, or
// for OrderAuto the scheme's default. SealThenSign with a body scheme is an
// error: the signature is a field of the body, so the body cannot be sealed
// before it is signed.
func ResolveEnvelopeOrder(o EnvelopeOrder, scheme string) (EnvelopeOrder, error) {
	switch o {
	case OrderAuto:
		if HeaderScheme(scheme) {
			return SealThenSign, nil
		}
		return SignThenSeal, nil
	case SealThenSign:
		if !HeaderScheme(scheme) {
			return o, fmt.Errorf("gateway: seal_then_sign needs a header scheme (%s signs body fields)", scheme)
		}
		return o, nil
	case SignThenSeal:
		return o, nil
	}
	return o, errors.New("gateway: unknown envelope order")
}

// innerContentType returns the valid inner content type of h, or "".
func innerContentType(h http.Header) string {
	v := strings.TrimSpace(h.Get(HeaderInnerContentType))
	if v == "" || len(v) > maxInnerContentType {
		return ""
	}
	if _, _, err := mime.ParseMediaType(v); err != nil {
		return ""
	}
	return v
}

// isEnvelopeType reports whether a Content-Type names a PKCS#7 envelope.
func isEnvelopeType(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && (mt == "application/pkcs7-mime" || mt == "application/x-pkcs7-mime")
}

// restoreContentType sets h's Content-Type for an opened body: the inner type
// when the client named one, none when the outer type named the envelope,
// and removes the inner type header.
func restoreContentType(h http.Header) {
	if inner := innerContentType(h); inner != "" {
		h.Set("Content-Type", inner)
	} else if isEnvelopeType(h.Get("Content-Type")) {
		h.Del("Content-Type")
	}
	h.Del(HeaderInnerContentType)
}
