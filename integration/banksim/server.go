// Package banksim is a bank simulator for gmgate's bank channel: a standalone HTTP, HTTPS or TLCP
// server that verifies each profile's SM2 signature, decrypts, answers with a signed (and, when
// configured, encrypted) reply, and can be told to misbehave. Its cryptography and formats are
// written from the wire-format description (docs/channel.md, docs/signing.md) with gmsm
// directly; it does not call packages signing or channel, so it is an independent check.
package banksim

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
	"github.com/gmgate/gmgate/tlcp"
)

// Scheme names.
const (
	UnionPay  = "unionpay-sm2"
	Form      = "form-sm2"
	HTTPSig   = "http-sig-sm2"
	WechatPay = "wechatpay-v3-sm2"
)

// Misbehaviour is what the simulator does wrong on purpose. Set it globally with
// SetMisbehaviour or per request with the header X-Banksim-Misbehave.
type Misbehaviour string

// Misbehaviours.
const (
	// Behave answers correctly.
	Behave Misbehaviour = ""
	// BadSignature flips a bit of the reply's signature.
	BadSignature Misbehaviour = "bad-signature"
	// WrongCert signs with a rogue key and names the rogue certificate (unknown to the gateway).
	WrongCert Misbehaviour = "wrong-cert"
	// WrongKey names the bank's real certificate but signs with the rogue key.
	WrongKey Misbehaviour = "wrong-key"
	// TamperCiphertext corrupts the reply ciphertext and then signs it (signature good,
	// decryption fails).
	TamperCiphertext Misbehaviour = "tamper-ciphertext"
	// TamperAfterSign changes the reply body after signing (in-transit tampering): by default
	// the last letter or digit of the body is replaced by the next one of its class ('9' by
	// '0', 'z' by 'a'), so a signed timestamp stays a valid time and Base64 stays Base64; the
	// header X-Banksim-Tamper chooses another tamper (see HeaderTamper).
	TamperAfterSign Misbehaviour = "tamper-after-sign"
	// Unsigned sends the reply without any signature.
	Unsigned Misbehaviour = "unsigned"
	// Slow waits Delay (or X-Banksim-Delay) before answering.
	Slow Misbehaviour = "slow"
	// Drop closes the connection without answering.
	Drop Misbehaviour = "drop"
)

// Request headers understood by the simulator.
const (
	HeaderMisbehave = "X-Banksim-Misbehave"
	HeaderDelay     = "X-Banksim-Delay"
	// HeaderTamper chooses the tamper of TamperAfterSign: "NAME=VALUE" sets the top-level
	// member NAME of the signed JSON reply to the string VALUE (the other bytes unchanged);
	// "truncate" drops the body's last byte. Absent: the default tamper.
	HeaderTamper = "X-Banksim-Tamper"
	// HeaderVerified is set on replies: "ok" or the reason the request was refused.
	HeaderVerified = "X-Banksim-Request"
)

// Profile is the channel profile the simulator speaks.
type Profile struct {
	// Scheme is UnionPay, Form, HTTPSig or WechatPay.
	Scheme string
	// UserID is a fixed SM2 user ID (nil: the scheme's rule).
	UserID []byte
	// UserIDFromKeyID makes the user ID the key ID bytes (the rule of unionpay-sm2).
	UserIDFromKeyID bool
	// Raw selects raw r||s signatures (default: per scheme, raw for unionpay and http-sig).
	Raw *bool
	// Hex selects hex signature text (default Base64).
	Hex bool
	// Encryption: Target "", "body" or "fields"; Cipher "sm4-gcm", "sm4-cbc" or "sm2-envelope".
	Target string
	Cipher string
	Fields []string
	// SM4Key is the channel data key (sm4-gcm, sm4-cbc).
	SM4Key []byte
}

func (p *Profile) raw() bool {
	if p.Raw != nil {
		return *p.Raw
	}
	return p.Scheme == UnionPay || p.Scheme == HTTPSig
}

func (p *Profile) uid(keyID string) []byte {
	if p.UserID != nil {
		return p.UserID
	}
	if p.UserIDFromKeyID || p.Scheme == UnionPay {
		return []byte(keyID)
	}
	return nil
}

