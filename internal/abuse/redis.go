package abuse

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

// DefaultRedisTimeout bounds one round trip of a Redis limiter.
const DefaultRedisTimeout = 250 * time.Millisecond

// MaxRedisPrefixLen bounds RedisStore.Prefix.
const MaxRedisPrefixLen = 128

// RedisStore is where a Redis limiter keeps its state.
type RedisStore struct {
	// Client is the Redis client (gateway.RedisConfig.NewClient: one server, Sentinel or
	// Cluster). Required; the limiter never closes it.
	Client redis.UniversalClient
	// Prefix is prepended to every key (required). The keys of one limited key share a hash
	// tag after it (one Cluster slot: the scripts touch them together), so it must not contain
	// '{' or '}' itself. Two limiters with different parameters need different prefixes.
	Prefix string
	// Timeout bounds each round trip (default DefaultRedisTimeout); the caller's context
	// deadline applies too, whichever is earlier.
	Timeout time.Duration
}

// Check reports what is wrong with s.
func (s RedisStore) Check() error {
	if s.Client == nil {
		return errors.New("abuse: a Redis limiter needs a client")
	}
	if s.Prefix == "" || len(s.Prefix) > MaxRedisPrefixLen || strings.ContainsAny(s.Prefix, "{}") {
		return fmt.Errorf("abuse: redis prefix: 1 to %d bytes, no '{' or '}'", MaxRedisPrefixLen)
	}
	return nil
}

// RoundTrip bounds one round trip to s: ctx with s.Timeout (default DefaultRedisTimeout) or
// ctx's own deadline, whichever is earlier.
func (s RedisStore) RoundTrip(ctx context.Context) (context.Context, context.CancelFunc) {
	d := s.Timeout
	if d <= 0 {
		d = DefaultRedisTimeout
	}
	return context.WithTimeout(ctx, d)
}

// Redis is a Limiter whose state lives in Redis, shared by every instance that uses the same
// store with the same limits: a client spreading requests over N instances gets the rate of
// one, the failures it makes on one count on all, and a lockout reached through one holds on
// all. The rate limit is a GCRA (equivalent to a token bucket of Burst tokens) on Redis's own
// clock, so instances with skewed clocks agree; each operation is one script, atomic.
// It is safe for concurrent use.
type Redis struct {
	s           RedisStore
	interval    time.Duration // one request per interval, sustained
	burst       int
	maxFailures int
	lockout     time.Duration
}

// NewRedis checks s and l and returns the limiter; it does not contact Redis. l.MaxKeys does
// not apply (Redis's memory bounds the keys; idle keys expire).
func NewRedis(s RedisStore, l Limits) (*Redis, error) {
	if err := s.Check(); err != nil {
		return nil, err
	}
	if l.RatePerMinute < 1 || l.Burst < 1 || (l.MaxFailures > 0 && l.Lockout < time.Millisecond) {
		return nil, errors.New("abuse: a Redis limiter needs a rate, a burst and (with max failures) a lockout")
	}
	if s.Timeout <= 0 {
		s.Timeout = DefaultRedisTimeout
	}
	return &Redis{s: s, interval: time.Minute / time.Duration(l.RatePerMinute), burst: l.Burst,
		maxFailures: l.MaxFailures, lockout: l.Lockout}, nil
}

// keys returns the Redis keys of key's lock, rate (theoretical arrival time) and failure
// count: one hash tag (a digest: any key, fixed length), so one Cluster slot.
func (l *Redis) keys(key string) (lock, rate, fail string) {
	h := sm3.Sum([]byte(key))
	tag := l.s.Prefix + "{" + hex.EncodeToString(h[:16]) + "}:"
	return tag + "lock", tag + "rate", tag + "fail"
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
// clears the count. KEYS: lock, fail; ARGV: max, lockout (ms), count lifetime (ms). Returns 1
// when this failure locked the key.
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

// FailureMemory is how long the shared failure count of a key survives without a new failure.
const FailureMemory = 24 * time.Hour

// Admit implements Limiter; now is not used (Redis's clock is).
func (l *Redis) Admit(ctx context.Context, key string, _ time.Time) (Verdict, error) {
	ctx, cancel := context.WithTimeout(ctx, l.s.Timeout)
	defer cancel()
	lock, rate, _ := l.keys(key)
	v, err := admitScript.Run(ctx, l.s.Client, []string{lock, rate}, l.interval.Microseconds(), l.burst).Int()
	if err != nil {
		return Allowed, fmt.Errorf("abuse: shared rate limit: %w", err)
	}
	switch v {
	case 0:
		return Allowed, nil
	case 1:
		return Locked, nil
	case 2:
		return RateLimited, nil
	}
	return Allowed, errors.New("abuse: shared rate limit: unexpected reply")
}

// Locked implements Limiter; now is not used (the lock expires in Redis).
func (l *Redis) Locked(ctx context.Context, key string, _ time.Time) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, l.s.Timeout)
	defer cancel()
	lock, _, _ := l.keys(key)
	n, err := l.s.Client.Exists(ctx, lock).Result()
	if err != nil {
		return false, fmt.Errorf("abuse: shared lockout: %w", err)
	}
	return n > 0, nil
}

// Fail implements Limiter; now is not used.
func (l *Redis) Fail(ctx context.Context, key string, _ time.Time) (bool, error) {
	if l.maxFailures < 1 {
		return false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, l.s.Timeout)
	defer cancel()
	lock, _, fail := l.keys(key)
	v, err := failScript.Run(ctx, l.s.Client, []string{lock, fail}, l.maxFailures,
		l.lockout.Milliseconds(), FailureMemory.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("abuse: shared failure count: %w", err)
	}
	return v == 1, nil
}

// Succeed implements Limiter.
func (l *Redis) Succeed(ctx context.Context, key string) error {
	ctx, cancel := context.WithTimeout(ctx, l.s.Timeout)
	defer cancel()
	_, _, fail := l.keys(key)
	if err := l.s.Client.Del(ctx, fail).Err(); err != nil {
		return fmt.Errorf("abuse: shared failure count: %w", err)
	}
	return nil
}
