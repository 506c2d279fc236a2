package signing

import (
	"crypto/ecdsa"
	"crypto/subtle"
	"strconv"
	"strings"
	"time"

	"github.com/dunglas/httpsfv"
)

// HTTPSigName is the registry name of the RFC 9421 SM2 profile.
const HTTPSigName = "http-sig-sm2"

// HTTPSigAlgorithm is the RFC 9421 algorithm name of the profile: SM2 with SM3 and Z_A of the
// default (or configured) user ID, 64-byte r||s. It is not in the IANA registry, so it is bound
// to keyid and not sent as alg; an alg parameter with another value is refused.
const HTTPSigAlgorithm = "sm2-sm3"

const (
	maxSigMembers  = 8
	maxComponents  = 64
	maxDigestBytes = 1024
)

// HTTPSig is the "http-sig-sm2" scheme: RFC 9421 HTTP Message Signatures with algorithm sm2-sm3.
// Requests cover "@method" "@target-uri" "content-digest" by default, replies "@status"
// "content-digest"; parameters created, nonce and keyid are always present. Content-Digest
// uses SM3 (`sm3=:…:`, RFC 9530 style). Signature-Input, Signature and Content-Digest are
// parsed and written with github.com/dunglas/httpsfv.
type HTTPSig struct{ c config }

// NewHTTPSig returns the http-sig-sm2 scheme with opts applied.
func NewHTTPSig(opts ...Option) *HTTPSig {
	c := config{
		sigEnc:         Raw,
		label:          "sig1",
		reqComponents:  []string{"@method", "@target-uri", "content-digest"},
		respComponents: []string{"@status", "content-digest"},
	}
	return &HTTPSig{c: *apply(&c, opts)}
}

// Name returns "http-sig-sm2".
func (h *HTTPSig) Name() string { return HTTPSigName }

func (h *HTTPSig) components(k Kind) []string {
	if k == Response {
		return h.c.respComponents
	}
	return h.c.reqComponents
}

// Sign covers the configured components of m (setting Content-Digest first when it is
// covered) with created=now, nonce and keyid=Key.KeyID, and sets Signature-Input and Signature
// (replacing earlier values).
func (h *HTTPSig) Sign(m *Message, k Key, now time.Time, nonce string) error {
	if m == nil {
		return errf(ErrMalformedHeader, "nil message")
	}
	if k.KeyID == "" {
		return errf(ErrMalformedHeader, "no key ID")
	}
	if nonce == "" {
		var err error
		if nonce, err = NewNonce(); err != nil {
			return err
		}
	}
	if !isSFString(k.KeyID) || !isSFString(nonce) {
		return errf(ErrMalformedHeader, "key ID or nonce not representable")
	}
	label := h.c.label
	if label == "" {
		label = "sig1"
	}
	if m.Header == nil {
		m.Header = make(map[string][]string)
	}
	comps := h.components(m.Kind)
	il := httpsfv.InnerList{Params: httpsfv.NewParams()}
	for _, c := range comps {
		if c == "content-digest" {
			m.Header.Set("Content-Digest", ContentDigest(m.Body))
		}
		if !isSFString(c) {
			return errf(ErrMalformedHeader, "bad component name")
		}
		il.Items = append(il.Items, httpsfv.NewItem(c))
	}
	il.Params.Add("created", now.Unix())
	if h.c.validity > 0 {
		il.Params.Add("expires", now.Add(h.c.validity).Unix())
	}
	il.Params.Add("nonce", nonce)
	il.Params.Add("keyid", k.KeyID)
	base, _, err := signatureBase(m, il)
	if err != nil {
		return err
	}
	uid := k.UserID
	if uid == nil {
		uid = h.c.uidFor(k.KeyID)
	}
	sig, err := SignSM2(k.Signer, base, uid, h.c.sigEnc)
	if err != nil {
		return err
	}
	in := httpsfv.NewDictionary()
	in.Add(label, il)
	sv := httpsfv.NewDictionary()
	sv.Add(label, httpsfv.NewItem(sig))
	inStr, err := httpsfv.Marshal(in)
	if err != nil {
		return errf(ErrMalformedHeader, "serialize Signature-Input: %v", err)
	}
	sStr, err := httpsfv.Marshal(sv)
	if err != nil {
		return errf(ErrMalformedHeader, "serialize Signature: %v", err)
	}
	m.Header.Set("Signature-Input", inStr)
	m.Header.Set("Signature", sStr)
	return nil
}