// Options configures a Server.
type Options struct {
	Profile Profile
	// PlatformCerts are the platform signing certificates whose requests are accepted.
	PlatformCerts []*smx509.Certificate
	// SignKey and SignCert are the bank's platform signing key and certificate.
	SignKey  *sm2.PrivateKey
	SignCert *smx509.Certificate
	// EncKey and EncCert open envelopes sent to the bank.
	EncKey  *sm2.PrivateKey
	EncCert *smx509.Certificate
	// PlatformEncCert receives envelope replies.
	PlatformEncCert *smx509.Certificate
	// RogueKey and RogueCert serve WrongCert and WrongKey.
	RogueKey  *sm2.PrivateKey
	RogueCert *smx509.Certificate
	// Handler computes the plain reply from the verified, decrypted request (default: echo).
	Handler func(r *Received) (status int, contentType string, body []byte)
	// Delay is the pause of Slow (default 2s).
	Delay time.Duration
	// MerchantID is echoed in param-scheme replies when set.
	MerchantID string
}

// FromTestPKI fills the key and certificate options from p.
func FromTestPKI(p *TestPKI, prof Profile) Options {
	return Options{Profile: prof, PlatformCerts: []*smx509.Certificate{p.PlatformSign.Cert},
		SignKey: p.BankSign.Key, SignCert: p.BankSign.Cert, EncKey: p.BankEnc.Key, EncCert: p.BankEnc.Cert,
		PlatformEncCert: p.PlatformEnc.Cert, RogueKey: p.RogueSign.Key, RogueCert: p.RogueSign.Cert}
}

// Received is one request as the simulator saw it.
type Received struct {
	Method, Target string
	Header         http.Header
	// Wire is the body as received; Plain the decrypted body (business content).
	Wire, Plain []byte
	// Params are the decrypted parameters when the body is a flat parameter set.
	Params map[string]string
	// Verified tells whether the signature verified; Err says why not.
	Verified bool
	Err      string
}

// Server is the simulator.
type Server struct {
	// URL is the base URL once started ("https://" for HTTPS and TLCP).
	URL string

	opts Options
	sym  *symmetric

	mu       sync.Mutex
	global   Misbehaviour
	received []Received

	ln      net.Listener
	srv     *http.Server
	scheme  string
	started bool
}

const maxBody = 1 << 20

// New checks opts and returns an unstarted Server.
func New(opts Options) (*Server, error) {
	switch opts.Profile.Scheme {
	case UnionPay, Form, HTTPSig, WechatPay:
	default:
		return nil, fmt.Errorf("banksim: unknown scheme %q", opts.Profile.Scheme)
	}
	if opts.SignKey == nil || opts.SignCert == nil || len(opts.PlatformCerts) == 0 {
		return nil, errors.New("banksim: sign key, certificate and platform certificates required")
	}
	s := &Server{opts: opts, scheme: "http"}
	if s.opts.Delay <= 0 {
		s.opts.Delay = 2 * time.Second
	}
	switch opts.Profile.Cipher {
	case "", "sm4-gcm", "sm4-cbc":
		if opts.Profile.Target != "" {
			var err error
			if s.sym, err = newSymmetric(opts.Profile.SM4Key); err != nil {
				return nil, fmt.Errorf("banksim: SM4 key: %w", err)
			}
		}
	case "sm2-envelope":
		if opts.EncKey == nil || opts.EncCert == nil || opts.PlatformEncCert == nil {
			return nil, errors.New("banksim: envelope needs the bank's enc key and the platform's enc certificate")
		}
	default:
		return nil, fmt.Errorf("banksim: unknown cipher %q", opts.Profile.Cipher)
	}
	return s, nil
}

// SetMisbehaviour sets the global misbehaviour (Behave to stop).
func (s *Server) SetMisbehaviour(m Misbehaviour) {
	s.mu.Lock()
	s.global = m
	s.mu.Unlock()
}

// Received returns a copy of the requests seen so far.
func (s *Server) Received() []Received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Received(nil), s.received...)
}

