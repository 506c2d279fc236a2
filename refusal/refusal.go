// Package refusal is the one way gmgate reports a refusal: a stable reason code, an error type
// carrying it with its internal cause, and one JSON body {"code","message"} written the same way
// to a client (gm_verify) and to a back end (gm_channel), and read back by the terminal SDK.
//
// Each side keeps its own code set (a Catalog: the inbound codes of package gateway, the
// outbound codes of package channel); the sets are disjoint, so a code names its side in an
// audit entry or a metric label. A code's status and message are fixed when its catalog is
// made; nothing from the cause ever reaches the wire.
package refusal

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
)

// Code is a stable reason code. It is written in the JSON body, the audit entry and the metric
// label; it carries no internal detail.
type Code string

// OK marks an accepted message (audit entry, metric); it is never written as a refusal.
const OK Code = "ok"

// Def defines one code of a catalog: its HTTP status and its fixed message.
type Def struct {
	Code    Code
	Status  int
	Message string
}

type entry struct {
	status  int
	message string
	cat     *Catalog
}

// registry maps every defined code to its catalog; written only while package variables are
// initialised (NewCatalog), read afterwards.
var (
	regMu    sync.RWMutex
	registry = map[Code]entry{}
)

func lookup(c Code) (entry, bool) {
	regMu.RLock()
	defer regMu.RUnlock()
	e, ok := registry[c]
	return e, ok
}

// Catalog is one side's code set.
type Catalog struct {
	name       string // "gateway", "channel": the prefix of Error()
	internal   Code   // written for OK, for an unknown code and for an error without a code
	codeHeader string // header that repeats the code on every refusal, "" for none
	order      []Code
}

// NewCatalog defines the codes of one side. name prefixes Error() of its errors; internal (one
// of defs) is the code of an unexpected failure; codeHeader, when not empty, names a response
// header that repeats the code. It panics on an empty, duplicate (in any catalog) or
// statusless code or when internal is not among defs: catalogs are package variables, and a
// mistake there is a programming error.
func NewCatalog(name string, internal Code, codeHeader string, defs ...Def) *Catalog {
	cat := &Catalog{name: name, internal: internal, codeHeader: codeHeader}
	regMu.Lock()
	defer regMu.Unlock()
	seen := map[Code]bool{}
	for _, d := range defs {
		if d.Code == "" || d.Code == OK || d.Status < 400 || d.Status > 599 || d.Message == "" {
			panic(fmt.Sprintf("refusal: %s: invalid code definition %+v", name, d))
		}
		if _, dup := registry[d.Code]; dup || seen[d.Code] {
			panic(fmt.Sprintf("refusal: %s: code %q defined twice", name, d.Code))
		}
		seen[d.Code] = true
	}
	if !seen[internal] {
		panic(fmt.Sprintf("refusal: %s: internal code %q not defined", name, internal))
	}
	for _, d := range defs {
		registry[d.Code] = entry{status: d.Status, message: d.Message, cat: cat}
		cat.order = append(cat.order, d.Code)
	}
	return cat
}

// Codes returns every code of the catalog (OK excluded), in definition order.
func (cat *Catalog) Codes() []Code { return append([]Code(nil), cat.order...) }

// Has reports whether c is a code of this catalog (OK is in none).
func (cat *Catalog) Has(c Code) bool {
	e, ok := lookup(c)
	return ok && e.cat == cat
}

// Internal returns the catalog's code for an unexpected failure.
func (cat *Catalog) Internal() Code { return cat.internal }

// Known reports whether c is a defined refusal code or OK.
func (c Code) Known() bool {
	if c == OK {
		return true
	}
	_, ok := lookup(c)
	return ok
}

// Status returns the HTTP status of c: 200 for OK, the defined status of a refusal code, 500
// for an unknown code.
func (c Code) Status() int {
	if c == OK {
		return http.StatusOK
	}
	if e, ok := lookup(c); ok {
		return e.status
	}
	return http.StatusInternalServerError
}

