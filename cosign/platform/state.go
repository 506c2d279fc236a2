package platform

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/emmansun/gmsm/sm3"
	"github.com/redis/go-redis/v9"
)

// The abuse-control state of a key (token bucket, consecutive-failure counter and lockout, the
// freshness guard's remembered points) lives either in this process (the default: one gmgate
// instance) or in Redis, shared by every instance (Config.Shared): then a terminal, or a thief
// holding d_1 and a session, who spreads requests over N instances gets the rate of one, the
// failures it makes on one count on all, and a Q_1 used on one is refused by all.

// limits is where the per-key rate limit and lockout live.
type limits interface {
	// admit checks the lockout and takes one request from the key's rate.
	admit(ctx context.Context, keyID string, now time.Time) (verdict, error)
	// fail counts a failure; the max_failures-th consecutive one locks the key.
	fail(ctx context.Context, keyID string, now time.Time) error
	// succeed resets the key's failure count.
	succeed(ctx context.Context, keyID string) error
}

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
const DefaultRedisTimeout = 250 * time.Millisecond

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
	if len(p) > 128 || strings.ContainsAny(p, "{}") {
		return nil, errors.New("cosign: redis prefix: at most 128 bytes, no '{' or '}'")
	}
	to := opts.Timeout
	if to <= 0 {
		to = DefaultRedisTimeout
	}
	return &SharedState{c: opts.Client, prefix: p, timeout: to, points: opts.Points}, nil
}

// keys returns the Redis keys of keyID's lock, rate (theoretical arrival time) and failure
// count: one hash tag, so one Cluster slot.
func (s *SharedState) keys(keyID string) []string {
	h := sm3.Sum([]byte(keyID))
	tag := s.prefix + "{" + hex.EncodeToString(h[:16]) + "}:"
	return []string{tag + "lock", tag + "rate", tag + "fail"}
}

// admitScript: the lockout, then a GCRA rate limit (equivalent to a token bucket of burst
// tokens refilled every interval) on Redis's own clock, so instances with skewed clocks agree.
// KEYS: lock, rate; ARGV: interval (µs), burst. Returns 0 admitted, 1 locked, 2 rate limited.
var admitScript = redis.NewScript(`
local l = redis.call('PTTL', KEYS[1])
if l > 0 or l == -1 then return 1 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local iv = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[2]) or '0')
if tat < now then tat = now end
local nt = tat + iv
if nt - now > iv * tonumber(ARGV[2]) then return 2 end
redis.call('SET', KEYS[2], string.format('%.0f', nt), 'PX', math.floor((nt - now) / 1000) + 1)
return 0
`)

// failScript counts a failure; the max-th consecutive one sets the lock for the lockout and
// clears the count. KEYS: lock, fail; ARGV: max, lockout (ms), count lifetime (ms).
var failScript = redis.NewScript(`
local n = redis.call('INCR', KEYS[2])
if n >= tonumber(ARGV[1]) then
  redis.call('DEL', KEYS[2])
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[2])
  return 1
end
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 0
`)

// failureMemory is how long the shared failure count of a key survives without a new failure.
const failureMemory = 24 * time.Hour

// redisLimits is limits over SharedState, with the service's parameters.
type redisLimits struct {
	s           *SharedState
	interval    time.Duration
	burst       int
	maxFailures int
	lockout     time.Duration
}

func (l *redisLimits) admit(ctx context.Context, keyID string, _ time.Time) (verdict, error) {
	ctx, cancel := context.WithTimeout(ctx, l.s.timeout)
	defer cancel()
	k := l.s.keys(keyID)
	v, err := admitScript.Run(ctx, l.s.c, k[:2], l.interval.Microseconds(), l.burst).Int()
	if err != nil {
		return allowed, fmt.Errorf("cosign: shared rate limit: %w", err)
	}
	switch v {
	case 0:
		return allowed, nil
	case 1:
		return locked, nil
	case 2:
		return rateLimited, nil
	}
	return allowed, errors.New("cosign: shared rate limit: unexpected reply")
}

func (l *redisLimits) fail(ctx context.Context, keyID string, _ time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, l.s.timeout)
	defer cancel()
	k := l.s.keys(keyID)
	err := failScript.Run(ctx, l.s.c, []string{k[0], k[2]}, l.maxFailures, l.lockout.Milliseconds(), failureMemory.Milliseconds()).Err()
	if err != nil {
		return fmt.Errorf("cosign: shared failure count: %w", err)
	}
	return nil
}

func (l *redisLimits) succeed(ctx context.Context, keyID string) error {
	ctx, cancel := context.WithTimeout(ctx, l.s.timeout)
	defer cancel()
	if err := l.s.c.Del(ctx, l.s.keys(keyID)[2]).Err(); err != nil {
		return fmt.Errorf("cosign: shared failure count: %w", err)
	}
	return nil
}

// memoryLimits is limits in this process (the guard).
type memoryLimits struct{ g *guard }

func (m memoryLimits) admit(_ context.Context, keyID string, now time.Time) (verdict, error) {
	return m.g.admit(keyID, now), nil
}

func (m memoryLimits) fail(_ context.Context, keyID string, now time.Time) error {
	m.g.fail(keyID, now)
	return nil
}

func (m memoryLimits) succeed(_ context.Context, keyID string) error {
	m.g.succeed(keyID)
	return nil
}
