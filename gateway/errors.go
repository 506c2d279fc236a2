package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/gmgate/gmgate/envelope"
)

// Code is a stable, client-visible reason code for a rejected inbound request.
// Codes are written in audit entries and in the JSON error body; they carry no
// internal detail.
type Code string

// Reason codes of the inbound side.
const (
	// CodeOK records an accepted request in the audit log; never sent as an error.
	CodeOK Code = "ok"
	// CodeMissingSignature: the request carries no signature.
	CodeMissingSignature Code = "missing_signature"
	// CodeMalformedHeader: the signature header or parameters cannot be parsed.
	CodeMalformedHeader Code = "malformed_header"
	// CodeUnknownKey: no certificate is known for the key ID or serial.
	CodeUnknownKey Code = "unknown_key"
	// CodeCertExpired: the signing certificate has expired.
	CodeCertExpired Code = "cert_expired"
	// CodeCertNotYetValid: the signing certificate is not valid yet.
	CodeCertNotYetValid Code = "cert_not_yet_valid"
	// CodeCertRevoked: the signing certificate is revoked.
	CodeCertRevoked Code = "cert_revoked"
	// CodeCertWrongUsage: the certificate may not be used for signing.
	CodeCertWrongUsage Code = "cert_wrong_usage"
	// CodeCertUntrusted: the certificate does not chain to a trusted root.
	CodeCertUntrusted Code = "cert_untrusted"
	// CodeBadSignature: the signature does not verify.
	CodeBadSignature Code = "bad_signature"
	// CodeTimestampOutOfWindow: the signed timestamp is outside the window.
	CodeTimestampOutOfWindow Code = "timestamp_out_of_window"
	// CodeReplay: the nonce was already used.
	CodeReplay Code = "replay"
	// CodeReplayStoreUnavailable: freshness cannot be checked now (503).
	CodeReplayStoreUnavailable Code = "replay_store_unavailable"
	// CodeEnvelopeInvalid: the digital envelope or encrypted field cannot be opened.
	CodeEnvelopeInvalid Code = "envelope_invalid"
	// CodeKeyUnavailable: the gateway's own key cannot be used now (token or vault failure,
	// 503): the request may be sent again later; nothing is blamed on it.
	CodeKeyUnavailable Code = "key_unavailable"
	// CodeBodyTooLarge: the body exceeds the configured limit (413).
	CodeBodyTooLarge Code = "body_too_large"
	// CodeInternal: an unexpected gateway failure (500).
	CodeInternal Code = "internal_error"
)

var codeInfo = map[Code]struct {
	status int
	msg    string
}{
	CodeOK:                     {http.StatusOK, "ok"},
	CodeMissingSignature:       {http.StatusUnauthorized, "request signature is missing"},
	CodeMalformedHeader:        {http.StatusBadRequest, "signature header or parameters are malformed"},
	CodeUnknownKey:             {http.StatusUnauthorized, "signing key is unknown"},
	CodeCertExpired:            {http.StatusUnauthorized, "signing certificate has expired"},
	CodeCertNotYetValid:        {http.StatusUnauthorized, "signing certificate is not yet valid"},
	CodeCertRevoked:            {http.StatusUnauthorized, "signing certificate is revoked"},
	CodeCertWrongUsage:         {http.StatusUnauthorized, "signing certificate is not allowed for this use"},
	CodeCertUntrusted:          {http.StatusUnauthorized, "signing certificate is not trusted"},
	CodeBadSignature:           {http.StatusUnauthorized, "signature verification failed"},
	CodeTimestampOutOfWindow:   {http.StatusUnauthorized, "request timestamp is outside the accepted window"},
	CodeReplay:                 {http.StatusUnauthorized, "request was already received"},
	CodeReplayStoreUnavailable: {http.StatusServiceUnavailable, "request freshness cannot be verified now"},
	CodeEnvelopeInvalid:        {http.StatusBadRequest, "encrypted content cannot be opened"},
	CodeKeyUnavailable:         {http.StatusServiceUnavailable, "the gateway's key is unavailable now; try again later"},
	CodeBodyTooLarge:           {http.StatusRequestEntityTooLarge, "request body is too large"},
	CodeInternal:               {http.StatusInternalServerError, "internal error"},
}

