package main

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// soakResult is the soak phase: the open-loop step and the RSS samples taken during it.
type soakResult struct {
	Step    stepResult
	Samples []rssSample
	Period  time.Duration // between samples
}

// report is everything the markdown and the chart are made of.
type report struct {
	Machine      machine
	CmdLine      string
	Scheme       string
	Audit        string
	Vault        string   // "file" or "softhsm"
	Env          []string // added to every gmgate process's environment (-env)
	StepDuration time.Duration
	Warmup       time.Duration
	Started      time.Time
	Finished     time.Time
	Costs        sm2Costs // measured before the load phases
	CostsAfter   sm2Costs // and after
	Ramp         []stepResult
	PeakGW       stepResult
	PeakBL       stepResult
	ConfirmGW    stepResult // the gateway's peak concurrency measured again
	// PeakBLAtGWRate is the baseline in open loop at the gateway's peak rate (zero: not measured).
	PeakBLAtGWRate stepResult
	HalfGW         stepResult
	HalfBL         stepResult
	Soak           *soakResult
	Profiles       map[string]string // process name -> `go tool pprof -top` output
	// ProfileShares is, per process, the percentage of profile samples per category.
	ProfileShares map[string]map[string]float64
	ProfileNote   string
	// HalfProfile is, per process (ingress, egress, baseline), the CPU per request of each
	// profile category at the half rate; HalfProfileCPU the process's whole CPU per request.
	HalfProfile     map[string]map[string]time.Duration
	HalfProfileCPU  map[string]time.Duration
	HalfProfileNote string
	PNG             string // chart file name, relative to the report
}

// Targets of issue 6, item 4.
const (
	targetCPURatio   = 1.25
	targetAddedP99   = 5 * time.Millisecond
	targetSoakGrowth = 0.10
)

// targetCostRatio is issue 14's target 1: gateway CPU per request (ingress + egress) at most
// this many times its SM2 bound plus two plain Caddy TLS hops.
const targetCostRatio = 1.3

// costTarget is issue 14's target 1 for a gateway step and the baseline step beside it.
type costTarget struct {
	GW    time.Duration // gateway CPU per request, ingress + egress
	Bound time.Duration // its SM2 bound
	Hop   time.Duration // one plain Caddy TLS 1.3 hop (the baseline's CPU per request)
	Floor time.Duration // Bound + 2 × Hop
	Ratio float64       // GW ÷ Floor
	// Per hop, outside the SM2 operations of that hop (its CPU per request minus its bound):
	// what a gmgate hop costs beyond what a plain Caddy hop costs (Hop).
	IngressRest, EgressRest time.Duration
}

func newCostTarget(gw, bl stepResult, b bound) costTarget {
	c := costTarget{GW: gw.CPUPerReq(), Bound: b.Total(), Hop: bl.CPUPerReq()}
	c.Floor = c.Bound + 2*c.Hop
	if c.Floor > 0 {
		c.Ratio = float64(c.GW) / float64(c.Floor)
	}
	c.IngressRest = gw.ProcCPUPerReq("ingress") - b.IngressPerReq
	c.EgressRest = gw.ProcCPUPerReq("egress") - b.EgressPerReq
	return c
}

// Met reports whether the target holds.
func (c costTarget) Met() bool { return c.Floor > 0 && c.Ratio <= targetCostRatio }

// HopRatio is a hop's non-SM2 cost over a plain Caddy hop's.
func (c costTarget) HopRatio(rest time.Duration) string { return ratio(float64(rest), float64(c.Hop)) }

func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)) }
func us(d time.Duration) string { return fmt.Sprintf("%.0f", float64(d)/float64(time.Microsecond)) }
func mib(b int64) string        { return fmt.Sprintf("%.1f", float64(b)/(1<<20)) }

func ratio(a, b float64) string {
	if b == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", a/b)
}

func met(ok bool) string {
	if ok {
		return "**met**"
	}
	return "**not met**"
}

