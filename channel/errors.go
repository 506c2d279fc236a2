package channel

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// Code is a stable reason code of a channel failure. It is sent to the back end in the JSON body
// of a synthesized 502 reply, written in the audit entry and reported as the metric result.
type Code string

// Codes.
const (
	// CodeOK marks an accepted (verified) bank reply; never sent as an error.
	CodeOK Code = "ok"
	// CodeRequestTooLarge: the back end's request body exceeds the configured limit.
	CodeRequestTooLarge Code = "request_too_large"
	// CodeRequestEncryptFailed: the request could not be encrypted (e.g. a listed field is not
	// a flat value, or the body is not a parameter set).
	CodeRequestEncryptFailed Code = "request_encrypt_failed"
	// CodeRequestSignFailed: the request could not be signed (malformed form body, key error).
	CodeRequestSignFailed Code = "request_sign_failed"
	// CodeBankTimeout: the bank did not answer within the response timeout.
	CodeBankTimeout Code = "bank_timeout"
	// CodeBankUnreachable: the connection to the bank failed or was dropped.
	CodeBankUnreachable Code = "bank_unreachable"
	// CodeBankReplyTooLarge: the bank's reply body exceeds the configured limit.
	CodeBankReplyTooLarge Code = "bank_reply_too_large"
	// CodeBankSignatureMissing: the bank's reply carries no signature.
	CodeBankSignatureMissing Code = "bank_signature_missing"
	// CodeBankReplyMalformed: the reply's signature fields or body cannot be parsed.
	CodeBankReplyMalformed Code = "bank_reply_malformed"
	// CodeBankCertificateUnknown: the reply names a certificate that is not one of the bank's
	// configured platform certificates.
	CodeBankCertificateUnknown Code = "bank_certificate_unknown"
	// CodeBankCertificateInvalid: the bank's certificate is outside its validity period.
	CodeBankCertificateInvalid Code = "bank_certificate_invalid"
	// CodeBankSignatureInvalid: the reply's signature does not verify.
	CodeBankSignatureInvalid Code = "bank_signature_invalid"
	// CodeBankReplyStale: the reply's signed time is outside the reply window.
	CodeBankReplyStale Code = "bank_reply_stale"
	// CodeBankReplyUnbound: the reply does not echo the request it answers (unionpay-sm2 orderId).
	CodeBankReplyUnbound Code = "bank_reply_unbound"
	// CodeBankReplyReplayed: the same signed reply was already accepted once.
	CodeBankReplyReplayed Code = "bank_reply_replayed"
	// CodeBankDecryptFailed: the verified reply cannot be decrypted.
	CodeBankDecryptFailed Code = "bank_decrypt_failed"
	// CodeInternal: an unexpected gateway failure.
	CodeInternal Code = "channel_internal_error"
)

var codeMessages = map[Code]string{
	CodeRequestTooLarge:        "request body is too large for the bank channel",
	CodeRequestEncryptFailed:   "request could not be encrypted for the bank",
	CodeRequestSignFailed:      "request could not be signed for the bank",
	CodeBankTimeout:            "bank did not answer in time",
	CodeBankUnreachable:        "bank is unreachable or dropped the connection",
	CodeBankReplyTooLarge:      "bank reply is too large",
	CodeBankSignatureMissing:   "bank reply is not signed",
	CodeBankReplyMalformed:     "bank reply is malformed",
	CodeBankCertificateUnknown: "bank reply is signed with an unknown certificate",
	CodeBankCertificateInvalid: "bank certificate is not valid now",
	CodeBankSignatureInvalid:   "bank reply signature is invalid",
	CodeBankDecryptFailed:      "bank reply cannot be decrypted",
	CodeBankReplyStale:         "bank reply is outside the accepted time window",
	CodeBankReplyUnbound:       "bank reply does not answer this request",
	CodeBankReplyReplayed:      "bank reply was already received",
	CodeInternal:               "bank channel internal error",
}

// Codes returns every failure code (all codes but CodeOK), in a stable order.
func Codes() []Code {
	return []Code{CodeRequestTooLarge, CodeRequestEncryptFailed, CodeRequestSignFailed,
		CodeBankTimeout, CodeBankUnreachable, CodeBankReplyTooLarge, CodeBankSignatureMissing,
		CodeBankReplyMalformed, CodeBankCertificateUnknown, CodeBankCertificateInvalid,
		CodeBankSignatureInvalid, CodeBankReplyStale, CodeBankReplyUnbound, CodeBankReplyReplayed,
		CodeBankDecryptFailed, CodeInternal}
}

// Message returns the fixed client-facing message of c.
func (c Code) Message() string {
	if m, ok := codeMessages[c]; ok {
		return m
	}
	return "bank channel error"
}

// Status returns the HTTP status of the synthesized reply for c: 413 for CodeRequestTooLarge,
// 502 for every other failure, 200 for CodeOK.
func (c Code) Status() int {
	switch c {
	case CodeOK:
		return http.StatusOK
	case CodeRequestTooLarge:
		return http.StatusRequestEntityTooLarge
	}
	return http.StatusBadGateway
}

// Error is a channel failure: a code plus an internal cause (never sent to the back end; it
// holds no key material and no message body).
type Error struct {
	Code  Code
	Cause error
}

// Error implements error.
func (e *Error) Error() string {
	if e.Cause == nil {
		return "channel: " + string(e.Code)
	}
	return "channel: " + string(e.Code) + ": " + e.Cause.Error()
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Cause }

func fail(code Code, cause error) *Error { return &Error{Code: code, Cause: cause} }

func failf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Cause: fmt.Errorf(format, args...)}
}

// CodeOf returns the Code of err when it is (or wraps) an *Error, else CodeInternal.
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	if err == nil {
		return CodeOK
	}
	return CodeInternal
}

// ErrorBody is the JSON body of a synthesized failure reply.
type ErrorBody struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
}

// HeaderChannelError names the header set on synthesized failure replies (value: the code).
const HeaderChannelError = "X-Gmgate-Channel-Error"

// ErrorResponse builds the synthesized reply for code: status Code.Status(), JSON
// {"code","message"}, no bank data.
func ErrorResponse(req *http.Request, code Code) *http.Response {
	body, _ := json.Marshal(ErrorBody{Code: code, Message: code.Message()})
	h := make(http.Header)
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Cache-Control", "no-store")
	h.Set(HeaderChannelError, string(code))
	st := code.Status()
	return &http.Response{
		Status:        strconv.Itoa(st) + " " + http.StatusText(st),
		StatusCode:    st,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Body:          newBytesBody(body),
		ContentLength: int64(len(body)),
		Request:       req,
	}
}

// isSafeText reports whether s is short printable ASCII (used for header values we echo).
func isSafeText(s string) bool {
	if len(s) > 128 {
		return false
	}
	return strings.IndexFunc(s, func(r rune) bool { return r < 0x21 || r > 0x7e }) < 0
}
