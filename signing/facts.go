package signing

import (
	"errors"
	"fmt"
	"strings"
)

// Facts are what a caller needs to know about a built-in scheme besides signing and verifying
// with it: where the signature travels, which fields carry the nonce and the time, and what of a
// reply is signed. They are the one place these facts are written; gateway, channel, client and
// caddymodule read them here instead of switching on scheme names.
type Facts struct {
	// Name is the registry name, e.g. "form-sm2".
	Name string
	// SignsInHeader is true when the signature travels in HTTP headers and covers the body as
	// bytes (wechatpay-v3-sm2, http-sig-sm2), false when it is a field of the body itself
	// (form-sm2, unionpay-sm2). It decides the default envelope order (envelope.Resolve): a
	// header scheme can sign a sealed body, a body scheme has no fields to sign in an envelope,
	// so it is signed first and sealed after. A body scheme's key ID is the decimal
	// certificate serial, a header scheme's the hex one.
	SignsInHeader bool
	// SignatureHeaders are the headers that carry the signature and its parameters (none for
	// body schemes). A relay strips them from a reply it re-signs.
	SignatureHeaders []string
	// NonceField and TimestampField are where the default settings read the replay nonce and
	// the signing time: a body parameter for body schemes, an Authorization or Signature-Input
	// parameter for header schemes. Settings.NonceField and Settings.TimestampField change
	// them for body schemes.
	NonceField, TimestampField string
	// ReplySigned lists what the signature of a reply covers by default.
	ReplySigned []string
	// ReplyEchoesNonce: a reply carries the request's nonce field back (unionpay-sm2 orderId),
	// which binds it to its request.
	ReplyEchoesNonce bool

	build func(...Option) Scheme
}

// schemes is the table of built-in schemes, in Names order.
var schemes = []Facts{
	{
		Name: FormName, NonceField: "nonce_str", TimestampField: "timestamp",
		ReplySigned: []string{"body parameters except sign and sign_type"},
		build:       func(o ...Option) Scheme { return NewForm(o...) },
	},
	{
		Name: HTTPSigName, SignsInHeader: true,
		SignatureHeaders: []string{"Signature", "Signature-Input", "Content-Digest"},
		NonceField:       "nonce", TimestampField: "created",
		ReplySigned: []string{"@status", "content-digest"},
		build:       func(o ...Option) Scheme { return NewHTTPSig(o...) },
	},
	{
		Name: UnionPayName, NonceField: "orderId", TimestampField: "txnTime", ReplyEchoesNonce: true,
		ReplySigned: []string{"body parameters except signature (SM3 hex digest of the signed string)"},
		build:       func(o ...Option) Scheme { return NewUnionPay(o...) },
	},
	{
		Name: WechatPayName, SignsInHeader: true,
		SignatureHeaders: []string{HeaderWechatpayTimestamp, HeaderWechatpayNonce, HeaderWechatpaySignature,
			HeaderWechatpaySerial, HeaderWechatpaySignatureType},
		NonceField: "nonce_str", TimestampField: "timestamp",
		ReplySigned: []string{HeaderWechatpayTimestamp, HeaderWechatpayNonce, "body"},
		build:       func(o ...Option) Scheme { return NewWechatPay(o...) },
	},
}

// SchemeFacts returns the facts of the built-in scheme called name.
func SchemeFacts(name string) (Facts, bool) {
	for _, f := range schemes {
		if f.Name == name {
			f.SignatureHeaders = append([]string(nil), f.SignatureHeaders...)
			f.ReplySigned = append([]string(nil), f.ReplySigned...)
			return f, true
		}
	}
	return Facts{}, false
}

// SignsInHeader reports whether the named scheme carries its signature in headers (see
// Facts.SignsInHeader); false for body schemes and unknown names.
func SignsInHeader(name string) bool {
	f, _ := SchemeFacts(name)
	return f.SignsInHeader
}

// SignatureHeaders lists the HTTP headers the named scheme carries its signature in (none for
// the body schemes, whose signature is inside the body).
func SignatureHeaders(name string) []string {
	f, _ := SchemeFacts(name)
	return f.SignatureHeaders
}

// New returns the built-in scheme called name with opts applied. It is the one constructor
// path: Settings.Build, Lookup and the client SDK all end here.
func New(name string, opts ...Option) (Scheme, error) {
	if name == "" {
		return nil, errors.New("signing: no scheme named")
	}
	for _, f := range schemes {
		if f.Name == name {
			return f.build(opts...), nil
		}
	}
	return nil, fmt.Errorf("signing: unknown scheme %q (one of %s)", name, strings.Join(Names(), ", "))
}

// Lookup returns the built-in scheme called name with its default settings.
func Lookup(name string) (Scheme, error) { return New(name) }

// Names lists the built-in scheme names, sorted.
func Names() []string {
	out := make([]string, 0, len(schemes))
	for _, f := range schemes {
		out = append(out, f.Name)
	}
	return out
}
