package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/client"
	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/tlcp"
)

// target is one system under load: how to send one request and which processes serve it.
type target struct {
	name  string
	do    func(ctx context.Context, seq uint64) error
	procs []*gmProc
	// handshakes returns the TLCP handshakes the ingress has done (nil: not a TLCP target).
	handshakes func() (full, resumed float64)
	// bankConns returns the connections the bank has accepted (nil: no bank).
	bankConns func() int64
	legacy    *legacy
}

func paymentBody(seq uint64) []byte {
	return fmt.Appendf(nil, `{"mchid":"1900000001","out_trade_no":"GM%018d","description":"gmload","amount":{"total":100,"currency":"CNY"}}`, seq)
}

const payPath = "/v3/pay/transactions/native"

// newGatewayClient builds the terminal SDK client for the ingress: TLCP with the development
// client pair, requests signed with scheme, replies verified with the platform certificate.
func newGatewayClient(pkiDir string, port int, scheme string, conns int) (*client.Client, error) {
	p := func(base string) string { return filepath.Join(pkiDir, base) }
	sign, enc, err := client.LoadTerminal(p(pki.DevClientSignBase+".pem"), p(pki.DevClientSignBase+".key"),
		p(pki.DevClientEncBase+".pem"), p(pki.DevClientEncBase+".key"), nil)
	if err != nil {
		return nil, err
	}
	roots, err := client.LoadCertificates(p("root.pem"))
	if err != nil {
		return nil, err
	}
	pool := smx509.NewCertPool()
	for _, c := range roots {
		pool.AddCert(c)
	}
	plat, err := client.LoadCertificates(p(pki.DevPlatformBase + ".pem"))
	if err != nil {
		return nil, err
	}
	key, err := sign.SigningKey("", "1900000001")
	if err != nil {
		return nil, err
	}
	return client.New(client.Config{
		BaseURL: fmt.Sprintf("https://localhost:%d", port),
		TLCP: &client.TLCPConfig{Sign: sign, Enc: enc, RootCAs: pool, ServerName: "localhost",
			CipherSuites: []uint16{tlcp.ECC_SM4_GCM_SM3}, SessionCache: tlcp.NewLRUSessionCache(1024, time.Hour)},
		Scheme:              scheme,
		Key:                 key,
		PlatformCerts:       plat,
		MaxIdleConnsPerHost: conns,
		Timeout:             30 * time.Second,
	})
}

func gatewayDo(c *client.Client) func(ctx context.Context, seq uint64) error {
	return func(ctx context.Context, seq uint64) error {
		resp, err := c.Post(ctx, payPath, "application/json", paymentBody(seq))
		if err != nil {
			var re *client.ReplyError
			if errors.As(err, &re) && re.GatewayCode != "" {
				return fmt.Errorf("%w: %s: %s", err, re.GatewayCode, re.GatewayMessage)
			}
			return err
		}
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(resp.Body), `"result":"SUCCESS"`) {
			return fmt.Errorf("status %d: %.200s", resp.StatusCode, resp.Body)
		}
		return nil
	}
}

// baselineDo sends the same payment body unsigned over TLS 1.3 (HTTP/1.1, kept alive).
func baselineDo(port, conns int) func(ctx context.Context, seq uint64) error {
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13, ServerName: "localhost", ClientSessionCache: tls.NewLRUClientSessionCache(1024)},
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     90 * time.Second,
	}}
	url := fmt.Sprintf("https://localhost:%d%s", port, payPath)
	return func(ctx context.Context, seq uint64) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(string(paymentBody(seq))))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK || resp.TLS == nil || resp.TLS.Version != tls.VersionTLS13 ||
			!strings.Contains(string(b), `"result":"SUCCESS"`) {
			return fmt.Errorf("status %d: %.200s", resp.StatusCode, b)
		}
		return nil
	}
}

// stepResult is one measured phase of one target.
type stepResult struct {
	Target      string
	Mode        string // "closed" (fixed concurrency) or "open" (fixed arrival rate)
	Concurrency int
	Rate        float64 // offered rate, open loop
	Window      time.Duration
	Requests    int
	Errors      int
	Dropped     int // open loop: arrivals not sent because maxInflight requests were pending
	FirstError  string
	RPS         float64
	Lat         latencies
	CPU         map[string]time.Duration // per gmgate process over the window
	RSS         map[string]int64         // per gmgate process at the end of the window
	HarnessCPU  time.Duration
	HSFull      float64 // ingress TLCP handshakes (full, resumed) in the window
	HSResumed   float64
	BankConns   int64
	EgressLat   latencies         // back end's view of egress+bank round trips
	Rounds      int               // measured windows merged into this result
	GC          map[string]gcStat // per gmgate process over the window, from its Go metrics

	samples, egressSamples []time.Duration
}

