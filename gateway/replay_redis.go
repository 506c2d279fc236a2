package gateway

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Defaults of RedisReplayStore.
const (
	// DefaultRedisReplayPrefix prefixes every nonce key.
	DefaultRedisReplayPrefix = "gmgate:replay:"
	// DefaultRedisReplayTimeout bounds one SET NX round trip.
	DefaultRedisReplayTimeout = 250 * time.Millisecond
	// MaxRedisReplayPrefixLen bounds the configured key prefix.
	MaxRedisReplayPrefixLen = 128
)

// RedisReplayOptions configures NewRedisReplayStore.
type RedisReplayOptions struct {
	// Client is the Redis client (single node, cluster, sentinel or ring).
	// Required.
	Client redis.UniversalClient
	// Prefix is prepended to every key (default DefaultRedisReplayPrefix).
	Prefix string
	// Timeout bounds each call (default DefaultRedisReplayTimeout). The
	// caller's context deadline applies too, whichever is earlier.
	Timeout time.Duration
	// CloseClient makes Close also close Client.
	CloseClient bool
}

// RedisReplayStore is a ReplayStore shared by every gateway instance through
// Redis. Each nonce is stored as
//
//	SET <prefix><hex(SM3(keyID, nonce))> 1 NX PX <ttl-ms>
//
// so the first instance to store a nonce wins atomically. Keys have a fixed
// length whatever the nonce. Any Redis error (unreachable, timeout, READONLY
// replica, ...) is reported as ErrReplayStoreUnavailable.
type RedisReplayStore struct {
	c           redis.UniversalClient
	prefix      string
	timeout     time.Duration
	closeClient bool
}

// NewRedisReplayStore validates opts and returns a store. It does not contact
// Redis.
func NewRedisReplayStore(opts RedisReplayOptions) (*RedisReplayStore, error) {
	if opts.Client == nil {
		return nil, errors.New("gateway: redis replay store needs a client")
	}
	p := opts.Prefix
	if p == "" {
		p = DefaultRedisReplayPrefix
	}
	if len(p) > MaxRedisReplayPrefixLen {
		return nil, errors.New("gateway: redis replay key prefix too long")
	}
	to := opts.Timeout
	if to <= 0 {
		to = DefaultRedisReplayTimeout
	}
	return &RedisReplayStore{c: opts.Client, prefix: p, timeout: to, closeClient: opts.CloseClient}, nil
}

// Key returns the Redis key used for (keyID, nonce).
func (s *RedisReplayStore) Key(keyID, nonce string) string {
	d := nonceDigest(keyID, nonce)
	return s.prefix + hex.EncodeToString(d[:])
}

// CheckAndStore implements ReplayStore.
func (s *RedisReplayStore) CheckAndStore(ctx context.Context, keyID, nonce string, ttl time.Duration) error {
	ms := ttl.Milliseconds()
	if ms < 1 {
		ms = 1
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	res, err := s.c.Do(ctx, "SET", s.Key(keyID, nonce), "1", "NX", "PX", ms).Result()
	if errors.Is(err, redis.Nil) {
		return ErrReplay
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrReplayStoreUnavailable, err)
	}
	if str, ok := res.(string); !ok || str != "OK" {
		return fmt.Errorf("%w: unexpected reply to SET NX", ErrReplayStoreUnavailable)
	}
	return nil
}

// Close closes the client when the store owns it (CloseClient).
func (s *RedisReplayStore) Close() error {
	if s.closeClient {
		return s.c.Close()
	}
	return nil
}
