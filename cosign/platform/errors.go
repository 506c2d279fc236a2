package platform

import (
	"errors"
	"net/http"

	"github.com/gmgate/gmgate/refusal"
)

// Refusal codes of gm_cosign (catalog "cosign"; disjoint from gm_verify's and gm_channel's).
const (
	CodeMalformedRequest refusal.Code = "cosign_malformed_request"
	CodeUnauthenticated  refusal.Code = "cosign_unauthenticated"
	CodeWrongTerminal    refusal.Code = "cosign_wrong_terminal"
	CodeLocked           refusal.Code = "cosign_locked"
	CodeRateLimited      refusal.Code = "cosign_rate_limited"
	CodeInvalidPoint     refusal.Code = "cosign_invalid_point"
	CodeInvalidScalar    refusal.Code = "cosign_invalid_scalar"
	CodeReusedPoint      refusal.Code = "cosign_reused_point"
	CodeUnknownKey       refusal.Code = "cosign_unknown_key"
	CodeKeyExists        refusal.Code = "cosign_key_exists"
	CodeBindingMismatch  refusal.Code = "cosign_binding_mismatch"
	CodeRotationPending  refusal.Code = "cosign_rotation_pending"
	CodeRotationUnknown  refusal.Code = "cosign_rotation_unknown"
	CodeRotationMismatch refusal.Code = "cosign_rotation_mismatch"
	CodeCertRevoked      refusal.Code = "cosign_cert_revoked"
	CodeCertExpired      refusal.Code = "cosign_cert_expired"
	CodeUnavailable      refusal.Code = "cosign_unavailable"
	CodeInternal         refusal.Code = "cosign_internal"
)

// Refusals is gm_cosign's code catalog.
var Refusals = refusal.NewCatalog("cosign", CodeInternal, "",
	refusal.Def{Code: CodeMalformedRequest, Status: http.StatusBadRequest, Message: "co-operation request is malformed"},
	refusal.Def{Code: CodeUnauthenticated, Status: http.StatusUnauthorized, Message: "terminal session is not authenticated"},
	refusal.Def{Code: CodeWrongTerminal, Status: http.StatusForbidden, Message: "terminal session is not for this key"},
	refusal.Def{Code: CodeLocked, Status: http.StatusLocked, Message: "key is locked after repeated failures"},
	refusal.Def{Code: CodeRateLimited, Status: http.StatusTooManyRequests, Message: "too many co-operations for this key"},
	refusal.Def{Code: CodeInvalidPoint, Status: http.StatusBadRequest, Message: "point is not a valid SM2 point"},
	refusal.Def{Code: CodeInvalidScalar, Status: http.StatusBadRequest, Message: "scalar is malformed or out of range"},
	refusal.Def{Code: CodeReusedPoint, Status: http.StatusConflict, Message: "ephemeral point was already used"},
	refusal.Def{Code: CodeUnknownKey, Status: http.StatusNotFound, Message: "key is unknown"},
	refusal.Def{Code: CodeKeyExists, Status: http.StatusConflict, Message: "key already exists"},
	refusal.Def{Code: CodeBindingMismatch, Status: http.StatusBadRequest, Message: "digest is not of the payment instruction"},
	refusal.Def{Code: CodeRotationPending, Status: http.StatusConflict, Message: "a rotation of this key is already pending"},
	refusal.Def{Code: CodeRotationUnknown, Status: http.StatusConflict, Message: "no such pending rotation (expired or already confirmed)"},
	refusal.Def{Code: CodeRotationMismatch, Status: http.StatusBadRequest, Message: "request does not match the pending rotation"},
	refusal.Def{Code: CodeCertRevoked, Status: http.StatusForbidden, Message: "the key's certificate is revoked"},
	refusal.Def{Code: CodeCertExpired, Status: http.StatusForbidden, Message: "the key's certificate is expired or not yet valid"},
	refusal.Def{Code: CodeUnavailable, Status: http.StatusServiceUnavailable, Message: "co-operation is unavailable now"},
	refusal.Def{Code: CodeInternal, Status: http.StatusInternalServerError, Message: "internal error"},
)

// ErrCertRevoked and ErrCertExpired are what Config.CertStatus wraps to refuse a key whose
// certificate is revoked, or expired / not yet valid.
var (
	ErrCertRevoked = errors.New("cosign: the key's certificate is revoked")
	ErrCertExpired = errors.New("cosign: the key's certificate is expired or not yet valid")
)

// certRefusal maps a CertStatus error to its refusal; anything unknown fails closed.
func certRefusal(err error) error {
	switch {
	case errors.Is(err, ErrCertRevoked):
		return refuse(CodeCertRevoked, err)
	case errors.Is(err, ErrCertExpired):
		return refuse(CodeCertExpired, err)
	}
	return refuse(CodeUnavailable, err)
}

func refuse(c refusal.Code, cause error) error { return &refusal.Error{Code: c, Cause: cause} }