// Message returns the fixed message of c ("ok" for OK, "internal error" for an unknown code).
func (c Code) Message() string {
	if c == OK {
		return "ok"
	}
	if e, ok := lookup(c); ok {
		return e.message
	}
	return "internal error"
}

// Error is a refusal: a code plus its internal cause. Error() includes the cause for logs; only
// the code and its fixed message reach the wire.
type Error struct {
	Code  Code
	Cause error
}

// Error implements error.
func (e *Error) Error() string {
	prefix := "refusal"
	if en, ok := lookup(e.Code); ok {
		prefix = en.cat.name
	}
	if e.Cause == nil {
		return prefix + ": " + string(e.Code)
	}
	return prefix + ": " + string(e.Code) + ": " + e.Cause.Error()
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Cause }

// Wrap attaches code c to err; a nil err stays nil.
func Wrap(c Code, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Code: c, Cause: err}
}

// Find returns the code of the first *Error in err's chain when it belongs to cat.
func (cat *Catalog) Find(err error) (Code, bool) {
	var e *Error
	if errors.As(err, &e) && cat.Has(e.Code) {
		return e.Code, true
	}
	return "", false
}

// Of maps err to a code of cat: OK for nil, the code of a *Error of this catalog in the chain,
// else the catalog's internal code.
func (cat *Catalog) Of(err error) Code {
	if err == nil {
		return OK
	}
	if c, ok := cat.Find(err); ok {
		return c
	}
	return cat.internal
}

// Body is the JSON body of every refusal.
type Body struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
}

// normalize returns c when it is a refusal code of cat, else the internal code.
func (cat *Catalog) normalize(c Code) Code {
	if !cat.Has(c) {
		return cat.internal
	}
	return c
}

// Body returns the JSON body written for c (the internal code's for OK or a code of another
// catalog).
func (cat *Catalog) Body(c Code) []byte {
	c = cat.normalize(c)
	b, _ := json.Marshal(Body{Code: c, Message: c.Message()})
	return b
}

// render is the one writer: status, headers and body of the refusal for c.
func (cat *Catalog) render(c Code, h http.Header) (int, []byte) {
	c = cat.normalize(c)
	b := cat.Body(c)
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if cat.codeHeader != "" {
		h.Set(cat.codeHeader, string(c))
	}
	return c.Status(), b
}

// Write writes the refusal for c to w. A code outside cat (or OK) is written as the internal
// code.
func (cat *Catalog) Write(w http.ResponseWriter, c Code) {
	st, b := cat.render(c, w.Header())
	w.WriteHeader(st)
	_, _ = w.Write(b)
}

// Response returns the refusal for c as a synthesized reply to req (for a RoundTripper).
func (cat *Catalog) Response(req *http.Request, c Code) *http.Response {
	h := make(http.Header)
	st, b := cat.render(c, h)
	return &http.Response{
		Status:        strconv.Itoa(st) + " " + http.StatusText(st),
		StatusCode:    st,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Body:          io.NopCloser(bytes.NewReader(b)),
		ContentLength: int64(len(b)),
		Request:       req,
	}
}

// Max bounds of a refusal body read back (ParseBody).
const (
	maxBodyLen    = 4096
	maxCodeLen    = 64
	maxMessageLen = 256
)

// ParseBody reads a refusal body {"code","message"} as written by Write, keeping only short
// printable ASCII (a code of at most 64 bytes, a message of at most 256, cut there). The body
// is not authenticated: treat the result as a hint, never as proof. ok is false when the body
// is not a bounded JSON object.
func ParseBody(body []byte) (code, message string, ok bool) {
	if len(body) == 0 || len(body) > maxBodyLen {
		return "", "", false
	}
	var b struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &b) != nil {
		return "", "", false
	}
	code, message = printable(b.Code, maxCodeLen), printable(b.Message, maxMessageLen)
	return code, message, true
}

func printable(s string, max int) string {
	if len(s) > max {
		s = s[:max]
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return ""
		}
	}
	return s
}
