package signing

import (
	"crypto/ecdsa"
	"strconv"
	"strings"
	"time"
)

// WechatPayName is the registry name of the WeChat Pay API v3 SM2 scheme.
const WechatPayName = "wechatpay-v3-sm2"

// WechatPaySchema is the Authorization scheme token of WeChat Pay API v3 with SM2. The official Go
// SDK builds it as "WECHATPAY2-" + Signer.Algorithm(), with Algorithm() = "SM2-WITH-SM3".
const WechatPaySchema = "WECHATPAY2-SM2-WITH-SM3"

// Response header names of WeChat Pay API v3.
const (
	HeaderWechatpayTimestamp     = "Wechatpay-Timestamp"
	HeaderWechatpayNonce         = "Wechatpay-Nonce"
	HeaderWechatpaySignature     = "Wechatpay-Signature"
	HeaderWechatpaySerial        = "Wechatpay-Serial"
	HeaderWechatpaySignatureType = "Wechatpay-Signature-Type"
)

const (
	maxWechatParams = 16
	maxWechatValue  = 2048
)

// WechatPay is the "wechatpay-v3-sm2" scheme. Requests carry
// `Authorization: WECHATPAY2-SM2-WITH-SM3 mchid="…",nonce_str="…",timestamp="…",serial_no="…",signature="…"`
// over "METHOD\nPATH_WITH_QUERY\nTIMESTAMP\nNONCE\nBODY\n"; replies carry Wechatpay-Timestamp,
// -Nonce, -Signature and -Serial over "TIMESTAMP\nNONCE\nBODY\n". Defaults: DER, Base64,
// default user ID.
type WechatPay struct{ c config }

// NewWechatPay returns the wechatpay-v3-sm2 scheme with opts applied.
func NewWechatPay(opts ...Option) *WechatPay {
	c := config{authSchema: WechatPaySchema, sigEnc: DER, textEnc: Base64}
	return &WechatPay{c: *apply(&c, opts)}
}

// Name returns "wechatpay-v3-sm2".
func (w *WechatPay) Name() string { return WechatPayName }

// Sign signs m: a request gets the Authorization header (KeyID = serial_no, taken from
// Key.Cert in upper-case hex when empty; MerchantID = mchid); a response gets the Wechatpay-*
// headers (KeyID = Wechatpay-Serial). An empty nonce is replaced by a fresh one.
func (w *WechatPay) Sign(m *Message, k Key, now time.Time, nonce string) error {
	if m == nil {
		return errf(ErrMalformedHeader, "nil message")
	}
	keyID := k.KeyID
	if keyID == "" && k.Cert != nil {
		keyID = SerialHex(k.Cert.SerialNumber)
	}
	if nonce == "" {
		var err error
		if nonce, err = NewNonce(); err != nil {
			return err
		}
	}
	for _, v := range []string{keyID, k.MerchantID, nonce} {
		if !wechatSafe(v) {
			return errf(ErrMalformedHeader, "key ID, merchant ID or nonce not representable")
		}
	}
	if keyID == "" {
		return errf(ErrMalformedHeader, "no key ID (serial_no)")
	}
	if m.Kind != Response && !wechatRequestLine(m) {
		return errf(ErrMalformedHeader, "method or target not representable")
	}
	ts := strconv.FormatInt(now.Unix(), 10)
	if m.Header == nil {
		m.Header = make(map[string][]string)
	}
	if m.Kind == Response {
		sig, err := SignSM2(k.Signer, wechatResponseString(ts, nonce, m.Body), w.uid(k, keyID), w.c.sigEnc)
		if err != nil {
			return err
		}
		m.Header.Set(HeaderWechatpayTimestamp, ts)
		m.Header.Set(HeaderWechatpayNonce, nonce)
		m.Header.Set(HeaderWechatpaySerial, keyID)
		m.Header.Set(HeaderWechatpaySignature, w.c.textEnc.Encode(sig))
		return nil
	}
	if k.MerchantID == "" {
		return errf(ErrMalformedHeader, "no merchant ID (mchid)")
	}
	if m.Method == "" || m.Target == "" {
		return errf(ErrMalformedHeader, "request without method or target")
	}
	sig, err := SignSM2(k.Signer, wechatRequestString(m.Method, m.Target, ts, nonce, m.Body), w.uid(k, keyID), w.c.sigEnc)
	if err != nil {
		return err
	}
	m.Header.Set("Authorization", w.c.authSchema+` mchid="`+k.MerchantID+`",nonce_str="`+nonce+
		`",timestamp="`+ts+`",serial_no="`+keyID+`",signature="`+w.c.textEnc.Encode(sig)+`"`)
	return nil
}

func (w *WechatPay) uid(k Key, keyID string) []byte {
	if k.UserID != nil {
		return k.UserID
	}
	return w.c.uidFor(keyID)
}

