package banksim

import (
	"crypto/ecdsa"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
)

type ecdsaPub = ecdsa.PublicKey

// sigInput is one Signature-Input member, parsed by hand from RFC 9421 / RFC 8941 text
// (independent of the structured-field library the gateway uses).
type sigInput struct {
	label      string
	components []string
	params     map[string]string
	raw        string // serialized inner list with parameters, exactly as received
}

// parseSigInput reads a single-member `label=("a" "b");k=v;k="v"` header.
func parseSigInput(v string) (*sigInput, error) {
	v = strings.TrimSpace(v)
	if len(v) > 8192 {
		return nil, errors.New("Signature-Input too long")
	}
	eq := strings.IndexByte(v, '=')
	if eq <= 0 || strings.Contains(v, ",") && strings.Count(v, "=(") > 1 {
		return nil, errors.New("Signature-Input: one member expected")
	}
	si := &sigInput{label: v[:eq], raw: v[eq+1:], params: map[string]string{}}
	rest := si.raw
	if !strings.HasPrefix(rest, "(") {
		return nil, errors.New("Signature-Input: inner list expected")
	}
	end := strings.IndexByte(rest, ')')
	if end < 0 {
		return nil, errors.New("Signature-Input: unterminated inner list")
	}
	for _, c := range strings.Fields(rest[1:end]) {
		if len(c) < 2 || c[0] != '"' || c[len(c)-1] != '"' {
			return nil, errors.New("Signature-Input: component not a string")
		}
		si.components = append(si.components, c[1:len(c)-1])
	}
	for _, p := range strings.Split(rest[end+1:], ";") {
		if p == "" {
			continue
		}
		k, val, ok := strings.Cut(p, "=")
		if !ok {
			return nil, errors.New("Signature-Input: parameter")
		}
		si.params[k] = strings.Trim(val, `"`)
	}
	return si, nil
}

// parseByteSeq reads `label=:base64:` (Signature) or `sm3=:base64:` (Content-Digest).
func parseByteSeq(v, key string) ([]byte, error) {
	v = strings.TrimSpace(v)
	prefix := key + "=:"
	if !strings.HasPrefix(v, prefix) || !strings.HasSuffix(v, ":") || len(v) < len(prefix)+1 {
		return nil, errors.New("not " + prefix + "...:")
	}
	return base64.StdEncoding.DecodeString(v[len(prefix) : len(v)-1])
}

func (s *Server) componentValue(r *http.Request, name string) (string, error) {
	switch name {
	case "@method":
		return r.Method, nil
	case "@target-uri":
		return s.scheme + "://" + s.authority(r.Host) + r.URL.RequestURI(), nil
	case "@authority":
		return s.authority(r.Host), nil
	case "@path":
		return r.URL.EscapedPath(), nil
	case "@query":
		return "?" + r.URL.RawQuery, nil
	case "@request-target":
		return r.URL.RequestURI(), nil
	case "@scheme":
		return s.scheme, nil
	}
	if strings.HasPrefix(name, "@") {
		return "", errors.New("unsupported component " + name)
	}
	vals := r.Header.Values(name)
	if len(vals) == 0 {
		return "", errors.New("missing header " + name)
	}
	for i := range vals {
		vals[i] = strings.TrimSpace(vals[i])
	}
	return strings.Join(vals, ", "), nil
}

func (s *Server) authority(host string) string {
	host = strings.ToLower(host)
	if s.scheme == "https" {
		return strings.TrimSuffix(host, ":443")
	}
	return strings.TrimSuffix(host, ":80")
}

func (s *Server) verifyHTTPSig(r *http.Request, body []byte) error {
	si, err := parseSigInput(r.Header.Get("Signature-Input"))
	if err != nil {
		return err
	}
	sig, err := parseByteSeq(r.Header.Get("Signature"), si.label)
	if err != nil {
		return err
	}
	if alg, ok := si.params["alg"]; ok && alg != "sm2-sm3" {
		return errors.New("alg is not sm2-sm3")
	}
	keyID := si.params["keyid"]
	cert := s.platformCert(keyID)
	if cert == nil {
		return errors.New("unknown keyid")
	}
	covers := map[string]bool{}
	var base strings.Builder
	for _, c := range si.components {
		covers[c] = true
		v, err := s.componentValue(r, c)
		if err != nil {
			return err
		}
		base.WriteString(`"` + c + `": ` + v + "\n")
	}
	for _, need := range []string{"@method", "@target-uri", "content-digest"} {
		if !covers[need] {
			return errors.New(need + " not covered")
		}
	}
	d, err := parseByteSeq(r.Header.Get("Content-Digest"), "sm3")
	if err != nil {
		return err
	}
	if string(d) != string(sm3Sum(body)) {
		return errors.New("content digest mismatch")
	}
	base.WriteString(`"@signature-params": ` + si.raw)
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || !smVerify(pub, []byte(base.String()), sig, s.opts.Profile.uid(keyID), s.opts.Profile.raw()) {
		return errors.New("bad signature")
	}
	return nil
}

func (s *Server) signHTTPSigReply(h http.Header, status int, body []byte, key *sm2.PrivateKey, cert *smx509.Certificate, bad bool) error {
	keyID := serialHex(cert.SerialNumber)
	digest := "sm3=:" + base64.StdEncoding.EncodeToString(sm3Sum(body)) + ":"
	nonce := strconv.FormatInt(time.Now().UnixNano(), 36)
	params := `("@status" "content-digest");created=` + strconv.FormatInt(time.Now().Unix(), 10) +
		`;nonce="` + nonce + `";keyid="` + keyID + `"`
	base := `"@status": ` + strconv.Itoa(status) + "\n" + `"content-digest": ` + digest + "\n" + `"@signature-params": ` + params
	sig, err := smSign(key, []byte(base), s.opts.Profile.uid(keyID), s.opts.Profile.raw())
	if err != nil {
		return err
	}
	if bad {
		flip(sig, s.opts.Profile.raw())
	}
	h.Set("Content-Digest", digest)
	h.Set("Signature-Input", "sig1="+params)
	h.Set("Signature", "sig1=:"+base64.StdEncoding.EncodeToString(sig)+":")
	return nil
}
