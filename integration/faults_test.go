package integration

// Fault scenarios through the real binary (issue 6, item 2): the replay store (Redis) goes down
// and comes back, the bank misbehaves, `gmgate reload` under load, garbage on the TLCP port and
// the key token becoming unavailable. Helpers here are prefixed flt so they do not collide with
// the other files of the package.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/client"
	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/signing"
)

// fltBackend is a plain back end that counts and records what gm_verify let through.
type fltBackend struct {
	srv   *http.Server
	addr  string
	calls atomic.Int64
	mu    sync.Mutex
	last  http.Header
	body  string
}

func fltStartBackend(t *testing.T) *fltBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &fltBackend{addr: ln.Addr().String()}
	b.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		n := b.calls.Add(1)
		b.mu.Lock()
		b.last, b.body = r.Header.Clone(), string(body)
		b.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"backend_call":%d,"path":%q,"subject":%q}`, n, r.URL.Path, r.Header.Get("X-Gm-Client-Subject"))
	})}
	go b.srv.Serve(ln)
	t.Cleanup(func() { b.srv.Close() })
	return b
}

func (b *fltBackend) lastRequest() (http.Header, string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.last.Clone(), b.body
}

// fltClient is the terminal SDK (package client) signing with the development client key of
// the dev_pki in pkiDir and verifying replies with platform (default: that dev_pki's platform
// certificate).
func fltClient(t *testing.T, pkiDir, baseURL string, platform ...*smx509.Certificate) *client.Client {
	t.Helper()
	id, err := client.LoadIdentity(filepath.Join(pkiDir, pki.DevClientSignBase+".pem"), filepath.Join(pkiDir, pki.DevClientSignBase+".key"), nil)
	if err != nil {
		t.Fatal(err)
	}
	key, err := id.SigningKey("", "1900000001")
	if err != nil {
		t.Fatal(err)
	}
	if len(platform) == 0 {
		if platform, err = client.LoadCertificates(filepath.Join(pkiDir, pki.DevPlatformBase+".pem")); err != nil {
			t.Fatal(err)
		}
	}
	c, err := client.New(client.Config{
		BaseURL:       baseURL,
		Scheme:        signing.WechatPayName,
		Key:           key,
		PlatformCerts: platform[:1],
		Timeout:       10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// fltGatewayCode returns the unsigned gateway refusal carried by a client error (status, code).
func fltGatewayCode(err error) (int, string) {
	var re *client.ReplyError
	if errors.As(err, &re) {
		return re.StatusCode, re.GatewayCode
	}
	return 0, ""
}

// fltMetric sums the samples of the Prometheus metric name whose labels include every
// label="value" pair of want, from the admin endpoint's /metrics.
func fltMetric(t *testing.T, admin, name string, want ...string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for i := 0; i+1 < len(want); i += 2 {
			if !strings.Contains(line, want[i]+`="`+want[i+1]+`"`) {
				ok = false
			}
		}
		if !ok {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

// fltRedis is a redis-server of the test's own, which the test may kill and restart.
type fltRedis struct {
	t      *testing.T
	port   int
	dir    string
	cmd    *exec.Cmd
	exited chan struct{}
}

func fltStartRedis(t *testing.T, port int, dir string) *fltRedis {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server is required for this test: %v", err)
	}
	r := &fltRedis{t: t, port: port, dir: dir, exited: make(chan struct{})}
	r.cmd = exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", dir, "--protected-mode", "no")
	r.cmd.Stdout, r.cmd.Stderr = io.Discard, io.Discard
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.cmd.Wait(); close(r.exited) }()
	t.Cleanup(r.kill)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if r.ping() {
			return r
		}
		select {
		case <-r.exited:
			t.Fatalf("redis-server on port %d exited at start", port)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server on port %d did not answer", port)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (r *fltRedis) addr() string { return fmt.Sprintf("127.0.0.1:%d", r.port) }

func (r *fltRedis) ping() bool {
	c, err := net.DialTimeout("tcp", r.addr(), time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "+PONG")
}

// kill stops the server hard (SIGKILL: no shutdown, like a crash) and waits for it.
func (r *fltRedis) kill() {
	select {
	case <-r.exited:
		return
	default:
	}
	_ = r.cmd.Process.Kill()
	<-r.exited
}

const fltRedisCaddyfile = `{
	admin {ADMIN}
	skip_install_trust
	auto_https off
	gmgate {
		dev_pki {DIR}/pki
	}
}