// Parse reads Signature-Input and Signature, checks the covered components and parameters and
// builds the RFC 9421 §2.5 signature base. When content-digest is covered it also reads the
// Content-Digest sm3 value and computes SM3 of the body; Verify compares them.
func (h *HTTPSig) Parse(m *Message) (*Signed, error) {
	if m == nil {
		return nil, ErrMissingSignature
	}
	siVals, sVals := m.Header.Values("Signature-Input"), m.Header.Values("Signature")
	if len(siVals) == 0 && len(sVals) == 0 {
		return nil, ErrMissingSignature
	}
	if len(siVals) == 0 || len(sVals) == 0 {
		return nil, errf(ErrMalformedHeader, "Signature-Input and Signature must both be present")
	}
	if totalLen(siVals) > MaxHeaderLen || totalLen(sVals) > MaxHeaderLen {
		return nil, errf(ErrMalformedHeader, "signature header too long")
	}
	inDict, err := httpsfv.UnmarshalDictionary(siVals)
	if err != nil {
		return nil, errf(ErrMalformedHeader, "Signature-Input: %v", err)
	}
	sDict, err := httpsfv.UnmarshalDictionary(sVals)
	if err != nil {
		return nil, errf(ErrMalformedHeader, "Signature: %v", err)
	}
	names := inDict.Names()
	if len(names) > maxSigMembers || len(sDict.Names()) > maxSigMembers {
		return nil, errf(ErrMalformedHeader, "too many signatures")
	}
	label := ""
	if _, ok := inDict.Get(h.c.label); ok && h.c.label != "" {
		label = h.c.label
	} else if len(names) == 1 {
		label = names[0]
	} else {
		return nil, errf(ErrMissingSignature, "no signature labelled %q", h.c.label)
	}
	mem, _ := inDict.Get(label)
	il, ok := mem.(httpsfv.InnerList)
	if !ok || il.Params == nil {
		return nil, errf(ErrMalformedHeader, "Signature-Input member is not an inner list")
	}
	smem, ok := sDict.Get(label)
	if !ok {
		return nil, errf(ErrMalformedHeader, "no Signature for label")
	}
	sItem, ok := smem.(httpsfv.Item)
	if !ok {
		return nil, errf(ErrMalformedHeader, "Signature member is not an item")
	}
	sig, ok := sItem.Value.([]byte)
	if !ok || len(sig) == 0 {
		return nil, errf(ErrMalformedHeader, "Signature member is not a byte sequence")
	}
	if len(il.Items) > maxComponents {
		return nil, errf(ErrMalformedHeader, "too many components")
	}

	// Parameters.
	p := map[string]string{"label": label}
	if v, ok := il.Params.Get("alg"); ok {
		if s, isStr := v.(string); !isStr || s != HTTPSigAlgorithm {
			return nil, errf(ErrUnsupportedAlgorithm, "alg is not %s", HTTPSigAlgorithm)
		}
		p["alg"] = HTTPSigAlgorithm
	}
	created, err := intParam(il.Params, "created")
	if err != nil {
		return nil, err
	}
	keyID, err := stringParam(il.Params, "keyid")
	if err != nil {
		return nil, err
	}
	nonce, err := stringParam(il.Params, "nonce")
	if err != nil {
		return nil, err
	}
	var expires time.Time
	if _, ok := il.Params.Get("expires"); ok {
		exp, err := intParam(il.Params, "expires")
		if err != nil {
			return nil, err
		}
		if exp < created {
			return nil, errf(ErrMalformedHeader, "expires before created")
		}
		p["expires"] = strconv.FormatInt(exp, 10)
		expires = time.Unix(exp, 0)
	}
	if v, ok := il.Params.Get("tag"); ok {
		s, isStr := v.(string)
		if !isStr {
			return nil, errf(ErrMalformedHeader, "tag is not a string")
		}
		p["tag"] = s
	}

	// Covered components.
	covered := make(map[string]bool, len(il.Items))
	for _, it := range il.Items {
		name, isStr := it.Value.(string)
		if !isStr || name == "" {
			return nil, errf(ErrMalformedHeader, "component identifier is not a string")
		}
		if it.Params != nil && len(it.Params.Names()) > 0 {
			return nil, errf(ErrMalformedHeader, "component parameters are not supported")
		}
		if covered[name] {
			return nil, errf(ErrMalformedHeader, "duplicate component")
		}
		covered[name] = true
	}
	for _, req := range h.components(m.Kind) {
		if !covered[req] {
			return nil, errf(ErrMissingComponent, "%s not covered", req)
		}
	}
	base, sigParams, err := signatureBase(m, il)
	if err != nil {
		return nil, err
	}
	comps := make([]string, 0, len(il.Items))
	for _, it := range il.Items {
		comps = append(comps, it.Value.(string))
	}
	p["components"] = strings.Join(comps, " ")
	p["signature-params"] = sigParams

	s := &Signed{
		Scheme:      HTTPSigName,
		KeyID:       keyID,
		Timestamp:   time.Unix(created, 0),
		Expires:     expires,
		Nonce:       nonce,
		SignedBytes: base,
		Signature:   sig,
		Encoding:    h.c.sigEnc,
		UserID:      h.c.uidFor(keyID),
		Params:      p,
	}
	if covered["content-digest"] {
		d, err := parseSM3Digest(m.Header.Values("Content-Digest"))
		if err != nil {
			return nil, err
		}
		s.DeclaredDigest = d
		s.ComputedDigest = SM3(m.Body)
	}
	return s, nil
}

