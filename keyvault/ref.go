package keyvault

import (
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
)

// maxRefLen bounds a key reference.
const maxRefLen = 4096

// maxRefAttr bounds one decoded attribute value (the longest CK_*_INFO text field is 64 bytes;
// labels and IDs may be longer, but not beyond this).
const maxRefAttr = 256

// Ref is a parsed key reference: an RFC 7512 "pkcs11:" URI or a "file:" path.
//
// Of a pkcs11: URI, Object, ID and Type select the key's objects in a token; the token, slot,
// library and module attributes must agree with the configured token(s) holding the key (they
// choose among the configured tokens and never open another one); PINSource names a file
// holding the token's PIN. An attribute the vault cannot honour is refused by ParseRef, never
// ignored.
type Ref struct {
	// Scheme is "pkcs11" or "file" (lower case whatever the input's case).
	Scheme string `json:"scheme"`

	// Object is CKA_LABEL: the key's base name (version N of the key is labelled "Object@N").
	Object string `json:"object,omitempty"`
	// ID is CKA_ID, raw bytes (id=%01%02 is the two bytes 0x01 0x02).
	ID []byte `json:"id,omitempty"`
	// Type is the object class: "private", "secret-key", "data", "public" or "cert".
	Type string `json:"type,omitempty"`

	// Token, Serial, Manufacturer and Model are CK_TOKEN_INFO fields; Token also matches the
	// configured token_label and the vault-local token name.
	Token        string `json:"token,omitempty"`
	Serial       string `json:"serial,omitempty"`
	Manufacturer string `json:"manufacturer,omitempty"`
	Model        string `json:"model,omitempty"`
	// SlotID (decimal CK_SLOT_ID), SlotDescription and SlotManufacturer are CK_SLOT_INFO fields,
	// checked when the vault opens (a re-inserted token is followed by label or serial).
	SlotID           string `json:"slot_id,omitempty"`
	SlotDescription  string `json:"slot_description,omitempty"`
	SlotManufacturer string `json:"slot_manufacturer,omitempty"`
	// LibraryManufacturer, LibraryDescription and LibraryVersion ("M" or "M.N") are CK_INFO fields.
	LibraryManufacturer string `json:"library_manufacturer,omitempty"`
	LibraryDescription  string `json:"library_description,omitempty"`
	LibraryVersion      string `json:"library_version,omitempty"`
	// ModulePath (query "module-path": the module file, or the directory holding it) and
	// ModuleName (query "module-name": the file name without "lib" and ".so") must agree with
	// the configured token's module.
	ModulePath string `json:"module_path,omitempty"`
	ModuleName string `json:"module_name,omitempty"`
	// PINSource (query "pin-source", a file: URI or an absolute path) is the file whose first
	// line is the token's PIN.
	PINSource string `json:"pin_source,omitempty"`

	// Path is the file path (file scheme).
	Path string `json:"path,omitempty"`
}

