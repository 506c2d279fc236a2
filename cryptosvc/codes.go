package cryptosvc

import (
	"net/http"

	"github.com/gmgate/gmgate/refusal"
)

// Codes of the crypto service. They are distinct from the gateway's and the channel's codes
// (refusal catalogs are disjoint), so an audit entry or a metric label names its side.
const (
	// CodeUnauthenticated: the caller presented no verified client certificate, or one that no
	// configured caller matches (401).
	CodeUnauthenticated refusal.Code = "crypto_unauthenticated"
	// CodeForbidden: the policy does not allow this caller this operation with this key (403).
	CodeForbidden refusal.Code = "crypto_forbidden"
	// CodeUnknownOperation: no such operation (404).
	CodeUnknownOperation refusal.Code = "crypto_unknown_operation"
	// CodeUnknownKey: the vault has no such key or no such version of it (404). Checked after
	// the policy, so it never tells an unauthorised caller which keys exist.
	CodeUnknownKey refusal.Code = "crypto_unknown_key"
	// CodeWrongKeyType: the key cannot do this operation (an SM4 key asked to sign) (400).
	CodeWrongKeyType refusal.Code = "crypto_wrong_key_type"
	// CodeMalformed: the body or an item is not what the operation takes (400).
	CodeMalformed refusal.Code = "crypto_malformed"
	// CodeTooLarge: the body, an item or the batch exceeds its bound (413).
	CodeTooLarge refusal.Code = "crypto_too_large"
	// CodeBadCiphertext: the ciphertext cannot be opened: tampered, truncated, of another key
	// or context, or its version is not loaded. One code for all, so nothing tells them apart (400).
	CodeBadCiphertext refusal.Code = "crypto_bad_ciphertext"
	// CodeVersionRetired: the ciphertext's key version is below the caller's minimum (403).
	CodeVersionRetired refusal.Code = "crypto_version_retired"
	// CodeBadSignature: the signature (or HMAC) does not verify (422).
	CodeBadSignature refusal.Code = "crypto_bad_signature"
	// CodeContentRequired: a detached SignedData given by digest has no signed attributes, so
	// its signature is over the content itself, which only data can verify (422).
	CodeContentRequired refusal.Code = "crypto_content_required"
	// CodeCertUntrusted: the certificate does not chain to a configured root or has the wrong
	// key usage (422).
	CodeCertUntrusted refusal.Code = "crypto_cert_untrusted"
	// CodeCertExpired: the certificate (or a CA of its chain) is expired or not yet valid (422).
	CodeCertExpired refusal.Code = "crypto_cert_expired"
	// CodeCertRevoked: a certificate of the chain is revoked by its issuer's CRL (422).
	CodeCertRevoked refusal.Code = "crypto_cert_revoked"
	// CodeRevocationUnavailable: revocation cannot be checked now (stale or bad CRL): fail
	// closed (503).
	CodeRevocationUnavailable refusal.Code = "crypto_revocation_unavailable"
	// CodeKeyUnavailable: the vault key cannot be used now (token gone, vault closing) (503).
	CodeKeyUnavailable refusal.Code = "crypto_key_unavailable"
	// CodeAuditUnavailable: the audit entry could not be written; the result is withheld (503).
	CodeAuditUnavailable refusal.Code = "crypto_audit_unavailable"
	// CodeReplayUnavailable: a signed request's freshness cannot be checked now (the nonce
	// store does not answer): fail closed (503).
	CodeReplayUnavailable refusal.Code = "crypto_replay_unavailable"
	// CodeInternal: an unexpected failure (500).
	CodeInternal refusal.Code = "crypto_internal_error"
)

// HeaderCode repeats the refusal code of every refusal in a response header.
const HeaderCode = "Gm-Crypto-Code"

var refusals = refusal.NewCatalog("cryptosvc", CodeInternal, HeaderCode,
	refusal.Def{Code: CodeUnauthenticated, Status: http.StatusUnauthorized, Message: "caller is not authenticated"},
	refusal.Def{Code: CodeForbidden, Status: http.StatusForbidden, Message: "operation not allowed for this caller and key"},
	refusal.Def{Code: CodeUnknownOperation, Status: http.StatusNotFound, Message: "unknown operation"},
	refusal.Def{Code: CodeUnknownKey, Status: http.StatusNotFound, Message: "unknown key or key version"},
	refusal.Def{Code: CodeWrongKeyType, Status: http.StatusBadRequest, Message: "the key cannot perform this operation"},
	refusal.Def{Code: CodeMalformed, Status: http.StatusBadRequest, Message: "request is malformed"},
	refusal.Def{Code: CodeTooLarge, Status: http.StatusRequestEntityTooLarge, Message: "request is too large"},
	refusal.Def{Code: CodeBadCiphertext, Status: http.StatusBadRequest, Message: "ciphertext cannot be opened"},
	refusal.Def{Code: CodeVersionRetired, Status: http.StatusForbidden, Message: "key version is below the allowed minimum"},
	refusal.Def{Code: CodeBadSignature, Status: http.StatusUnprocessableEntity, Message: "signature verification failed"},
	refusal.Def{Code: CodeContentRequired, Status: http.StatusUnprocessableEntity, Message: "this message can only be verified with its content"},
	refusal.Def{Code: CodeCertUntrusted, Status: http.StatusUnprocessableEntity, Message: "certificate is not trusted"},
	refusal.Def{Code: CodeCertExpired, Status: http.StatusUnprocessableEntity, Message: "certificate is expired or not yet valid"},
	refusal.Def{Code: CodeCertRevoked, Status: http.StatusUnprocessableEntity, Message: "certificate is revoked"},
	refusal.Def{Code: CodeRevocationUnavailable, Status: http.StatusServiceUnavailable, Message: "certificate revocation cannot be checked now"},
	refusal.Def{Code: CodeKeyUnavailable, Status: http.StatusServiceUnavailable, Message: "the key is unavailable now; try again later"},
	refusal.Def{Code: CodeAuditUnavailable, Status: http.StatusServiceUnavailable, Message: "the operation cannot be recorded now; try again later"},
	refusal.Def{Code: CodeReplayUnavailable, Status: http.StatusServiceUnavailable, Message: "request freshness cannot be verified now; try again later"},
	refusal.Def{Code: CodeInternal, Status: http.StatusInternalServerError, Message: "internal error"},
)

// Codes returns every refusal code of the crypto service, in a stable order.
func Codes() []refusal.Code { return refusals.Codes() }

// CodeOf maps an error of this package to its code (refusal.OK for nil, CodeInternal for an
// error without a code of this catalog).
func CodeOf(err error) refusal.Code { return refusals.Of(err) }

// WriteError writes the refusal for c (status, JSON body {"code","message"}, no-store, nosniff,
// the Gm-Crypto-Code header). Nothing from the underlying error is ever written.
func WriteError(w http.ResponseWriter, c refusal.Code) { refusals.Write(w, c) }

func fail(c refusal.Code, cause error) error {
	if cause == nil {
		cause = errorString(string(c))
	}
	return refusal.Wrap(c, cause)
}

type errorString string

func (e errorString) Error() string { return string(e) }
