package integration

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gmgate/gmgate/channel"
	"github.com/gmgate/gmgate/gateway"
	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/signing"
)

// Before the first request, every label set a configuration knows exists at zero (an alert on a
// rate works from the first minute), and every configured certificate and CRL reports its expiry.
func TestMetricsExistAtZeroAndCertificatesReportExpiry(t *testing.T) {
	tlcpPort, httpPort := freePort(t), freePort(t)
	cf := strings.NewReplacer("{TLCP}", fmt.Sprint(tlcpPort), "{HTTP}", fmt.Sprint(httpPort)).Replace(`{
	admin {ADMIN}
	skip_install_trust
	auto_https off
	metrics
	gmgate {
		dev_pki {DIR}/pki
	}
	servers :{TLCP} {
		listener_wrappers {
			tlcp {
				cipher_suites ECC_SM4_GCM_SM3 ECDHE_SM4_GCM_SM3
			}
		}
	}
}

http://:{TLCP} {
	gm_verify {
		scheme wechatpay-v3-sm2
	}
	respond "ok"
}

http://127.0.0.1:{HTTP} {
	reverse_proxy 127.0.0.1:1 {
		transport gm_channel {
			bank demo-bank
			scheme unionpay-sm2
		}
	}
}
`)
	inst := startGmgate(t, cf)
	m := scrapeMetrics(t, inst.admin)
	wx := signing.WechatPayName
	zero := []struct {
		name   string
		labels map[string]string
	}{
		{"gmgate_verify_results_total", map[string]string{"scheme": wx, "result": "ok"}},
		{"gmgate_verify_results_total", map[string]string{"scheme": wx, "result": string(gateway.CodeBadSignature)}},
		{"gmgate_verify_results_total", map[string]string{"scheme": wx, "result": string(gateway.CodeReplay)}},
		{"gmgate_verify_replay_rejections_total", map[string]string{"scheme": wx}},
		{"gmgate_verify_replay_store_errors_total", map[string]string{"scheme": wx, "outcome": "refused"}},
		{"gmgate_channel_requests_total", map[string]string{"bank": "demo-bank", "result": "ok"}},
		{"gmgate_channel_requests_total", map[string]string{"bank": "demo-bank", "result": string(channel.Codes()[0])}},
		{"gmgate_channel_duration_seconds_count", map[string]string{"bank": "demo-bank"}},
		{"gmgate_tlcp_handshakes_total", map[string]string{"suite": "ECC_SM4_GCM_SM3", "result": "ok"}},
		{"gmgate_tlcp_handshakes_total", map[string]string{"suite": "ECDHE_SM4_GCM_SM3", "result": "ok"}},
		{"gmgate_tlcp_handshake_duration_seconds_count", map[string]string{"suite": "ECC_SM4_GCM_SM3", "resumed": "true"}},
	}
	for _, z := range zero {
		got, ok := m.sum(z.name, z.labels)
		if !ok || got != 0 {
			t.Errorf("%s%v = %v (present %v), want present at 0 before any request", z.name, z.labels, got, ok)
		}
	}
	// The development PKI's server pair and platform key, with their NotAfter.
	dev, err := pki.LoadCertificatesFile(filepath.Join(inst.dir, "pki", pki.DevPlatformBase+".pem"))
	if err != nil {
		t.Fatal(err)
	}
	got, ok := m.sum("gmgate_certificate_not_after_timestamp_seconds",
		map[string]string{"module": "gmgate", "role": "key", "name": "dev-platform-sign", "serial": signing.SerialHex(dev[0].SerialNumber)})
	if !ok || int64(got) != dev[0].NotAfter.Unix() {
		t.Errorf("platform certificate expiry = %v (present %v), want %d", got, ok, dev[0].NotAfter.Unix())
	}
	for _, want := range []map[string]string{
		{"module": "gmgate", "role": "key", "name": "dev-server-sign"},
		{"module": "gmgate", "role": "key", "name": "dev-server-enc"},
		{"module": "gm_verify", "role": "client_root"},
		{"module": "gm_channel", "role": "bank", "name": "demo-bank"},
		{"module": "gm_channel", "role": "bank_root", "name": "demo-bank"},
		{"module": "tlcp", "role": "tlcp_client_root"},
	} {
		v, ok := m.sum("gmgate_certificate_not_after_timestamp_seconds", want)
		if !ok || v < float64(time.Now().Unix()) {
			t.Errorf("certificate expiry %v = %v (present %v)", want, v, ok)
		}
	}
}