// Handler returns the simulator as an http.Handler (serve it on any listener, e.g. a tjfoc
// gmtls one; call SetScheme("https") when it is served over TLS or TLCP).
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serve) }

// SetScheme sets the URI scheme the simulator assumes for @target-uri ("http" or "https").
func (s *Server) SetScheme(scheme string) { s.scheme = scheme }

// StartHTTP serves plain HTTP on 127.0.0.1.
func (s *Server) StartHTTP() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	return s.Serve(ln, "http")
}

// StartHTTPS serves HTTPS (an httptest certificate) on 127.0.0.1; it returns the server's
// certificate for the client's root pool.
func (s *Server) StartHTTPS() (*httptest.Server, error) {
	ts := httptest.NewUnstartedServer(s.Handler())
	ts.StartTLS()
	s.URL, s.scheme, s.srv, s.started = ts.URL, "https", ts.Config, true
	return ts, nil
}

// StartTLCP serves HTTP over TLCP with cfg (use TestPKI.ServerTLCPConfig for mutual auth).
func (s *Server) StartTLCP(cfg *tlcp.Config) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	return s.Serve(tlcp.NewListener(ln, cfg), "https")
}

// Serve serves on ln in the background; scheme is "http" or "https" (URL and @target-uri).
func (s *Server) Serve(ln net.Listener, scheme string) error {
	if s.started {
		ln.Close()
		return errors.New("banksim: already started")
	}
	s.ln, s.scheme, s.started = ln, scheme, true
	s.URL = scheme + "://" + ln.Addr().String()
	s.srv = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go s.srv.Serve(ln)
	return nil
}

// Close stops the server.
func (s *Server) Close() error {
	if s.srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if err != nil {
		s.srv.Close()
	}
	return nil
}

func (s *Server) misbehaviour(r *http.Request) (Misbehaviour, time.Duration) {
	m := Misbehaviour(r.Header.Get(HeaderMisbehave))
	if m == "" {
		s.mu.Lock()
		m = s.global
		s.mu.Unlock()
	}
	d := s.opts.Delay
	if v := r.Header.Get(HeaderDelay); v != "" {
		if dd, err := time.ParseDuration(v); err == nil && dd > 0 && dd < time.Minute {
			d = dd
		}
	}
	return m, d
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	mb, delay := s.misbehaviour(r)
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil || len(body) > maxBody {
		http.Error(w, "body", http.StatusRequestEntityTooLarge)
		return
	}
	rec := Received{Method: r.Method, Target: r.URL.RequestURI(), Header: r.Header.Clone(), Wire: body}
	status, ctype, reply := http.StatusOK, "application/json", []byte(nil)
	if err := s.verifyRequest(r, body); err != nil {
		rec.Err = "signature: " + err.Error()
		status, reply = http.StatusUnauthorized, []byte(`{"respCode":"91","respMsg":"request signature invalid"}`)
	} else if plain, err := s.decryptRequest(r, body); err != nil {
		rec.Verified = true
		rec.Err = "decrypt: " + err.Error()
		status, reply = http.StatusBadRequest, []byte(`{"respCode":"92","respMsg":"request cannot be decrypted"}`)
	} else {
		rec.Verified, rec.Plain = true, plain
		rec.Params, _ = parseParams(plain, isJSON(r.Header.Get("Content-Type"), plain))
		if s.opts.Handler != nil {
			status, ctype, reply = s.opts.Handler(&rec)
		} else {
			reply = s.echo(&rec)
		}
	}
	s.mu.Lock()
	if len(s.received) < 10000 {
		s.received = append(s.received, rec)
	}
	s.mu.Unlock()

	switch mb {
	case Drop:
		if hj, ok := w.(http.Hijacker); ok {
			if c, _, err := hj.Hijack(); err == nil {
				c.Close()
				return
			}
		}
		panic(http.ErrAbortHandler)
	case Slow:
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	h, out, err := s.sealReply(status, ctype, reply, mb, r.Header.Get(HeaderTamper))
	if err != nil {
		http.Error(w, "banksim: "+err.Error(), http.StatusInternalServerError)
		return
	}
	for k, v := range h {
		w.Header()[k] = v
	}
	if rec.Err != "" {
		w.Header().Set(HeaderVerified, rec.Err)
	} else {
		w.Header().Set(HeaderVerified, "ok")
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(out)))
	w.WriteHeader(status)
	w.Write(out)
}

