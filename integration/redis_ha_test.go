package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gmgate/gmgate/internal/attack"
)

// haRedisCaddyfile is one gateway instance with its nonces in a Redis Cluster. Both instances
// share one development PKI directory, so one terminal certificate is valid at both.
const haRedisCaddyfile = `{
	admin {ADMIN}
	skip_install_trust
	auto_https off
	gmgate {
		dev_pki {PKI}
	}
}

http://127.0.0.1:{PORT} {
	gm_verify {
		scheme wechatpay-v3-sm2
		replay {
			store redis
			redis_mode cluster
			redis_address {ADDRS}
			redis_prefix {PREFIX}
		}
	}
	reverse_proxy {BACKEND}
}
`

// redisEnvAddrs returns the comma-separated addresses of the environment variable name, failing
// under GMGATE_REQUIRE_SERVICES and skipping otherwise when it is unset.
func redisEnvAddrs(t *testing.T, name string) []string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		if os.Getenv("GMGATE_REQUIRE_SERVICES") != "" {
			t.Fatalf("%s unset and GMGATE_REQUIRE_SERVICES is set (scripts/test.sh starts it)", name)
		}
		t.Skipf("%s unset (scripts/test.sh starts it)", name)
	}
	return strings.Split(v, ",")
}

// TestRedisClusterTwoGateways: two gmgate processes keep their nonces in a real 3-master Redis
// Cluster (redis_mode cluster). Captured signed payment instructions, each sent several times
// to both instances at once, are each accepted exactly once (200 from the back end) and refused
// as replays everywhere else (401 replay); the back end sees each instruction once.
func TestRedisClusterTwoGateways(t *testing.T) {
	addrs := redisEnvAddrs(t, "GMGATE_REDIS_CLUSTER_ADDRS")
	backend := fltStartBackend(t)
	pkiDir := filepath.Join(t.TempDir(), "pki")
	prefix := fmt.Sprintf("gmgate-e2e-cluster-%d:", time.Now().UnixNano())
	start := func() string {
		port := freePort(t)
		cf := strings.NewReplacer("{PKI}", pkiDir, "{PORT}", fmt.Sprint(port), "{ADDRS}", strings.Join(addrs, " "),
			"{PREFIX}", prefix, "{BACKEND}", backend.addr).Replace(haRedisCaddyfile)
		startGmgate(t, cf)
		return fmt.Sprintf("http://127.0.0.1:%d", port)
	}
	gateways := []string{start(), start()} // the first creates the PKI, the second loads it

	// The terminal signs; the attacker captures every instruction instead of delivering it.
	capture := &attack.Capture{}
	c := fltClient(t, pkiDir, gateways[0])
	c.Transport().Base = capture
	const orders = 40
	for i := 0; i < orders; i++ {
		body := fmt.Sprintf(`{"mchid":"1900000001","out_trade_no":"GM-CLUSTER-%d","amount":{"total":%d}}`, i, i+1)
		if _, err := c.Post(context.Background(), "/v3/pay/transactions/native", "application/json", []byte(body)); !errors.Is(err, attack.ErrCaptured) {
			t.Fatalf("capture: %v", err)
		}
	}
	reqs := capture.Requests()
	if len(reqs) != orders {
		t.Fatalf("captured %d requests", len(reqs))
	}

	const sendsPerGateway = 3
	var mu sync.Mutex
	accepted := make([]int, orders)
	var wg sync.WaitGroup
	for i, r := range reqs {
		for _, g := range gateways {
			for k := 0; k < sendsPerGateway; k++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					status, body, err := r.Send(context.Background(), http.DefaultClient, g)
					if err != nil {
						t.Error(err)
						return
					}
					var e struct{ Code string }
					switch {
					case status == http.StatusOK && strings.Contains(string(body), `"backend_call"`):
						mu.Lock()
						accepted[i]++
						mu.Unlock()
					case status == http.StatusUnauthorized && json.Unmarshal(body, &e) == nil && e.Code == "replay":
					default:
						t.Errorf("order %d at %s: %d %s", i, g, status, body)
					}
				}()
			}
		}
	}
	wg.Wait()
	for i, n := range accepted {
		if n != 1 {
			t.Errorf("order %d accepted %d times over both gateways, want exactly once", i, n)
		}
	}
	if n := backend.calls.Load(); n != orders {
		t.Fatalf("the back end saw %d instructions, want %d", n, orders)
	}
}
