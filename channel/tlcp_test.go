package channel

import (
	"bytes"
	"encoding/pem"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gmgate/gmgate/signing"

	"github.com/emmansun/gmsm/smx509"
	"github.com/tjfoc/gmsm/gmtls"
	tjx509 "github.com/tjfoc/gmsm/x509"

	"github.com/gmgate/gmgate/integration/banksim"
	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/tlcp"
)

// countingListener counts accepted connections (to prove keep-alive reuse).
type countingListener struct {
	net.Listener
	n atomic.Int32
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

func startTLCPSim(t *testing.T, p *banksim.TestPKI, pr profile, cfg *tlcp.Config) (*banksim.Server, *countingListener) {
	t.Helper()
	s, err := banksim.New(banksim.FromTestPKI(p, pr.sim))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: raw}
	if err := s.Serve(tlcp.NewListener(cl, cfg), "https"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, cl
}

var tlcpProfile = profile{name: "unionpay-tlcp", scheme: signing.Settings{Name: "unionpay-sm2"},
	sim: banksim.Profile{Scheme: banksim.UnionPay, Target: "fields", Cipher: "sm4-gcm", Fields: []string{"accNo", "idNo", "phone"}, SM4Key: testSM4Key},
	enc: func(*banksim.TestPKI) Encryption {
		return Encryption{Target: TargetFields, Cipher: CipherSM4GCM, Fields: sensitive(), Key: mustKey()}
	}}

// TestTLCPMutualAuth: the whole exchange over TLCP with mutual authentication to banksim on our
// TLCP server, every suite, keep-alive reuse, SNI given or derived from the address.
func TestTLCPMutualAuth(t *testing.T) {
	p := getPKI(t)
	cases := []struct {
		name       string
		suite      uint16
		serverName string
		vector     bool
	}{
		{"ECC_SM4_GCM_SM3", tlcp.ECC_SM4_GCM_SM3, "bank.test", false},
		{"ECC_SM4_CBC_SM3", tlcp.ECC_SM4_CBC_SM3, "bank.test", false},
		{"ECDHE_SM4_GCM_SM3", tlcp.ECDHE_SM4_GCM_SM3, "bank.test", false},
		{"ECDHE_SM4_CBC_SM3-vector-CKE", tlcp.ECDHE_SM4_CBC_SM3, "bank.test", true},
		{"derived-server-name", tlcp.ECC_SM4_GCM_SM3, "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sim, cl := startTLCPSim(t, p, tlcpProfile, p.ServerTLCPConfig())
			cc := p.ClientTLCPConfig(c.serverName)
			cc.CipherSuites = []uint16{c.suite}
			cc.ECDHEParamsAsVector = c.vector
			inner, err := newTLCPHTTPTransport(TLCPTransportConfig{TLCP: cc, HandshakeTimeout: 5 * time.Second})
			if err != nil {
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
}

// TestTLCPRefusals: without the platform's client certificate, or trusting another root, the
// link is refused: bank_unreachable, audited, nothing forwarded.
func TestTLCPRefusals(t *testing.T) {
	p := getPKI(t)
	other, err := banksim.NewTestPKI("bank.test")
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]func() *tlcp.Config{
		"no-client-cert": func() *tlcp.Config {
			c := p.ClientTLCPConfig("bank.test")
			c.SignCertificate, c.EncCertificate = tlcp.Certificate{}, tlcp.Certificate{}
			return c
		},
		"untrusted-bank": func() *tlcp.Config {
			c := p.ClientTLCPConfig("bank.test")
			c.RootCAs = smx509.NewCertPool()
			c.RootCAs.AddCert(other.BankRoot.Cert)
			return c
		},
		"wrong-server-name": func() *tlcp.Config { return p.ClientTLCPConfig("evil.test") },
	}
	for name, mk := range cases {
		t.Run(name, func(t *testing.T) {
			sim, _ := startTLCPSim(t, p, tlcpProfile, p.ServerTLCPConfig())
			inner, err := newTLCPHTTPTransport(TLCPTransportConfig{TLCP: mk(), HandshakeTimeout: 3 * time.Second})
			if err != nil {
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

// tjfocCert converts a pki pair member to a gmtls.Certificate through PEM, as a tjfoc user
// would load it.
func tjfocCert(t *testing.T, is *pki.Issued, chain ...*smx509.Certificate) gmtls.Certificate {
	t.Helper()
	var certPEM bytes.Buffer
	pem.Encode(&certPEM, &pem.Block{Type: "CERTIFICATE", Bytes: is.Cert.Raw})
	for _, c := range chain {
		pem.Encode(&certPEM, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	keyDER, err := smx509.MarshalPKCS8PrivateKey(is.Key)
	if err != nil {
		t.Fatal(err)
	}
	tc, err := gmtls.X509KeyPair(certPEM.Bytes(), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		t.Fatalf("gmtls.X509KeyPair: %v", err)
	}
	return tc
}

// TestTjfocBankServer: the bank endpoint is the independent github.com/tjfoc/gmsm v1.4.1 gmtls
// server (ECC_SM4_CBC_SM3, client certificate required and verified by tjfoc).
func TestTjfocBankServer(t *testing.T) {
	p := getPKI(t)
	root, err := tjx509.ParseCertificate(p.PlatformRoot.Cert.Raw)
	if err != nil {
		t.Fatal(err)
	}
	pool := tjx509.NewCertPool()
	pool.AddCert(root)
	scfg := &gmtls.Config{GMSupport: gmtls.NewGMSupport(),
		Certificates: []gmtls.Certificate{tjfocCert(t, p.BankServer.Sign, p.BankRoot.Cert), tjfocCert(t, p.BankServer.Enc, p.BankRoot.Cert)},
		ClientAuth:   gmtls.RequireAndVerifyClientCert, ClientCAs: pool}
	ln, err := gmtls.Listen("tcp", "127.0.0.1:0", scfg)
	if err != nil {
		t.Fatal(err)
	}
	sim, err := banksim.New(banksim.FromTestPKI(p, tlcpProfile.sim))
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Serve(ln, "https"); err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	cc := p.ClientTLCPConfig("bank.test")
	cc.CipherSuites = []uint16{tlcp.ECC_SM4_CBC_SM3}
	inner, err := newTLCPHTTPTransport(TLCPTransportConfig{TLCP: cc, HandshakeTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer inner.CloseIdleConnections()
	tr, aud, _ := newTransport(t, channelConfig(t, p, tlcpProfile), inner, nil)
	for i := 0; i < 2; i++ {
		resp, body := do(t, tr, http.MethodPost, sim.URL+"/pay", "application/json", payJSON, nil)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d %s", resp.StatusCode, body)
		}
		if m := jsonMap(t, body); m["accNo"] != fieldOf(payJSON, "accNo") || m["respCode"] != "00" {
			t.Fatalf("reply %s", body)
		}
	}
	if recv := sim.Received(); len(recv) != 2 || !recv[0].Verified {
		t.Fatalf("bank side %+v", recv)
	}
	if len(aud.all()) != 2 {
		t.Fatal("audit entries missing")
	}
}