// echo is the default handler: a flat JSON object with respCode 00 and the request's business
// parameters (signature fields removed), or the body as "echo".
func (s *Server) echo(rec *Received) []byte {
	out := map[string]string{"respCode": "00", "respMsg": "success"}
	if rec.Params != nil {
		for k, v := range rec.Params {
			switch k {
			case "signature", "signMethod", "certId", "sign", "sign_type", "app_cert_sn", "signPubKeyCert",
				"encAlg", "encData", "encContentType":
				continue
			}
			out[k] = v
		}
	} else {
		out["echo"] = string(rec.Plain)
	}
	b, _ := json.Marshal(out)
	return b
}

// ---- request verification ----

func (s *Server) platformCert(keyID string) *smx509.Certificate {
	for _, c := range s.opts.PlatformCerts {
		if keyID == c.SerialNumber.String() || strings.EqualFold(keyID, c.SerialNumber.Text(16)) {
			return c
		}
	}
	return nil
}

func (s *Server) verifyRequest(r *http.Request, body []byte) error {
	p := &s.opts.Profile
	switch p.Scheme {
	case UnionPay, Form:
		params, err := parseParams(body, isJSON(r.Header.Get("Content-Type"), body))
		if err != nil {
			return err
		}
		signField, keyField, exclude := "signature", "certId", []string{"signature"}
		if p.Scheme == Form {
			signField, keyField, exclude = "sign", "app_cert_sn", []string{"sign", "sign_type"}
			if t := params["sign_type"]; t != "" && t != "SM2" {
				return errors.New("sign_type is not SM2")
			}
		} else if params["signMethod"] != "21" {
			return errors.New("signMethod is not 21")
		}
		cert := s.platformCert(params[keyField])
		if cert == nil {
			return errors.New("unknown " + keyField)
		}
		sig, err := decodeText(params[signField], p.Hex)
		if err != nil || len(sig) == 0 {
			return errors.New("signature encoding")
		}
		str := sortedString(params, exclude...)
		msg := []byte(str)
		if p.Scheme == UnionPay {
			msg = []byte(sm3Hex(msg))
		}
		if !smVerify(pubOf(cert), msg, sig, p.uid(params[keyField]), p.raw()) {
			return errors.New("bad signature")
		}
		return nil
	case WechatPay:
		params, err := parseAuthorization(r.Header.Get("Authorization"))
		if err != nil {
			return err
		}
		cert := s.platformCert(params["serial_no"])
		if cert == nil {
			return errors.New("unknown serial_no")
		}
		sig, err := decodeText(params["signature"], p.Hex)
		if err != nil {
			return errors.New("signature encoding")
		}
		msg := r.Method + "\n" + r.URL.RequestURI() + "\n" + params["timestamp"] + "\n" + params["nonce_str"] + "\n" + string(body) + "\n"
		if !smVerify(pubOf(cert), []byte(msg), sig, p.uid(params["serial_no"]), p.raw()) {
			return errors.New("bad signature")
		}
		return nil
	case HTTPSig:
		return s.verifyHTTPSig(r, body)
	}
	return errors.New("unknown scheme")
}

// parseAuthorization reads `WECHATPAY2-SM2-WITH-SM3 k="v",...`.
func parseAuthorization(v string) (map[string]string, error) {
	const prefix = "WECHATPAY2-SM2-WITH-SM3 "
	if !strings.HasPrefix(v, prefix) || len(v) > 8192 {
		return nil, errors.New("authorization type")
	}
	out := map[string]string{}
	for _, part := range strings.Split(v[len(prefix):], ",") {
		k, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return nil, errors.New("authorization parameter")
		}
		out[k] = strings.Trim(val, `"`)
	}
	for _, k := range []string{"mchid", "nonce_str", "timestamp", "serial_no", "signature"} {
		if out[k] == "" {
			return nil, errors.New("missing " + k)
		}
	}
	return out, nil
}

// ---- request decryption ----