// meanCosts averages the before and after measurements (the machine is shared: both are shown).
func meanCosts(a, b sm2Costs) sm2Costs {
	if b == (sm2Costs{}) {
		return a
	}
	return sm2Costs{(a.Sign + b.Sign) / 2, (a.Verify + b.Verify) / 2, (a.Encrypt + b.Encrypt) / 2, (a.Decrypt + b.Decrypt) / 2}
}

// soakVerdict compares the end of the soak with the sample nearest its middle (with a 10-minute
// soak and the 5-minute replay window, the moment the replay store is full).
type soakVerdict struct {
	Name                 string
	Start, Mid, End, Max int64
	SlopeMiBPerMin       float64 // second half, least squares
	Flat                 bool
	// Goroutines at the start, mid-soak, end, and the most seen (-1: not read).
	GStart, GMid, GEnd, GMax int64
}

func judgeSoak(samples []rssSample, name string) soakVerdict {
	v := soakVerdict{Name: name}
	if len(samples) == 0 {
		return v
	}
	last := samples[len(samples)-1].At
	mid := 0
	for i, s := range samples {
		if s.At <= last/2 {
			mid = i
		}
		v.Max = max(v.Max, s.RSS[name])
	}
	v.Start, v.Mid, v.End = samples[0].RSS[name], samples[mid].RSS[name], samples[len(samples)-1].RSS[name]
	g := func(s rssSample) int64 {
		if n, ok := s.Goroutines[name]; ok {
			return n
		}
		return -1
	}
	v.GStart, v.GMid, v.GEnd, v.GMax = g(samples[0]), g(samples[mid]), g(samples[len(samples)-1]), -1
	for _, s := range samples {
		v.GMax = max(v.GMax, g(s))
	}
	var x, y []float64
	for _, s := range samples[mid:] {
		x = append(x, s.At.Minutes())
		y = append(y, float64(s.RSS[name])/(1<<20))
	}
	v.SlopeMiBPerMin = slope(x, y)
	v.Flat = v.Mid > 0 && float64(v.End) <= float64(v.Mid)*(1+targetSoakGrowth)
	return v
}

// thinSamples keeps the first sample, then the first one at least every apart, and the last.
func thinSamples(samples []rssSample, every time.Duration) []rssSample {
	var out []rssSample
	for i, s := range samples {
		if i == 0 || i == len(samples)-1 || s.At >= out[len(out)-1].At+every {
			out = append(out, s)
		}
	}
	return out
}

