package keyvault

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"
)

// Unavailable separates the vault's own failures (callers answer 503 / internal_error) from
// failures caused by the data they were given.
func TestOpErrorUnavailable(t *testing.T) {
	for _, tc := range []struct {
		kind error
		want bool
	}{
		{ErrTokenUnavailable, true}, {ErrPoolTimeout, true}, {ErrClosed, true}, {ErrKeyNotFound, true},
		{ErrToken, true}, {ErrModuleLoad, true}, {ErrBadPIN, true},
		{ErrInvalidInput, false}, {ErrAuthFailed, false}, {ErrWrongKeyType, false}, {ErrUnsupported, false},
		{ErrVersionRetired, false}, {ErrConfig, false}, {nil, false},
	} {
		e := &OpError{Op: "decrypt", Key: "k", Kind: tc.kind}
		if got := e.Unavailable(); got != tc.want {
			t.Errorf("%v: Unavailable() = %v, want %v", tc.kind, got, tc.want)
		}
		wrapped := fmt.Errorf("outer: %w", e)
		var u interface{ Unavailable() bool }
		if got := asUnavailable(wrapped, &u); got != tc.want {
			t.Errorf("%v wrapped: %v, want %v", tc.kind, got, tc.want)
		}
	}
}

func asUnavailable(err error, u *interface{ Unavailable() bool }) bool {
	return errors.As(err, u) && (*u).Unavailable()
}

// ErrorKinds is exactly the set ErrorKind returns: each sentinel maps to its own listed label,
// and a foreign error to the last one.
func TestErrorKinds(t *testing.T) {
	kinds := ErrorKinds()
	listed := map[string]bool{}
	for _, k := range kinds {
		if listed[k] {
			t.Fatalf("kind %q listed twice", k)
		}
		listed[k] = true
	}
	if len(kinds) != len(errorKinds)+1 || kinds[len(kinds)-1] != ErrorKind(errors.New("foreign")) {
		t.Fatalf("ErrorKinds() = %v", kinds)
	}
	for i, k := range errorKinds {
		if got := ErrorKind(opErr("op", "", "", k.err, nil)); got != kinds[i] {
			t.Errorf("ErrorKind(%v) = %q, ErrorKinds lists %q", k.err, got, kinds[i])
		}
	}
}

func TestDurationJSON(t *testing.T) {
	for _, c := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{`"2s"`, 2 * time.Second, true},
		{`"500ms"`, 500 * time.Millisecond, true},
		{`2000000000`, 2 * time.Second, true},
		{`"2 seconds"`, 0, false},
		{`true`, 0, false},
	} {
		var tc TokenConfig
		err := json.Unmarshal([]byte(`{"borrow_timeout":`+c.in+`}`), &tc)
		if (err == nil) != c.ok || (c.ok && time.Duration(tc.BorrowTimeout) != c.want) {
			t.Errorf("%s: %v %v", c.in, time.Duration(tc.BorrowTimeout), err)
		}
	}
}