func (s *Server) decryptRequest(r *http.Request, body []byte) ([]byte, error) {
	p := &s.opts.Profile
	switch p.Target {
	case "":
		return body, nil
	case "body":
		var w map[string]any
		if err := json.Unmarshal(body, &w); err != nil {
			return nil, errors.New("not an encrypted body")
		}
		alg, _ := w["encAlg"].(string)
		data, _ := w["encData"].(string)
		if alg != s.algName() || data == "" {
			return nil, errors.New("encAlg/encData")
		}
		c, err := base64.StdEncoding.DecodeString(data)
		if err != nil {
			return nil, err
		}
		pt, err := s.open(c, "body")
		if err != nil {
			return nil, err
		}
		if ct, _ := w["encContentType"].(string); ct != "" {
			r.Header.Set("Content-Type", ct)
		} else {
			r.Header.Del("Content-Type")
		}
		return pt, nil
	case "fields":
		return s.mapFields(body, isJSON(r.Header.Get("Content-Type"), body), func(name, v string) (string, error) {
			c, err := base64.StdEncoding.DecodeString(v)
			if err != nil {
				return "", err
			}
			pt, err := s.open(c, name)
			return string(pt), err
		})
	}
	return nil, errors.New("unknown target")
}

func (s *Server) algName() string {
	switch s.opts.Profile.Cipher {
	case "sm4-cbc":
		return "SM4-CBC"
	case "sm2-envelope":
		return "SM2-ENVELOPE"
	}
	return "SM4-GCM"
}

func (s *Server) open(c []byte, aad string) ([]byte, error) {
	switch s.opts.Profile.Cipher {
	case "sm2-envelope":
		return envelopeOpen(c, s.opts.EncCert, s.opts.EncKey)
	case "sm4-cbc":
		return s.sym.open(true, c, nil)
	}
	return s.sym.open(false, c, []byte(aad))
}

func (s *Server) seal(p []byte, aad string) ([]byte, error) {
	switch s.opts.Profile.Cipher {
	case "sm2-envelope":
		return envelopeSeal(p, s.opts.PlatformEncCert)
	case "sm4-cbc":
		return s.sym.seal(true, p, nil)
	}
	return s.sym.seal(false, p, []byte(aad))
}

// mapFields rewrites the listed top-level fields of a JSON object or form body.
func (s *Server) mapFields(body []byte, asJSON bool, f func(name, v string) (string, error)) ([]byte, error) {
	if asJSON {
		var m map[string]json.RawMessage
		d := json.NewDecoder(bytes.NewReader(body))
		d.UseNumber()
		if err := d.Decode(&m); err != nil {
			return nil, err
		}
		for _, name := range s.opts.Profile.Fields {
			raw, ok := m[name]
			if !ok {
				continue
			}
			var v string
			if err := json.Unmarshal(raw, &v); err != nil {
				var n json.Number
				if err := json.Unmarshal(raw, &n); err != nil {
					continue
				}
				v = n.String()
			}
			if v == "" {
				continue
			}
			nv, err := f(name, v)
			if err != nil {
				return nil, fmt.Errorf("field %s: %w", name, err)
			}
			m[name], _ = json.Marshal(nv)
		}
		return json.Marshal(m)
	}
	vals, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, err
	}
	for _, name := range s.opts.Profile.Fields {
		if v := vals.Get(name); v != "" {
			nv, err := f(name, v)
			if err != nil {
				return nil, fmt.Errorf("field %s: %w", name, err)
			}
			vals.Set(name, nv)
		}
	}
	return []byte(vals.Encode()), nil
}

// ---- reply ----

