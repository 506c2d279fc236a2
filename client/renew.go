package client

import (
	"context"
	"crypto"
	"errors"
	"sync"
	"time"
)

// Renewer keeps a terminal's pair current, like certmagic does for web certificates: it
// renews before expiry through an Enroller, checks the new pair (Check, e.g. a test payment),
// and only then makes it current (OnRenew persists it). Until the new pair works the old one
// stays current, so a failed renewal never leaves the terminal without a working pair. A
// certificate renews only once at the server: a pair issued but not yet accepted by Check is
// kept (pending) and checked again rather than renewed again; persist it with OnIssued, or a
// restart between issuance and acceptance needs a new enrolment token.
//
// The renewed pair's signing key is NewKey's; by default a software key (*sm2.PrivateKey) is
// replaced by a fresh one and any other key (a collaborative CoSigner, a vault key) is renewed
// for the same public key (Enroller.Reenroll): a joint key keeps its public key across
// renewals, and its shares are refreshed by CoSigner.Rotate instead.
type Renewer struct {
	// Enroller talks to gm_enroll. Required.
	Enroller *Enroller
	// NewKey, when set, returns the signing key the renewed pair is issued for (e.g. a new
	// collaborative key from EnrollCoSigner, for a re-key). It must be able to enrol (a
	// crypto.Decrypter too). Called once per issuance; nil: Enroller.Reenroll's choice.
	NewKey func(ctx context.Context, cur *EnrolledPair) (crypto.Signer, error)
	// RenewBefore is how long before NotAfter renewal starts. Default: a third of the
	// certificate's lifetime.
	RenewBefore time.Duration
	// Check, when set, must accept the new pair before it becomes current (a payment through
	// gm_verify with it, say). An error keeps the old pair and retries later.
	Check func(ctx context.Context, p *EnrolledPair) error
	// OnIssued, when set, is called with a renewed pair as soon as it is issued, before Check
	// (store it as pending). An error is reported through OnError.
	OnIssued func(p *EnrolledPair) error
	// OnRenew is called with the new pair once it is current (store it). An error is
	// reported through OnError; the pair stays current.
	OnRenew func(p *EnrolledPair) error
	// OnError receives renewal failures. Optional.
	OnError func(error)
	// OverTLCP renews through Enroller.ReenrollTLCP (authorised by the current pair as TLCP
	// client certificates) instead of a signed request. Default false.
	OverTLCP bool
	// RetryInterval is the wait after a failed attempt. Default 1 minute.
	RetryInterval time.Duration

	mu      sync.Mutex
	current *EnrolledPair
	pending *EnrolledPair // issued but not yet checked: retried before asking for another
}

// ErrNoPair reports a Renewer without a current pair.
var ErrNoPair = errors.New("client: renewer has no pair")

// SetPending sets a renewed pair that was issued but not yet accepted (loaded from storage
// after a restart): the next RenewIfDue checks it instead of renewing again.
func (r *Renewer) SetPending(p *EnrolledPair) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pending = p
}

// SetCurrent sets the pair in use (after Enroll, or loaded from storage).
func (r *Renewer) SetCurrent(p *EnrolledPair) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.current, r.pending = p, nil
}

// Current returns the pair in use.
func (r *Renewer) Current() *EnrolledPair {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.current
}

func (r *Renewer) now() time.Time { return r.Enroller.now() }

// Due reports whether the current pair should be renewed now, and when it will be otherwise.
func (r *Renewer) Due() (bool, time.Time) {
	p := r.Current()
	if p == nil {
		return false, time.Time{}
	}
	c := p.Sign.Certificate
	before := r.RenewBefore
	if before <= 0 {
		before = c.NotAfter.Sub(c.NotBefore) / 3
	}
	at := c.NotAfter.Add(-before)
	return !r.now().Before(at), at
}

// RenewIfDue renews when due. It returns whether the current pair changed.
func (r *Renewer) RenewIfDue(ctx context.Context) (bool, error) {
	due, _ := r.Due()
	if !due {
		return false, nil
	}
	r.mu.Lock()
	cur, next := r.current, r.pending
	r.mu.Unlock()
	if cur == nil {
		return false, ErrNoPair
	}
	if next == nil {
		var key crypto.Signer
		if r.NewKey != nil {
			k, err := r.NewKey(ctx, cur)
			if err != nil {
				return false, err
			}
			key = k
		}
		var err error
		if r.OverTLCP {
			next, err = r.Enroller.ReenrollTLCP(ctx, cur, key)
		} else {
			next, err = r.Enroller.ReenrollKey(ctx, cur, key)
		}
		if err != nil {
			return false, err
		}
		// A certificate renews once: keep the new pair even if its check fails, and check
		// it again next time instead of asking for another.
		r.mu.Lock()
		r.pending = next
		r.mu.Unlock()
		if r.OnIssued != nil {
			if err := r.OnIssued(next); err != nil && r.OnError != nil {
				r.OnError(err)
			}
		}
	}
	if r.Check != nil {
		if err := r.Check(ctx, next); err != nil {
			return false, err
		}
	}
	r.mu.Lock()
	r.current, r.pending = next, nil
	r.mu.Unlock()
	if r.OnRenew != nil {
		if err := r.OnRenew(next); err != nil && r.OnError != nil {
			r.OnError(err)
		}
	}
	return true, nil
}

// Run renews whenever due until ctx ends.
func (r *Renewer) Run(ctx context.Context) {
	retry := r.RetryInterval
	if retry <= 0 {
		retry = time.Minute
	}
	for {
		wait := retry
		if _, err := r.RenewIfDue(ctx); err != nil {
			if r.OnError != nil {
				r.OnError(err)
			}
		} else if _, at := r.Due(); !at.IsZero() {
			if d := at.Sub(r.now()); d > 0 {
				wait = d
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}