// Verify checks the content digest (ErrDigestMismatch) when content-digest is covered, then the
// SM2 signature over the signature base.
func (h *HTTPSig) Verify(s *Signed, pub *ecdsa.PublicKey) error {
	if s == nil {
		return ErrMissingSignature
	}
	if s.DeclaredDigest != nil || s.ComputedDigest != nil || coversDigest(s.Params["components"]) {
		if len(s.DeclaredDigest) != 32 || len(s.ComputedDigest) != 32 ||
			subtle.ConstantTimeCompare(s.DeclaredDigest, s.ComputedDigest) != 1 {
			return ErrDigestMismatch
		}
	}
	return verifySigned(s, pub)
}

func coversDigest(components string) bool {
	for _, c := range strings.Fields(components) {
		if c == "content-digest" {
			return true
		}
	}
	return false
}

// parseSM3Digest reads the sm3 member of a Content-Digest dictionary.
func parseSM3Digest(vals []string) ([]byte, error) {
	if len(vals) == 0 {
		return nil, errf(ErrMissingComponent, "content-digest absent")
	}
	if totalLen(vals) > maxDigestBytes {
		return nil, errf(ErrMalformedHeader, "Content-Digest too long")
	}
	d, err := httpsfv.UnmarshalDictionary(vals)
	if err != nil {
		return nil, errf(ErrMalformedHeader, "Content-Digest: %v", err)
	}
	mem, ok := d.Get("sm3")
	if !ok {
		return nil, errf(ErrUnsupportedAlgorithm, "Content-Digest has no sm3 digest")
	}
	it, ok := mem.(httpsfv.Item)
	if !ok {
		return nil, errf(ErrMalformedHeader, "Content-Digest sm3 is not an item")
	}
	b, ok := it.Value.([]byte)
	if !ok || len(b) != 32 {
		return nil, errf(ErrMalformedHeader, "Content-Digest sm3 is not a 32-byte sequence")
	}
	return b, nil
}

// signatureBase builds the RFC 9421 §2.5 signature base for the components and parameters of
// il, and returns it with the serialized @signature-params value.
func signatureBase(m *Message, il httpsfv.InnerList) ([]byte, string, error) {
	sigParams, err := httpsfv.Marshal(il)
	if err != nil {
		return nil, "", errf(ErrMalformedHeader, "signature parameters: %v", err)
	}
	var b strings.Builder
	for _, it := range il.Items {
		name, _ := it.Value.(string)
		if name == "@signature-params" {
			return nil, "", errf(ErrMalformedHeader, "@signature-params cannot be covered")
		}
		v, err := componentValue(m, name)
		if err != nil {
			return nil, "", err
		}
		b.WriteByte('"')
		b.WriteString(name)
		b.WriteString(`": `)
		b.WriteString(v)
		b.WriteByte('\n')
	}
	b.WriteString(`"@signature-params": `)
	b.WriteString(sigParams)
	return []byte(b.String()), sigParams, nil
}