// Parse extracts the WeChat Pay signature of a request (Authorization) or reply (Wechatpay-*).
func (w *WechatPay) Parse(m *Message) (*Signed, error) {
	if m == nil {
		return nil, ErrMissingSignature
	}
	if m.Kind == Response {
		return w.parseResponse(m)
	}
	vals := m.Header.Values("Authorization")
	if len(vals) == 0 || strings.TrimSpace(vals[0]) == "" {
		return nil, ErrMissingSignature
	}
	if len(vals) > 1 {
		return nil, errf(ErrMalformedHeader, "several Authorization headers")
	}
	schema, params, err := ParseWechatAuthorization(vals[0])
	if err != nil {
		return nil, err
	}
	if !strings.EqualFold(schema, w.c.authSchema) {
		if len(schema) > 11 && strings.EqualFold(schema[:11], "WECHATPAY2-") {
			return nil, errf(ErrUnsupportedAlgorithm, "authorization type not %s", w.c.authSchema)
		}
		return nil, errf(ErrMalformedHeader, "authorization type not %s", w.c.authSchema)
	}
	for _, name := range []string{"mchid", "nonce_str", "timestamp", "serial_no", "signature"} {
		if params[name] == "" {
			return nil, errf(ErrMalformedHeader, "missing %s", name)
		}
	}
	ts, err := parseUnixSeconds(params["timestamp"])
	if err != nil {
		return nil, errf(ErrMalformedHeader, "timestamp: %v", err)
	}
	sig, err := w.c.textEnc.Decode(params["signature"])
	if err != nil || len(sig) == 0 {
		return nil, errf(ErrMalformedHeader, "signature encoding")
	}
	if !wechatRequestLine(m) {
		return nil, errf(ErrMalformedHeader, "bad request method or target")
	}
	p := map[string]string{"schema": schema}
	return &Signed{
		Scheme:      WechatPayName,
		KeyID:       params["serial_no"],
		MerchantID:  params["mchid"],
		Timestamp:   ts,
		Nonce:       params["nonce_str"],
		SignedBytes: wechatRequestString(m.Method, m.Target, params["timestamp"], params["nonce_str"], m.Body),
		Signature:   sig,
		Encoding:    w.c.sigEnc,
		UserID:      w.c.uidFor(params["serial_no"]),
		Params:      p,
	}, nil
}

func (w *WechatPay) parseResponse(m *Message) (*Signed, error) {
	get := func(name string) (string, error) {
		vs := m.Header.Values(name)
		if len(vs) > 1 {
			return "", errf(ErrMalformedHeader, "several %s headers", name)
		}
		if len(vs) == 0 {
			return "", nil
		}
		v := strings.TrimSpace(vs[0])
		if len(v) > maxWechatValue || !wechatSafe(v) {
			return "", errf(ErrMalformedHeader, "bad %s", name)
		}
		return v, nil
	}
	sigText, err := get(HeaderWechatpaySignature)
	if err != nil {
		return nil, err
	}
	if sigText == "" {
		return nil, ErrMissingSignature
	}
	typ, err := get(HeaderWechatpaySignatureType)
	if err != nil {
		return nil, err
	}
	if typ != "" && !strings.EqualFold(typ, w.c.authSchema) {
		return nil, errf(ErrUnsupportedAlgorithm, "signature type not %s", w.c.authSchema)
	}
	vals := map[string]string{}
	for _, name := range []string{HeaderWechatpayTimestamp, HeaderWechatpayNonce, HeaderWechatpaySerial} {
		v, err := get(name)
		if err != nil {
			return nil, err
		}
		if v == "" {
			return nil, errf(ErrMalformedHeader, "missing %s", name)
		}
		vals[name] = v
	}
	ts, err := parseUnixSeconds(vals[HeaderWechatpayTimestamp])
	if err != nil {
		return nil, errf(ErrMalformedHeader, "timestamp: %v", err)
	}
	sig, err := w.c.textEnc.Decode(sigText)
	if err != nil || len(sig) == 0 {
		return nil, errf(ErrMalformedHeader, "signature encoding")
	}
	serial := vals[HeaderWechatpaySerial]
	return &Signed{
		Scheme:      WechatPayName,
		KeyID:       serial,
		Timestamp:   ts,
		Nonce:       vals[HeaderWechatpayNonce],
		SignedBytes: wechatResponseString(vals[HeaderWechatpayTimestamp], vals[HeaderWechatpayNonce], m.Body),
		Signature:   sig,
		Encoding:    w.c.sigEnc,
		UserID:      w.c.uidFor(serial),
		Params:      map[string]string{},
	}, nil
}

// Verify checks the SM2 signature of s.
func (w *WechatPay) Verify(s *Signed, pub *ecdsa.PublicKey) error { return verifySigned(s, pub) }

func verifySigned(s *Signed, pub *ecdsa.PublicKey) error {
	if s == nil {
		return ErrMissingSignature
	}
	return VerifySM2(pub, s.SignedBytes, s.Signature, s.UserID, s.Encoding)
}