// merge adds the measured window of o (same target, same settings) to s.
func (s stepResult) merge(o stepResult) stepResult {
	if s.Rounds == 0 {
		return o
	}
	s.Window += o.Window
	s.Requests += o.Requests
	s.Errors += o.Errors
	s.Dropped += o.Dropped
	if s.FirstError == "" {
		s.FirstError = o.FirstError
	}
	cpu := map[string]time.Duration{}
	for k, v := range s.CPU {
		cpu[k] += v
	}
	for k, v := range o.CPU {
		cpu[k] += v
	}
	s.CPU, s.RSS = cpu, o.RSS
	s.HarnessCPU += o.HarnessCPU
	s.HSFull += o.HSFull
	s.HSResumed += o.HSResumed
	s.BankConns += o.BankConns
	gc := maps.Clone(s.GC)
	if gc == nil {
		gc = map[string]gcStat{}
	}
	for k, v := range o.GC {
		if old, ok := gc[k]; ok {
			v = old.add(v)
		}
		gc[k] = v
	}
	s.GC = gc
	s.samples = append(append([]time.Duration(nil), s.samples...), o.samples...)
	s.egressSamples = append(append([]time.Duration(nil), s.egressSamples...), o.egressSamples...)
	s.Lat, s.EgressLat = summarize(s.samples), summarize(s.egressSamples)
	s.RPS = float64(s.Requests) / s.Window.Seconds()
	s.Rounds += o.Rounds
	return s
}

// CPUPerReq is the CPU time of all the target's gmgate processes per completed request.
func (s stepResult) CPUPerReq() time.Duration {
	if s.Requests == 0 {
		return 0
	}
	var t time.Duration
	for _, c := range s.CPU {
		t += c
	}
	return t / time.Duration(s.Requests)
}

// totalRSS is the summed RSS of the target's processes at the end of the window.
func (s stepResult) totalRSS() int64 {
	var t int64
	for _, v := range s.RSS {
		t += v
	}
	return t
}

// ProcCPUPerReq is one process's CPU time per completed request.
func (s stepResult) ProcCPUPerReq(name string) time.Duration {
	if s.Requests == 0 {
		return 0
	}
	return s.CPU[name] / time.Duration(s.Requests)
}

// gcStat is a process's Go runtime counters (go_gc_duration_seconds_count,
// go_memstats_alloc_bytes_total, go_memstats_mallocs_total), or their difference over a window.
type gcStat struct {
	Cycles, AllocBytes, Mallocs int64
	OK                          bool // read from the metrics
}

func (g gcStat) add(o gcStat) gcStat {
	return gcStat{g.Cycles + o.Cycles, g.AllocBytes + o.AllocBytes, g.Mallocs + o.Mallocs, g.OK && o.OK}
}

func (g gcStat) sub(o gcStat) gcStat {
	return gcStat{g.Cycles - o.Cycles, g.AllocBytes - o.AllocBytes, g.Mallocs - o.Mallocs, g.OK && o.OK}
}

// readGCStat reads the counters from Prometheus text.
func readGCStat(prom string) gcStat {
	g := gcStat{Cycles: promGauge(prom, "go_gc_duration_seconds_count"), AllocBytes: promGauge(prom, "go_memstats_alloc_bytes_total"),
		Mallocs: promGauge(prom, "go_memstats_mallocs_total")}
	g.OK = g.Cycles >= 0 && g.AllocBytes >= 0 && g.Mallocs >= 0
	return g
}

type snapshot struct {
	at        time.Time
	cpu       map[string]time.Duration
	gc        map[string]gcStat
	self      time.Duration
	full, res float64
	bank      int64
}

func (t *target) snap() snapshot {
	s := snapshot{at: time.Now(), cpu: map[string]time.Duration{}, gc: map[string]gcStat{}}
	for _, p := range t.procs {
		s.cpu[p.name], _ = procCPU(p.pid())
	}
	for _, p := range t.procs { // one scrape: well under a millisecond of the process's CPU
		s.gc[p.name] = readGCStat(p.metrics())
	}
	s.self, _ = procCPU("self")
	if t.handshakes != nil {
		s.full, s.res = t.handshakes()
	}
	if t.bankConns != nil {
		s.bank = t.bankConns()
	}
	return s
}

// recorder collects completions inside the measurement window.
type recorder struct {
	state   atomic.Int32 // 0 warm-up, 1 measuring, 2 done
	mu      sync.Mutex
	lat     []time.Duration
	errs    int
	dropped int
	first   string
}

func (r *recorder) add(d time.Duration, err error) {
	if r.state.Load() != 1 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		if r.errs == 0 {
			r.first = err.Error()
		}
		r.errs++
		return
	}
	r.lat = append(r.lat, d)
}

var seq atomic.Uint64

