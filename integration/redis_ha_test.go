package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
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
			# exactly-once is under test, not latency: a loaded CI machine must not turn a
			# slow answer into a 503
			redis_timeout 2s
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

// haSentinelCaddyfile is one gateway instance with its nonces on a Sentinel-managed master
// (default redis_replica_acks: 1).
const haSentinelCaddyfile = `{
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
			redis_mode sentinel
			redis_address {ADDRS}
			redis_sentinel_master {MASTER}
			redis_sentinel_password_env GMGATE_TEST_SENTINEL_PASSWORD
			redis_prefix {PREFIX}
		}
	}
	reverse_proxy {BACKEND}
}
`

// TestRedisSentinelFailoverTwoGateways: two gmgate processes keep their nonces on a master
// managed by three Sentinels. Under load (captured signed instructions, each sent to both
// gateways at once) the master's replicas are cut off and the master is killed (SIGKILL); the
// Sentinels promote a replica that lacks the master's last writes. Every instruction is accepted
// at most once over both gateways and the whole run, including a replay of every instruction
// after the failover; while no master is reachable (or no replica can acknowledge) the gateways
// answer 503 replay_store_unavailable and the back end sees nothing; after the failover they
// accept again without a restart.
func TestRedisSentinelFailoverTwoGateways(t *testing.T) {
	redisEnvAddrs(t, "GMGATE_REDIS_SENTINEL_ADDRS")
	s, _ := attack.SentinelFromEnv()
	ctx := context.Background()
	if err := s.WaitHealthy(ctx, 2, 40*time.Second); err != nil {
		t.Fatal(err)
	}
	backend := fltStartBackend(t)
	pkiDir := filepath.Join(t.TempDir(), "pki")
	prefix := fmt.Sprintf("gmgate-e2e-sentinel-%d:", time.Now().UnixNano())
	start := func() (string, *instance) {
		port := freePort(t)
		cf := strings.NewReplacer("{PKI}", pkiDir, "{PORT}", fmt.Sprint(port), "{ADDRS}", strings.Join(s.Addrs, " "),
			"{MASTER}", s.Master, "{PREFIX}", prefix, "{BACKEND}", backend.addr).Replace(haSentinelCaddyfile)
		inst := startGmgate(t, cf, "GMGATE_TEST_SENTINEL_PASSWORD="+s.Password)
		return fmt.Sprintf("http://127.0.0.1:%d", port), inst
	}
	urlA, instA := start()
	urlB, instB := start()
	gateways := []string{urlA, urlB}

	capture := &attack.Capture{}
	c := fltClient(t, pkiDir, urlA)
	c.Transport().Base = capture
	const orders = 400
	for i := 0; i < orders; i++ {
		body := fmt.Sprintf(`{"mchid":"1900000001","out_trade_no":"GM-SENTINEL-%d","amount":{"total":%d}}`, i, i+1)
		if _, err := c.Post(ctx, "/v3/pay/transactions/native", "application/json", []byte(body)); !errors.Is(err, attack.ErrCaptured) {
			t.Fatalf("capture: %v", err)
		}
	}
	reqs := capture.Requests()

	f, err := s.StageFailover(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	t.Cleanup(func() {
		if err := f.Restart(); err != nil {
			t.Errorf("restarting the old master: %v", err)
		}
		if err := s.WaitHealthy(context.Background(), 2, 40*time.Second); err != nil {
			t.Error(err)
		}
	})

	var (
		mu       sync.Mutex
		accepted = make([]int, orders)
		outcomes = map[string]int{}
		phase    = "before"
	)
	send := func(i int, g string) {
		status, body, err := reqs[i].Send(ctx, http.DefaultClient, g)
		if err != nil {
			t.Error(err)
			return
		}
		var e struct{ Code string }
		json.Unmarshal(body, &e)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case status == http.StatusOK && strings.Contains(string(body), `"backend_call"`):
			accepted[i]++
			outcomes["accepted/"+phase]++
		case status == http.StatusUnauthorized && e.Code == "replay":
			outcomes["replay"]++
		case status == http.StatusServiceUnavailable && e.Code == "replay_store_unavailable":
			outcomes["unavailable/"+phase]++
		default:
			t.Errorf("order %d at %s: %d %s", i, g, status, body)
		}
	}
	count := func(k string) int { mu.Lock(); defer mu.Unlock(); return outcomes[k] }
	setPhase := func(p string) { mu.Lock(); phase = p; mu.Unlock() }
	// The load: orders in sequence, each sent to both gateways at once, paced.
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				var both sync.WaitGroup
				for _, g := range gateways {
					both.Add(1)
					go func() { defer both.Done(); send(i, g) }()
				}
				both.Wait()
			}
		}()
	}
	i := 0
	feed := func(until func() bool, what string) {
		t.Helper()
		for !until() {
			if i == orders {
				close(next)
				wg.Wait()
				t.Fatalf("ran out of orders waiting for %s; outcomes %v", what, outcomes)
			}
			next <- i
			i++
			time.Sleep(10 * time.Millisecond)
		}
	}
	feed(func() bool { return count("accepted/before") >= 20 }, "acceptances before the failover")
	if err := f.CutReplicas(ctx); err != nil {
		t.Fatal(err)
	}
	setPhase("cut")
	feed(func() bool { return count("unavailable/cut") >= 4 }, "refusals while no replica acknowledges")
	if err := f.KillMaster(); err != nil {
		t.Fatal(err)
	}
	setPhase("killed")
	feed(func() bool { _, ok := f.Promoted(ctx); return ok && count("accepted/killed") >= 20 }, "acceptances after the failover")
	close(next)
	wg.Wait()

	// Every order, accepted or not, sent again to both gateways: nothing accepted twice.
	setPhase("replayed")
	for k := 0; k < i; k++ {
		for _, g := range gateways {
			send(k, g)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	total := 0
	for k, n := range accepted {
		if n > 1 {
			t.Errorf("order %d accepted %d times", k, n)
		}
		total += n
	}
	if outcomes["accepted/cut"] != 0 {
		t.Errorf("%d orders accepted while no replica could acknowledge them", outcomes["accepted/cut"])
	}
	if outcomes["unavailable/killed"] == 0 {
		t.Errorf("no refusal while the master was down: %v", outcomes)
	}
	if n := backend.calls.Load(); n != int64(total) {
		t.Errorf("the back end saw %d instructions, %d were accepted", n, total)
	}
	if t.Failed() {
		t.Logf("gateway A:\n%s\ngateway B:\n%s", instA.out, instB.out)
	}
	t.Logf("outcomes %v", outcomes)
}

// TestRedisValidateConnectsToNothing: `gmgate validate` and `gmgate adapt` of a configuration
// with a Sentinel-managed and a Cluster replay store provision the stores without contacting
// Redis (the listeners standing for the Sentinels and the Cluster see no connection), and the
// adapted JSON has no null field.
func TestRedisValidateConnectsToNothing(t *testing.T) {
	var conns atomic.Int32
	listen := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				conns.Add(1)
				c.Close()
			}
		}()
		return ln.Addr().String()
	}
	dir := t.TempDir()
	cf := fmt.Sprintf(`{
	admin off
	skip_install_trust
	auto_https off
	gmgate {
		dev_pki %s/pki
	}
}

http://127.0.0.1:%d {
	gm_verify {
		replay {
			store redis
			redis_mode sentinel
			redis_address %s %s
			redis_sentinel_master pay
			redis_username gmgate
		}
	}
	respond ok
}

http://127.0.0.1:%d {
	gm_verify {
		replay {
			store redis
			redis_mode cluster
			redis_address %s
			redis_timeout 2s
			redis_replica_acks 1
			redis_tls
		}
	}
	respond ok
}
`, dir, freePort(t), listen(), listen(), freePort(t), listen())
	path := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(cf), 0o600); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "XDG_DATA_HOME="+filepath.Join(dir, "data"), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"), "HOME="+dir)
	validate := exec.Command(gmgateBin(t), "validate", "--config", path, "--adapter", "caddyfile")
	validate.Env = env
	if out, err := validate.CombinedOutput(); err != nil {
		t.Fatalf("gmgate validate: %v\n%s", err, out)
	}
	adapt := exec.Command(gmgateBin(t), "adapt", "--config", path, "--adapter", "caddyfile")
	adapt.Env = env
	out, err := adapt.Output()
	if err != nil {
		t.Fatalf("gmgate adapt: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "null") || !strings.Contains(string(out), `"redis_timeout":2000000000`) {
		t.Fatalf("adapted JSON: %s", out)
	}
	time.Sleep(200 * time.Millisecond) // a lazy background dial would show by now
	if n := conns.Load(); n != 0 {
		t.Fatalf("validate/adapt opened %d connections to Redis", n)
	}
}
