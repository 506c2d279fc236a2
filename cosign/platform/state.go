package platform

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gmgate/gmgate/internal/abuse"
)

// The abuse-control state of a key (token bucket, consecutive-failure counter and lockout, the
// freshness guard's remembered points) lives either in this process (the default: one gmgate
// instance) or in Redis, shared by every instance (Config.Shared): then a terminal, or a thief
// holding d_1 and a session, who spreads requests over N instances gets the rate of one, the
// failures it makes on one count on all, and a Q_1 used on one is refused by all.

// PointStore remembers the terminals' ephemeral points (Q_1, T_1) for every instance: the
// replay store gm_verify uses (gateway.RedisReplayStore, SET NX with expiry). CheckAndStore
// records nonce for keyID for ttl and returns an error wrapping cosign.ErrReused when it was
// already recorded; any other error means the store is unavailable (the request is refused).
type PointStore interface {
	CheckAndStore(ctx context.Context, keyID, nonce string, ttl time.Duration) error
}

// DefaultRedisPrefix prefixes gm_cosign's Redis keys.
const DefaultRedisPrefix = "gmgate:cosign:"

// DefaultRedisTimeout bounds one round trip of the shared state.
const DefaultRedisTimeout = abuse.DefaultRedisTimeout

// SharedState is the abuse-control state in Redis (NewSharedState).
type SharedState struct {
	c       redis.UniversalClient
	prefix  string
	timeout time.Duration
	points  PointStore
}

// SharedStateOptions configures NewSharedState.
type SharedStateOptions struct {
	// Client is the Redis client (gateway.RedisConfig.NewClient: one server, Sentinel or
	// Cluster). Required.
	Client redis.UniversalClient
	// Prefix is prepended to every key (default DefaultRedisPrefix). The keys of one terminal
	// key share a hash tag after it (one Cluster slot: the rate and lockout scripts touch them
	// together), so it must not contain '{' or '}' itself.
	Prefix string
	// Timeout bounds each round trip (default DefaultRedisTimeout).
	Timeout time.Duration
	// Points is the shared freshness guard (required): gm_verify's Redis replay store over the
	// same deployment, with its own prefix.
	Points PointStore
}

// NewSharedState validates opts; it does not contact Redis.
func NewSharedState(opts SharedStateOptions) (*SharedState, error) {
	if opts.Client == nil || opts.Points == nil {
		return nil, errors.New("cosign: shared state needs a Redis client and a point store")
	}
	p := opts.Prefix
	if p == "" {
		p = DefaultRedisPrefix
	}
	if err := (abuse.RedisStore{Client: opts.Client, Prefix: p}).Check(); err != nil {
		return nil, fmt.Errorf("cosign: %w", err)
	}
	to := opts.Timeout
	if to <= 0 {
		to = DefaultRedisTimeout
	}
	return &SharedState{c: opts.Client, prefix: p, timeout: to, points: opts.Points}, nil
}

// limits returns the shared rate limit and lockout with cfg's parameters: package abuse's
// Redis scripts under the state's prefix (the keys of one terminal key share a hash tag).
func (s *SharedState) limits(cfg *Config) (abuse.Limiter, error) {
	return abuse.NewRedis(abuse.RedisStore{Client: s.c, Prefix: s.prefix, Timeout: s.timeout},
		abuse.Limits{RatePerMinute: cfg.RatePerMinute, Burst: cfg.Burst, MaxFailures: cfg.MaxFailures, Lockout: cfg.Lockout})
}
