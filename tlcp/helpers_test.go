package tlcp

import (
	"net"
	"sync"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
	"github.com/gmgate/gmgate/internal/testpki"
)

// testPKI is a CA with server and client sign/enc pairs.
type testPKI struct {
	caCert *smx509.Certificate
	caKey  *sm2.PrivateKey
	pool   *smx509.CertPool
	server *CertificatePair
	client *CertificatePair
}

var (
	pkiOnce sync.Once
	pkiVal  *testPKI
)

func pairFor(t testing.TB, p *testPKI, cn string, dns []string, eku smx509.ExtKeyUsage) *CertificatePair {
	sk, ek := testpki.Key(t), testpki.Key(t)
	sc := testpki.Issue(t, testpki.Spec{CN: cn, DNS: dns, Usage: smx509.KeyUsageDigitalSignature, EKU: []smx509.ExtKeyUsage{eku}}, sk, p.caCert, p.caKey)
	ec := testpki.Issue(t, testpki.Spec{CN: cn, DNS: dns, Usage: smx509.KeyUsageKeyEncipherment | smx509.KeyUsageDataEncipherment | smx509.KeyUsageKeyAgreement, EKU: []smx509.ExtKeyUsage{eku}}, ek, p.caCert, p.caKey)
	return &CertificatePair{
		Sign: Certificate{Certificate: [][]byte{sc.Raw, p.caCert.Raw}, PrivateKey: sk},
		Enc:  Certificate{Certificate: [][]byte{ec.Raw, p.caCert.Raw}, PrivateKey: ek},
	}
}

func getPKI(t testing.TB) *testPKI {
	pkiOnce.Do(func() {
		p := &testPKI{}
		p.caKey = testpki.Key(t)
		p.caCert = testpki.Issue(t, testpki.Spec{CN: "gmgate test CA", Usage: smx509.KeyUsageCertSign | smx509.KeyUsageCRLSign, IsCA: true,
			NotAfter: time.Now().Add(48 * time.Hour)}, p.caKey, nil, nil)
		p.pool = smx509.NewCertPool()
		p.pool.AddCert(p.caCert)
		p.server = pairFor(t, p, "server.test", []string{"server.test", "localhost"}, smx509.ExtKeyUsageServerAuth)
		p.client = pairFor(t, p, "client.test", nil, smx509.ExtKeyUsageClientAuth)
		pkiVal = p
	})
	return pkiVal
}

func serverConfig(p *testPKI) *Config {
	return &Config{SignCertificate: p.server.Sign, EncCertificate: p.server.Enc, ClientCAs: p.pool}
}

func clientConfig(p *testPKI, withCert bool) *Config {
	c := &Config{RootCAs: p.pool, ServerName: "server.test"}
	if withCert {
		c.SignCertificate, c.EncCertificate = p.client.Sign, p.client.Enc
	}
	return c
}

// handshakePair runs a client and a server over net.Pipe-like TCP loopback
// and returns both errors.
func runPair(t testing.TB, sc, cc *Config, fn func(cli, srv *Conn) error) (cliErr, srvErr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type res struct {
		c   *Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		raw, err := ln.Accept()
		if err != nil {
			ch <- res{nil, err}
			return
		}
		s := Server(raw, sc)
		err = s.Handshake()
		ch <- res{s, err}
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	cli := Client(raw, cc)
	cliErr = cli.Handshake()
	if cliErr != nil {
		cli.Close()
	}
	r := <-ch
	srvErr = r.err
	if srvErr != nil && r.c != nil {
		r.c.Close()
	}
	if cliErr == nil && srvErr == nil && fn != nil {
		if err := fn(cli, r.c); err != nil {
			t.Error(err)
		}
	}
	cli.Close()
	if r.c != nil {
		r.c.Close()
	}
	return cliErr, srvErr
}
