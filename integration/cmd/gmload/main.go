// Command gmload is gmgate's load harness (issue 6, item 4). It runs the real gmgate binary as
// separate processes — an ingress (TLCP + gm_verify), an egress (gm_channel to a bank simulator
// over TLCP) and, in the same run, a baseline configured as plain Caddy (reverse_proxy over
// TLS 1.3) — drives them with signed requests from the terminal SDK (client/), and reports
// requests/s, p50/p99 latency, CPU time per request (utime+stime of each process from
// /proc/<pid>/stat) and resident memory (VmRSS), as ratios against the baseline and against
// the CPU cost of the SM2 operations each request needs (measured with gmsm in this process).
//
//	go run ./integration/cmd/gmload -duration 10s -soak 10m -out docs/perf/report.md
//
// It writes a markdown report and a PNG chart next to it. See docs/perf/README.md.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/gmgate/gmgate/pki"
)

type config struct {
	bin         string
	out         string
	png         string
	duration    time.Duration
	warmup      time.Duration
	soak        time.Duration
	conc        []int
	scheme      string
	audit       string
	pprofDir    string
	pprofHalf   bool
	minGain     float64
	rate        float64
	maxInflight int
	keep        bool
	boundTime   time.Duration
	rounds      int
	patience    int
	binSource   string
	vault       string
	env         []string // added to every gmgate process's environment (GOGC, GOMEMLIMIT)
	sample      time.Duration
}

func main() {
	log.SetFlags(log.Ltime)
	var cfg config
	var conc string
	flag.StringVar(&cfg.bin, "bin", os.Getenv("GMGATE_BIN"), "gmgate binary (default $GMGATE_BIN, else built from ./cmd/gmgate)")
	flag.StringVar(&cfg.out, "out", "docs/perf/report.md", "markdown report path")
	flag.StringVar(&cfg.png, "png", "", "PNG chart path (default: the report path with .png)")
	flag.DurationVar(&cfg.duration, "duration", 10*time.Second, "measured time of each step")
	flag.DurationVar(&cfg.warmup, "warmup", 2*time.Second, "unmeasured warm-up before each step")
	flag.DurationVar(&cfg.soak, "soak", 0, "soak at half the peak rate for this long, sampling RSS every 10s (0: no soak)")
	flag.StringVar(&conc, "conc", "1,2,4,8,16,32,64,128", "concurrency ladder of the peak search")
	flag.StringVar(&cfg.scheme, "scheme", "wechatpay-v3-sm2", "client signature scheme: wechatpay-v3-sm2 or http-sig-sm2")
	flag.StringVar(&cfg.audit, "audit", "interval", "audit log fsync policy in both gateway processes: always, interval, never, off")
	flag.StringVar(&cfg.pprofDir, "pprof", "", "directory for CPU profiles of the gateway processes at the peak (empty: no profiles)")
	flag.BoolVar(&cfg.pprofHalf, "pprof-half", false, "with -pprof: also profile every process (ingress, egress and the plain Caddy hop) at the half rate and report CPU per request by category side by side")
	flag.Float64Var(&cfg.minGain, "min-gain", 0.05, "a ramp step is a new best when it improves req/s by at least this fraction")
	flag.Float64Var(&cfg.rate, "rate", 0, "open-loop rate (default: half the gateway's peak)")
	flag.IntVar(&cfg.maxInflight, "max-inflight", 0, "open loop: most requests on the wire at once, i.e. client connections (default: twice the gateway's peak concurrency, at least 8)")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the working directory (configs, logs, audit logs)")
	flag.DurationVar(&cfg.boundTime, "bound-time", 500*time.Millisecond, "CPU time spent measuring each SM2 operation")
	flag.IntVar(&cfg.rounds, "rounds", 5, "the half-rate phase alternates gateway and baseline in this many slices of -duration")
	flag.StringVar(&cfg.binSource, "bin-source", "", "what the -bin binary was built from, for the report (e.g. \"git archive 1a2b3c\")")
	flag.StringVar(&cfg.vault, "vault", "file", "where the per-request platform signing keys live: file, or softhsm (SoftHSM2 tokens, wrapped mode)")
	flag.IntVar(&cfg.patience, "patience", 2, "the ramp stops after this many steps without a new best")
	var env string
	flag.StringVar(&env, "env", "", "comma-separated NAME=value added to the environment of every gmgate process, e.g. GOGC=200,GOMEMLIMIT=512MiB")
	flag.DurationVar(&cfg.sample, "sample", 10*time.Second, "soak: RSS and goroutines sampled this often")
	flag.Parse()
	var err error
	if cfg.env, err = parseEnv(env); err != nil {
		log.Fatalf("-env: %v", err)
	}
	if cfg.sample <= 0 {
		log.Fatalf("-sample: %v is not positive", cfg.sample)
	}
	if cfg.rounds < 1 {
		cfg.rounds = 1
	}
	for _, f := range strings.Split(conc, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			log.Fatalf("-conc: bad level %q", f)
		}
		cfg.conc = append(cfg.conc, n)
	}
	if cfg.vault != "file" && cfg.vault != "softhsm" {
		log.Fatalf("-vault: %q is not file or softhsm", cfg.vault)
	}
	switch cfg.audit {
	case "always", "interval", "never", "off":
	default:
		log.Fatalf("-audit: %q is not always, interval, never or off", cfg.audit)
	}
	if cfg.png == "" {
		cfg.png = strings.TrimSuffix(cfg.out, filepath.Ext(cfg.out)) + ".png"
	}
	if err := run(cfg, commandLine()); err != nil {
		log.Fatal(err)
	}
}