// render writes the markdown report.
func (r *report) render(w io.Writer) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	costs := meanCosts(r.Costs, r.CostsAfter)
	bHalf := newBound(costs, r.HalfGW.Requests, r.HalfGW.HSFull, r.HalfGW.BankConns)
	bPeak := newBound(costs, r.PeakGW.Requests, r.PeakGW.HSFull, r.PeakGW.BankConns)
	cpuRatio := float64(r.HalfGW.CPUPerReq()) / float64(bHalf.Total())
	added := r.HalfGW.Lat.P99 - r.HalfBL.Lat.P99

	p("# gmgate load report\n\n")
	p("Generated by `integration/cmd/gmload` from %s to %s (UTC). Rerun with:\n\n```sh\n%s\n```\n\n",
		r.Started.UTC().Format("2006-01-02 15:04"), r.Finished.UTC().Format("15:04"), r.CmdLine)
	p("## Machine\n\n| | |\n|---|---|\n")
	p("| CPU | %s |\n| logical CPUs | %d |\n| memory | %s |\n| kernel | %s |\n| Go | %s |\n| gmgate commit | %s |\n| gmgate version | %s |\n| load average at start / end | %s / %s |\n\n",
		r.Machine.CPUModel, r.Machine.NumCPU, r.Machine.MemTotal, r.Machine.Kernel, r.Machine.GoVersion,
		orNA(r.Machine.Commit), orNA(r.Machine.Gmgate), r.Machine.LoadStart, r.Machine.LoadEnd)
	env := "Go runtime defaults (no `-env`)"
	if len(r.Env) > 0 {
		env = "`" + strings.Join(r.Env, " ") + "` (`-env`)"
	}
	p("Environment of every gmgate process (ingress, egress, baseline): %s.\n\n", env)
	p("**Noise.** This machine is shared: other engineers compile and run tests on the same %d CPUs during the run "+
		"(see the load averages). Throughput and latency are therefore noisy and pessimistic; CPU time per request "+
		"(from `/proc/<pid>/stat`) and the SM2 costs (thread CPU time) are much less affected by other load than "+
		"wall-clock numbers. The load generator, the legacy back end and the bank simulator run in the harness "+
		"process on the same CPUs as the measured processes.\n\n", r.Machine.NumCPU)

	p("## Targets (issue 6, item 4; issue 14, target 1)\n\n| target | measured | goal | |\n|---|---|---|---|\n")
	p("| gateway CPU per request ÷ CPU of its SM2 operations (at half peak rate) | %.2f (%s µs ÷ %s µs) | ≤ %.2f | %s |\n",
		cpuRatio, us(r.HalfGW.CPUPerReq()), us(bHalf.Total()), targetCPURatio, met(cpuRatio <= targetCPURatio))
	p("| p99 latency added by the gateway at half its peak rate (%.0f req/s) | %s ms (%s − %s) | < %s ms | %s |\n",
		r.HalfGW.Rate, ms(added), ms(r.HalfGW.Lat.P99), ms(r.HalfBL.Lat.P99), ms(targetAddedP99), met(added < targetAddedP99))
	if r.Soak != nil {
		flat := true
		var parts []string
		for _, name := range []string{"ingress", "egress"} {
			v := judgeSoak(r.Soak.Samples, name)
			flat = flat && v.Flat
			parts = append(parts, fmt.Sprintf("%s %s→%s MiB", name, mib(v.Mid), mib(v.End)))
		}
		p("| resident memory flat over a %s soak (end within %.0f%% of mid-soak) | %s | flat | %s |\n",
			r.Soak.Step.Window.Round(time.Second), targetSoakGrowth*100, strings.Join(parts, ", "), met(flat))
	} else {
		p("| resident memory flat over a 10-minute soak | not run (`-soak 0`) | flat | not measured |\n")
	}
	for _, ct := range []struct {
		name string
		c    costTarget
	}{{fmt.Sprintf("at half the peak rate (%.0f req/s)", r.HalfGW.Rate), newCostTarget(r.HalfGW, r.HalfBL, bHalf)},
		{fmt.Sprintf("at the peak (%d clients)", r.PeakGW.Concurrency), newCostTarget(r.PeakGW, r.PeakBL, bPeak)}} {
		p("| gateway CPU per request ÷ (SM2 bound + two plain Caddy TLS hops) %s (issue 14, target 1) | %.2f (%s µs ÷ (%s + 2 × %s µs)) | ≤ %.2f | %s |\n",
			ct.name, ct.c.Ratio, us(ct.c.GW), us(ct.c.Bound), us(ct.c.Hop), targetCostRatio, met(ct.c.Met()))
	}
	if r.PeakBLAtGWRate.Requests > 0 {
		c := newCostTarget(r.PeakGW, r.PeakBLAtGWRate, bPeak)
		p("| same at the peak, the Caddy hop measured at the gateway's peak rate (%.0f req/s, open loop) instead of its own peak | %.2f (%s µs ÷ (%s + 2 × %s µs)) | ≤ %.2f | %s |\n",
			r.PeakBLAtGWRate.Rate, c.Ratio, us(c.GW), us(c.Bound), us(c.Hop), targetCostRatio, met(c.Met()))
	}
	p("\nPer hop, outside its own SM2 operations (CPU per request minus that hop's SM2 bound), against one plain Caddy TLS 1.3 hop in the same run:\n\n")
	p("| | ingress | egress | plain Caddy hop | ingress ÷ hop | egress ÷ hop |\n|---|---|---|---|---|---|\n")
	for _, ct := range []struct {
		name string
		c    costTarget
	}{{"half peak", newCostTarget(r.HalfGW, r.HalfBL, bHalf)}, {"peak", newCostTarget(r.PeakGW, r.PeakBL, bPeak)},
		{"peak, hop at the gateway's rate", newCostTarget(r.PeakGW, r.PeakBLAtGWRate, bPeak)}} {
		if ct.c.Hop == 0 {
			continue
		}
		p("| %s | %s µs | %s µs | %s µs | %s | %s |\n", ct.name, us(ct.c.IngressRest), us(ct.c.EgressRest), us(ct.c.Hop),
			ct.c.HopRatio(ct.c.IngressRest), ct.c.HopRatio(ct.c.EgressRest))
	}
	p("\nAt the peak (%d clients) the ratio to the SM2 bound alone (issue 6) is %.2f (%s µs ÷ %s µs).\n\n",
		r.PeakGW.Concurrency, float64(r.PeakGW.CPUPerReq())/float64(bPeak.Total()), us(r.PeakGW.CPUPerReq()), us(bPeak.Total()))
	if r.PeakBL.Requests > 0 && bPeak.Total() > 0 {
		rest := r.PeakGW.CPUPerReq() - bPeak.Total()
		budget := time.Duration(float64(bPeak.Total()) * (targetCPURatio - 1))
		p("Outside its SM2 operations the gateway spends %s µs per request at the peak; the target allows %s µs "+
			"(a quarter of the SM2 work). For scale: plain Caddy proxying one TLS 1.3 request costs %s µs in the same run "+
			"(baseline at its peak), and the gateway path crosses two gmgate proxies.\n\n", us(rest), us(budget), us(r.PeakBL.CPUPerReq()))
	}

	p("## What runs\n\n")
	p("- **gateway** (two gmgate processes, the real binary): terminal SDK (`client/`, scheme `%s`, TLCP `ECC_SM4_GCM_SM3` "+
		"with client certificates, kept-alive connections, session resumption) → **ingress** gmgate (`tlcp` listener, "+
		"`gm_verify`: client SM2 signature, replay check in the memory store (5 min window), reply signed with the platform key; "+
		"`reverse_proxy`) → legacy back end (plain HTTP, in the harness) → **egress** gmgate (`reverse_proxy` with "+
		"`gm_channel`: `unionpay-sm2` re-signing with the platform key, TLCP with mutual authentication, bank reply "+
		"verified) → bank simulator (`integration/banksim`, in the harness) → back. Keys: %s. Audit log: %s.\n",
		r.Scheme, vaultText(r.Vault), auditText(r.Audit))
	p("- **baseline** (one gmgate process configured as plain Caddy): Go `crypto/tls` clients, TLS 1.3 with Caddy's " +
		"internal ECDSA P-256 certificate, HTTP/1.1 kept alive, unsigned request → `reverse_proxy` → the same kind of " +
		"legacy back end, which answers at once.\n")
	p("- **What differs.** The gateway path has two proxy hops (ingress and egress) plus the bank round trip and " +
		"the back end's HTTP call to the egress; the baseline has one hop. The gateway's clients sign every request " +
		"and verify every reply; the baseline's do not. So the latency ratio and the throughput ratio compare the " +
		"whole GM flow against one plain TLS proxy hop, not like for like; CPU per request is given per process.\n")
	p("- **Load.** Closed loop (each client sends its next request when the reply is in) for the ramp: concurrency "+
		"1, 2, 4, … until two steps in a row fail to beat the best earlier step by 5%%; each step %s after "+
		"%s of warm-up; gateway and baseline alternate at every step. Then an open loop (Poisson arrivals) at half "+
		"the gateway's peak rate for both, latency counted from the scheduled arrival; at most twice the gateway's peak "+
		"concurrency (at least 8) requests on the wire (so as many client connections), later arrivals wait in the client "+
		"and their wait counts.\n\n", r.StepDuration, r.Warmup)

	p("## Ramp (closed loop)\n\n")
	p("| clients | gateway req/s | baseline req/s | gw/bl | gateway p50 / p99 ms | baseline p50 / p99 ms | gateway CPU µs/req (ingress + egress) | SM2 bound µs/req | gw/bound | baseline CPU µs/req | gw/bl CPU | ingress full / resumed handshakes, new bank connections | RSS MiB gw / bl | harness CPU µs/req gw / bl | errors gw / bl |\n")
	p("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for i := 0; i+1 < len(r.Ramp); i += 2 {
		g, b := r.Ramp[i], r.Ramp[i+1]
		gb := newBound(costs, g.Requests, g.HSFull, g.BankConns)
		p("| %d | %.0f | %.0f | %s | %s / %s | %s / %s | %s (%s + %s) | %s | %s | %s | %s | %.0f / %.0f, %d | %s / %s | %s / %s | %d / %d |\n",
			g.Concurrency, g.RPS, b.RPS, ratio(g.RPS, b.RPS), ms(g.Lat.P50), ms(g.Lat.P99), ms(b.Lat.P50), ms(b.Lat.P99),
			us(g.CPUPerReq()), us(g.ProcCPUPerReq("ingress")), us(g.ProcCPUPerReq("egress")), us(gb.Total()),
			ratio(float64(g.CPUPerReq()), float64(gb.Total())), us(b.CPUPerReq()),
			ratio(float64(g.CPUPerReq()), float64(b.CPUPerReq())), g.HSFull, g.HSResumed, g.BankConns, mib(g.totalRSS()), mib(b.totalRSS()),
			us(perReq(g.HarnessCPU, g.Requests)), us(perReq(b.HarnessCPU, b.Requests)), g.Errors, b.Errors)
	}
	p("\nPeak: gateway %.0f req/s at %d clients; baseline %.0f req/s at %d clients (within the same concurrency levels). "+
		"Throughput ratio gateway/baseline at the peaks: %s.\n\n",
		r.PeakGW.RPS, r.PeakGW.Concurrency, r.PeakBL.RPS, r.PeakBL.Concurrency, ratio(r.PeakGW.RPS, r.PeakBL.RPS))
	if r.ConfirmGW.Requests > 0 {
		p("Re-measured at %d clients right after the ramp: gateway %.0f req/s (p99 %s ms, %s µs/req). The half rate below is "+
			"half the mean of the two gateway measurements.\n\n", r.ConfirmGW.Concurrency, r.ConfirmGW.RPS, ms(r.ConfirmGW.Lat.P99), us(r.ConfirmGW.CPUPerReq()))
	}
	if fe := firstErrors(r); fe != "" {
		p("First errors: %s\n\n", fe)
	}

	p("## Half the gateway's peak rate (open loop, %.0f req/s offered, %s in total in %d slices alternating with the baseline, at most %d requests on the wire)\n\n",
		r.HalfGW.Rate, r.HalfGW.Window.Round(time.Second), r.HalfGW.Rounds, r.HalfGW.Concurrency)
	p("| | req/s | p50 ms | p99 ms | p99.9 ms | max ms | CPU µs/req | RSS MiB | errors | dropped |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, s := range []stepResult{r.HalfGW, r.HalfBL} {
		p("| %s | %.0f | %s | %s | %s | %s | %s | %s | %d | %d |\n", s.Target, s.RPS, ms(s.Lat.P50), ms(s.Lat.P99),
			ms(s.Lat.P999), ms(s.Lat.Max), us(s.CPUPerReq()), mib(s.totalRSS()), s.Errors, s.Dropped)
	}
	p("| gateway ÷ baseline | %s | %s | %s | %s | | %s | %s | | |\n", ratio(r.HalfGW.RPS, r.HalfBL.RPS),
		ratio(float64(r.HalfGW.Lat.P50), float64(r.HalfBL.Lat.P50)), ratio(float64(r.HalfGW.Lat.P99), float64(r.HalfBL.Lat.P99)),
		ratio(float64(r.HalfGW.Lat.P999), float64(r.HalfBL.Lat.P999)), ratio(float64(r.HalfGW.CPUPerReq()), float64(r.HalfBL.CPUPerReq())),
		ratio(float64(r.HalfGW.totalRSS()), float64(r.HalfBL.totalRSS())))
	p("| gateway − baseline (added) | | %s | %s | %s | | | | | |\n\n", ms(r.HalfGW.Lat.P50-r.HalfBL.Lat.P50), ms(added), ms(r.HalfGW.Lat.P999-r.HalfBL.Lat.P999))
	if r.HalfGW.EgressLat.N > 0 {
		p("Of the gateway's latency, the back end's call to the egress (egress + bank simulator + its SM2 work) took p50 %s ms, p99 %s ms.\n",
			ms(r.HalfGW.EgressLat.P50), ms(r.HalfGW.EgressLat.P99))
	}
	p("Per process at this rate: ingress %s µs/req, egress %s µs/req. TLCP handshakes on the ingress in the window: %.0f full, %.0f resumed; new egress→bank connections: %d.\n\n",
		us(r.HalfGW.ProcCPUPerReq("ingress")), us(r.HalfGW.ProcCPUPerReq("egress")), r.HalfGW.HSFull, r.HalfGW.HSResumed, r.HalfGW.BankConns)

	r.renderGC(p)

	p("## The SM2 bound (b)\n\n")
	p("Measured in the harness process in the same run with gmsm v0.44.1 directly: CPU time of the calling thread "+
		"(`RUSAGE_THREAD`) over a loop, %d-byte message (SM3 with Z_A included), before and after the load phases.\n\n", signedMessageSize)
	p("| operation | before µs | after µs | used µs |\n|---|---|---|---|\n")
	for _, row := range []struct {
		n    string
		a, b time.Duration
		m    time.Duration
	}{
		{"sign", r.Costs.Sign, r.CostsAfter.Sign, costs.Sign},
		{"verify", r.Costs.Verify, r.CostsAfter.Verify, costs.Verify},
		{"encrypt (48 bytes)", r.Costs.Encrypt, r.CostsAfter.Encrypt, costs.Encrypt},
		{"decrypt (48 bytes)", r.Costs.Decrypt, r.CostsAfter.Decrypt, costs.Decrypt},
	} {
		p("| %s | %.1f | %.1f | %.1f |\n", row.n, float64(row.a)/1e3, float64(row.b)/1e3, float64(row.m)/1e3)
	}
	p("\nSM2 operations per request on the gateway side, counted from the code:\n\n")
	p("- ingress (`gm_verify`): 1 verify (client's request signature) + 1 sign (reply signature) = %s µs;\n", us(costs.Verify+costs.Sign))
	p("- egress (`gm_channel`): 1 sign (bank request, `unionpay-sm2`) + 1 verify (bank's reply) = %s µs;\n", us(costs.Sign+costs.Verify))
	p("- TLCP handshakes, amortized over the requests of the step (connections are kept alive): a full server "+
		"handshake on the ingress costs 1 sign + 1 decrypt + 1 verify = %s µs (resumed handshakes: no SM2), a full "+
		"client handshake on the egress 1 verify + 1 encrypt + 1 sign = %s µs (`gm_channel` keeps no session cache). "+
		"At half the peak rate: %.4f ingress and %.4f egress full handshakes per request;\n",
		us(bHalf.IngressHS), us(bHalf.EgressHS), bHalf.IngressHSPerReq, bHalf.EgressHSPerReq)
	p("- audit checkpoints: 1 sign per 1000 entries (not counted, < 0.1%%); certificate chain verification is cached by package `tlcp`.\n\n")
	p("Bound at half the peak rate: ingress %s µs + egress %s µs = **%s µs per request**; gateway measured %s µs "+
		"(ingress %s, egress %s): ratio **%.2f** (ingress %.2f, egress %.2f).\n\n",
		us(bHalf.IngressPerReq), us(bHalf.EgressPerReq), us(bHalf.Total()), us(r.HalfGW.CPUPerReq()),
		us(r.HalfGW.ProcCPUPerReq("ingress")), us(r.HalfGW.ProcCPUPerReq("egress")), cpuRatio,
		float64(r.HalfGW.ProcCPUPerReq("ingress"))/float64(bHalf.IngressPerReq),
		float64(r.HalfGW.ProcCPUPerReq("egress"))/float64(bHalf.EgressPerReq))

	if r.Soak != nil {
		s := r.Soak.Step
		p("## Soak (%s at %.0f req/s offered, RSS sampled every 10 s)\n\n", s.Window.Round(time.Second), s.Rate)
		if s.RPS < 0.95*s.Rate {
			p("**The gateway did not keep up with the offered rate during the soak** (%.0f req/s served of %.0f offered): "+
				"requests queued in the client, so the latencies below include that queue.\n\n", s.RPS, s.Rate)
		}
		p("Requests %d (%.0f req/s), errors %d, dropped %d, p50 %s ms, p99 %s ms, gateway CPU %s µs/req.\n\n",
			s.Requests, s.RPS, s.Errors, s.Dropped, ms(s.Lat.P50), ms(s.Lat.P99), us(s.CPUPerReq()))
		p("| process | start MiB | mid-soak MiB | end MiB | max MiB | slope, second half (MiB/min) | flat | goroutines start / mid / end / max |\n|---|---|---|---|---|---|---|---|\n")
		for _, name := range []string{"ingress", "egress"} {
			v := judgeSoak(r.Soak.Samples, name)
			p("| %s | %s | %s | %s | %s | %.2f | %v | %d / %d / %d / %d |\n", name, mib(v.Start), mib(v.Mid), mib(v.End), mib(v.Max),
				v.SlopeMiBPerMin, v.Flat, v.GStart, v.GMid, v.GEnd, v.GMax)
		}
		p("\nSamples (every %s, shown about every minute; RSS MiB, Go heap in use MiB, goroutines):\n\n", r.Soak.Period)
		p("| at | ingress RSS | ingress heap | ingress goroutines | egress RSS | egress heap | egress goroutines |\n|---|---|---|---|---|---|---|\n")
		for _, x := range thinSamples(r.Soak.Samples, time.Minute) {
			p("| %s | %s | %s | %d | %s | %s | %d |\n", x.At.Round(time.Second), mib(x.RSS["ingress"]), mib(x.HeapInuse["ingress"]), x.Goroutines["ingress"],
				mib(x.RSS["egress"]), mib(x.HeapInuse["egress"]), x.Goroutines["egress"])
		}
		p("\nThe memory replay store remembers every nonce for twice the 5-minute window (clocks of instances sharing a " +
			"store may differ), so the ingress RSS rises while the store fills (the first 10 minutes at a constant rate) " +
			"and then stays level; \"flat\" compares the end with mid-soak.\n\n")
	}

	if len(r.Profiles) > 0 || r.ProfileNote != "" {
		p("## CPU profiles of the gateway at the peak\n\n%s\n\n", r.ProfileNote)
		if len(r.ProfileShares) > 0 {
			p("| samples with … on the stack | ingress %% | egress %% |\n|---|---|---|\n")
			for _, c := range profileCategories {
				p("| %s | %.1f | %.1f |\n", c.name, r.ProfileShares["ingress"][c.name], r.ProfileShares["egress"][c.name])
			}
			p("\n")
		}
		for _, name := range []string{"ingress", "egress"} {
			if t, ok := r.Profiles[name]; ok {
				p("### %s\n\n```\n%s\n```\n\n", name, strings.TrimSpace(t))
			}
		}
	}
	if len(r.HalfProfile) > 0 || r.HalfProfileNote != "" {
		p("## CPU per request by category at half the peak\n\n%s.\n\n", r.HalfProfileNote)
		if len(r.HalfProfile) > 0 {
			p("| µs per request with … on the stack | ingress | egress | plain Caddy hop |\n|---|---|---|---|\n")
			p("| **whole process** | %s | %s | %s |\n", us(r.HalfProfileCPU["ingress"]), us(r.HalfProfileCPU["egress"]), us(r.HalfProfileCPU["baseline"]))
			for _, c := range profileCategories {
				p("| %s | %s | %s | %s |\n", c.name, us(r.HalfProfile["ingress"][c.name]), us(r.HalfProfile["egress"][c.name]), us(r.HalfProfile["baseline"][c.name]))
			}
			p("\n")
		}
	}
	if r.PNG != "" {
		p("## Chart\n\n![throughput, latency, CPU per request and RSS](%s)\n", r.PNG)
	}
}

