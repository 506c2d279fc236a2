package caddymodule

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Package-level collectors, registered on each provision with the registry of the Caddy context
// that provisions a gmgate module (Caddy's metrics endpoint serves that registry).
var (
	tlcpHandshakes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "gmgate", Subsystem: "tlcp", Name: "handshakes_total",
		Help: "TLCP handshakes by cipher suite and result (ok or the alert/error class).",
	}, []string{"suite", "result"})
	tlcpHandshakeSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "gmgate", Subsystem: "tlcp", Name: "handshake_duration_seconds",
		Help:    "Duration of completed TLCP handshakes by cipher suite and whether the session was resumed.",
		Buckets: prometheus.ExponentialBuckets(0.0002, 2, 14),
	}, []string{"suite", "resumed"})

	verifyResults = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "gmgate", Subsystem: "verify", Name: "results_total",
		Help: "Client-side verification outcomes of payment instructions by scheme and result (ok or the refusal code).",
	}, []string{"scheme", "result"})
	replayRejections = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "gmgate", Subsystem: "verify", Name: "replay_rejections_total",
		Help: "Requests rejected as replays or outside the timestamp window, by scheme.",
	}, []string{"scheme"})
	replayStoreErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "gmgate", Subsystem: "verify", Name: "replay_store_errors_total",
		Help: "Replay (nonce) store failures by scheme and outcome: refused (503, fail closed) or fail_open (accepted without a replay check).",
	}, []string{"scheme", "outcome"})

	channelRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "gmgate", Subsystem: "channel", Name: "requests_total",
		Help: "Requests sent to bank channels by bank and result (ok or the error code).",
	}, []string{"bank", "result"})
	channelSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "gmgate", Subsystem: "channel", Name: "duration_seconds",
		Help:    "Round-trip time to a bank channel, signing and verification included, by bank.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
	}, []string{"bank"})

	vaultOps = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "gmgate", Subsystem: "vault", Name: "operations_total",
		Help: "Key vault operations by token, key, operation and result (ok or the error kind).",
	}, []string{"token", "key", "op", "result"})
	vaultOpSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "gmgate", Subsystem: "vault", Name: "operation_duration_seconds",
		Help:    "Latency of key vault operations by token and operation.",
		Buckets: prometheus.ExponentialBuckets(0.00001, 2.5, 12),
	}, []string{"token", "op"})
	vaultPoolWait = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "gmgate", Subsystem: "vault", Name: "pool_wait_seconds",
		Help:    "Time spent waiting for a PKCS#11 session from a token's pool.",
		Buckets: prometheus.ExponentialBuckets(0.00001, 4, 10),
	}, []string{"token"})
	vaultFailovers = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "gmgate", Subsystem: "vault", Name: "failovers_total",
		Help: "Operations moved from a failing token to another token holding the same key.",
	}, []string{"key", "from", "to"})
	vaultTokenUp = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "gmgate", Subsystem: "vault", Name: "token_up",
		Help: "1 when the last health check of a token succeeded, 0 otherwise.",
	}, []string{"token"})
)

// registerMetrics registers every gmgate collector with reg, ignoring collectors already there.
func registerMetrics(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{
		tlcpHandshakes, tlcpHandshakeSeconds, verifyResults, replayRejections, replayStoreErrors,
		channelRequests, channelSeconds, vaultOps, vaultOpSeconds, vaultPoolWait,
		vaultFailovers, vaultTokenUp, expiries,
		enrollRequests, enrollExpiring, enrollCertificates, enrollStoreRefused, enrollLockouts, // gm_enroll (enroll.go)
		cryptoRequests, cryptoItems, cryptoSeconds,
	} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return err
			}
		}
	}
	return nil
}

// resultLabel is "ok" for a nil error and the error's class otherwise.
func resultLabel(err error, class func(error) string) string {
	if err == nil {
		return "ok"
	}
	return class(err)
}

// vaultObserver feeds key vault events into the collectors above (it implements keyvault.Observer).
type vaultObserver struct {
	errorKind func(error) string
}

func (o vaultObserver) ObserveOperation(token, key, op string, d time.Duration, err error) {
	vaultOps.WithLabelValues(token, key, op, resultLabel(err, o.errorKind)).Inc()
	vaultOpSeconds.WithLabelValues(token, op).Observe(d.Seconds())
}

func (vaultObserver) ObservePoolWait(token string, d time.Duration) {
	vaultPoolWait.WithLabelValues(token).Observe(d.Seconds())
}

func (vaultObserver) ObserveFailover(key, fromToken, toToken string) {
	vaultFailovers.WithLabelValues(key, fromToken, toToken).Inc()
}

func (vaultObserver) ObserveTokenHealth(token string, healthy bool) {
	v := 0.0
	if healthy {
		v = 1
	}
	vaultTokenUp.WithLabelValues(token).Set(v)
}

// The label sets a module knows at provisioning exist at zero from the start, so that an alert
// on a rate (or on absence) works from the first minute, not after the first event.

// zeroVerifyMetrics creates gm_verify's series for scheme: every result (ok and each refusal
// code), the replay rejections and both replay-store outcomes.
func zeroVerifyMetrics(scheme string, codes []string) {
	verifyResults.WithLabelValues(scheme, "ok")
	for _, c := range codes {
		verifyResults.WithLabelValues(scheme, c)
	}
	replayRejections.WithLabelValues(scheme)
	replayStoreErrors.WithLabelValues(scheme, "refused")
	replayStoreErrors.WithLabelValues(scheme, "fail_open")
}

// zeroChannelMetrics creates gm_channel's series for bank: every result and the latency histogram.
func zeroChannelMetrics(bank string, codes []string) {
	channelRequests.WithLabelValues(bank, "ok")
	for _, c := range codes {
		channelRequests.WithLabelValues(bank, c)
	}
	channelSeconds.WithLabelValues(bank)
}

// zeroTLCPMetrics creates the handshake series of the suites a listener serves.
func zeroTLCPMetrics(suites []string) {
	for _, s := range suites {
		tlcpHandshakes.WithLabelValues(s, "ok")
		tlcpHandshakeSeconds.WithLabelValues(s, "false")
		tlcpHandshakeSeconds.WithLabelValues(s, "true")
	}
}

// codeStrings converts refusal codes to label values.
func codeStrings[C ~string](codes []C) []string {
	out := make([]string, len(codes))
	for i, c := range codes {
		out[i] = string(c)
	}
	return out
}
