package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	for _, tc := range []struct {
		name string
		in   []time.Duration
		q    float64
		want time.Duration
	}{
		{"empty", nil, 0.5, 0},
		{"one", ms(7), 0.99, 7 * time.Millisecond},
		{"median of 4 is the 2nd", ms(1, 2, 3, 4), 0.5, 2 * time.Millisecond},
		{"p99 of 1..100", ms(hundred...), 0.99, 99 * time.Millisecond},
		{"p100", ms(hundred...), 1, 100 * time.Millisecond},
		{"tiny q is the minimum", ms(3, 5, 9), 0.0001, 3 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := percentile(tc.in, tc.q); got != tc.want {
				t.Fatalf("percentile(%v, %v) = %v, want %v", tc.in, tc.q, got, tc.want)
			}
		})
	}
	// summarize sorts its input.
	s := summarize(ms(5, 1, 4, 2, 3))
	if s.N != 5 || s.P50 != 3*time.Millisecond || s.Max != 5*time.Millisecond {
		t.Fatalf("summarize: %+v", s)
	}
}

func TestParseStatCPU(t *testing.T) {
	for _, tc := range []struct {
		name    string
		stat    string
		want    time.Duration
		wantErr bool
	}{
		{"plain", "1234 (gmgate) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 100 0 0", 300 * clockTick, false},
		{"name with spaces and parens", "99 (a b) c)) R 1 99 99 0 -1 0 0 0 0 0 7 3 0 0 20 0 1 0 5", 10 * clockTick, false},
		{"no command", "1234 gmgate S 1", 0, true},
		{"too short", "1 (x) S 1 2 3", 0, true},
		{"not a number", "1 (x) S 1 1 1 0 -1 0 0 0 0 0 x 3 0", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStatCPU(tc.stat)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("got %v, %v; want %v, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestParseStatusRSS(t *testing.T) {
	for _, tc := range []struct {
		name    string
		status  string
		want    int64
		wantErr bool
	}{
		{"kB", "Name:\tgmgate\nVmPeak:\t  900 kB\nVmRSS:\t   81234 kB\nThreads:\t9\n", 81234 * 1024, false},
		{"missing", "Name:\tgmgate\n", 0, true},
		{"bad unit", "VmRSS:\t 12 MB\n", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStatusRSS(tc.status)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("got %v, %v; want %v, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestProcSelf(t *testing.T) {
	if _, err := procCPU("self"); err != nil {
		t.Fatal(err)
	}
	if rss, err := procRSS("self"); err != nil || rss <= 0 {
		t.Fatalf("rss %d, %v", rss, err)
	}
}

func TestParsers(t *testing.T) {
	if got := parseCPUModel("processor\t: 0\nmodel name\t: AMD EPYC 7B13\n"); got != "AMD EPYC 7B13" {
		t.Fatalf("cpu model %q", got)
	}
	if got := parseMemTotal("MemTotal:       24641536 kB\n"); got != "23.5 GiB" {
		t.Fatalf("mem %q", got)
	}
	prom := `# HELP x
gmgate_tlcp_handshake_duration_seconds_bucket{resumed="false",suite="ECC_SM4_GCM_SM3",le="0.1"} 3
gmgate_tlcp_handshake_duration_seconds_count{resumed="false",suite="ECC_SM4_GCM_SM3"} 3
gmgate_tlcp_handshake_duration_seconds_count{resumed="false",suite="ECC_SM4_CBC_SM3"} 2
gmgate_tlcp_handshake_duration_seconds_count{resumed="true",suite="ECC_SM4_GCM_SM3"} 7
`
	if full, res := parseHandshakes(prom); full != 5 || res != 7 {
		t.Fatalf("handshakes %v %v", full, res)
	}
	for _, tc := range []struct {
		in   string
		want float64
		ok   bool
	}{
		{"Active filters:\n   focus=x\nShowing nodes accounting for 0.35s, 31.25% of 1.12s total\n", 31.25, true},
		{"Focus expression matched no samples\n", 0, false},
	} {
		got, ok := parseFocusShare(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Fatalf("parseFocusShare(%q) = %v %v", tc.in, got, ok)
		}
	}
}

func TestStats(t *testing.T) {
	if s := slope([]float64{0, 1, 2, 3}, []float64{10, 12, 14, 16}); s != 2 {
		t.Fatalf("slope %v", s)
	}
	if s := slope([]float64{1}, []float64{1}); s != 0 {
		t.Fatalf("slope of one point %v", s)
	}
	for _, tc := range []struct {
		rps  []float64
		want bool
	}{
		{nil, false},
		{[]float64{100}, false},
		{[]float64{100, 200}, false},
		{[]float64{100, 200, 204}, false},
		{[]float64{100, 200, 204, 150}, true},
		{[]float64{100, 200, 150, 260}, false},
		{[]float64{100, 200, 150, 209, 205}, true},
	} {
		if got := rampDone(tc.rps, 0.05, 2); got != tc.want {
			t.Fatalf("rampDone(%v) = %v", tc.rps, got)
		}
	}
	if peakIndex([]float64{1, 5, 5, 2}) != 1 || peakIndex(nil) != -1 {
		t.Fatal("peakIndex")
	}
}

func TestBound(t *testing.T) {
	c := sm2Costs{Sign: 20 * time.Microsecond, Verify: 60 * time.Microsecond, Encrypt: 70 * time.Microsecond, Decrypt: 50 * time.Microsecond}
	b := newBound(c, 1000, 10, 100)
	// ingress: 80 + 10/1000 * (20+50+60); egress: 80 + 100/1000 * (60+70+20)
	if b.IngressPerReq != 80*time.Microsecond+1300*time.Nanosecond || b.EgressPerReq != 95*time.Microsecond {
		t.Fatalf("bound %+v", b)
	}
	if newBound(c, 0, 5, 5).Total() != 160*time.Microsecond {
		t.Fatal("bound without requests counts only per-request operations")
	}
}

func TestSoakVerdict(t *testing.T) {
	mk := func(vals ...int64) []rssSample {
		var out []rssSample
		for i, v := range vals {
			out = append(out, rssSample{At: time.Duration(i) * time.Minute, RSS: map[string]int64{"ingress": v << 20}})
		}
		return out
	}
	for _, tc := range []struct {
		name string
		in   []rssSample
		flat bool
	}{
		{"rises then level", mk(50, 70, 90, 100, 100, 101, 102, 101, 100), true},
		{"keeps rising", mk(50, 60, 70, 80, 90, 100, 110, 120, 130), false},
		{"empty", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if v := judgeSoak(tc.in, "ingress"); v.Flat != tc.flat {
				t.Fatalf("verdict %+v, want flat=%v", v, tc.flat)
			}
		})
	}
}

func TestRender(t *testing.T) {
	costs := sm2Costs{Sign: 25 * time.Microsecond, Verify: 60 * time.Microsecond, Encrypt: 65 * time.Microsecond, Decrypt: 50 * time.Microsecond}
	step := func(name string, conc, reqs int, cpu time.Duration, p99 time.Duration) stepResult {
		s := stepResult{Target: name, Mode: "closed", Concurrency: conc, Requests: reqs, RPS: float64(reqs) / 10,
			Window: 10 * time.Second, CPU: map[string]time.Duration{}, RSS: map[string]int64{}, Lat: latencies{N: reqs, P50: p99 / 4, P99: p99}}
		if name == "gateway" {
			s.CPU["ingress"], s.CPU["egress"] = cpu/2, cpu/2
		} else {
			s.CPU["baseline"] = cpu
		}
		return s
	}
	gw, bl := step("gateway", 8, 1000, 200*time.Millisecond, 8*time.Millisecond), step("baseline", 8, 5000, 500*time.Millisecond, 2*time.Millisecond)
	half := step("gateway", 8, 500, 100*time.Millisecond, 6*time.Millisecond)
	half.Mode, half.Rate = "open", 50
	halfBL := step("baseline", 8, 500, 40*time.Millisecond, 2*time.Millisecond)
	r := &report{CmdLine: "go run ./integration/cmd/gmload -duration 10s", Scheme: "wechatpay-v3-sm2", Audit: "interval",
		Costs: costs, Ramp: []stepResult{gw, bl}, PeakGW: gw, PeakBL: bl, HalfGW: half, HalfBL: halfBL, PNG: "report.png",
		Machine: machine{CPUModel: "Test CPU", NumCPU: 2}}
	var buf bytes.Buffer
	r.render(&buf)
	md := buf.String()
	// Gateway 200 µs/req against a bound of 2*(25+60) = 170 µs: ratio 1.18, met; p99 added 4 ms: met.
	for _, want := range []string{
		"| CPU | Test CPU |",
		"go run ./integration/cmd/gmload -duration 10s",
		"| 1.18 (200 µs ÷ 170 µs) | ≤ 1.25 | **met** |",
		"| 4.00 ms (6.00 − 2.00) | < 5.00 ms | **met** |",
		// Issue 14, target 1 at half peak: 200 µs ÷ (170 + 2 × 80 µs) = 0.61; at the peak
		// 200 ÷ (170 + 2 × 100) = 0.54. Per hop (100 µs each, 85 µs of SM2 each): 15 µs.
		"| 0.61 (200 µs ÷ (170 + 2 × 80 µs)) | ≤ 1.30 | **met** |",
		"| 0.54 (200 µs ÷ (170 + 2 × 100 µs)) | ≤ 1.30 | **met** |",
		"| half peak | 15 µs | 15 µs | 80 µs | 0.19 | 0.19 |",
		"not run (`-soak 0`)",
		"![throughput",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if strings.Contains(md, "Caddy hop measured at the gateway's peak rate") || strings.Contains(md, "hop at the gateway's rate") {
		t.Error("row of the baseline at the gateway's rate without that measurement")
	}
	// The baseline measured at the gateway's peak rate: 200 µs per request there, so the peak
	// figure against it is 200 ÷ (170 + 2 × 200) = 0.35.
	r.PeakBLAtGWRate = step("baseline", 8, 1000, 200*time.Millisecond, 2*time.Millisecond)
	r.PeakBLAtGWRate.Mode, r.PeakBLAtGWRate.Rate = "open", 100
	buf.Reset()
	r.render(&buf)
	for _, want := range []string{
		"| same at the peak, the Caddy hop measured at the gateway's peak rate (100 req/s, open loop) instead of its own peak | 0.35 (200 µs ÷ (170 + 2 × 200 µs)) | ≤ 1.30 | **met** |",
		"| peak, hop at the gateway's rate | 15 µs | 15 µs | 200 µs | 0.07 | 0.07 |",
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("report lacks %q", want)
		}
	}
	r.PeakBLAtGWRate = stepResult{}
	// Half-rate profiles: per-category CPU per request of each process, side by side.
	if strings.Contains(buf.String(), "by category at half the peak") {
		t.Error("half-rate profile section without profiles")
	}
	r.HalfProfileCPU = map[string]time.Duration{"ingress": 400 * time.Microsecond, "egress": 380 * time.Microsecond, "baseline": 230 * time.Microsecond}
	r.HalfProfile = map[string]map[string]time.Duration{
		"ingress":  {"system calls": 48 * time.Microsecond},
		"baseline": {"system calls": 31 * time.Microsecond},
	}
	r.HalfProfileNote = "note"
	buf.Reset()
	r.render(&buf)
	for _, want := range []string{
		"## CPU per request by category at half the peak\n\nnote.",
		"| **whole process** | 400 | 380 | 230 |",
		"| system calls | 48 | 0 | 31 |",
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("report lacks %q", want)
		}
	}
	r.HalfProfile, r.HalfProfileCPU, r.HalfProfileNote = nil, nil, ""
	// Slower gateway: both targets missed.
	r.HalfGW = step("gateway", 8, 500, 150*time.Millisecond, 9*time.Millisecond)
	r.HalfGW.Rate = 50
	buf.Reset()
	r.render(&buf)
	// 300 µs ÷ (170 + 160) = 0.91: issue 14's target still met at half peak.
	if md := buf.String(); strings.Count(md, "**not met**") != 2 || !strings.Contains(md, "| 0.91 (300 µs ÷ (170 + 2 × 80 µs)) | ≤ 1.30 | **met** |") {
		t.Errorf("want two targets not met:\n%s", md)
	}
	// A gateway at 500 µs per request misses it: 500 ÷ 330 = 1.52.
	r.HalfGW = step("gateway", 8, 500, 250*time.Millisecond, 9*time.Millisecond)
	r.HalfGW.Rate = 50
	buf.Reset()
	r.render(&buf)
	if md := buf.String(); !strings.Contains(md, "| 1.52 (500 µs ÷ (170 + 2 × 80 µs)) | ≤ 1.30 | **not met** |") {
		t.Errorf("target 1 not judged:\n%s", md)
	}

	// A soak that kept growing is reported as not flat.
	var samples []rssSample
	for i := 0; i <= 20; i++ { // every 30 s
		samples = append(samples, rssSample{At: time.Duration(i) * 30 * time.Second,
			RSS:        map[string]int64{"ingress": int64(50+5*i) << 20, "egress": 40 << 20},
			Goroutines: map[string]int64{"ingress": int64(30 + i), "egress": 25},
			HeapInuse:  map[string]int64{"ingress": 8 << 20, "egress": 4 << 20}})
	}
	r.Soak = &soakResult{Step: stepResult{Target: "gateway", Window: 10 * time.Minute, Rate: 50, RPS: 50, Requests: 30000}, Samples: samples, Period: 30 * time.Second}
	r.Env = []string{"GOGC=200", "GOMEMLIMIT=256MiB"}
	buf.Reset()
	r.render(&buf)
	md = buf.String()
	for _, want := range []string{
		"ingress 100.0→150.0 MiB, egress 40.0→40.0 MiB | flat | **not met**",
		"| ingress | 50.0 | 100.0 | 150.0 | 150.0 | 10.00 | false | 30 / 40 / 50 / 50 |",
		"| egress | 40.0 | 40.0 | 40.0 | 40.0 | 0.00 | true | 25 / 25 / 25 / 25 |",
		// Thinned to one sample a minute: 0, 1m, ..., 10m.
		"| 1m0s | 60.0 | 8.0 | 32 | 40.0 | 4.0 | 25 |",
		"| 10m0s | 150.0 | 8.0 | 50 | 40.0 | 4.0 | 25 |",
		"Environment of every gmgate process (ingress, egress, baseline): `GOGC=200 GOMEMLIMIT=256MiB` (`-env`).",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("soak report lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "| 30s |") {
		t.Error("soak samples not thinned to one a minute")
	}

	// The chart is a PNG, with and without a soak.
	for _, soak := range []*soakResult{nil, {Samples: []rssSample{{At: 0, RSS: map[string]int64{"ingress": 1 << 26}}, {At: time.Minute, RSS: map[string]int64{"ingress": 1 << 26}}}}} {
		r.Soak = soak
		path := filepath.Join(t.TempDir(), "r.png")
		if err := writeChart(r, path); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil || !bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) {
			t.Fatalf("not a PNG (%v)", err)
		}
	}
}

func TestMerge(t *testing.T) {
	a := stepResult{Target: "gateway", Rounds: 1, Window: time.Second, Requests: 2, CPU: map[string]time.Duration{"ingress": 10 * time.Millisecond},
		samples: []time.Duration{1 * time.Millisecond, 2 * time.Millisecond}}
	b := stepResult{Target: "gateway", Rounds: 1, Window: time.Second, Requests: 2, Errors: 1, FirstError: "boom",
		CPU: map[string]time.Duration{"ingress": 30 * time.Millisecond}, samples: []time.Duration{3 * time.Millisecond, 40 * time.Millisecond}}
	m := stepResult{}.merge(a).merge(b)
	if m.Rounds != 2 || m.Requests != 4 || m.Errors != 1 || m.FirstError != "boom" || m.RPS != 2 ||
		m.CPU["ingress"] != 40*time.Millisecond || m.Lat.N != 4 || m.Lat.P50 != 2*time.Millisecond || m.Lat.Max != 40*time.Millisecond {
		t.Fatalf("merged %+v", m)
	}
	if m.CPUPerReq() != 10*time.Millisecond {
		t.Fatalf("cpu per request %v", m.CPUPerReq())
	}
	if a.CPU["ingress"] != 10*time.Millisecond || len(a.samples) != 2 {
		t.Fatal("merge changed its input")
	}
}

func TestHSMSigned(t *testing.T) {
	for _, tc := range []struct {
		prom string
		want bool
	}{
		{`gmgate_vault_operations_total{key="platform-sign",op="sign",result="ok",token="hsm"} 3`, true},
		{`gmgate_vault_operations_total{key="platform-sign",op="sign",result="ok",token="file"} 3`, false},
		{`gmgate_vault_operations_total{key="platform-sign",op="sign",result="ok",token="hsm"} 0`, false},
		{`gmgate_vault_operations_total{key="platform-sign",op="sign",result="pin",token="hsm"} 2`, false},
		{"", false},
	} {
		if got := hsmSigned(tc.prom); got != tc.want {
			t.Errorf("hsmSigned(%q) = %v", tc.prom, got)
		}
	}
}

func TestParseEnv(t *testing.T) {
	if env, err := parseEnv(" GOGC=200, GOMEMLIMIT=512MiB "); err != nil || strings.Join(env, " ") != "GOGC=200 GOMEMLIMIT=512MiB" {
		t.Fatalf("parseEnv: %q %v", env, err)
	}
	if env, err := parseEnv(""); err != nil || env != nil {
		t.Fatalf("empty: %q %v", env, err)
	}
	for _, bad := range []string{"GOGC", "=1", "GO GC=1", "GOGC=1,,", "A;B=1"} {
		if _, err := parseEnv(bad); err == nil {
			t.Errorf("parseEnv(%q) accepted", bad)
		}
	}
}

func TestPromGauge(t *testing.T) {
	prom := "# HELP go_goroutines Number of goroutines.\ngo_goroutines 42\ngo_goroutines_total{x=\"1\"} 7\ngo_memstats_heap_inuse_bytes 1.2e+07\n"
	if g := promGauge(prom, "go_goroutines"); g != 42 {
		t.Errorf("goroutines %d", g)
	}
	if h := promGauge(prom, "go_memstats_heap_inuse_bytes"); h != 12000000 {
		t.Errorf("heap %d", h)
	}
	if x := promGauge(prom, "go_threads"); x != -1 {
		t.Errorf("absent metric %d", x)
	}
}

func TestGCStats(t *testing.T) {
	prom := "go_gc_duration_seconds_count 12\ngo_memstats_alloc_bytes_total 1.048576e+06\ngo_memstats_mallocs_total 5000\n"
	a := readGCStat(prom)
	if !a.OK || a.Cycles != 12 || a.AllocBytes != 1<<20 || a.Mallocs != 5000 {
		t.Fatalf("read %+v", a)
	}
	if readGCStat("go_goroutines 3\n").OK {
		t.Fatal("counters absent, read as OK")
	}
	b := gcStat{Cycles: 22, AllocBytes: 3 << 20, Mallocs: 9000, OK: true}
	d := b.sub(a)
	if d != (gcStat{10, 2 << 20, 4000, true}) {
		t.Fatalf("difference %+v", d)
	}
	// Two windows merged: counters add up; a window without metrics makes the sum unknown.
	s1 := stepResult{Target: "gateway", Rounds: 1, Window: time.Second, Requests: 1000, GC: map[string]gcStat{"ingress": d}}
	m := stepResult{}.merge(s1).merge(s1)
	if m.GC["ingress"] != (gcStat{20, 4 << 20, 8000, true}) {
		t.Fatalf("merged %+v", m.GC)
	}
	if s1.GC["ingress"] != d {
		t.Fatal("merge changed its input")
	}
	if m.merge(stepResult{Rounds: 1, Window: time.Second, GC: map[string]gcStat{"ingress": {}}}).GC["ingress"].OK {
		t.Fatal("a window without counters merged as OK")
	}
	// Rendered per request: 2000 requests, 8000 allocations, 4 MiB, 20 cycles.
	r := &report{PeakGW: m, HalfGW: m}
	var lines []string
	r.renderGC(func(f string, a ...any) { lines = append(lines, fmt.Sprintf(f, a...)) })
	if md := strings.Join(lines, ""); !strings.Contains(md, "| half peak | ingress | 2000 | 4 | 2.0 | 10.00 |") {
		t.Fatalf("rendered:\n%s", md)
	}
}