func perReq(d time.Duration, n int) time.Duration {
	if n == 0 {
		return 0
	}
	return d / time.Duration(n)
}

func orNA(s string) string {
	if s == "" {
		return "n/a"
	}
	return s
}

func vaultText(v string) string {
	if v == "softhsm" {
		return "the platform signing keys of both processes (reply signing, bank request signing, audit checkpoints) " +
			"in SoftHSM2 tokens (PKCS#11, wrapped mode), imported with `gmgate vault import`; TLCP keys file-backed " +
			"(ingress: the development PKI, `dev_pki`)"
	}
	return "file-backed vault keys (ingress: the development PKI, `dev_pki`; egress: `file:` keys)"
}

func auditText(policy string) string {
	if policy == "off" {
		return "off"
	}
	return "on in both processes (hash-chained, fsync `" + policy + "`)"
}

func firstErrors(r *report) string {
	var out []string
	all := append(append([]stepResult{}, r.Ramp...), r.HalfGW, r.HalfBL)
	if r.Soak != nil {
		all = append(all, r.Soak.Step)
	}
	for _, s := range all {
		if s.FirstError != "" {
			out = append(out, fmt.Sprintf("%s/%s/%d: `%.160s`", s.Target, s.Mode, s.Concurrency, s.FirstError))
		}
		if len(out) == 4 {
			break
		}
	}
	return strings.Join(out, "; ")
}

