package tls13sm

import "github.com/gmgate/gmgate/internal/conncore"

// Alert is a TLS 1.3 alert description (RFC 8446 section 6).
type Alert uint8

// Alert descriptions.
const (
	AlertCloseNotify                  Alert = 0
	AlertUnexpectedMessage            Alert = 10
	AlertBadRecordMAC                 Alert = 20
	AlertRecordOverflow               Alert = 22
	AlertHandshakeFailure             Alert = 40
	AlertBadCertificate               Alert = 42
	AlertUnsupportedCertificate       Alert = 43
	AlertCertificateRevoked           Alert = 44
	AlertCertificateExpired           Alert = 45
	AlertCertificateUnknown           Alert = 46
	AlertIllegalParameter             Alert = 47
	AlertUnknownCA                    Alert = 48
	AlertAccessDenied                 Alert = 49
	AlertDecodeError                  Alert = 50
	AlertDecryptError                 Alert = 51
	AlertProtocolVersion              Alert = 70
	AlertInsufficientSecurity         Alert = 71
	AlertInternalError                Alert = 80
	AlertInappropriateFallback        Alert = 86
	AlertUserCanceled                 Alert = 90
	AlertMissingExtension             Alert = 109
	AlertUnsupportedExtension         Alert = 110
	AlertUnrecognizedName             Alert = 112
	AlertBadCertificateStatusResponse Alert = 113
	AlertUnknownPSKIdentity           Alert = 115
	AlertCertificateRequired          Alert = 116
	AlertNoApplicationProtocol        Alert = 120
)

const (
	alertLevelWarning = 1
	alertLevelError   = 2
)

var alertText = map[Alert]string{
	AlertCloseNotify:                  "close notify",
	AlertUnexpectedMessage:            "unexpected message",
	AlertBadRecordMAC:                 "bad record MAC",
	AlertRecordOverflow:               "record overflow",
	AlertHandshakeFailure:             "handshake failure",
	AlertBadCertificate:               "bad certificate",
	AlertUnsupportedCertificate:       "unsupported certificate",
	AlertCertificateRevoked:           "revoked certificate",
	AlertCertificateExpired:           "expired certificate",
	AlertCertificateUnknown:           "unknown certificate",
	AlertIllegalParameter:             "illegal parameter",
	AlertUnknownCA:                    "unknown certificate authority",
	AlertAccessDenied:                 "access denied",
	AlertDecodeError:                  "error decoding message",
	AlertDecryptError:                 "error decrypting message",
	AlertProtocolVersion:              "protocol version not supported",
	AlertInsufficientSecurity:         "insufficient security level",
	AlertInternalError:                "internal error",
	AlertInappropriateFallback:        "inappropriate fallback",
	AlertUserCanceled:                 "user canceled",
	AlertMissingExtension:             "missing extension",
	AlertUnsupportedExtension:         "unsupported extension",
	AlertUnrecognizedName:             "unrecognized name",
	AlertBadCertificateStatusResponse: "bad certificate status response",
	AlertUnknownPSKIdentity:           "unknown PSK identity",
	AlertCertificateRequired:          "certificate required",
	AlertNoApplicationProtocol:        "no application protocol",
}

// String returns the alert's name.
func (a Alert) String() string { return conncore.AlertName(alertText, a) }

// protocol names tls13sm in alert errors.
type protocol struct{}

// Name returns "tls13sm".
func (protocol) Name() string { return "tls13sm" }

// AlertError is the error for a failed connection: Alert was sent to the
// peer (Remote false) or received from it (Remote true). Err, if set, is
// the local cause. Its Error method reads "tls13sm: remote error: <alert>",
// "tls13sm: <cause> (sent alert: <alert>)" or "tls13sm: local error: <alert>";
// Unwrap returns Err.
type AlertError = conncore.AlertError[Alert, protocol]

// alertOf extracts the alert of an error, or (0,false).
func alertOf(err error) (Alert, bool) { return conncore.AlertOf[Alert, protocol](err) }

// newAlert makes a local alert error with a cause.
func newAlert(a Alert, msg string) error { return conncore.NewAlert[Alert, protocol](a, msg) }

func wrapAlert(a Alert, err error) error { return conncore.WrapAlert[Alert, protocol](a, err) }

// keyAlert is the alert for a failed operation with the local party's own key: internal_error
// when the key reports the failure as its own (Unavailable() true, as the key vault does when
// its token is gone), so the peer is not blamed; otherwise a, the alert for bad peer input.
func keyAlert(a Alert, err error) error {
	return conncore.KeyAlert[Alert, protocol](a, AlertInternalError, err)
}