// sealReply encrypts (when configured) and signs the reply body, applying mb.
// tamper is the HeaderTamper value for TamperAfterSign.
func (s *Server) sealReply(status int, ctype string, body []byte, mb Misbehaviour, tamper string) (http.Header, []byte, error) {
	p := &s.opts.Profile
	h := http.Header{}
	var err error
	switch p.Target {
	case "body":
		c, err := s.seal(body, "body")
		if err != nil {
			return nil, nil, err
		}
		if mb == TamperCiphertext {
			tamperCiphertext(c)
		}
		w := map[string]string{"encAlg": s.algName(), "encData": base64.StdEncoding.EncodeToString(c)}
		if ctype != "" {
			w["encContentType"] = ctype
		}
		body, _ = json.Marshal(w)
		ctype = "application/json"
	case "fields":
		tampered := false
		body, err = s.mapFields(body, true, func(name, v string) (string, error) {
			c, err := s.seal([]byte(v), name)
			if err != nil {
				return "", err
			}
			if mb == TamperCiphertext && !tampered {
				tamperCiphertext(c)
				tampered = true
			}
			return base64.StdEncoding.EncodeToString(c), nil
		})
		if err != nil {
			return nil, nil, err
		}
	}
	key, cert := s.opts.SignKey, s.opts.SignCert
	switch mb {
	case WrongCert:
		key, cert = s.opts.RogueKey, s.opts.RogueCert
	case WrongKey:
		key = s.opts.RogueKey
	}
	if key == nil || cert == nil {
		return nil, nil, errors.New("no rogue key configured")
	}
	h.Set("Content-Type", ctype)
	if mb != Unsigned {
		if body, err = s.signReply(h, status, body, key, cert, mb == BadSignature); err != nil {
			return nil, nil, err
		}
	}
	if mb == TamperAfterSign && len(body) > 0 {
		if body, err = tamperBody(body, tamper); err != nil {
			return nil, nil, err
		}
	}
	return h, body, nil
}

// tamperBody applies the tamper how (a HeaderTamper value) to a copy of b.
//
// The default replaces the last letter or digit by the next one of its class, wrapping ('9' to
// '0', 'z' to 'a', 'Z' to 'A'): one byte changes and the body keeps its syntax. (It used to step
// over a '9' to the character before it: a unionpay-sm2 reply ends with txnTime, and at second
// 59 that turned "...59" into "...69", not a time, so the reply was refused as malformed instead
// of as badly signed once a minute.)
func tamperBody(b []byte, how string) ([]byte, error) {
	out := append([]byte(nil), b...)
	switch name, value, isSet := strings.Cut(how, "="); {
	case how == "":
		for i := len(out) - 1; i >= 0; i-- {
			switch c := out[i]; {
			case c >= '0' && c <= '9':
				out[i] = '0' + (c-'0'+1)%10
			case c >= 'a' && c <= 'z':
				out[i] = 'a' + (c-'a'+1)%26
			case c >= 'A' && c <= 'Z':
				out[i] = 'A' + (c-'A'+1)%26
			default:
				continue
			}
			return out, nil
		}
		out[len(out)-1] ^= 1
		return out, nil
	case how == "truncate":
		return out[:len(out)-1], nil
	case isSet && name != "":
		var m map[string]json.RawMessage
		if err := json.Unmarshal(out, &m); err != nil {
			return nil, fmt.Errorf("tamper %q: reply is not a JSON object", name)
		}
		if _, ok := m[name]; !ok {
			return nil, fmt.Errorf("tamper %q: no such member", name)
		}
		m[name], _ = json.Marshal(value)
		return json.Marshal(m)
	}
	return nil, fmt.Errorf("unknown tamper %q", how)
}

func flip(sig []byte, raw bool) {
	if raw {
		sig[40] ^= 0x01
	} else {
		sig[len(sig)-1] ^= 0x01
	}
}