// componentValue returns the RFC 9421 §2.1/§2.2 value of one component of m.
func componentValue(m *Message, name string) (string, error) {
	if strings.HasPrefix(name, "@") {
		return derivedValue(m, name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c >= 'A' && c <= 'Z' || !isTokenChar(c) {
			return "", errf(ErrMalformedHeader, "bad field name")
		}
	}
	vals := m.Header.Values(name)
	if len(vals) == 0 {
		return "", errf(ErrMissingComponent, "%s absent", name)
	}
	parts := make([]string, len(vals))
	n := 0
	for i, v := range vals {
		parts[i] = strings.Trim(v, " \t")
		n += len(parts[i]) + 2
	}
	if n > MaxHeaderLen {
		return "", errf(ErrMalformedHeader, "covered field too long")
	}
	v := strings.Join(parts, ", ")
	if strings.ContainsAny(v, "\r\n") {
		return "", errf(ErrMalformedHeader, "covered field contains a line break")
	}
	return v, nil
}

func derivedValue(m *Message, name string) (string, error) {
	if name == "@status" {
		if m.Kind != Response {
			return "", errf(ErrMalformedHeader, "@status in a request")
		}
		if m.Status < 100 || m.Status > 999 {
			return "", errf(ErrMalformedHeader, "bad status")
		}
		return strconv.Itoa(m.Status), nil
	}
	if m.Kind == Response {
		return "", errf(ErrMalformedHeader, "%s in a response is not supported", name)
	}
	target := m.Target
	if len(target) > MaxHeaderLen || strings.ContainsAny(target, "\r\n \t") {
		return "", errf(ErrMalformedHeader, "bad request target")
	}
	path, query, hasQuery := strings.Cut(target, "?")
	switch name {
	case "@method":
		if m.Method == "" || !isToken(m.Method) {
			return "", errf(ErrMalformedHeader, "bad method")
		}
		return m.Method, nil
	case "@request-target":
		if target == "" {
			return "", errf(ErrMissingComponent, "no request target")
		}
		return target, nil
	case "@path":
		if path == "" {
			return "/", nil
		}
		return path, nil
	case "@query":
		if !hasQuery {
			return "?", nil
		}
		return "?" + query, nil
	case "@scheme":
		return scheme(m), nil
	case "@authority":
		a := authority(m)
		if a == "" {
			return "", errf(ErrMissingComponent, "no authority")
		}
		return a, nil
	case "@target-uri":
		if strings.HasPrefix(target, "http://") || strings.HasPrefix(target, "https://") {
			return target, nil
		}
		a := authority(m)
		if a == "" || !strings.HasPrefix(target, "/") {
			return "", errf(ErrMissingComponent, "no authority or origin-form target")
		}
		return scheme(m) + "://" + a + target, nil
	}
	return "", errf(ErrMalformedHeader, "unsupported derived component")
}

func scheme(m *Message) string {
	if m.Scheme == "" {
		return "https"
	}
	return strings.ToLower(m.Scheme)
}

// authority lower-cases the host and drops the scheme's default port (RFC 9421 §2.2.3).
func authority(m *Message) string {
	a := strings.ToLower(m.Authority)
	if len(a) > 512 || strings.ContainsAny(a, " \t\r\n/?#@") {
		return ""
	}
	switch scheme(m) {
	case "https":
		a = strings.TrimSuffix(a, ":443")
	case "http":
		a = strings.TrimSuffix(a, ":80")
	}
	return a
}

func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isTokenChar(s[i]) {
			return false
		}
	}
	return s != ""
}

// isSFString reports whether s can be an RFC 8941 string (printable ASCII).
func isSFString(s string) bool {
	if len(s) > 1024 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func totalLen(vs []string) int {
	n := 0
	for _, v := range vs {
		n += len(v) + 2
	}
	return n
}

func intParam(p *httpsfv.Params, name string) (int64, error) {
	v, ok := p.Get(name)
	if !ok {
		return 0, errf(ErrMissingComponent, "parameter %s absent", name)
	}
	n, isInt := v.(int64)
	if !isInt || n < 0 {
		return 0, errf(ErrMalformedHeader, "parameter %s is not a non-negative integer", name)
	}
	return n, nil
}

func stringParam(p *httpsfv.Params, name string) (string, error) {
	v, ok := p.Get(name)
	if !ok {
		return "", errf(ErrMissingComponent, "parameter %s absent", name)
	}
	s, isStr := v.(string)
	if !isStr || s == "" {
		return "", errf(ErrMalformedHeader, "parameter %s is not a non-empty string", name)
	}
	return s, nil
}
