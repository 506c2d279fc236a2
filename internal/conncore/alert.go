// Package conncore is the connection core that tlcp.Conn and tls13sm.Conn share and that does
// not depend on the protocol: the alert error type, the run-once handshake with its timeout and
// interruption, the application-data Read and Write loops, close_notify, Close and the flush of
// a buffered handshake flight. Record formats and protection, the handshake state machines and
// which alert a failure sends stay in each protocol package; the record-level plumbing
// (read-ahead buffer, handshake reassembly) is in internal/recordio.
package conncore

import (
	"errors"
	"strconv"
)

// Code is a protocol's alert description type (tlcp.Alert, tls13sm.Alert).
type Code interface {
	~uint8
	String() string
}

// Protocol names a protocol in error messages ("tlcp", "tls13sm"). Each protocol package
// implements it with an empty unexported type used only as a type argument.
type Protocol interface {
	Name() string
}

// AlertError is the error for a failed connection: Alert was sent to the peer (Remote false)
// or received from it (Remote true). Err, if set, is the local cause. Each protocol exports it
// as its AlertError (an alias of AlertError[its Alert, its Protocol]).
type AlertError[A Code, P Protocol] struct {
	Alert  A
	Remote bool
	Err    error
}

// Error implements error.
func (e *AlertError[A, P]) Error() string {
	var p P
	if e.Remote {
		return p.Name() + ": remote error: " + e.Alert.String()
	}
	if e.Err != nil {
		return p.Name() + ": " + e.Err.Error() + " (sent alert: " + e.Alert.String() + ")"
	}
	return p.Name() + ": local error: " + e.Alert.String()
}

// Unwrap returns the local cause.
func (e *AlertError[A, P]) Unwrap() error { return e.Err }

// AlertOf extracts the alert of an error of the protocol, or (0, false).
func AlertOf[A Code, P Protocol](err error) (A, bool) {
	var ae *AlertError[A, P]
	if errors.As(err, &ae) {
		return ae.Alert, true
	}
	return 0, false
}

// NewAlert makes a local alert error with a cause.
func NewAlert[A Code, P Protocol](a A, msg string) error {
	return &AlertError[A, P]{Alert: a, Err: errors.New(msg)}
}

// WrapAlert makes a local alert error with the cause err.
func WrapAlert[A Code, P Protocol](a A, err error) error {
	return &AlertError[A, P]{Alert: a, Err: err}
}

// KeyAlert is the alert for a failed operation with the local party's own key: internalError
// when the key reports the failure as its own (Unavailable() true, as the key vault does when
// its token is gone), so the peer is not blamed; otherwise a, the alert for bad peer input.
func KeyAlert[A Code, P Protocol](a, internalError A, err error) error {
	var u interface{ Unavailable() bool }
	if errors.As(err, &u) && u.Unavailable() {
		return WrapAlert[A, P](internalError, err)
	}
	return WrapAlert[A, P](a, err)
}

// AlertName is the name of a in names, or "alert(N)".
func AlertName[A Code](names map[A]string, a A) string {
	if s, ok := names[a]; ok {
		return s
	}
	return "alert(" + strconv.Itoa(int(a)) + ")"
}
