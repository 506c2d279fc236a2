package gateway

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/gmgate/gmgate/envelope"
	"github.com/gmgate/gmgate/refusal"
)

// Code is a stable, client-visible reason code for a rejected inbound request (the one
// refusal type, refusal.Code). Codes are written in audit entries and in the JSON error body;
// they carry no internal detail.
type Code = refusal.Code

// Reason codes of the inbound side.
const (
	// CodeOK records an accepted request in the audit log; never sent as an error.
	CodeOK = refusal.OK
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

// refusals is the inbound code set: 401 for authentication failures, 400 for malformed input,
// 503 when freshness or the gateway's key cannot be checked now, 413 for an oversized body, 500
// for anything unexpected.
var refusals = refusal.NewCatalog("gateway", CodeInternal, "",
	refusal.Def{Code: CodeMissingSignature, Status: http.StatusUnauthorized, Message: "request signature is missing"},
	refusal.Def{Code: CodeMalformedHeader, Status: http.StatusBadRequest, Message: "signature header or parameters are malformed"},
	refusal.Def{Code: CodeUnknownKey, Status: http.StatusUnauthorized, Message: "signing key is unknown"},
	refusal.Def{Code: CodeCertExpired, Status: http.StatusUnauthorized, Message: "signing certificate has expired"},
	refusal.Def{Code: CodeCertNotYetValid, Status: http.StatusUnauthorized, Message: "signing certificate is not yet valid"},
	refusal.Def{Code: CodeCertRevoked, Status: http.StatusUnauthorized, Message: "signing certificate is revoked"},
	refusal.Def{Code: CodeCertWrongUsage, Status: http.StatusUnauthorized, Message: "signing certificate is not allowed for this use"},
	refusal.Def{Code: CodeCertUntrusted, Status: http.StatusUnauthorized, Message: "signing certificate is not trusted"},
	refusal.Def{Code: CodeBadSignature, Status: http.StatusUnauthorized, Message: "signature verification failed"},
	refusal.Def{Code: CodeTimestampOutOfWindow, Status: http.StatusUnauthorized, Message: "request timestamp is outside the accepted window"},
	refusal.Def{Code: CodeReplay, Status: http.StatusUnauthorized, Message: "request was already received"},
	refusal.Def{Code: CodeReplayStoreUnavailable, Status: http.StatusServiceUnavailable, Message: "request freshness cannot be verified now"},
	refusal.Def{Code: CodeEnvelopeInvalid, Status: http.StatusBadRequest, Message: "encrypted content cannot be opened"},
	refusal.Def{Code: CodeKeyUnavailable, Status: http.StatusServiceUnavailable, Message: "the gateway's key is unavailable now; try again later"},
	refusal.Def{Code: CodeBodyTooLarge, Status: http.StatusRequestEntityTooLarge, Message: "request body is too large"},
	refusal.Def{Code: CodeInternal, Status: http.StatusInternalServerError, Message: "internal error"},
)

// Codes returns every inbound code except CodeOK, in a stable order.
func Codes() []Code { return refusals.Codes() }

// WriteError writes the refusal for c (status, JSON body, no-store, nosniff); a code that is not
// an inbound refusal code (CodeOK included) is written as internal_error. Nothing from the
// underlying error is ever written.
func WriteError(w http.ResponseWriter, c Code) { refusals.Write(w, c) }

// Error attaches a Code to an internal error (the one refusal error type). Error() includes the
// cause for logs; only the Code reaches the client.
type Error = refusal.Error

// WithCode wraps err with code c (nil err stays nil).
func WithCode(c Code, err error) error { return refusal.Wrap(c, err) }

// CodeOf maps an error to its Code: a *Error with an inbound code anywhere in the chain wins,
// then the sentinel errors of this package; anything else is CodeInternal, and nil is CodeOK.
func CodeOf(err error) Code {
	if err == nil {
		return CodeOK
	}
	if c, ok := refusals.Find(err); ok {
		return c
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
