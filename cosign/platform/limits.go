package platform

import (
	"time"

	"github.com/gmgate/gmgate/internal/abuse"
)

// guard is the per-key rate limit and lockout of this process (package abuse, shared with
// gm_enroll): a token bucket and a consecutive-failure counter per key ID, over at most
// maxKeys keys (a new key is refused when every slot is busy: fails closed).
type guard struct{ g *abuse.Guard }

type verdict = abuse.Verdict

const (
	allowed     = abuse.Allowed
	rateLimited = abuse.RateLimited
	locked      = abuse.Locked
	guardFull   = abuse.Full
)

func newGuard(perMinute, burst, maxFailures int, lockout time.Duration, maxKeys int) *guard {
	return &guard{g: abuse.NewGuard(perMinute, burst, maxFailures, lockout, maxKeys)}
}

// admit checks the lockout and takes one token from keyID's bucket.
func (g *guard) admit(keyID string, now time.Time) verdict { return g.g.Admit(keyID, now) }

// fail counts a failure; the maxFailures-th consecutive one locks the key for lockout. It
// reports whether the key is now locked.
func (g *guard) fail(keyID string, now time.Time) bool { return g.g.Fail(keyID, now) }

// succeed resets keyID's failure counter.
func (g *guard) succeed(keyID string) { g.g.Succeed(keyID) }