func (s *Server) signReply(h http.Header, status int, body []byte, key *sm2.PrivateKey, cert *smx509.Certificate, bad bool) ([]byte, error) {
	p := &s.opts.Profile
	switch p.Scheme {
	case UnionPay, Form:
		params, err := parseParams(body, true)
		if err != nil {
			return nil, err
		}
		keyID := cert.SerialNumber.String()
		signField, exclude := "signature", []string{"signature"}
		if p.Scheme == UnionPay {
			params["certId"], params["signMethod"] = keyID, "21"
		} else {
			params["app_cert_sn"], params["sign_type"] = keyID, "SM2"
			signField, exclude = "sign", []string{"sign", "sign_type"}
		}
		if s.opts.MerchantID != "" && p.Scheme == UnionPay && params["merId"] == "" {
			params["merId"] = s.opts.MerchantID
		}
		msg := []byte(sortedString(params, exclude...))
		if p.Scheme == UnionPay {
			msg = []byte(sm3Hex(msg))
		}
		sig, err := smSign(key, msg, p.uid(keyID), p.raw())
		if err != nil {
			return nil, err
		}
		if bad {
			flip(sig, p.raw())
		}
		params[signField] = encodeText(sig, p.Hex)
		// Keep the business values' JSON types: rebuild from the original object.
		var orig map[string]json.RawMessage
		if json.Unmarshal(body, &orig) != nil || orig == nil {
			orig = map[string]json.RawMessage{}
		}
		for k, v := range params {
			if _, ok := orig[k]; !ok || k == signField {
				orig[k], _ = json.Marshal(v)
			}
		}
		h.Set("Content-Type", "application/json")
		return json.Marshal(orig)
	case WechatPay:
		ts := strconv.FormatInt(time.Now().Unix(), 10)
		nonce := strings.ToUpper(strconv.FormatInt(time.Now().UnixNano(), 36))
		keyID := serialHex(cert.SerialNumber)
		sig, err := smSign(key, []byte(ts+"\n"+nonce+"\n"+string(body)+"\n"), p.uid(keyID), p.raw())
		if err != nil {
			return nil, err
		}
		if bad {
			flip(sig, p.raw())
		}
		h.Set("Wechatpay-Timestamp", ts)
		h.Set("Wechatpay-Nonce", nonce)
		h.Set("Wechatpay-Serial", keyID)
		h.Set("Wechatpay-Signature", encodeText(sig, p.Hex))
		return body, nil
	case HTTPSig:
		return body, s.signHTTPSigReply(h, status, body, key, cert, bad)
	}
	return nil, errors.New("unknown scheme")
}

// ---- parameters ----

func isJSON(ct string, body []byte) bool {
	ct = strings.ToLower(ct)
	if strings.Contains(ct, "json") {
		return true
	}
	if strings.Contains(ct, "form") {
		return false
	}
	b := bytes.TrimLeft(body, " \t\r\n")
	return len(b) > 0 && b[0] == '{'
}

// parseParams reads a flat JSON object (strings, numbers, booleans, null) or a form.
func parseParams(body []byte, asJSON bool) (map[string]string, error) {
	out := map[string]string{}
	if asJSON {
		var m map[string]json.RawMessage
		d := json.NewDecoder(bytes.NewReader(body))
		d.UseNumber()
		if err := d.Decode(&m); err != nil || m == nil {
			return nil, errors.New("not a JSON object")
		}
		for k, raw := range m {
			var v any
			dd := json.NewDecoder(bytes.NewReader(raw))
			dd.UseNumber()
			if err := dd.Decode(&v); err != nil {
				return nil, err
			}
			switch x := v.(type) {
			case string:
				out[k] = x
			case json.Number:
				out[k] = x.String()
			case bool:
				out[k] = strconv.FormatBool(x)
			case nil:
				out[k] = ""
			default:
				return nil, errors.New("nested JSON value")
			}
		}
		return out, nil
	}
	vals, err := url.ParseQuery(strings.TrimRight(string(body), "\r\n"))
	if err != nil {
		return nil, err
	}
	for k, v := range vals {
		if len(v) != 1 {
			return nil, errors.New("repeated parameter")
		}
		out[k] = v[0]
	}
	return out, nil
}

// tamperCiphertext corrupts a sealed value so that opening it always fails: the byte 17 from the
// end is flipped by 0x80. For SM4-GCM (and the GCM envelope) any flip breaks the tag. For SM4-CBC
// (IV || blocks, or an envelope whose DER ends with the encrypted content) it sits in the block
// before the last, so the last plaintext block's padding byte p (1..16) becomes p^0x80, never a
// valid padding; flipping the last byte instead left a valid padding about once in 256 tries,
// and the bank's signed garbage passed as a reply.
func tamperCiphertext(c []byte) {
	if len(c) >= 17 {
		c[len(c)-17] ^= 0x80
		return
	}
	c[len(c)-1] ^= 0x01
}
