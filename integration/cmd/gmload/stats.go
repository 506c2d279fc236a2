package main

import (
	"math"
	"slices"
	"time"
)

// percentile returns the q-quantile (0 < q <= 1) of sorted by the nearest-rank method: the
// smallest value such that at least q of the samples are at or below it. Zero for no samples.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(q * float64(len(sorted))))
	if rank < 1 {
		rank = 1
	}
	if rank > len(sorted) {
		rank = len(sorted)
	}
	return sorted[rank-1]
}

// latencies summarises a sample of request latencies.
type latencies struct {
	N             int
	P50, P99, Max time.Duration
	P999          time.Duration
}

func summarize(samples []time.Duration) latencies {
	s := slices.Clone(samples)
	slices.Sort(s)
	l := latencies{N: len(s), P50: percentile(s, 0.50), P99: percentile(s, 0.99), P999: percentile(s, 0.999)}
	if len(s) > 0 {
		l.Max = s[len(s)-1]
	}
	return l
}

// slope returns the least-squares slope of y over x (units of y per unit of x); zero when it
// is undefined (fewer than two distinct x).
func slope(x, y []float64) float64 {
	n := min(len(x), len(y))
	if n < 2 {
		return 0
	}
	var sx, sy float64
	for i := 0; i < n; i++ {
		sx += x[i]
		sy += y[i]
	}
	mx, my := sx/float64(n), sy/float64(n)
	var num, den float64
	for i := 0; i < n; i++ {
		num += (x[i] - mx) * (y[i] - my)
		den += (x[i] - mx) * (x[i] - mx)
	}
	if den == 0 {
		return 0
	}
	return num / den
}

// peakIndex returns the index of the largest value (first on ties), -1 for none.
func peakIndex(v []float64) int {
	best := -1
	for i, x := range v {
		if best < 0 || x > v[best] {
			best = i
		}
	}
	return best
}

// rampDone tells whether the peak search can stop: the last patience steps all failed to
// improve on the best step before them by at least minGain (0.05 = 5%). A step only becomes
// the best when it beats the previous best by minGain.
func rampDone(rps []float64, minGain float64, patience int) bool {
	best := -1
	for i, v := range rps {
		if best < 0 || v >= rps[best]*(1+minGain) {
			best = i
		}
	}
	return best >= 0 && len(rps)-1-best >= patience
}
