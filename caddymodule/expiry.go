package caddymodule

import (
	"strings"
	"sync"

	"github.com/emmansun/gmsm/smx509"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/signing"
)

// Expiry gauges for every configured certificate and CRL: no blackbox exporter can probe a TLCP
// port or a bank's signing certificate, so gmgate reports them itself. Values are read at scrape
// time from what the running configurations hold (a CRL file replaced on disk shows its new
// NextUpdate after the store's reload check).
var (
	certNotAfterDesc = prometheus.NewDesc("gmgate_certificate_not_after_timestamp_seconds",
		"NotAfter of every configured certificate (Unix seconds), by module, role (key, client_root, client, bank, bank_root, tlcp_client_root), configured name, subject and serial (hex).",
		[]string{"module", "role", "name", "subject", "serial"}, nil)
	crlNextUpdateDesc = prometheus.NewDesc("gmgate_crl_next_update_timestamp_seconds",
		"NextUpdate of every loaded CRL (Unix seconds; revocation checks fail closed after it), by module, file and issuer.",
		[]string{"module", "file", "issuer"}, nil)
)

// expirySource is what one module of one configuration holds.
type expirySource struct {
	module, role, name string
	certs              []*smx509.Certificate
	crls               *pki.CRLStore
}

// expiryCollector reports the sources of every live configuration; during a reload the old and
// the new configuration may both hold the same certificate, reported once.
type expiryCollector struct {
	mu      sync.Mutex
	sources map[*expirySource]struct{}
}

var expiries = &expiryCollector{sources: map[*expirySource]struct{}{}}

// trackCertificates reports certs (role, name) until release is called (the module's Cleanup).
func trackCertificates(module, role, name string, certs []*smx509.Certificate) (release func()) {
	return expiries.add(&expirySource{module: module, role: role, name: name, certs: certs})
}

// trackCRLs reports the CRLs of s until release is called.
func trackCRLs(module string, s *pki.CRLStore) (release func()) {
	if s == nil {
		return func() {}
	}
	return expiries.add(&expirySource{module: module, crls: s})
}

func (c *expiryCollector) add(s *expirySource) func() {
	c.mu.Lock()
	c.sources[s] = struct{}{}
	c.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			delete(c.sources, s)
			c.mu.Unlock()
		})
	}
}

func (c *expiryCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- certNotAfterDesc
	ch <- crlNextUpdateDesc
}

func (c *expiryCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	sources := make([]*expirySource, 0, len(c.sources))
	for s := range c.sources {
		sources = append(sources, s)
	}
	c.mu.Unlock()
	seen := map[string]bool{}
	emit := func(desc *prometheus.Desc, v float64, labels ...string) {
		key := strings.Join(labels, "\x00")
		if seen[desc.String()+key] {
			return
		}
		seen[desc.String()+key] = true
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, v, labels...)
	}
	for _, s := range sources {
		for _, cert := range s.certs {
			if cert == nil {
				continue
			}
			emit(certNotAfterDesc, float64(cert.NotAfter.Unix()), s.module, s.role, s.name,
				cert.Subject.String(), signing.SerialHex(cert.SerialNumber))
		}
		if s.crls != nil {
			for _, info := range s.crls.CRLs() {
				if info.NextUpdate.IsZero() {
					continue
				}
				emit(crlNextUpdateDesc, float64(info.NextUpdate.Unix()), s.module, info.Path, info.Issuer)
			}
		}
	}
}
