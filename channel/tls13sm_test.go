package channel

import (
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/integration/banksim"
	"github.com/gmgate/gmgate/tls13sm"
)

// tls13smConfigs are the bank's RFC 8998 server configuration (its TLCP signing certificate,
// mutual authentication against the platform root) and the platform's client configuration.
func tls13smConfigs(p *banksim.TestPKI, serverName string) (*tls13sm.Config, *tls13sm.Config) {
	platformPool := smx509.NewCertPool()
	platformPool.AddCert(p.PlatformRoot.Cert)
	bankPool := smx509.NewCertPool()
	bankPool.AddCert(p.BankRoot.Cert)
	server := &tls13sm.Config{
		Certificate: &tls13sm.Certificate{Certificate: [][]byte{p.BankServer.Sign.Cert.Raw, p.BankRoot.Cert.Raw}, PrivateKey: p.BankServer.Sign.Key},
		ClientCAs:   platformPool, ClientAuth: tls13sm.RequireAndVerifyClientCert,
	}
	client := &tls13sm.Config{
		Certificate: &tls13sm.Certificate{Certificate: [][]byte{p.PlatformTLCP.Sign.Cert.Raw, p.PlatformRoot.Cert.Raw}, PrivateKey: p.PlatformTLCP.Sign.Key},
		RootCAs:     bankPool, ServerName: serverName, ClientSessionCache: tls13sm.NewLRUClientSessionCache(8),
	}
	return server, client
}

func startTLS13SMSim(t *testing.T, p *banksim.TestPKI, cfg *tls13sm.Config) (*banksim.Server, *countingListener) {
	t.Helper()
	s, err := banksim.New(banksim.FromTestPKI(p, tlcpProfile.sim))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: raw}
	if err := s.Serve(tls13sm.NewListener(cl, cfg), "https"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, cl
}

// TestTLS13SMBankLink: the whole exchange with a bank over RFC 8998 with mutual
// authentication, keep-alive reuse, SNI given or derived from the address; refused (nothing
// forwarded, bank_unreachable) without the platform certificate or trusting another root.
func TestTLS13SMBankLink(t *testing.T) {
	p := getPKI(t)
	for _, serverName := range []string{"bank.test", ""} {
		t.Run("server name "+serverName, func(t *testing.T) {
			scfg, ccfg := tls13smConfigs(p, serverName)
			sim, cl := startTLS13SMSim(t, p, scfg)
			inner := &http.Transport{MaxIdleConnsPerHost: 4}
			if err := UseTLS13SM(inner, TLS13SMTransportConfig{Config: ccfg, HandshakeTimeout: 5 * time.Second}); err != nil {
				t.Fatal(err)
			}
			defer inner.CloseIdleConnections()
			tr, aud, _ := newTransport(t, channelConfig(t, p, tlcpProfile), inner, nil)
			for i := 0; i < 3; i++ {
				resp, body := do(t, tr, http.MethodPost, sim.URL+"/pay", "application/json", payJSON, nil)
				if resp.StatusCode != 200 {
					t.Fatalf("status %d %s", resp.StatusCode, body)
				}
				if m := jsonMap(t, body); m["accNo"] != fieldOf(payJSON, "accNo") || m["respCode"] != "00" {
					t.Fatalf("reply %s", body)
				}
			}
			if n := cl.n.Load(); n != 1 {
				t.Fatalf("%d connections for 3 requests: keep-alive not reused", n)
			}
			if len(aud.all()) != 3 {
				t.Fatal("audit entries missing")
			}
		})
	}
	other, err := banksim.NewTestPKI("bank.test")
	if err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(c *tls13sm.Config){
		"no client certificate": func(c *tls13sm.Config) { c.Certificate = nil },
		"untrusted bank": func(c *tls13sm.Config) {
			c.RootCAs = smx509.NewCertPool()
			c.RootCAs.AddCert(other.BankRoot.Cert)
		},
		"wrong server name": func(c *tls13sm.Config) { c.ServerName = "evil.test" },
	} {
		t.Run(name, func(t *testing.T) {
			scfg, ccfg := tls13smConfigs(p, "bank.test")
			mutate(ccfg)
			sim, _ := startTLS13SMSim(t, p, scfg)
			inner := &http.Transport{}
			if err := UseTLS13SM(inner, TLS13SMTransportConfig{Config: ccfg, HandshakeTimeout: 3 * time.Second}); err != nil {
				t.Fatal(err)
			}
			tr, aud, _ := newTransport(t, channelConfig(t, p, tlcpProfile), inner, nil)
			resp, body := do(t, tr, http.MethodPost, sim.URL+"/pay", "application/json", payJSON, nil)
			if resp.StatusCode != http.StatusBadGateway || jsonMap(t, body)["code"] != string(CodeBankUnreachable) {
				t.Fatalf("status %d %s", resp.StatusCode, body)
			}
			if len(sim.Received()) != 0 {
				t.Fatal("request reached the bank")
			}
			if recs := aud.all(); len(recs) != 1 || recs[0].Reason != "bank_unreachable" {
				t.Fatalf("audit %+v", recs)
			}
		})
	}
}