// Codes returns every defined code except CodeOK, in a stable order.
func Codes() []Code {
	return []Code{
		CodeMissingSignature, CodeMalformedHeader, CodeUnknownKey, CodeCertExpired,
		CodeCertNotYetValid, CodeCertRevoked, CodeCertWrongUsage, CodeCertUntrusted,
		CodeBadSignature, CodeTimestampOutOfWindow, CodeReplay, CodeReplayStoreUnavailable,
		CodeEnvelopeInvalid, CodeKeyUnavailable, CodeBodyTooLarge, CodeInternal,
	}
}

// Known reports whether c is a defined code.
func (c Code) Known() bool { _, ok := codeInfo[c]; return ok }

// HTTPStatus returns the HTTP status for c: 401 for authentication failures,
// 400 for malformed input, 503 when the replay store is unavailable, 413 for
// an oversized body, 500 for unknown codes.
func (c Code) HTTPStatus() int {
	if i, ok := codeInfo[c]; ok {
		return i.status
	}
	return http.StatusInternalServerError
}

// Message returns the fixed client-facing message for c.
func (c Code) Message() string {
	if i, ok := codeInfo[c]; ok {
		return i.msg
	}
	return codeInfo[CodeInternal].msg
}

// ErrorBody is the JSON body of an error response.
type ErrorBody struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
}

// Body returns the JSON error body for c. Unknown codes become internal_error.
func (c Code) Body() []byte {
	if !c.Known() || c == CodeOK {
		c = CodeInternal
	}
	b, _ := json.Marshal(ErrorBody{Code: c, Message: c.Message()})
	return b
}

// WriteError writes the status and JSON body for c. Nothing from the
// underlying error is ever written.
func WriteError(w http.ResponseWriter, c Code) {
	if !c.Known() || c == CodeOK {
		c = CodeInternal
	}
	b := c.Body()
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(c.HTTPStatus())
	_, _ = w.Write(b)
}

// Error attaches a Code to an internal error. Error() includes the cause for
// logs; only the Code reaches the client.
type Error struct {
	Code Code
	Err  error
}

// Error implements error.
func (e *Error) Error() string {
	if e.Err == nil {
		return "gateway: " + string(e.Code)
	}
	return "gateway: " + string(e.Code) + ": " + e.Err.Error()
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// WithCode wraps err with code c (nil err stays nil).
func WithCode(c Code, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Code: c, Err: err}
}

// CodeOf maps an error to its Code: a *Error anywhere in the chain wins, then
// the sentinel errors of this package; anything else is CodeInternal, and nil
// is CodeOK.
func CodeOf(err error) Code {
	if err == nil {
		return CodeOK
	}
	var e *Error
	if errors.As(err, &e) && e.Code.Known() {
		return e.Code
	}
	switch {
	case errors.Is(err, ErrReplay):
		return CodeReplay
	case errors.Is(err, ErrTimestampOutOfWindow):
		return CodeTimestampOutOfWindow
	case errors.Is(err, ErrNonceInvalid):
		return CodeMalformedHeader
	case errors.Is(err, ErrReplayStoreUnavailable), errors.Is(err, ErrReplayStoreFull):
		return CodeReplayStoreUnavailable
	case errors.Is(err, ErrBodyTooLarge), errors.Is(err, envelope.ErrTooLarge):
		return CodeBodyTooLarge
	case errors.Is(err, ErrKeyUnavailable), errors.Is(err, envelope.ErrKeyUnavailable):
		return CodeKeyUnavailable
	case errors.Is(err, ErrEnvelope):
		return CodeEnvelopeInvalid
	}
	return CodeInternal
}

// ErrBodyTooLarge is returned when a body exceeds its configured bound.
var ErrBodyTooLarge = errors.New("gateway: body too large")

// ErrKeyUnavailable is returned when the gateway's own key failed for a reason of its own (an
// error from the key that reports Unavailable() true, as keyvault's do for token, session and
// vault failures), so that the request is refused with 503, not blamed (400).
var ErrKeyUnavailable = errors.New("gateway: key unavailable")

// keyUnavailable wraps err in ErrKeyUnavailable when the key reports the failure as its own.
func keyUnavailable(err error) error {
	var u interface{ Unavailable() bool }
	if errors.As(err, &u) && u.Unavailable() {
		return fmt.Errorf("%w: %w", ErrKeyUnavailable, err)
	}
	return nil
}

// ErrEnvelope is the root of every envelope error: envelope.ErrInvalid (code envelope_invalid).
var ErrEnvelope = envelope.ErrInvalid