// renderGC writes the Go runtime's allocation and GC counters per request of each process at
// the peak and at half the peak (exact counts: unlike CPU times, other load on the machine
// does not change them).
func (r *report) renderGC(p func(string, ...any)) {
	type row struct {
		name string
		s    stepResult
		proc string
	}
	var rows []row
	for _, x := range []struct {
		name   string
		gw, bl stepResult
	}{{"peak", r.PeakGW, r.PeakBL}, {"half peak", r.HalfGW, r.HalfBL}} {
		for _, proc := range []string{"ingress", "egress"} {
			rows = append(rows, row{x.name, x.gw, proc})
		}
		rows = append(rows, row{x.name, x.bl, "baseline"})
	}
	seen := false
	for _, x := range rows {
		seen = seen || x.s.GC[x.proc].OK
	}
	if !seen {
		return
	}
	p("Go runtime per request (from each process's `go_gc_duration_seconds_count`, `go_memstats_alloc_bytes_total`, " +
		"`go_memstats_mallocs_total` over the window; exact counts, not disturbed by other load):\n\n")
	p("| step | process | requests | allocations/req | KiB allocated/req | GC cycles per 1000 req |\n|---|---|---|---|---|---|\n")
	for _, x := range rows {
		g := x.s.GC[x.proc]
		if !g.OK || x.s.Requests == 0 {
			continue
		}
		n := float64(x.s.Requests)
		p("| %s | %s | %d | %.0f | %.1f | %.2f |\n", x.name, x.proc, x.s.Requests, float64(g.Mallocs)/n, float64(g.AllocBytes)/1024/n, float64(g.Cycles)*1000/n)
	}
	p("\n")
}
