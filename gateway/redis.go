package gateway

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Redis deployment modes (RedisConfig.Mode), named as Redis's INFO server reports redis_mode.
const (
	// RedisStandalone is one Redis server (the default).
	RedisStandalone = "standalone"
	// RedisCluster is a Redis Cluster; the addresses are seed nodes.
	RedisCluster = "cluster"
	// RedisSentinel is a master found through Redis Sentinel; the addresses are the Sentinels.
	RedisSentinel = "sentinel"
)

// MaxRedisAddrs bounds the number of configured Redis addresses.
const MaxRedisAddrs = 64

// RedisConfig says how to reach a Redis deployment: one server, a Cluster or a Sentinel-managed
// master, with an ACL user and TLS. Its client (NewClient) is a go-redis UniversalClient;
// creating it contacts no server.
type RedisConfig struct {
	// Mode is RedisStandalone (default), RedisCluster or RedisSentinel.
	Mode string
	// Addrs are host:port addresses: the server (standalone, exactly one), seed nodes (cluster:
	// one is enough, the others are found from it; list several to start while one is down), or
	// the Sentinels (sentinel).
	Addrs []string
	// SentinelMaster is the name under which the Sentinels monitor the master (sentinel mode,
	// required).
	SentinelMaster string
	// Username is the ACL user (Redis 6+). Default: none (the "default" user).
	Username string
	// Password is the ACL user's password, or requirepass. Default: none.
	Password string
	// SentinelUsername and SentinelPassword authenticate to the Sentinels themselves (their
	// requirepass, or an ACL user of theirs). Default: none.
	SentinelUsername string
	SentinelPassword string
	// DB is the database number (standalone and sentinel; a Cluster has only database 0).
	DB int
	// TLS, when set, connects with TLS 1.2 or later (to the Sentinels too).
	TLS *RedisTLS
	// Timeout bounds a dial and each socket read or write (default DefaultRedisReplayTimeout).
	Timeout time.Duration
}

// RedisTLS is the TLS configuration of RedisConfig. Certificates and keys are PEM files.
type RedisTLS struct {
	// RootFiles are the CA certificates the server certificate must chain to. Default: the
	// system roots.
	RootFiles []string
	// CertFile and KeyFile are the client certificate and key, for a Redis with
	// tls-auth-clients. Default: none.
	CertFile string
	KeyFile  string
	// ServerName is the name the server certificate must carry. Default: the host of the
	// address dialled.
	ServerName string
}

// mode returns the normalized mode.
func (c *RedisConfig) mode() (string, error) {
	switch m := strings.ToLower(c.Mode); m {
	case "", RedisStandalone:
		return RedisStandalone, nil
	case RedisCluster, RedisSentinel:
		return m, nil
	}
	return "", fmt.Errorf("gateway: redis mode %q: want %s, %s or %s", c.Mode, RedisStandalone, RedisCluster, RedisSentinel)
}

// Validate checks the configuration without contacting Redis or reading files.
func (c *RedisConfig) Validate() error {
	mode, err := c.mode()
	if err != nil {
		return err
	}
	if len(c.Addrs) == 0 {
		return errors.New("gateway: redis needs an address")
	}
	if len(c.Addrs) > MaxRedisAddrs {
		return fmt.Errorf("gateway: redis: %d addresses, at most %d", len(c.Addrs), MaxRedisAddrs)
	}
	for _, a := range c.Addrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("gateway: redis address %q: want host:port", a)
		}
	}
	switch mode {
	case RedisStandalone:
		if len(c.Addrs) != 1 {
			return fmt.Errorf("gateway: redis: %d addresses in standalone mode; set the mode to cluster (seed nodes) or sentinel (the Sentinels)", len(c.Addrs))
		}
		if c.SentinelMaster != "" {
			return errors.New("gateway: redis: a sentinel master name needs sentinel mode")
		}
	case RedisCluster:
		if c.DB != 0 {
			return errors.New("gateway: redis: a Cluster has only database 0")
		}
		if c.SentinelMaster != "" {
			return errors.New("gateway: redis: a sentinel master name needs sentinel mode")
		}
	case RedisSentinel:
		if c.SentinelMaster == "" {
			return errors.New("gateway: redis: sentinel mode needs the master name the Sentinels monitor")
		}
	}
	if mode != RedisSentinel && (c.SentinelUsername != "" || c.SentinelPassword != "") {
		return errors.New("gateway: redis: Sentinel credentials need sentinel mode")
	}
	if c.DB < 0 {
		return errors.New("gateway: redis: negative database number")
	}
	if c.TLS != nil && (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return errors.New("gateway: redis TLS: a client certificate needs its key and a key its certificate")
	}
	return nil
}

// DefaultReplicaAcks is the number of replicas that must acknowledge each nonce by default:
// 1 in sentinel mode, where a failover promotes a replica and would otherwise lose the nonces
// the old master had not yet replicated; 0 otherwise.
func (c *RedisConfig) DefaultReplicaAcks() int {
	if m, _ := c.mode(); m == RedisSentinel {
		return 1
	}
	return 0
}

// timeout returns the configured per-round-trip bound.
func (c *RedisConfig) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return DefaultRedisReplayTimeout
}

// NewClient validates c, reads its TLS files and returns a client: a *redis.Client
// (standalone; sentinel through go-redis's failover client) or a *redis.ClusterClient. It does
// not contact Redis.
func (c *RedisConfig) NewClient() (redis.UniversalClient, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	mode, _ := c.mode()
	tlsConf, err := c.TLS.config()
	if err != nil {
		return nil, err
	}
	to := c.timeout()
	opts := &redis.UniversalOptions{
		Addrs:            append([]string(nil), c.Addrs...),
		DB:               c.DB,
		Username:         c.Username,
		Password:         c.Password,
		SentinelUsername: c.SentinelUsername,
		SentinelPassword: c.SentinelPassword,
		TLSConfig:        tlsConf,
		// Each call's context bounds it (the replay store's Timeout); socket deadlines follow it.
		ContextTimeoutEnabled: true,
		DialTimeout:           to,
		ReadTimeout:           to,
		WriteTimeout:          to,
		// An ACL user limited to the store's commands needs nothing else on connect.
		DisableIdentity:          true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	}
	switch mode {
	case RedisCluster:
		opts.IsClusterMode = true
	case RedisSentinel:
		opts.MasterName = c.SentinelMaster
	}
	return redis.NewUniversalClient(opts), nil
}

// config builds the tls.Config of t (nil for plain TCP).
func (t *RedisTLS) config() (*tls.Config, error) {
	if t == nil {
		return nil, nil
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if len(t.RootFiles) > 0 {
		pool := x509.NewCertPool()
		for _, f := range t.RootFiles {
			pem, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("gateway: redis TLS roots: %w", err)
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("gateway: redis TLS roots: no PEM certificate in %s", f)
			}
		}
		conf.RootCAs = pool
	}
	if t.CertFile != "" {
		pair, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			// The error names the files, never key material.
			return nil, fmt.Errorf("gateway: redis TLS client certificate: %w", err)
		}
		conf.Certificates = []tls.Certificate{pair}
	}
	return conf, nil
}
