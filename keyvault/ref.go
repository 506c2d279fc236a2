package keyvault

import (
	"net/url"
	"strings"
)

// maxRefLen bounds a key reference.
const maxRefLen = 4096

// Ref is a parsed key reference.
type Ref struct {
	// Scheme is "pkcs11" or "file".
	Scheme string `json:"scheme"`
	// Token, Serial, Object, ID and Type are RFC 7512 path attributes (pkcs11 scheme).
	Token  string `json:"token,omitempty"`
	Serial string `json:"serial,omitempty"`
	Object string `json:"object,omitempty"`
	ID     []byte `json:"id,omitempty"`
	Type   string `json:"type,omitempty"`
	// ModulePath is the RFC 7512 "module-path" query attribute, if present.
	ModulePath string `json:"module_path,omitempty"`
	// Path is the file path (file scheme).
	Path string `json:"path,omitempty"`
}

// String renders the reference back as a URI.
func (r Ref) String() string {
	if r.Scheme == "file" {
		return "file:" + r.Path
	}
	var parts []string
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, k+"="+pctEncode(v))
		}
	}
	add("token", r.Token)
	add("serial", r.Serial)
	add("object", r.Object)
	if len(r.ID) > 0 {
		add("id", string(r.ID))
	}
	add("type", r.Type)
	s := "pkcs11:" + strings.Join(parts, ";")
	if r.ModulePath != "" {
		s += "?module-path=" + pctEncode(r.ModulePath)
	}
	return s
}

func pctEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~:/", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		const hex = "0123456789ABCDEF"
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

// ParseRef parses an RFC 7512 "pkcs11:" URI or a "file:" reference. Inline PINs
// ("pin-value") are rejected: PINs come from TokenConfig.PINEnv/PINFile only.
func ParseRef(s string) (Ref, error) {
	if len(s) == 0 || len(s) > maxRefLen {
		return Ref{}, errorf(ErrBadReference, "empty or longer than %d bytes", maxRefLen)
	}
	switch {
	case strings.HasPrefix(s, "file:"):
		p := strings.TrimPrefix(s, "file:")
		p = strings.TrimPrefix(p, "//")
		if p == "" || strings.IndexByte(p, 0) >= 0 {
			return Ref{}, errorf(ErrBadReference, "file reference without a path")
		}
		return Ref{Scheme: "file", Path: p}, nil
	case strings.HasPrefix(s, "pkcs11:"):
		return parsePKCS11URI(strings.TrimPrefix(s, "pkcs11:"))
	}
	return Ref{}, errorf(ErrBadReference, "scheme must be pkcs11: or file:")
}

func parsePKCS11URI(rest string) (Ref, error) {
	r := Ref{Scheme: "pkcs11"}
	path, query, _ := strings.Cut(rest, "?")
	seen := map[string]bool{}
	if path != "" {
		for _, attr := range strings.Split(path, ";") {
			k, v, ok := strings.Cut(attr, "=")
			if !ok || k == "" {
				return Ref{}, errorf(ErrBadReference, "path attribute without '='")
			}
			if seen[k] {
				return Ref{}, errorf(ErrBadReference, "duplicate attribute %q", k)
			}
			seen[k] = true
			val, err := url.PathUnescape(v)
			if err != nil {
				return Ref{}, errorf(ErrBadReference, "bad percent-encoding in %q", k)
			}
			switch k {
			case "token":
				r.Token = val
			case "serial":
				r.Serial = val
			case "object":
				r.Object = val
			case "id":
				r.ID = []byte(val)
			case "type":
				switch val {
				case "private", "secret-key", "data", "public", "cert":
				default:
					return Ref{}, errorf(ErrBadReference, "unknown object type")
				}
				r.Type = val
			case "manufacturer", "model", "library-manufacturer", "library-description",
				"library-version", "slot-description", "slot-manufacturer", "slot-id":
				// Accepted for compatibility; token selection uses label/serial from TokenConfig.
			default:
				if strings.HasPrefix(k, "x-") {
					continue
				}
				return Ref{}, errorf(ErrBadReference, "unknown path attribute %q", k)
			}
		}
	}
	if query != "" {
		for _, attr := range strings.Split(query, "&") {
			k, v, ok := strings.Cut(attr, "=")
			if !ok || k == "" {
				return Ref{}, errorf(ErrBadReference, "query attribute without '='")
			}
			val, err := url.PathUnescape(v)
			if err != nil {
				return Ref{}, errorf(ErrBadReference, "bad percent-encoding in %q", k)
			}
			switch k {
			case "pin-value", "pin-source":
				return Ref{}, errorf(ErrBadReference, "PINs are not accepted in key references; use the token's pin_env or pin_file")
			case "module-path":
				r.ModulePath = val
			case "module-name":
			default:
				if !strings.HasPrefix(k, "x-") {
					return Ref{}, errorf(ErrBadReference, "unknown query attribute %q", k)
				}
			}
		}
	}
	if r.Object == "" && len(r.ID) == 0 {
		return Ref{}, errorf(ErrBadReference, "pkcs11 reference needs object= (or id=)")
	}
	if r.Object == "" {
		r.Object = string(r.ID)
	}
	if strings.ContainsAny(r.Object, "@/\x00") || len(r.Object) > 128 {
		return Ref{}, errorf(ErrBadReference, "object name must not contain '@', '/' or NUL and must be at most 128 bytes")
	}
	return r, nil
}

// splitVersion splits "name@3" into ("name", 3). A name without "@" has version 0 (current).
func splitVersion(s string) (string, int, error) {
	name, v, ok := strings.Cut(s, "@")
	if !ok {
		return s, 0, nil
	}
	n := 0
	if v == "" || len(v) > 6 {
		return "", 0, errorf(ErrInvalidInput, "bad version suffix")
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return "", 0, errorf(ErrInvalidInput, "bad version suffix")
		}
		n = n*10 + int(c-'0')
	}
	if n == 0 {
		return "", 0, errorf(ErrInvalidInput, "versions start at 1")
	}
	return name, n, nil
}
