package gateway

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisServer is a redis-server process started by a test.
type redisServer struct {
	Addr string
	cmd  *exec.Cmd
}

// Stop kills the server and waits for it.
func (r *redisServer) Stop() {
	if r.cmd != nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
		r.cmd = nil
	}
}

func redisRequired() bool { return os.Getenv("GMGATE_REQUIRE_SERVICES") == "1" }

// sharedRedisAddr returns GMGATE_REDIS_ADDR or a redis-server started for t.
func sharedRedisAddr(t *testing.T) string {
	t.Helper()
	if a := os.Getenv("GMGATE_REDIS_ADDR"); a != "" {
		waitRedis(t, a)
		return a
	}
	return startRedis(t).Addr
}

// startRedis starts a private redis-server on a free loopback port, or skips
// (fails when GMGATE_REQUIRE_SERVICES=1) if none is installed.
func startRedis(t *testing.T) *redisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if redisRequired() {
			t.Fatalf("redis-server not found and GMGATE_REQUIRE_SERVICES=1: %v", err)
		}
		t.Skip("redis-server not installed and GMGATE_REDIS_ADDR unset: skipping Redis test (set GMGATE_REQUIRE_SERVICES=1 to make this fatal)")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--protected-mode", "no")
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	r := &redisServer{Addr: fmt.Sprintf("127.0.0.1:%d", port), cmd: cmd}
	t.Cleanup(r.Stop)
	waitRedis(t, r.Addr)
	return r
}

func waitRedis(t *testing.T, addr string) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis at %s not reachable: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// benchRedisAddr returns GMGATE_REDIS_ADDR or starts a private redis-server
// for a benchmark (skipping when none is installed).
func benchRedisAddr(b *testing.B) string {
	b.Helper()
	if a := os.Getenv("GMGATE_REDIS_ADDR"); a != "" {
		return a
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		b.Skip("no redis-server and GMGATE_REDIS_ADDR unset")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	for i := 0; i < 200; i++ {
		if c.Ping(context.Background()).Err() == nil {
			return addr
		}
		time.Sleep(25 * time.Millisecond)
	}
	b.Fatal("redis did not start")
	return ""
}