// measure opens the window after warmup, keeps it open for d, and fills the result.
func (t *target) measure(rec *recorder, warmup, d time.Duration, res *stepResult, during func()) {
	time.Sleep(warmup)
	if t.legacy != nil {
		t.legacy.record(true)
	}
	a := t.snap()
	rec.state.Store(1)
	if during != nil {
		go during()
	}
	time.Sleep(d)
	rec.state.Store(2)
	b := t.snap()
	res.Window = b.at.Sub(a.at)
	rec.mu.Lock()
	res.Requests, res.Errors, res.Dropped, res.FirstError = len(rec.lat), rec.errs, rec.dropped, rec.first
	res.Lat, res.samples, res.Rounds = summarize(rec.lat), rec.lat, 1
	rec.mu.Unlock()
	res.RPS = float64(res.Requests) / res.Window.Seconds()
	res.CPU, res.RSS, res.GC = map[string]time.Duration{}, map[string]int64{}, map[string]gcStat{}
	for _, p := range t.procs {
		res.CPU[p.name] = b.cpu[p.name] - a.cpu[p.name]
		res.GC[p.name] = b.gc[p.name].sub(a.gc[p.name])
		res.RSS[p.name], _ = procRSS(p.pid())
	}
	res.HarnessCPU = b.self - a.self
	res.HSFull, res.HSResumed = b.full-a.full, b.res-a.res
	res.BankConns = b.bank - a.bank
	if t.legacy != nil {
		res.egressSamples = t.legacy.record(false)
		res.EgressLat = summarize(res.egressSamples)
	}
}

// closedLoop runs conc workers back to back.
func (t *target) closedLoop(conc int, warmup, d time.Duration, during func()) stepResult {
	res := stepResult{Target: t.name, Mode: "closed", Concurrency: conc}
	rec := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := 0; i < conc; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				start := time.Now()
				err := t.do(ctx, seq.Add(1))
				if ctx.Err() != nil {
					return
				}
				rec.add(time.Since(start), err)
			}
		}()
	}
	t.measure(rec, warmup, d, &res, during)
	cancel()
	wg.Wait()
	return res
}

// openLoop sends requests at Poisson arrivals of the given rate, whatever the latency; the
// latency of each request counts from its scheduled arrival (no coordinated omission). At most
// maxInflight requests are on the wire at once (so at most that many client connections): later
// arrivals wait for a free slot, and the wait counts in their latency. An arrival that finds
// 100 000 requests already waiting is dropped and counted.
func (t *target) openLoop(rate float64, maxInflight int, warmup, d time.Duration, during func()) stepResult {
	res := stepResult{Target: t.name, Mode: "open", Rate: rate, Concurrency: maxInflight}
	rec := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	sem := make(chan struct{}, maxInflight)
	var waiting atomic.Int64
	rng := rand.New(rand.NewPCG(1, 2))
	wg.Add(1)
	go func() {
		defer wg.Done()
		next := time.Now()
		for ctx.Err() == nil {
			next = next.Add(time.Duration(rng.ExpFloat64() / rate * float64(time.Second)))
			if w := time.Until(next); w > 0 {
				time.Sleep(w)
			}
			if waiting.Load() >= 100000 {
				if rec.state.Load() == 1 {
					rec.mu.Lock()
					rec.dropped++
					rec.mu.Unlock()
				}
				continue
			}
			waiting.Add(1)
			wg.Add(1)
			go func(at time.Time) {
				defer wg.Done()
				select {
				case sem <- struct{}{}:
					waiting.Add(-1)
				case <-ctx.Done():
					waiting.Add(-1)
					return
				}
				defer func() { <-sem }()
				err := t.do(ctx, seq.Add(1))
				if ctx.Err() != nil {
					return
				}
				rec.add(time.Since(at), err)
			}(next)
		}
	}()
	t.measure(rec, warmup, d, &res, during)
	cancel()
	wg.Wait()
	return res
}

// rssSample is one soak sample: per process, VmRSS, and from its metrics the number of
// goroutines and the Go heap in use (-1 when the metrics could not be read).
type rssSample struct {
	At         time.Duration
	RSS        map[string]int64
	Goroutines map[string]int64
	HeapInuse  map[string]int64
}

// sampleRSS samples the processes' RSS, goroutines and heap every period until ctx ends.
func sampleRSS(ctx context.Context, procs []*gmProc, period time.Duration) []rssSample {
	start := time.Now()
	var out []rssSample
	take := func() {
		s := rssSample{At: time.Since(start), RSS: map[string]int64{}, Goroutines: map[string]int64{}, HeapInuse: map[string]int64{}}
		for _, p := range procs {
			s.RSS[p.name], _ = procRSS(p.pid())
			m := p.metrics()
			s.Goroutines[p.name], s.HeapInuse[p.name] = promGauge(m, "go_goroutines"), promGauge(m, "go_memstats_heap_inuse_bytes")
		}
		out = append(out, s)
	}
	take()
	tk := time.NewTicker(period)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			take()
			return out
		case <-tk.C:
			take()
		}
	}
}

// promGauge is the value of an unlabelled metric in Prometheus text, -1 when absent.
func promGauge(prom, name string) int64 {
	for _, line := range strings.Split(prom, "\n") {
		rest, ok := strings.CutPrefix(line, name+" ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		if err != nil {
			return -1
		}
		return int64(v)
	}
	return -1
}

var errNoPeak = errors.New("no step completed a request")
