package client

import (
	"errors"
	"fmt"
)

// Typed errors. Every error the Transport returns for a reply wraps exactly one of the
// ErrReply* sentinels (test with errors.Is; http.Client wraps it in a *url.Error, which
// errors.Is sees through). The *ReplyError carrying it says more.
var (
	// ErrReplyUnsigned: the reply carries no signature in the configured scheme.
	ErrReplyUnsigned = errors.New("client: reply is not signed")
	// ErrReplySignatureInvalid: the reply signature is malformed, does not verify, or its
	// content digest does not match the body.
	ErrReplySignatureInvalid = errors.New("client: reply signature is invalid")
	// ErrReplyStale: the reply's signed timestamp is missing or outside the window
	// (Config.ReplyWindow, default 5 minutes).
	ErrReplyStale = errors.New("client: reply timestamp is outside the window")
	// ErrReplyUnknownKey: the reply names a key ID that matches no platform certificate, or
	// the matching certificate is outside its validity period.
	ErrReplyUnknownKey = errors.New("client: reply signed by an unknown platform key")
	// ErrReplyTooLarge: the reply body exceeds Config.MaxReplyBody.
	ErrReplyTooLarge = errors.New("client: reply body too large")
	// ErrReplyEnvelope: an enveloped reply cannot be opened (no decryption key configured,
	// malformed envelope, wrong recipient), or a sealed reply was required and not received.
	ErrReplyEnvelope = errors.New("client: reply envelope cannot be opened")

	// ErrRequestTooLarge: the request body exceeds Config.MaxRequestBody.
	ErrRequestTooLarge = errors.New("client: request body too large")
	// ErrRequestSigning: the request could not be signed or sealed (key, scheme or envelope
	// failure). Nothing was sent.
	ErrRequestSigning = errors.New("client: request cannot be signed")
)

// ReplyError describes a reply that failed verification. Err is one of the ErrReply*
// sentinels; Cause, when set, is the lower-level reason (for instance a signing.Err*).
//
// When the gateway refuses a request it answers with an unsigned JSON body
// {"code": ..., "message": ...}; GatewayCode and GatewayMessage then carry those values
// (bounded, printable ASCII only) so that a terminal can tell "replay" from "bad_signature"
// even though the reply itself is not authenticated. Treat them as hints, never as proof.
type ReplyError struct {
	Err            error  // one of the ErrReply* sentinels
	Cause          error  // underlying reason, may be nil
	StatusCode     int    // HTTP status of the reply
	Scheme         string // signing scheme in use
	KeyID          string // key ID named by the reply, if any
	GatewayCode    string // "code" of an unsigned gateway error body, if any
	GatewayMessage string // "message" of an unsigned gateway error body, if any
}

// Error describes the failure without secrets.
func (e *ReplyError) Error() string {
	s := e.Err.Error()
	if e.StatusCode != 0 {
		s += fmt.Sprintf(" (status %d", e.StatusCode)
		if e.GatewayCode != "" {
			s += ", gateway code " + e.GatewayCode
		}
		s += ")"
	}
	if e.Cause != nil {
		s += ": " + e.Cause.Error()
	}
	return s
}

// Unwrap returns the sentinel and the cause, so errors.Is matches both.
func (e *ReplyError) Unwrap() []error {
	if e.Cause == nil {
		return []error{e.Err}
	}
	return []error{e.Err, e.Cause}
}
