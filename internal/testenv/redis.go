package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisAddr is the Redis server scripts/test.sh starts (GMGATE_REDIS_ADDR) or, when unset, a
// private redis-server started for t (StartRedis).
func RedisAddr(t testing.TB) string {
	t.Helper()
	if a := os.Getenv("GMGATE_REDIS_ADDR"); a != "" {
		return a
	}
	return StartRedis(t)
}

// RedisClusterAddrs are the masters of the Redis Cluster scripts/test.sh starts
// (GMGATE_REDIS_CLUSTER_ADDRS), or nil when unset; unset fails t under Required.
func RedisClusterAddrs(t testing.TB) []string {
	t.Helper()
	c := os.Getenv("GMGATE_REDIS_CLUSTER_ADDRS")
	if c == "" {
		if Required() {
			t.Fatal("GMGATE_REDIS_CLUSTER_ADDRS unset and GMGATE_REQUIRE_SERVICES=1 (scripts/test.sh starts a Cluster)")
		}
		return nil
	}
	return strings.Split(c, ",")
}

// StartRedis starts a private redis-server (no persistence) on a free loopback port and
// returns its address; it is killed at t's cleanup, or earlier by the test (SHUTDOWN) to see
// what a Redis outage does. Without redis-server the test is Missing.
func StartRedis(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		Missing(t, "redis-server not installed and GMGATE_REDIS_ADDR unset: %v", err)
	}
	port := FreePort(t)
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	for i := 0; ; i++ {
		if c.Ping(context.Background()).Err() == nil {
			return addr
		}
		if i > 100 {
			t.Fatal("redis-server did not answer")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