http://127.0.0.1:{CLOSED} {
	gm_verify {
		scheme wechatpay-v3-sm2
		replay {
			store redis
			redis_address {REDIS}
			redis_prefix "faults:closed:"
		}
	}
	reverse_proxy {BACKEND}
}

http://127.0.0.1:{OPEN} {
	gm_verify {
		scheme wechatpay-v3-sm2
		replay {
			store redis
			redis_address {REDIS}
			redis_prefix "faults:open:"
			fail_open
		}
	}
	reverse_proxy {BACKEND}
}
`

// TestFaultRedisDown: gm_verify with the Redis nonce store. While Redis is down a signed request
// is refused with 503 replay_store_unavailable and never reaches the back end (fail closed, the
// default); a site configured with fail_open lets it through; the refusals are counted in
// gmgate_verify_results_total; when Redis comes back on the same address requests pass again
// without restarting gmgate, and the store is really used again (a replay is refused).
func TestFaultRedisDown(t *testing.T) {
	t.Parallel()
	rport := freePort(t)
	rdir := t.TempDir()
	rds := fltStartRedis(t, rport, rdir)
	backend := fltStartBackend(t)
	closedPort, openPort := freePort(t), freePort(t)
	cf := strings.NewReplacer("{CLOSED}", strconv.Itoa(closedPort), "{OPEN}", strconv.Itoa(openPort),
		"{REDIS}", rds.addr(), "{BACKEND}", backend.addr).Replace(fltRedisCaddyfile)
	inst := startGmgate(t, cf)
	pkiDir := filepath.Join(inst.dir, "pki")
	closed := fltClient(t, pkiDir, fmt.Sprintf("http://127.0.0.1:%d", closedPort))
	open := fltClient(t, pkiDir, fmt.Sprintf("http://127.0.0.1:%d", openPort))
	ctx := context.Background()
	order := []byte(`{"mchid":"1900000001","out_trade_no":"GM-REDIS-1","amount":{"total":1}}`)

	mustPass := func(c *client.Client, what string) {
		t.Helper()
		before := backend.calls.Load()
		resp, err := c.Post(ctx, "/v3/pay/transactions/native", "application/json", order)
		if err != nil {
			t.Fatalf("%s: %v\n%s", what, err, inst.out)
		}
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(resp.Body), `"backend_call"`) || resp.Reply == nil {
			t.Fatalf("%s: status %d body %s", what, resp.StatusCode, resp.Body)
		}
		if backend.calls.Load() != before+1 {
			t.Fatalf("%s: back end calls %d -> %d", what, before, backend.calls.Load())
		}
	}
	const metric = "gmgate_verify_results_total"
	unavailable := func() float64 {
		return fltMetric(t, inst.admin, metric, "scheme", signing.WechatPayName, "result", "replay_store_unavailable")
	}

	mustPass(closed, "Redis up, fail closed site")
	mustPass(open, "Redis up, fail open site")
	if unavailable() != 0 {
		t.Fatalf("replay_store_unavailable counted while Redis is up")
	}

	rds.kill()
	if rds.ping() {
		t.Fatal("Redis still answers after kill")
	}
	const refused = 3
	before := backend.calls.Load()
	for i := 0; i < refused; i++ {
		_, err := closed.Post(ctx, "/v3/pay/transactions/native", "application/json", order)
		status, code := fltGatewayCode(err)
		if status != http.StatusServiceUnavailable || code != "replay_store_unavailable" {
			t.Fatalf("Redis down, fail closed: got status %d code %q (%v), want 503 replay_store_unavailable", status, code, err)
		}
	}
	if n := backend.calls.Load(); n != before {
		t.Fatalf("Redis down: %d refused requests reached the back end", n-before)
	}
	if got := unavailable(); got != refused {
		t.Fatalf("%s{result=replay_store_unavailable} = %v, want %d", metric, got, refused)
	}
	storeErrors := func(outcome string) float64 {
		return fltMetric(t, inst.admin, "gmgate_verify_replay_store_errors_total", "scheme", signing.WechatPayName, "outcome", outcome)
	}
	if got := storeErrors("refused"); got != refused {
		t.Fatalf("gmgate_verify_replay_store_errors_total{outcome=refused} = %v, want %d", got, refused)
	}
	// fail_open: accepted after the signature and timestamp checks, nonce not recorded; the
	// store error is logged and counted as outcome=fail_open (the verify result is ok).
	okBefore := fltMetric(t, inst.admin, metric, "scheme", signing.WechatPayName, "result", "ok")
	mustPass(open, "Redis down, fail_open site")
	if got := fltMetric(t, inst.admin, metric, "scheme", signing.WechatPayName, "result", "ok"); got != okBefore+1 {
		t.Fatalf("fail_open acceptance counted %v -> %v under code=ok", okBefore, got)
	}
	if got := storeErrors("fail_open"); got != 1 {
		t.Fatalf("gmgate_verify_replay_store_errors_total{outcome=fail_open} = %v, want 1", got)
	}
	if !strings.Contains(inst.out.String(), "gm_verify: replay store") {
		t.Fatalf("the replay store error of the fail_open site is not logged:\n%s", inst.out)
	}

	// Redis comes back on the same address: no restart of gmgate, requests pass again.
	rds = fltStartRedis(t, rport, rdir)
	deadline := time.Now().Add(10 * time.Second)
	for {
		before := backend.calls.Load()
		resp, err := closed.Post(ctx, "/v3/pay/transactions/native", "application/json", order)
		if err == nil {
			if resp.StatusCode != http.StatusOK || backend.calls.Load() != before+1 {
				t.Fatalf("after Redis returned: status %d body %s", resp.StatusCode, resp.Body)
			}
			break
		}
		status, code := fltGatewayCode(err)
		if status != http.StatusServiceUnavailable || code != "replay_store_unavailable" {
			t.Fatalf("while Redis returns: unexpected %d %q %v", status, code, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("requests still refused 10s after Redis returned: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The store is in use again: the exact request the back end just saw, sent again, is a replay.
	hdr, body := backend.lastRequest()
	req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/v3/pay/transactions/native", closedPort), strings.NewReader(body))
	req.Header.Set("Authorization", hdr.Get("Authorization"))
	req.Header.Set("Content-Type", hdr.Get("Content-Type"))
	assertRejected(t, req, http.StatusUnauthorized, "replay")
	mustPass(open, "Redis back, fail_open site")
	if inst.cmd.ProcessState != nil {
		t.Fatal("gmgate exited")
	}
}

// fltReload writes caddyfile ({ADMIN} and {DIR} substituted) next to inst's and runs
// `gmgate reload` on it against inst's admin endpoint.
func fltReload(t *testing.T, inst *instance, caddyfile, name string, env ...string) ([]byte, error) {
	t.Helper()
	path := filepath.Join(inst.dir, "Caddyfile."+name)
	cf := strings.NewReplacer("{ADMIN}", inst.admin, "{DIR}", inst.dir).Replace(caddyfile)
	if err := os.WriteFile(path, []byte(cf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(gmgateBin(t), "reload", "--config", path, "--adapter", "caddyfile", "--address", inst.admin)
	cmd.Env = append(append(os.Environ(), "HOME="+inst.dir), env...)
	return cmd.CombinedOutput()
}
