package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gmgate/gmgate/client"
)

const fltReloadCaddyfile = `{
	admin {ADMIN}
	skip_install_trust
	auto_https off
	gmgate {
		dev_pki {DIR}/pki
		vault {
			key gen{GEN}-extra file:{DIR}/pki/client_enc.key
		}
	}
}

http://127.0.0.1:{PORT} {
	header X-Config-Generation "{GEN}"
	gm_verify {
		scheme wechatpay-v3-sm2
		audit {DIR}/audit/verify.log {
			checkpoint_every 100
		}
	}
	reverse_proxy {BACKEND}
}

http://127.0.0.1:{RPORT} {
	header X-Config-Generation "{GEN}"
	gm_verify {
		scheme wechatpay-v3-sm2
		replay {
			store redis
			redis_address {REDIS}
			redis_timeout 2s # this test is about reloads; a 2-core CI box under load can exceed the 250ms default
		}
	}
	reverse_proxy {BACKEND}
}
`

// TestFaultReloadUnderLoad: clients send signed requests (terminal SDK, keep-alive) in a loop to
// two sites (one with the in-memory nonce store and an audit log, one with the Redis nonce store)
// while `gmgate reload` replaces the configuration three times (each generation also declares a
// different vault key, so each reload opens a new key vault and retires the old one). Every request the gateway read
// gets a 200 whose signature the client verified, and reached the back end exactly once; each new
// configuration takes effect; the audit log holds every decision in one intact chain. A request
// written onto a kept-alive connection at the moment the old server closes it (HTTP/1.1 allows
// it; Go resends GETs and POSTs with an Idempotency-Key itself) is counted and logged apart: it
// must not have reached the back end.
func TestFaultReloadUnderLoad(t *testing.T) {
	t.Parallel()
	backend := fltStartBackend(t)
	rds := fltStartRedis(t, freePort(t), t.TempDir())
	port, rport := freePort(t), freePort(t)
	render := func(gen int) string {
		return strings.NewReplacer("{PORT}", strconv.Itoa(port), "{RPORT}", strconv.Itoa(rport), "{REDIS}", rds.addr(),
			"{BACKEND}", backend.addr, "{GEN}", strconv.Itoa(gen)).Replace(fltReloadCaddyfile)
	}
	inst := startGmgate(t, render(1))
	pkiDir := filepath.Join(inst.dir, "pki")
	base := fmt.Sprintf("http://127.0.0.1:%d", port)

	const (
		workers  = 8
		reloads  = 3
		duration = 8 * time.Second
	)
	var (
		ok, failed  atomic.Int64
		okAudited   atomic.Int64
		closedConns atomic.Int64
		closedList  []string
		mu          sync.Mutex
		failures    []string
		perGen      = map[string]int{}
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		// Even workers use the audited memory-store site, odd ones the Redis-store site.
		site := base
		if w%2 == 1 {
			site = fmt.Sprintf("http://127.0.0.1:%d", rport)
		}
		c := fltClient(t, pkiDir, site)
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			body := []byte(fmt.Sprintf(`{"mchid":"1900000001","worker":%d}`, w))
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				var (
					status int
					gen    string
					err    error
				)
				if i%2 == 0 {
					// Idempotency-Key lets Go's transport resend the (same, signed) POST when
					// the server closed the kept-alive connection before reading it; a resend
					// of a request that was processed is refused as a replay.
					req, e := c.NewRequest(context.Background(), http.MethodPost, "/v3/pay/transactions/native", "application/json", body)
					if e != nil {
						panic(e)
					}
					req.Header.Set("Idempotency-Key", fmt.Sprintf("w%d-%d", w, i))
					r, e := c.Do(req)
					err = e
					if e == nil {
						status, gen = r.StatusCode, r.Header.Get("X-Config-Generation")
						if r.Reply == nil || !strings.Contains(string(r.Body), `"backend_call"`) {
							err = fmt.Errorf("reply not verified or not the back end's: %s", r.Body)
						}
					}
				} else {
					r, e := c.Get(context.Background(), "/v3/certificates?w="+strconv.Itoa(w))
					err = e
					if e == nil {
						status, gen = r.StatusCode, r.Header.Get("X-Config-Generation")
					}
				}
				if err == nil && status != http.StatusOK {
					err = fmt.Errorf("status %d", status)
				}
				if err == nil {
					g, _ := strconv.Atoi(gen)
					if g < 1 || g > reloads+1 {
						err = fmt.Errorf("configuration generation %q", gen)
					}
				}
				mu.Lock()
				if fltConnClosed(err) {
					// The old server closed this kept-alive connection as the request was sent
					// (graceful shutdown closes idle connections; HTTP/1.1 allows it and a client
					// must be ready to resend). Counted apart; see the back-end check below.
					closedConns.Add(1)
					if len(closedList) < 10 {
						closedList = append(closedList, fmt.Sprintf("worker %d request %d: %v", w, i, err))
					}
				} else if err != nil {
					failed.Add(1)
					if len(failures) < 20 {
						failures = append(failures, fmt.Sprintf("worker %d request %d at %s: %v", w, i, time.Now().Format("15:04:05.000"), err))
					}
				} else {
					ok.Add(1)
					if w%2 == 0 {
						okAudited.Add(1)
					}
					perGen[gen]++
				}
				mu.Unlock()
			}
		}(w)
	}

	start := time.Now()
	for gen := 2; gen <= reloads+1; gen++ {
		time.Sleep(duration / (reloads + 1))
		if out, err := fltReload(t, inst, render(gen), fmt.Sprintf("gen%d", gen)); err != nil {
			close(stop)
			wg.Wait()
			t.Fatalf("gmgate reload to generation %d: %v\n%s\n%s", gen, err, out, inst.out)
		}
		t.Logf("reloaded to generation %d at +%v", gen, time.Since(start).Round(time.Millisecond))
	}
	time.Sleep(duration / (reloads + 1))
	close(stop)
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d requests ok, %d failed, %d on a connection the old server closed; per configuration generation: %v",
		ok.Load(), failed.Load(), closedConns.Load(), perGen)
	if len(closedList) > 0 {
		t.Logf("connections closed under a request:\n%s", strings.Join(closedList, "\n"))
	}
	if failed.Load() != 0 {
		t.Errorf("%d requests failed during reloads:\n%s", failed.Load(), strings.Join(failures, "\n"))
	}
	for gen := 1; gen <= reloads+1; gen++ {
		if perGen[strconv.Itoa(gen)] == 0 {
			t.Fatalf("no request was served by configuration generation %d: %v", gen, perGen)
		}
	}
	// Nothing was processed without its verified reply reaching the client: in particular no
	// request of a closed connection had reached the back end (it is safe to resend).
	if calls := backend.calls.Load(); calls != ok.Load() {
		t.Errorf("back end saw %d requests, clients got %d verified replies", calls, ok.Load())
	}
	// After the last reload every new request is served by the last configuration.
	c := fltClient(t, pkiDir, base)
	r, err := c.Get(context.Background(), "/v3/certificates")
	if err != nil || r.Header.Get("X-Config-Generation") != strconv.Itoa(reloads+1) {
		t.Fatalf("after the reloads: %v %v", err, r)
	}
	fltProcessAlive(t, inst)

	// Every decision of every generation is in one intact audit chain.
	inst.stop()
	out, err := exec.Command(gmgateBin(t), "audit", "verify", "--cert", filepath.Join(pkiDir, "platform.pem"),
		filepath.Join(inst.dir, "audit", "verify.log")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "intact") || !strings.Contains(string(out), fmt.Sprintf("%d decisions", okAudited.Load()+1)) {
		t.Fatalf("gmgate audit verify after the reloads (want %d decisions): %v\n%s", okAudited.Load()+1, err, out)
	}
}

// fltConnClosed reports whether err is the server closing a connection under a request that
// got no reply at all (EOF or reset), as opposed to a reply that failed verification.
func fltConnClosed(err error) bool {
	var re *client.ReplyError
	if err == nil || errors.As(err, &re) {
		return false
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		strings.Contains(err.Error(), "server closed idle connection")
}
