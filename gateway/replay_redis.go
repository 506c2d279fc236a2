package gateway

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Defaults of RedisReplayStore.
const (
	// DefaultRedisReplayPrefix prefixes every nonce key.
	DefaultRedisReplayPrefix = "gmgate:replay:"
	// DefaultRedisReplayTimeout bounds one replay check (connection, SET NX and WAIT).
	DefaultRedisReplayTimeout = 250 * time.Millisecond
	// MaxRedisReplayPrefixLen bounds the configured key prefix.
	MaxRedisReplayPrefixLen = 128
)

// RedisReplayOptions configures NewRedisReplayStore.
type RedisReplayOptions struct {
	// Client is the Redis client: a *redis.Client (one server, or a Sentinel-managed master
	// through go-redis's failover client) or a *redis.ClusterClient; RedisConfig.NewClient
	// builds one. Required.
	Client redis.UniversalClient
	// Prefix is prepended to every key (default DefaultRedisReplayPrefix). With a Cluster it
	// must not contain a hash tag ('{' or '}'), which would put every nonce in one slot.
	Prefix string
	// Timeout bounds each check (default DefaultRedisReplayTimeout): connection, SET and, with
	// ReplicaAcks, the replicas' acknowledgement, for which WAIT gets half of it. The caller's
	// context deadline applies too, whichever is earlier.
	Timeout time.Duration
	// ReplicaAcks is the number of replicas that must acknowledge each stored nonce (Redis
	// WAIT, on the connection and node that stored it) before the request is accepted; fewer
	// acknowledgements in time make the check fail (ErrReplayStoreUnavailable). Replication
	// is asynchronous: without it a failover that promotes a replica loses the nonces the old
	// master accepted last, and those requests could be replayed once. Default 0 (no wait).
	ReplicaAcks int
	// CloseClient makes Close also close Client.
	CloseClient bool
}

// MaxRedisReplicaAcks bounds RedisReplayOptions.ReplicaAcks.
const MaxRedisReplicaAcks = 16

// RedisReplayStore is a ReplayStore shared by every gateway instance through
// Redis. Each nonce is stored as
//
//	SET <prefix><hex(SM3(keyID, nonce))> 1 NX PX <ttl-ms>
//	WAIT <replica acks> <timeout-ms>          (with ReplicaAcks, same connection)
//
// so the first instance to store a nonce wins atomically. Keys have a fixed
// length whatever the nonce, and each is one key of one Cluster slot: SET and
// WAIT go to the master of that slot. Any Redis error (unreachable, timeout,
// READONLY replica, no master, too few replica acknowledgements, ...) is
// reported as ErrReplayStoreUnavailable: a nonce is accepted only once Redis
// has stored it (and the replicas have it, with ReplicaAcks).
type RedisReplayStore struct {
	c           redis.UniversalClient
	prefix      string
	timeout     time.Duration
	acks        int
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
	_, cluster := opts.Client.(*redis.ClusterClient)
	if cluster && strings.ContainsAny(p, "{}") {
		return nil, errors.New("gateway: redis replay key prefix: no '{' or '}' with a Cluster (a hash tag would put every nonce in one slot)")
	}
	if opts.ReplicaAcks < 0 || opts.ReplicaAcks > MaxRedisReplicaAcks {
		return nil, fmt.Errorf("gateway: redis replica acks %d: want 0 to %d", opts.ReplicaAcks, MaxRedisReplicaAcks)
	}
	if _, single := opts.Client.(*redis.Client); opts.ReplicaAcks > 0 && !single && !cluster {
		return nil, fmt.Errorf("gateway: redis replica acks need a single-node, Sentinel or Cluster client, not %T", opts.Client)
	}
	to := opts.Timeout
	if to <= 0 {
		to = DefaultRedisReplayTimeout
	}
	return &RedisReplayStore{c: opts.Client, prefix: p, timeout: to, acks: opts.ReplicaAcks, closeClient: opts.CloseClient}, nil
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
	key := s.Key(keyID, nonce)
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if s.acks == 0 {
		return setNXResult(s.c.Do(ctx, "SET", key, "1", "NX", "PX", ms).Result())
	}
	// WAIT counts the replicas that acknowledged every write of its connection so far, so it
	// must follow the SET on the same connection of the same node: a pipeline on the client of
	// the master that holds the key (for a Cluster, the master of the key's slot). It waits at
	// most half the check's time, leaving the rest for the connection and the replies.
	var node *redis.Client
	switch c := s.c.(type) {
	case *redis.Client:
		node = c
	case *redis.ClusterClient:
		n, err := c.MasterForKey(ctx, key)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrReplayStoreUnavailable, err)
		}
		node = n
	}
	p := node.Pipeline()
	set := p.Do(ctx, "SET", key, "1", "NX", "PX", ms)
	wait := p.Do(ctx, "WAIT", s.acks, max(s.timeout.Milliseconds()/2, 1))
	_, _ = p.Exec(ctx) // each command's own error is checked below
	if err := setNXResult(set.Result()); err != nil {
		if c, ok := s.c.(*redis.ClusterClient); ok && isRedirect(err) {
			c.ReloadState(ctx) // the slot moved: the next check asks the right master
		}
		return err
	}
	n, err := wait.Int64()
	if err != nil {
		return fmt.Errorf("%w: WAIT: %w", ErrReplayStoreUnavailable, err)
	}
	if n < int64(s.acks) {
		// The nonce is stored on the master but may not survive a failover: refuse the
		// request. The client's retry of the same request is then a replay; a new request
		// (new nonce) is needed, which is the safe side.
		return fmt.Errorf("%w: %d of %d replicas acknowledged the nonce", ErrReplayStoreUnavailable, n, s.acks)
	}
	return nil
}

// setNXResult maps the reply to SET NX.
func setNXResult(res any, err error) error {
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

// isRedirect reports a Cluster MOVED or ASK reply (a slot being resharded).
func isRedirect(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "MOVED ") || strings.Contains(msg, "ASK ")
}

// Close closes the client when the store owns it (CloseClient).
func (s *RedisReplayStore) Close() error {
	if s.closeClient {
		return s.c.Close()
	}
	return nil
}
