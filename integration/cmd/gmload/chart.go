package main

import (
	"fmt"
	"os"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// writeChart draws four panels: req/s against concurrency, p99 latency against concurrency,
// CPU per request against concurrency (with the SM2 bound), and RSS over the soak.
func writeChart(r *report, path string) error {
	var gwRPS, blRPS, gwP99, blP99, gwP50, blP50, gwCPU, blCPU, bnd, tgt plotter.XYs
	costs := meanCosts(r.Costs, r.CostsAfter)
	for _, s := range r.Ramp {
		x := float64(s.Concurrency)
		msf := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
		usf := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
		if s.Target == "gateway" {
			gwRPS = append(gwRPS, plotter.XY{X: x, Y: s.RPS})
			gwP99 = append(gwP99, plotter.XY{X: x, Y: msf(s.Lat.P99)})
			gwP50 = append(gwP50, plotter.XY{X: x, Y: msf(s.Lat.P50)})
			gwCPU = append(gwCPU, plotter.XY{X: x, Y: usf(s.CPUPerReq())})
			b := newBound(costs, s.Requests, s.HSFull, s.BankConns)
			bnd = append(bnd, plotter.XY{X: x, Y: usf(b.Total())})
			tgt = append(tgt, plotter.XY{X: x, Y: targetCPURatio * usf(b.Total())})
		} else {
			blRPS = append(blRPS, plotter.XY{X: x, Y: s.RPS})
			blP99 = append(blP99, plotter.XY{X: x, Y: msf(s.Lat.P99)})
			blP50 = append(blP50, plotter.XY{X: x, Y: msf(s.Lat.P50)})
			blCPU = append(blCPU, plotter.XY{X: x, Y: usf(s.CPUPerReq())})
		}
	}
	mk := func(title, x, y string) *plot.Plot {
		p := plot.New()
		p.Title.Text, p.X.Label.Text, p.Y.Label.Text = title, x, y
		p.Legend.Top = true
		p.Add(plotter.NewGrid())
		return p
	}
	p1 := mk("Throughput (closed loop)", "clients", "req/s")
	if err := plotutil.AddLinePoints(p1, "gateway (TLCP + SM2, 2 hops + bank)", gwRPS, "baseline (TLS 1.3, 1 hop)", blRPS); err != nil {
		return err
	}
	p2 := mk("Latency (closed loop)", "clients", "ms")
	if err := plotutil.AddLinePoints(p2, "gateway p99", gwP99, "baseline p99", blP99, "gateway p50", gwP50, "baseline p50", blP50); err != nil {
		return err
	}
	p3 := mk("CPU per request (gmgate processes)", "clients", "µs")
	if err := plotutil.AddLinePoints(p3, "gateway", gwCPU, "SM2 bound", bnd, "target: 1.25 × bound", tgt, "baseline", blCPU); err != nil {
		return err
	}
	p4 := mk("RSS during the soak", "minutes", "MiB")
	if r.Soak != nil && len(r.Soak.Samples) > 0 {
		var in, eg plotter.XYs
		for _, s := range r.Soak.Samples {
			in = append(in, plotter.XY{X: s.At.Minutes(), Y: float64(s.RSS["ingress"]) / (1 << 20)})
			eg = append(eg, plotter.XY{X: s.At.Minutes(), Y: float64(s.RSS["egress"]) / (1 << 20)})
		}
		if err := plotutil.AddLines(p4, "ingress", in, "egress", eg); err != nil {
			return err
		}
		p4.Y.Min = 0
	} else {
		p4.Title.Text = "RSS during the soak (not run)"
	}
	for _, p := range []*plot.Plot{p1, p2, p3} {
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.LogTicks{Prec: -1}
		p.Y.Min = 0
	}
	img := vgimg.New(vg.Points(1100), vg.Points(800))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 2, Cols: 2, PadTop: vg.Points(10), PadBottom: vg.Points(10), PadLeft: vg.Points(10),
		PadRight: vg.Points(10), PadX: vg.Points(25), PadY: vg.Points(25)}
	plots := [][]*plot.Plot{{p1, p2}, {p3, p4}}
	canvases := plot.Align(plots, tiles, dc)
	for j := range plots {
		for i := range plots[j] {
			plots[j][i].Draw(canvases[j][i])
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return f.Close()
}