// parseEnv reads -env: NAME=value pairs separated by commas (GOMEMLIMIT and GOGC values have no
// commas); names are letters, digits and underscores.
func parseEnv(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []string
	for _, kv := range strings.Split(s, ",") {
		kv = strings.TrimSpace(kv)
		name, _, ok := strings.Cut(kv, "=")
		if !ok || name == "" || strings.IndexFunc(name, func(r rune) bool {
			return !(r == '_' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9')
		}) >= 0 {
			return nil, fmt.Errorf("%q is not NAME=value", kv)
		}
		out = append(out, kv)
	}
	return out, nil
}

func commandLine() string {
	args := []string{"go", "run", "./integration/cmd/gmload"}
	explicit := false
	for _, a := range os.Args[1:] {
		if a == "-bin" || a == "--bin" || strings.HasPrefix(a, "-bin=") || strings.HasPrefix(a, "--bin=") {
			explicit = true
		}
	}
	if b := os.Getenv("GMGATE_BIN"); b != "" && !explicit {
		args = append([]string{"GMGATE_BIN=" + b}, args...)
	}
	for _, a := range os.Args[1:] {
		if strings.ContainsAny(a, " \t'\"$") {
			a = strconv.Quote(a)
		}
		args = append(args, a)
	}
	return strings.Join(args, " ")
}

func resolveBin(bin, root string) (string, error) {
	if bin != "" {
		return bin, nil
	}
	out := filepath.Join(root, "gmgate")
	log.Printf("building ./cmd/gmgate")
	cmd := exec.Command("go", "build", "-o", out, "./cmd/gmgate")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building gmgate (run from the repository root or pass -bin): %w", err)
	}
	return out, nil
}

