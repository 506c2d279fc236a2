package channel

import (
	"sync"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/pki"
)

// certRecheckTTL is how long the outcome of a bank certificate's re-verification is reused
// (the bound, with the CRL check interval, between a revocation and its first refused reply).
const certRecheckTTL = 30 * time.Second

// certRecheck re-verifies configured bank certificates through the channel's pki.Verifier
// (chain to the bank's roots, validity of every certificate of the chain, key usage for role,
// CRLs), caching each outcome for certRecheckTTL.
type certRecheck struct {
	v    *pki.Verifier
	now  func() time.Time
	role pki.Role

	mu   sync.Mutex
	seen map[*smx509.Certificate]recheckResult
}

type recheckResult struct {
	until time.Time
	err   error
}

// check returns nil when c still verifies.
func (r *certRecheck) check(c *smx509.Certificate) error {
	now := r.now()
	r.mu.Lock()
	if res, ok := r.seen[c]; ok && now.Before(res.until) && !now.Before(res.until.Add(-certRecheckTTL)) {
		r.mu.Unlock()
		return res.err
	}
	r.mu.Unlock()
	_, err := r.v.Verify(c, nil, r.role)
	r.mu.Lock()
	if r.seen == nil {
		r.seen = map[*smx509.Certificate]recheckResult{}
	}
	r.seen[c] = recheckResult{until: now.Add(certRecheckTTL), err: err}
	r.mu.Unlock()
	return err
}
