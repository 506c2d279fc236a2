package channel

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/gmgate/gmgate/refusal"
)

// Code is a stable reason code of a channel failure (the one refusal type, refusal.Code). It is
// sent to the back end in the JSON body of a synthesized reply, written in the audit entry and
// reported as the metric result.
type Code = refusal.Code

// Codes.
const (
	// CodeOK marks an accepted (verified) bank reply; never sent as an error.
	CodeOK = refusal.OK
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

// HeaderChannelError names the header set on synthesized failure replies (value: the code).
const HeaderChannelError = "X-Gmgate-Channel-Error"

// refusals is the outbound code set: 413 for CodeRequestTooLarge, 502 for every other failure.
var refusals = refusal.NewCatalog("channel", CodeInternal, HeaderChannelError,
	refusal.Def{Code: CodeRequestTooLarge, Status: http.StatusRequestEntityTooLarge, Message: "request body is too large for the bank channel"},
	refusal.Def{Code: CodeRequestEncryptFailed, Status: http.StatusBadGateway, Message: "request could not be encrypted for the bank"},
	refusal.Def{Code: CodeRequestSignFailed, Status: http.StatusBadGateway, Message: "request could not be signed for the bank"},
	refusal.Def{Code: CodeBankTimeout, Status: http.StatusBadGateway, Message: "bank did not answer in time"},
	refusal.Def{Code: CodeBankUnreachable, Status: http.StatusBadGateway, Message: "bank is unreachable or dropped the connection"},
	refusal.Def{Code: CodeBankReplyTooLarge, Status: http.StatusBadGateway, Message: "bank reply is too large"},
	refusal.Def{Code: CodeBankSignatureMissing, Status: http.StatusBadGateway, Message: "bank reply is not signed"},
	refusal.Def{Code: CodeBankReplyMalformed, Status: http.StatusBadGateway, Message: "bank reply is malformed"},
	refusal.Def{Code: CodeBankCertificateUnknown, Status: http.StatusBadGateway, Message: "bank reply is signed with an unknown certificate"},
	refusal.Def{Code: CodeBankCertificateInvalid, Status: http.StatusBadGateway, Message: "bank certificate is not valid now"},
	refusal.Def{Code: CodeBankSignatureInvalid, Status: http.StatusBadGateway, Message: "bank reply signature is invalid"},
	refusal.Def{Code: CodeBankReplyStale, Status: http.StatusBadGateway, Message: "bank reply is outside the accepted time window"},
	refusal.Def{Code: CodeBankReplyUnbound, Status: http.StatusBadGateway, Message: "bank reply does not answer this request"},
	refusal.Def{Code: CodeBankReplyReplayed, Status: http.StatusBadGateway, Message: "bank reply was already received"},
	refusal.Def{Code: CodeBankDecryptFailed, Status: http.StatusBadGateway, Message: "bank reply cannot be decrypted"},
	refusal.Def{Code: CodeInternal, Status: http.StatusBadGateway, Message: "bank channel internal error"},
)

// Codes returns every failure code (all codes but CodeOK), in a stable order.
func Codes() []Code { return refusals.Codes() }

// Error is a channel failure (the one refusal error type): a code plus an internal cause (never
// sent to the back end; it holds no key material and no message body).
type Error = refusal.Error

func fail(code Code, cause error) *Error { return &Error{Code: code, Cause: cause} }

func failf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Cause: fmt.Errorf(format, args...)}
}

// CodeOf returns the Code of err when it is (or wraps) an *Error with a channel code, CodeOK for
// nil, else CodeInternal.
func CodeOf(err error) Code { return refusals.Of(err) }

// ErrorResponse builds the synthesized reply for code: its status, JSON {"code","message"},
// no-store, nosniff, X-Gmgate-Channel-Error, no bank data. A code that is not a channel failure
// code (CodeOK included) is answered as channel_internal_error.
func ErrorResponse(req *http.Request, code Code) *http.Response { return refusals.Response(req, code) }

// isSafeText reports whether s is short printable ASCII (used for header values we echo).
func isSafeText(s string) bool {
	if len(s) > 128 {
		return false
	}
	return strings.IndexFunc(s, func(r rune) bool { return r < 0x21 || r > 0x7e }) < 0
}
