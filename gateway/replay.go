package gateway

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/emmansun/gmsm/sm3"
)

// Replay-protection errors. Callers test them with errors.Is; the wrapped
// cause (if any) is for logs and never reaches the client.
var (
	// ErrReplay means the (key ID, nonce) pair was already used inside the window.
	ErrReplay = errors.New("gateway: replayed nonce")
	// ErrReplayStoreUnavailable means the nonce store could not be reached or
	// answered with an error; the request cannot be proven fresh.
	ErrReplayStoreUnavailable = errors.New("gateway: replay store unavailable")
	// ErrReplayStoreFull means the in-memory store holds its maximum number of
	// live nonces. The store refuses new nonces rather than evicting live ones
	// (evicting would reopen a replay window). ErrReplayStoreFull is never
	// turned into an acceptance by ReplayGuard.FailOpen.
	ErrReplayStoreFull = errors.New("gateway: replay store full")
	// ErrTimestampOutOfWindow means the signed timestamp is too old or too far
	// in the future.
	ErrTimestampOutOfWindow = errors.New("gateway: timestamp out of window")
	// ErrNonceInvalid means the nonce or key ID is empty or longer than allowed.
	ErrNonceInvalid = errors.New("gateway: nonce missing or too long")
)

// Bounds applied by ReplayGuard before a nonce reaches a store.
const (
	// MaxNonceLen is the longest nonce accepted, in bytes.
	MaxNonceLen = 256
	// MaxKeyIDLen is the longest key ID accepted, in bytes.
	MaxKeyIDLen = 1024
	// DefaultReplayWindow is the default accepted clock difference.
	DefaultReplayWindow = 5 * time.Minute
)

// ReplayStore remembers nonces for a window. CheckAndStore returns ErrReplay
// when (keyID, nonce) was stored before and has not expired, otherwise stores
// it for ttl and returns nil. Implementations return errors wrapping
// ErrReplayStoreUnavailable (or ErrReplayStoreFull) when they cannot decide.
// Implementations must be safe for concurrent use.
type ReplayStore interface {
	CheckAndStore(ctx context.Context, keyID, nonce string, ttl time.Duration) error
	Close() error
}

// ReplayGuard checks the timestamp window and the nonce of a request.
// The zero value of every field except Store has a safe default.
type ReplayGuard struct {
	// Store remembers nonces. Required.
	Store ReplayStore
	// Window is the accepted difference between the signed timestamp and the
	// gateway clock, in both directions. Default DefaultReplayWindow (5m).
	Window time.Duration
	// FailOpen accepts requests (after the timestamp check) when the store is
	// unavailable. Default false: fail closed. It never applies to
	// ErrReplayStoreFull.
	FailOpen bool
	// ClockSkew is the tolerance between the signer's clock and the gateway's when a message
	// states its own expiry (http-sig-sm2 "expires"), and between the clocks of the gateway
	// instances (and the store) sharing the nonces: a nonce is kept 2 × Window + ClockSkew.
	// Default DefaultClockSkew (30s).
	ClockSkew time.Duration
	// MinRetention, when set, returns a lower bound of how long a nonce is kept: the longest
	// retention of the guards sharing the store. A guard with a shorter window would otherwise
	// forget a nonce while a guard with a longer window still accepts its timestamp, and a
	// signature that does not name the site (form-sm2 and unionpay-sm2 sign no path,
	// wechatpay-v3-sm2 no host) would be accepted there once more. Default: none.
	MinRetention func() time.Duration
	// Now returns the current time. Default time.Now.
	Now func() time.Time
	// OnStoreError, if set, is called with every store error (including those
	// swallowed by FailOpen), for metrics and logs.
	OnStoreError func(error)
}

// DefaultClockSkew is the default ReplayGuard.ClockSkew.
const DefaultClockSkew = 30 * time.Second

// CheckExpiry refuses a message whose signed expiry (zero: none) has passed by more than
// ClockSkew (ErrTimestampOutOfWindow). The Verifier calls it before the nonce is consumed.
func (g *ReplayGuard) CheckExpiry(expires time.Time) error {
	if expires.IsZero() {
		return nil
	}
	now := time.Now
	if g.Now != nil {
		now = g.Now
	}
	skew := g.ClockSkew
	if skew <= 0 {
		skew = DefaultClockSkew
	}
	if now().After(expires.Add(skew)) {
		return fmt.Errorf("%w: signature expired", ErrTimestampOutOfWindow)
	}
	return nil
}

// retention is how long a nonce is remembered: 2 × Window + ClockSkew.
func (g *ReplayGuard) retention() time.Duration {
	skew := g.ClockSkew
	if skew <= 0 {
		skew = DefaultClockSkew
	}
	r := 2*g.window() + skew
	if g.MinRetention != nil {
		r = max(r, g.MinRetention())
	}
	return r
}

func (g *ReplayGuard) window() time.Duration {
	if g.Window > 0 {
		return g.Window
	}
	return DefaultReplayWindow
}

// Check verifies that ts lies within Window of the current time and that
// (keyID, nonce) has not been seen within the window. It returns nil,
// ErrTimestampOutOfWindow, ErrNonceInvalid, ErrReplay, ErrReplayStoreFull or an
// error wrapping ErrReplayStoreUnavailable.
//
// Nonces are remembered for twice the window plus ClockSkew: a timestamp
// accepted now stays acceptable until ts+Window, which is at most now+2*Window
// (inclusive: the nonce must outlive that instant), and an instance sharing the
// store whose clock is behind this one keeps accepting it for as long as the
// clocks differ.
func (g *ReplayGuard) Check(ctx context.Context, keyID, nonce string, ts time.Time) error {
	if len(nonce) == 0 || len(nonce) > MaxNonceLen || len(keyID) > MaxKeyIDLen {
		return ErrNonceInvalid
	}
	now := time.Now
	if g.Now != nil {
		now = g.Now
	}
	w := g.window()
	t := now()
	if ts.Before(t.Add(-w)) || ts.After(t.Add(w)) {
		return ErrTimestampOutOfWindow
	}
	if g.Store == nil {
		return fmt.Errorf("%w: no store configured", ErrReplayStoreUnavailable)
	}
	err := g.Store.CheckAndStore(ctx, keyID, nonce, g.retention())
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrReplay):
		return ErrReplay
	}
	if g.OnStoreError != nil {
		g.OnStoreError(err)
	}
	if errors.Is(err, ErrReplayStoreFull) {
		return err
	}
	if g.FailOpen {
		return nil
	}
	if !errors.Is(err, ErrReplayStoreUnavailable) {
		err = fmt.Errorf("%w: %w", ErrReplayStoreUnavailable, err)
	}
	return err
}

// nonceDigest binds keyID and nonce into a fixed-size, unambiguous digest:
// SM3("gmgate-replay-v1" || u32be(len(keyID)) || keyID || nonce).
func nonceDigest(keyID, nonce string) [sm3.Size]byte {
	h := sm3.New()
	var l [4]byte
	binary.BigEndian.PutUint32(l[:], uint32(len(keyID)))
	h.Write([]byte("gmgate-replay-v1"))
	h.Write(l[:])
	h.Write([]byte(keyID))
	h.Write([]byte(nonce))
	var out [sm3.Size]byte
	h.Sum(out[:0])
	return out
}