// String renders the reference back as a URI (ParseRef(r.String()) gives r back).
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
	add("manufacturer", r.Manufacturer)
	add("model", r.Model)
	add("slot-id", r.SlotID)
	add("slot-description", r.SlotDescription)
	add("slot-manufacturer", r.SlotManufacturer)
	add("library-manufacturer", r.LibraryManufacturer)
	add("library-description", r.LibraryDescription)
	add("library-version", r.LibraryVersion)
	add("object", r.Object)
	if len(r.ID) > 0 {
		add("id", string(r.ID))
	}
	add("type", r.Type)
	s := "pkcs11:" + strings.Join(parts, ";")
	var q []string
	addQ := func(k, v string) {
		if v != "" {
			q = append(q, k+"="+pctEncode(v))
		}
	}
	addQ("module-path", r.ModulePath)
	addQ("module-name", r.ModuleName)
	addQ("pin-source", r.PINSource)
	if len(q) > 0 {
		s += "?" + strings.Join(q, "&")
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

// ParseRef parses an RFC 7512 "pkcs11:" URI or a "file:" reference. The scheme is
// case-insensitive (RFC 3986); attribute names are not. A pkcs11 reference must select an object
// (object= or id=). Every RFC 7512 attribute is honoured (see Ref) except "pin-value", which is
// refused: a PIN written into a reference is copied wherever the reference goes (the Caddy
// configuration the admin API serves, `gmgate vault list`, logs and errors). Unknown and
// vendor ("x-") attributes are refused: the vault cannot honour a selection it does not
// understand.
func ParseRef(s string) (Ref, error) {
	if len(s) == 0 || len(s) > maxRefLen {
		return Ref{}, errorf(ErrBadReference, "empty or longer than %d bytes", maxRefLen)
	}
	scheme, rest, ok := strings.Cut(s, ":")
	if !ok {
		return Ref{}, errorf(ErrBadReference, "scheme must be pkcs11: or file:")
	}
	switch strings.ToLower(scheme) {
	case "file":
		p := strings.TrimPrefix(rest, "//")
		if p == "" || strings.IndexByte(p, 0) >= 0 {
			return Ref{}, errorf(ErrBadReference, "file reference without a path")
		}
		return Ref{Scheme: "file", Path: p}, nil
	case "pkcs11":
		return parsePKCS11URI(rest)
	}
	return Ref{}, errorf(ErrBadReference, "scheme must be pkcs11: or file:")
}

// refTypes are the RFC 7512 object classes.
var refTypes = map[string]bool{"private": true, "secret-key": true, "data": true, "public": true, "cert": true}

func parsePKCS11URI(rest string) (Ref, error) {
	r := Ref{Scheme: "pkcs11"}
	path, query, _ := strings.Cut(rest, "?")
	seen := map[string]bool{}
	attrs := func(s, sep, what string, set func(k, v string) error) error {
		if s == "" {
			return nil
		}
		for _, attr := range strings.Split(s, sep) {
			k, v, ok := strings.Cut(attr, "=")
			if !ok || k == "" {
				return errorf(ErrBadReference, "%s attribute without '='", what)
			}
			if seen[k] {
				return errorf(ErrBadReference, "duplicate attribute %q", k)
			}
			seen[k] = true
			val, err := url.PathUnescape(v)
			if err != nil {
				return errorf(ErrBadReference, "bad percent-encoding in %q", k)
			}
			if len(val) > maxRefAttr || (k != "id" && strings.IndexByte(val, 0) >= 0) {
				return errorf(ErrBadReference, "attribute %q longer than %d bytes or holding NUL", k, maxRefAttr)
			}
			if err := set(k, val); err != nil {
				return err
			}
		}
		return nil
	}
	err := attrs(path, ";", "path", func(k, val string) error {
		switch k {
		case "object":
			r.Object = val
		case "id":
			if val == "" {
				return errorf(ErrBadReference, "empty id")
			}
			r.ID = []byte(val)
		case "type":
			if !refTypes[val] {
				return errorf(ErrBadReference, "unknown object type %q (private, secret-key, data, public, cert)", val)
			}
			r.Type = val
		case "token":
			r.Token = val
		case "serial":
			r.Serial = val
		case "manufacturer":
			r.Manufacturer = val
		case "model":
			r.Model = val
		case "slot-id":
			n, err := strconv.ParseUint(val, 10, 64)
			if err != nil {
				return errorf(ErrBadReference, "slot-id must be a decimal number")
			}
			r.SlotID = strconv.FormatUint(n, 10)
		case "slot-description":
			r.SlotDescription = val
		case "slot-manufacturer":
			r.SlotManufacturer = val
		case "library-manufacturer":
			r.LibraryManufacturer = val
		case "library-description":
			r.LibraryDescription = val
		case "library-version":
			if _, _, ok := parseLibraryVersion(val); !ok {
				return errorf(ErrBadReference, "library-version must be M or M.N")
			}
			r.LibraryVersion = val
		default:
			return errorf(ErrBadReference, "path attribute %q cannot be honoured (known: object, id, type, token, serial, manufacturer, model, slot-id, slot-description, slot-manufacturer, library-manufacturer, library-description, library-version)", k)
		}
		return nil
	})
	if err != nil {
		return Ref{}, err
	}
	err = attrs(query, "&", "query", func(k, val string) error {
		switch k {
		case "pin-value":
			return errorf(ErrBadReference, "pin-value is refused: a PIN inside a key reference is copied into the configuration, `gmgate vault list` and logs; use pin-source=file:/path, or the token's pin_env or pin_file")
		case "pin-source":
			p, err := parsePINSource(val)
			if err != nil {
				return err
			}
			r.PINSource = p
		case "module-path":
			if !filepath.IsAbs(val) {
				return errorf(ErrBadReference, "module-path must be an absolute path")
			}
			r.ModulePath = filepath.Clean(val)
		case "module-name":
			if val == "" || strings.ContainsAny(val, "/\\") {
				return errorf(ErrBadReference, "module-name is a file name without directory")
			}
			r.ModuleName = val
		default:
			return errorf(ErrBadReference, "query attribute %q cannot be honoured (known: module-path, module-name, pin-source)", k)
		}
		return nil
	})
	if err != nil {
		return Ref{}, err
	}
	if r.Object == "" && len(r.ID) == 0 {
		return Ref{}, errorf(ErrBadReference, "pkcs11 reference needs object= (CKA_LABEL) or id= (CKA_ID)")
	}
	if strings.ContainsAny(r.Object, "@/") || len(r.Object) > 128 {
		return Ref{}, errorf(ErrBadReference, "object name must not contain '@' or '/' and must be at most 128 bytes")
	}
	return r, nil
}

// parsePINSource accepts RFC 7512's pin-source as p11-kit and OpenSC read it: a file: URI
// (file:/p, file:///p, file://localhost/p) or an absolute path. The file's first line is the PIN.
// A program ("|cmd") is refused: the vault runs no commands.
func parsePINSource(v string) (string, error) {
	p := v
	if len(p) >= 5 && strings.EqualFold(p[:5], "file:") {
		p = p[5:]
		if rest, ok := strings.CutPrefix(p, "//"); ok {
			host, path, _ := strings.Cut(rest, "/")
			if host != "" && !strings.EqualFold(host, "localhost") {
				return "", errorf(ErrBadReference, "pin-source file: URI names another host")
			}
			p = "/" + path
		}
	}
	if strings.HasPrefix(p, "|") {
		return "", errorf(ErrBadReference, "pin-source programs are not run; use a file")
	}
	if !filepath.IsAbs(p) {
		return "", errorf(ErrBadReference, "pin-source must be a file: URI or an absolute path")
	}
	return filepath.Clean(p), nil
}

// parseLibraryVersion parses "M" (minor 0) or "M.N" into CK_VERSION bytes.
func parseLibraryVersion(s string) (major, minor byte, ok bool) {
	ma, mi, dot := strings.Cut(s, ".")
	a, err := strconv.ParseUint(ma, 10, 8)
	if err != nil || ma == "" || ma[0] == '+' {
		return 0, 0, false
	}
	var b uint64
	if dot {
		b, err = strconv.ParseUint(mi, 10, 8)
		if err != nil || mi == "" || mi[0] == '+' {
			return 0, 0, false
		}
	}
	return byte(a), byte(b), true
}

// moduleName is RFC 7512's module-name of a module path: the file name without "lib" prefix and
// without the ".so" (".dll", ".dylib") suffix and what follows it: /usr/lib/libmypkcs11.so.1 is
// "mypkcs11".
func moduleName(path string) string {
	base := filepath.Base(path)
	base = strings.TrimPrefix(base, "lib")
	for i := 1; i < len(base); i++ {
		if base[i] != '.' {
			continue
		}
		for _, ext := range []string{".so", ".dylib", ".dll"} {
			if j := i + len(ext); strings.HasPrefix(base[i:], ext) && (j == len(base) || base[j] == '.') {
				return base[:i]
			}
		}
	}
	return base
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
