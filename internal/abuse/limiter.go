package abuse

import (
	"context"
	"time"
)

// Limiter is a per-key rate limit and lockout: Guard (this process) or Redis (every instance).
// An error means the state is unavailable: the caller refuses the request (fails closed) and
// never lets it through unchecked.
type Limiter interface {
	// Admit checks key's lockout and takes one request from its rate.
	Admit(ctx context.Context, key string, now time.Time) (Verdict, error)
	// Locked reports whether key is locked out now, taking nothing from its rate.
	Locked(ctx context.Context, key string, now time.Time) (bool, error)
	// Fail counts a failure of key; the MaxFailures-th consecutive one locks key for Lockout.
	// It reports whether this failure locked the key.
	Fail(ctx context.Context, key string, now time.Time) (bool, error)
	// Succeed resets key's failure count.
	Succeed(ctx context.Context, key string) error
}

// Verdict is what Admit decides.
type Verdict int

// Verdicts.
const (
	// Allowed: the request may go on.
	Allowed Verdict = iota
	// RateLimited: the key's rate is used up.
	RateLimited
	// Locked: the key is locked out after MaxFailures consecutive failures.
	Locked
	// Full: a Guard tracks as many keys as it may and none is idle (fails closed).
	Full
)

// String returns the verdict's name.
func (v Verdict) String() string {
	switch v {
	case Allowed:
		return "allowed"
	case RateLimited:
		return "rate_limited"
	case Locked:
		return "locked"
	case Full:
		return "full"
	}
	return "unknown"
}

// Limits are a limiter's parameters.
type Limits struct {
	// RatePerMinute and Burst: the sustained requests per key and minute, and the bucket size.
	RatePerMinute, Burst int
	// MaxFailures consecutive failures lock a key for Lockout (MaxFailures < 1: never).
	MaxFailures int
	Lockout     time.Duration
	// MaxKeys bounds the keys a Guard tracks (Redis: its memory bounds them).
	MaxKeys int
}

var (
	_ Limiter = (*Guard)(nil)
	_ Limiter = (*Redis)(nil)
)