// wechatRequestLine reports whether m's method is a token and its target non-empty, bounded
// and free of control characters and spaces, as on any HTTP request line. The signed string
// joins them with newlines, so a newline in either would let bytes move between the method,
// target, timestamp, nonce and body lines of the same signed string (found by
// FuzzWechatSignedStringDifferential).
func wechatRequestLine(m *Message) bool {
	if !isToken(m.Method) || m.Target == "" || len(m.Target) > MaxHeaderLen {
		return false
	}
	for i := 0; i < len(m.Target); i++ {
		if c := m.Target[i]; c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

func wechatRequestString(method, target, ts, nonce string, body []byte) []byte {
	b := make([]byte, 0, len(method)+len(target)+len(ts)+len(nonce)+len(body)+5)
	b = append(b, method...)
	b = append(b, '\n')
	b = append(b, target...)
	b = append(b, '\n')
	b = append(b, ts...)
	b = append(b, '\n')
	b = append(b, nonce...)
	b = append(b, '\n')
	b = append(b, body...)
	return append(b, '\n')
}

func wechatResponseString(ts, nonce string, body []byte) []byte {
	b := make([]byte, 0, len(ts)+len(nonce)+len(body)+3)
	b = append(b, ts...)
	b = append(b, '\n')
	b = append(b, nonce...)
	b = append(b, '\n')
	b = append(b, body...)
	return append(b, '\n')
}

// ParseWechatAuthorization splits a WeChat Pay Authorization value into its scheme token and its
// parameters. Parameters may come in any order, separated by commas with optional whitespace;
// values may be quoted (no escapes) or bare tokens. Duplicates, control characters, more than 16
// parameters and values longer than 2 KiB are rejected (ErrMalformedHeader); a value longer than
// 8 KiB in all is rejected too.
func ParseWechatAuthorization(v string) (schema string, params map[string]string, err error) {
	if len(v) > MaxHeaderLen {
		return "", nil, errf(ErrMalformedHeader, "authorization too long")
	}
	v = strings.Trim(v, " \t")
	sp := strings.IndexAny(v, " \t")
	if sp <= 0 {
		return "", nil, errf(ErrMalformedHeader, "no authorization parameters")
	}
	schema, rest := v[:sp], v[sp:]
	for i := 0; i < len(schema); i++ {
		if !isTokenChar(schema[i]) {
			return "", nil, errf(ErrMalformedHeader, "bad authorization type")
		}
	}
	params = make(map[string]string, 5)
	i := 0
	skipOWS := func() {
		for i < len(rest) && (rest[i] == ' ' || rest[i] == '\t') {
			i++
		}
	}
	for {
		skipOWS()
		if i >= len(rest) {
			break
		}
		start := i
		for i < len(rest) && isKeyChar(rest[i]) {
			i++
		}
		key := rest[start:i]
		if key == "" {
			return "", nil, errf(ErrMalformedHeader, "bad parameter name")
		}
		skipOWS()
		if i >= len(rest) || rest[i] != '=' {
			return "", nil, errf(ErrMalformedHeader, "parameter without value")
		}
		i++
		skipOWS()
		var val string
		if i < len(rest) && rest[i] == '"' {
			end := strings.IndexByte(rest[i+1:], '"')
			if end < 0 {
				return "", nil, errf(ErrMalformedHeader, "unterminated quoted value")
			}
			val = rest[i+1 : i+1+end]
			i += end + 2
		} else {
			start := i
			for i < len(rest) && rest[i] != ',' && rest[i] != ' ' && rest[i] != '\t' {
				i++
			}
			val = rest[start:i]
		}
		if len(val) > maxWechatValue || !wechatSafe(val) {
			return "", nil, errf(ErrMalformedHeader, "bad parameter value")
		}
		if _, dup := params[key]; dup {
			return "", nil, errf(ErrMalformedHeader, "duplicate parameter")
		}
		if len(params) >= maxWechatParams {
			return "", nil, errf(ErrMalformedHeader, "too many parameters")
		}
		params[key] = val
		skipOWS()
		if i >= len(rest) {
			break
		}
		if rest[i] != ',' {
			return "", nil, errf(ErrMalformedHeader, "expected comma")
		}
		i++
	}
	if len(params) == 0 {
		return "", nil, errf(ErrMalformedHeader, "no authorization parameters")
	}
	return schema, params, nil
}

// wechatSafe reports whether v is free of quotes, backslashes and control characters.
func wechatSafe(v string) bool {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < 0x20 || c == 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

func isKeyChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

func isTokenChar(c byte) bool {
	return isKeyChar(c) || strings.IndexByte("!#$%&'*+.^`|~", c) >= 0
}

// parseUnixSeconds parses 1-19 decimal digits.
func parseUnixSeconds(s string) (time.Time, error) {
	if len(s) == 0 || len(s) > 19 {
		return time.Time{}, errf(ErrMalformedHeader, "bad length")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return time.Time{}, errf(ErrMalformedHeader, "not decimal")
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, err
	}
	return time.Unix(n, 0), nil
}
