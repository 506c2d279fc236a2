package signing

// Scheme facts: what the rest of gmgate needs to know about a scheme besides signing and
// verifying. They are decided here, and nowhere else.

// SignsInHeader reports whether the named scheme carries its signature in HTTP headers
// (wechatpay-v3-sm2, http-sig-sm2) rather than as fields of the body (form-sm2, unionpay-sm2).
// A body scheme cannot sign an envelope's bytes (there are no fields to sign), so its envelopes
// are signed first and sealed after; its key ID is the decimal certificate serial.
func SignsInHeader(name string) bool { return name == WechatPayName || name == HTTPSigName }