func run(cfg config, cmdLine string) error {
	root, err := os.MkdirTemp("", "gmload")
	if err != nil {
		return err
	}
	if cfg.keep {
		log.Printf("working directory %s", root)
	} else {
		defer os.RemoveAll(root)
	}
	bin, err := resolveBin(cfg.bin, root)
	if err != nil {
		return err
	}
	m := describeMachine(bin)
	if cfg.binSource != "" {
		m.Commit = cfg.binSource
	} else if cfg.bin != "" {
		m.Commit = "working tree at " + m.Commit + "; the binary was given with -bin/$GMGATE_BIN"
	} else {
		m.Commit = "built from the working tree at " + m.Commit
	}
	r := &report{Machine: m, CmdLine: cmdLine, Scheme: cfg.scheme, Audit: cfg.audit, Vault: cfg.vault, Env: cfg.env,
		StepDuration: cfg.duration, Warmup: cfg.warmup, Started: time.Now(), Profiles: map[string]string{}}
	if rel, err := filepath.Rel(filepath.Dir(cfg.out), cfg.png); err == nil {
		r.PNG = rel
	}

	// The gateway: bank simulator, egress, legacy back end, ingress.
	bk, err := startBank()
	if err != nil {
		return fmt.Errorf("bank simulator: %w", err)
	}
	defer bk.srv.Close()
	if err := writeEgressFiles(filepath.Join(root, "egress"), bk.pki); err != nil {
		return err
	}
	egressPort, err := freePort()
	if err != nil {
		return err
	}
	egressDir, ingressDir := filepath.Join(root, "egress"), filepath.Join(root, "ingress")
	egressVault, ingressVault, reply, ingressAuditKey := egressFileVault, "", "", ""
	egressEnv, ingressEnv := cfg.env, cfg.env
	if cfg.vault == "softhsm" {
		// The signing keys used for every request (the platform keys of both processes) live in
		// SoftHSM2 tokens (wrapped mode); TLCP keys stay in files (they only serve handshakes).
		h, err := newHSMToken(bin, filepath.Join(root, "hsm-egress"), "gmload-egress", []hsmKey{{"platform-sign",
			filepath.Join(egressDir, "platform_sign.key"), filepath.Join(egressDir, "platform_sign.pem")}})
		if err != nil {
			return err
		}
		egressVault, egressEnv = h.block([]hsmKey{{name: "platform-sign", certFile: filepath.Join(egressDir, "platform_sign.pem")}}, true, egressFileKeys), append(h.env, cfg.env...)
		if _, err := pki.EnsureDevPKI(filepath.Join(ingressDir, "pki"), []string{"localhost", "127.0.0.1", "::1"}); err != nil {
			return err
		}
		k := hsmKey{"hsm-platform-sign", filepath.Join(ingressDir, "pki", pki.DevPlatformBase+".key"), filepath.Join(ingressDir, "pki", pki.DevPlatformBase+".pem")}
		h, err = newHSMToken(bin, filepath.Join(root, "hsm-ingress"), "gmload-ingress", []hsmKey{k})
		if err != nil {
			return err
		}
		ingressVault, ingressEnv, ingressAuditKey = h.block([]hsmKey{k}, true), append(h.env, cfg.env...), k.name
		reply = "\t\treply_signing {\n\t\t\tkey " + k.name + "\n\t\t}\n"
	}
	egress, err := startProc(bin, root, "egress", strings.NewReplacer("{PORT}", strconv.Itoa(egressPort), "{BANK}", bk.addr,
		"{AUDIT}", auditBlock(cfg.audit, "platform-sign"), "{VAULT}", egressVault).Replace(egressCaddyfile), egressEnv...)
	if err != nil {
		return err
	}
	defer egress.stop()
	gwLegacy, err := startLegacy(fmt.Sprintf("http://127.0.0.1:%d", egressPort))
	if err != nil {
		return err
	}
	defer gwLegacy.close()
	ingressPort, err := freePort()
	if err != nil {
		return err
	}
	ingress, err := startProc(bin, root, "ingress", strings.NewReplacer("{PORT}", strconv.Itoa(ingressPort),
		"{BACKEND}", gwLegacy.addr, "{SCHEME}", cfg.scheme, "{AUDIT}", auditBlock(cfg.audit, ingressAuditKey),
		"{VAULT}", ingressVault, "{REPLY}", reply).Replace(ingressCaddyfile), ingressEnv...)
	if err != nil {
		return err
	}
	defer ingress.stop()
	maxConc := cfg.conc[len(cfg.conc)-1]
	conns := max(maxConc, cfg.maxInflight) * 2
	gwClient, err := newGatewayClient(filepath.Join(ingress.dir, "pki"), ingressPort, cfg.scheme, conns)
	if err != nil {
		return fmt.Errorf("terminal client: %w", err)
	}
	gw := &target{name: "gateway", do: gatewayDo(gwClient), procs: []*gmProc{ingress, egress}, legacy: gwLegacy,
		handshakes: func() (float64, float64) { return parseHandshakes(ingress.metrics()) },
		bankConns:  bk.ln.n.Load}

	// The baseline: plain Caddy over TLS 1.3 to a legacy back end that answers at once.
	blLegacy, err := startLegacy("")
	if err != nil {
		return err
	}
	defer blLegacy.close()
	basePort, err := freePort()
	if err != nil {
		return err
	}
	base, err := startProc(bin, root, "baseline", strings.NewReplacer("{PORT}", strconv.Itoa(basePort),
		"{BACKEND}", blLegacy.addr).Replace(baselineCaddyfile), cfg.env...)
	if err != nil {
		return err
	}
	defer base.stop()
	bl := &target{name: "baseline", do: baselineDo(basePort, conns), procs: []*gmProc{base}}

	// Both must work before anything is measured.
	for _, t := range []*target{gw, bl} {
		var err error
		for i := 0; i < 50; i++ { // the baseline's certificate may still be being issued
			if err = t.do(context.Background(), seq.Add(1)); err == nil {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if err != nil {
			return fmt.Errorf("%s: first request: %w\ningress:\n%.4000s\negress:\n%.4000s\nbaseline:\n%.4000s", t.name, err, ingress.out, egress.out, base.out)
		}
	}
	if cfg.vault == "softhsm" {
		// The signatures of the first request must have been made in the tokens.
		for _, p := range []*gmProc{ingress, egress} {
			if !hsmSigned(p.metrics()) {
				return fmt.Errorf("%s: no successful sign operation on token \"hsm\" in its metrics", p.name)
			}
		}
	}
	log.Printf("gateway and baseline answer; measuring SM2 costs")
	if r.Costs, err = measureSM2(cfg.boundTime); err != nil {
		return err
	}
	log.Printf("SM2 CPU per op: sign %v verify %v encrypt %v decrypt %v", r.Costs.Sign, r.Costs.Verify, r.Costs.Encrypt, r.Costs.Decrypt)

	// Peak search: gateway and baseline alternate at each level.
	var gwRPS []float64
	for _, c := range cfg.conc {
		g := gw.closedLoop(c, cfg.warmup, cfg.duration, nil)
		b := bl.closedLoop(c, cfg.warmup, cfg.duration, nil)
		log.Printf("c=%d gateway %.0f req/s p99 %v cpu %v/req err %d | baseline %.0f req/s p99 %v cpu %v/req err %d",
			c, g.RPS, g.Lat.P99, g.CPUPerReq(), g.Errors, b.RPS, b.Lat.P99, b.CPUPerReq(), b.Errors)
		r.Ramp = append(r.Ramp, g, b)
		gwRPS = append(gwRPS, g.RPS)
		if rampDone(gwRPS, cfg.minGain, cfg.patience) {
			break
		}
	}
	var gws, bls []float64
	for i := 0; i+1 < len(r.Ramp); i += 2 {
		gws, bls = append(gws, r.Ramp[i].RPS), append(bls, r.Ramp[i+1].RPS)
	}
	r.PeakGW, r.PeakBL = r.Ramp[2*peakIndex(gws)], r.Ramp[2*peakIndex(bls)+1]
	if r.PeakGW.Requests == 0 {
		return errNoPeak
	}

	// The peak is re-measured once (a lucky step on a shared machine would set an unsustainable
	// half rate); the half rate is half the mean of the two measurements.
	r.ConfirmGW = gw.closedLoop(r.PeakGW.Concurrency, cfg.warmup, cfg.duration, nil)
	log.Printf("peak re-measured at c=%d: gateway %.0f req/s (was %.0f)", r.PeakGW.Concurrency, r.ConfirmGW.RPS, r.PeakGW.RPS)

	// The baseline at the gateway's peak rate (open loop, the same slices as below): a plain
	// Caddy hop costs more CPU per request at a low rate than at its own, much higher, peak, so
	// target 1 at the peak is also given against a hop at the same rate as the gateway.
	peakRate := (r.PeakGW.RPS + r.ConfirmGW.RPS) / 2
	for i := 0; i < cfg.rounds; i++ {
		r.PeakBLAtGWRate = r.PeakBLAtGWRate.merge(bl.openLoop(peakRate, max(2*r.PeakGW.Concurrency, 8), cfg.warmup/2, cfg.duration/time.Duration(cfg.rounds), nil))
	}
	log.Printf("baseline at the gateway's peak rate %.0f/s: cpu %v/req", peakRate, r.PeakBLAtGWRate.CPUPerReq())

	// Half the gateway's peak rate, open loop, both targets.
	rate := cfg.rate
	if rate <= 0 {
		rate = (r.PeakGW.RPS + r.ConfirmGW.RPS) / 4
	}
	inflight := cfg.maxInflight
	if inflight <= 0 {
		inflight = max(2*r.PeakGW.Concurrency, 8)
	}
	// The two targets alternate in cfg.rounds slices so that both see the same background load.
	for i := 0; i < cfg.rounds; i++ {
		slice := cfg.duration / time.Duration(cfg.rounds)
		r.HalfGW = r.HalfGW.merge(gw.openLoop(rate, inflight, cfg.warmup/2, slice, nil))
		r.HalfBL = r.HalfBL.merge(bl.openLoop(rate, inflight, cfg.warmup/2, slice, nil))
	}
	log.Printf("half rate %.0f/s: gateway p50 %v p99 %v cpu %v/req | baseline p50 %v p99 %v", rate,
		r.HalfGW.Lat.P50, r.HalfGW.Lat.P99, r.HalfGW.CPUPerReq(), r.HalfBL.Lat.P50, r.HalfBL.Lat.P99)
	costs := meanCosts(r.Costs, sm2Costs{})
	for _, x := range []struct {
		name   string
		gw, bl stepResult
	}{{"half peak", r.HalfGW, r.HalfBL}, {"peak", r.PeakGW, r.PeakBL}} {
		c := newCostTarget(x.gw, x.bl, newBound(costs, x.gw.Requests, x.gw.HSFull, x.gw.BankConns))
		log.Printf("target 1 at %s: gateway %v/req ÷ (SM2 bound %v + 2 × Caddy hop %v) = %.2f (≤ %.2f); non-SM2 per hop: ingress %v egress %v",
			x.name, c.GW, c.Bound, c.Hop, c.Ratio, targetCostRatio, c.IngressRest, c.EgressRest)
	}

	// Profiles of every process at the half rate: what the gateway spends per request where the
	// plain hop's per-request cost is highest (it does not amortise over a full event loop).
	if cfg.pprofDir != "" && cfg.pprofHalf {
		profileHalf(cfg, bin, []*target{gw, bl}, rate, inflight, r)
	}

	// Soak at the same rate, RSS and goroutines sampled every cfg.sample.
	if cfg.soak > 0 {
		log.Printf("soak for %v", cfg.soak)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan []rssSample, 1)
		step := gw.openLoop(rate, inflight, cfg.warmup, cfg.soak, func() {
			done <- sampleRSS(ctx, gw.procs, cfg.sample)
		})
		cancel()
		r.Soak = &soakResult{Step: step, Samples: <-done, Period: cfg.sample}
		log.Printf("soak: %d requests, %d errors", step.Requests, step.Errors)
	}

	// CPU profiles of both gateway processes at the peak concurrency (a separate step, so
	// that profiling does not disturb the measurements above).
	if cfg.pprofDir != "" {
		profile(cfg, bin, gw, r)
	}

	if r.CostsAfter, err = measureSM2(cfg.boundTime); err != nil {
		return err
	}
	r.Finished = time.Now()
	r.Machine.LoadEnd = readText("/proc/loadavg")

	var md bytes.Buffer
	r.render(&md)
	if err := os.MkdirAll(filepath.Dir(cfg.out), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(cfg.out, md.Bytes(), 0o644); err != nil {
		return err
	}
	if err := writeChart(r, cfg.png); err != nil {
		return fmt.Errorf("chart: %w", err)
	}
	log.Printf("wrote %s and %s", cfg.out, cfg.png)
	return nil
}

// profile takes a CPU profile of each gateway process through Caddy's admin /debug/pprof while
// the peak concurrency runs, and keeps `go tool pprof -top` of each for the report.
func profile(cfg config, bin string, gw *target, r *report) {
	if err := os.MkdirAll(cfg.pprofDir, 0o755); err != nil {
		r.ProfileNote = "profiling failed: " + err.Error()
		return
	}
	secs := int(cfg.duration.Seconds())
	if secs < 1 {
		secs = 1
	}
	errs := make(chan error, len(gw.procs))
	gw.closedLoop(r.PeakGW.Concurrency, cfg.warmup, cfg.duration+time.Second, func() {
		for _, p := range gw.procs {
			go func() { errs <- fetchProfile(p, secs, filepath.Join(cfg.pprofDir, p.name+".pprof")) }()
		}
	})
	for range gw.procs {
		if err := <-errs; err != nil {
			r.ProfileNote += err.Error() + " "
		}
	}
	r.ProfileNote += fmt.Sprintf("%d s CPU profiles at %d clients, taken after the measured phases through Caddy's admin "+
		"endpoint (`/debug/pprof/profile`), saved under `%s`; share of samples by what is on the stack, then the top functions by own CPU (`go tool pprof -top`):",
		secs, r.PeakGW.Concurrency, cfg.pprofDir)
	for _, p := range gw.procs {
		file := filepath.Join(cfg.pprofDir, p.name+".pprof")
		out, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=25", bin, file).Output()
		if err == nil {
			r.Profiles[p.name] = string(out)
		}
		for _, c := range profileCategories {
			out, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=100000", "-nodefraction=0", "-focus="+c.focus, bin, file).Output()
			if err != nil {
				continue
			}
			if share, ok := parseFocusShare(string(out)); ok {
				if r.ProfileShares == nil {
					r.ProfileShares = map[string]map[string]float64{}
				}
				if r.ProfileShares[p.name] == nil {
					r.ProfileShares[p.name] = map[string]float64{}
				}
				r.ProfileShares[p.name][c.name] = share
			}
		}
	}
}

// profileHalf profiles each target's processes in turn while it runs open loop at rate, and
// records per process the CPU per request of each profile category (its share of the samples
// times the process's CPU per request in that window).
func profileHalf(cfg config, bin string, targets []*target, rate float64, inflight int, r *report) {
	if err := os.MkdirAll(cfg.pprofDir, 0o755); err != nil {
		r.HalfProfileNote = "profiling failed: " + err.Error()
		return
	}
	secs := max(int(cfg.duration.Seconds()), 1)
	r.HalfProfile = map[string]map[string]time.Duration{}
	r.HalfProfileCPU = map[string]time.Duration{}
	for _, t := range targets {
		errs := make(chan error, len(t.procs))
		step := t.openLoop(rate, inflight, cfg.warmup, cfg.duration+time.Second, func() {
			for _, p := range t.procs {
				go func() { errs <- fetchProfile(p, secs, filepath.Join(cfg.pprofDir, "half-"+p.name+".pprof")) }()
			}
		})
		failed := false
		for range t.procs {
			if err := <-errs; err != nil {
				r.HalfProfileNote += err.Error() + " "
				failed = true
			}
		}
		if failed {
			continue
		}
		for _, p := range t.procs {
			perReq := step.ProcCPUPerReq(p.name)
			r.HalfProfileCPU[p.name] = perReq
			r.HalfProfile[p.name] = map[string]time.Duration{}
			file := filepath.Join(cfg.pprofDir, "half-"+p.name+".pprof")
			for _, c := range profileCategories {
				out, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=100000", "-nodefraction=0", "-focus="+c.focus, bin, file).Output()
				if err != nil {
					continue
				}
				if share, ok := parseFocusShare(string(out)); ok {
					r.HalfProfile[p.name][c.name] = time.Duration(share / 100 * float64(perReq))
				}
			}
		}
	}
	r.HalfProfileNote += fmt.Sprintf("%d s CPU profiles of every process at %.0f req/s (open loop), one target at a time after the measured phases, saved under `%s` as `half-<process>.pprof`; "+
		"CPU per request of each category = its share of the samples × the process's CPU per request in that window (a sample can count in several categories)",
		secs, rate, cfg.pprofDir)
}

// profileCategories group profile samples by a function somewhere in their stack (a sample can
// be in several groups: SM3 inside SM2 signing counts for both).
var profileCategories = []struct{ name, focus string }{
	{"SM2 (gmsm sm2, sm2ec, bigmod)", `gmsm/sm2\.|gmsm/internal/sm2ec|gmsm/internal/bigmod`},
	{"SM3", `gmsm/sm3|gmsm/internal/sm3`},
	{"SM4 (TLCP records)", `gmsm/sm4|gmsm/internal/sm4|gmsm/cipher`},
	{"TLCP handshakes", `tlcp\.\(\*Conn\)\.(Handshake|clientHandshake|serverHandshake)|tlcp\.\(\*(server|client)Handshake`},
	{"audit log", `audit\.\(\*Log\)`},
	{"replay store", `gateway\.\(\*(Memory|memory)`},
	{"logging (zap)", `go\.uber\.org/zap`},
	{"reverse_proxy (Caddy)", `reverseproxy\.`},
	{"garbage collector (background + assists)", `runtime\.gcBgMarkWorker|runtime\.gcAssistAlloc|runtime\.bgsweep|runtime\.bgscavenge`},
	{"allocation (mallocgc)", `runtime\.mallocgc`},
	{"system calls", `syscall\.|internal/runtime/syscall`},
	{"scheduler and netpoller (wake-ups)", `runtime\.(findRunnable|schedule|netpoll|futex|notewakeup|notesleep|wakep|startm|stopm|park_m|ready)`},
	{"TLS 1.3 (crypto/tls)", `crypto/tls\.`},
}

// parseFocusShare reads the share of all samples that a -focus selected, from pprof's header
// "Showing nodes accounting for 120ms, 15.00% of 800ms total" (with focus, the first number is
// the focused total).
func parseFocusShare(top string) (float64, bool) {
	for _, line := range strings.Split(top, "\n") {
		i := strings.Index(line, "Showing nodes accounting for ")
		if i < 0 {
			continue
		}
		rest := line[i+len("Showing nodes accounting for "):]
		_, after, ok := strings.Cut(rest, ", ")
		if !ok {
			return 0, false
		}
		pct, _, ok := strings.Cut(after, "%")
		if !ok {
			return 0, false
		}
		v, err := strconv.ParseFloat(pct, 64)
		return v, err == nil
	}
	return 0, false
}

func fetchProfile(p *gmProc, secs int, path string) error {
	c := http.Client{Timeout: time.Duration(secs+30) * time.Second}
	resp, err := c.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", p.admin, secs))
	if err != nil {
		return fmt.Errorf("%s profile: %w", p.name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s profile: status %d", p.name, resp.StatusCode)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
