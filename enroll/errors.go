package enroll

import (
	"errors"
	"net/http"

	"github.com/gmgate/gmgate/refusal"
)

// Code is a refusal code of the enrolment side.
type Code = refusal.Code

// Enrolment refusal codes (the JSON body's "code", the audit entry's reason and the metric
// label). They are disjoint from the inbound (gateway) and outbound (channel) codes.
const (
	CodeTokenInvalid   Code = "enroll_token_invalid"
	CodeTokenExpired   Code = "enroll_token_expired"
	CodeTokenUsed      Code = "enroll_token_used"
	CodeRequestInvalid Code = "enroll_request_invalid"
	CodeCSRInvalid     Code = "enroll_csr_invalid"
	CodeNameForbidden  Code = "enroll_name_forbidden"
	CodeUsageForbidden Code = "enroll_usage_forbidden"
	CodeAuthInvalid    Code = "enroll_auth_invalid"
	CodeReplay         Code = "enroll_replay"
	CodeCertExpired    Code = "enroll_cert_expired"
	CodeCertRevoked    Code = "enroll_cert_revoked"
	CodeCertUntrusted  Code = "enroll_cert_untrusted"
	CodeAlreadyRenewed Code = "enroll_already_renewed"
	CodeNotFound       Code = "enroll_not_found"
	CodeTooLarge       Code = "enroll_request_too_large"
	CodeMediaType      Code = "enroll_unsupported_media_type"
	CodeUnavailable    Code = "enroll_unavailable"
	CodeInternal       Code = "enroll_internal_error"
	CodeStoreIntegrity Code = "enroll_store_integrity" // a store record failed its integrity check
	CodeRateLimited    Code = "enroll_rate_limited"    // too many requests from the client address
	CodeLocked         Code = "enroll_locked"          // too many failed attempts: address or token locked out
	// CodeUpstreamRefused: the upstream CA refused what the RA forwarded.
	CodeUpstreamRefused Code = "enroll_upstream_refused"
	// CodeUpstreamInvalid: the upstream CA's answer does not verify (chain, key, subject,
	// usages, delivery): nothing was stored or delivered.
	CodeUpstreamInvalid Code = "enroll_upstream_invalid"
	// CodeRAOutOfScope: a registration authority asked for a profile or a name outside its
	// scope (Config.RAScopes), or revoked a pair outside it, or has no scope.
	CodeRAOutOfScope     Code = "enroll_ra_out_of_scope"
	codeMethodNotAllowed Code = "enroll_method_not_allowed"
)

var refusals = refusal.NewCatalog("enroll", CodeInternal, "",
	refusal.Def{Code: CodeTokenInvalid, Status: http.StatusUnauthorized, Message: "enrolment token is missing or invalid"},
	refusal.Def{Code: CodeTokenExpired, Status: http.StatusUnauthorized, Message: "enrolment token has expired"},
	refusal.Def{Code: CodeTokenUsed, Status: http.StatusUnauthorized, Message: "enrolment token was already used"},
	refusal.Def{Code: CodeRequestInvalid, Status: http.StatusBadRequest, Message: "request is malformed"},
	refusal.Def{Code: CodeCSRInvalid, Status: http.StatusBadRequest, Message: "certificate request is malformed or its signature does not verify"},
	refusal.Def{Code: CodeNameForbidden, Status: http.StatusForbidden, Message: "certificate request asks for a name this enrolment does not allow"},
	refusal.Def{Code: CodeUsageForbidden, Status: http.StatusForbidden, Message: "certificate request asks for a key usage this enrolment does not allow"},
	refusal.Def{Code: CodeAuthInvalid, Status: http.StatusUnauthorized, Message: "request signature is missing or does not verify"},
	refusal.Def{Code: CodeReplay, Status: http.StatusUnauthorized, Message: "request was already received or is outside the accepted time window"},
	refusal.Def{Code: CodeCertExpired, Status: http.StatusUnauthorized, Message: "signing certificate has expired"},
	refusal.Def{Code: CodeCertRevoked, Status: http.StatusUnauthorized, Message: "signing certificate is revoked"},
	refusal.Def{Code: CodeCertUntrusted, Status: http.StatusUnauthorized, Message: "signing certificate is not trusted"},
	refusal.Def{Code: CodeAlreadyRenewed, Status: http.StatusConflict, Message: "this certificate was already renewed"},
	refusal.Def{Code: CodeNotFound, Status: http.StatusNotFound, Message: "no such certificate or operation"},
	refusal.Def{Code: CodeTooLarge, Status: http.StatusRequestEntityTooLarge, Message: "request body is too large"},
	refusal.Def{Code: CodeMediaType, Status: http.StatusUnsupportedMediaType, Message: "unsupported content type"},
	refusal.Def{Code: codeMethodNotAllowed, Status: http.StatusMethodNotAllowed, Message: "method not allowed"},
	refusal.Def{Code: CodeUnavailable, Status: http.StatusServiceUnavailable, Message: "enrolment is unavailable now; try again later"},
	refusal.Def{Code: CodeInternal, Status: http.StatusInternalServerError, Message: "internal error"},
	refusal.Def{Code: CodeRateLimited, Status: http.StatusTooManyRequests, Message: "too many enrolment requests; try again later"},
	refusal.Def{Code: CodeLocked, Status: http.StatusTooManyRequests, Message: "too many failed attempts; locked out for a while"},
	refusal.Def{Code: CodeStoreIntegrity, Status: http.StatusInternalServerError, Message: "an enrolment record failed its integrity check"},
	refusal.Def{Code: CodeUpstreamRefused, Status: http.StatusBadGateway, Message: "the upstream CA refused the request"},
	refusal.Def{Code: CodeRAOutOfScope, Status: http.StatusForbidden, Message: "the registration authority may not request this profile or name"},
	refusal.Def{Code: CodeUpstreamInvalid, Status: http.StatusBadGateway, Message: "the upstream CA's answer does not verify"},
)

// Codes returns every enrolment refusal code, in a stable order.
func Codes() []Code { return refusals.Codes() }

// CodeOf returns the enrolment code of err (refusal.OK for nil, CodeInternal for an error
// without one).
func CodeOf(err error) Code { return refusals.Of(err) }

// WriteError writes the refusal for c (status, JSON body {"code","message"}).
func WriteError(w http.ResponseWriter, c Code) { refusals.Write(w, c) }

func fail(c Code, err error) error { return refusal.Wrap(c, err) }

// storeFail maps a store error: a record that failed its integrity check is
// enroll_store_integrity, anything else (I/O, the vault key) enroll_unavailable.
func storeFail(err error) error {
	if errors.Is(err, ErrIntegrity) {
		return fail(CodeStoreIntegrity, err)
	}
	return fail(CodeUnavailable, err)
}

func failf(c Code, msg string) error {
	return &refusal.Error{Code: c, Cause: errors.New("enroll: " + msg)}
}

// Store errors.
var (
	// ErrNotFound reports a token or certificate record that does not exist.
	ErrNotFound = errors.New("enroll: not found")
	// ErrTokenUsed reports a token consumed before.
	ErrTokenUsed = errors.New("enroll: token already used")
)
