package tls13sm

import (
	"net"
	"sync"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
	"github.com/gmgate/gmgate/internal/testpki"
)

// testPKI is a CA with a server and a client certificate, all SM2.
type testPKI struct {
	caCert *smx509.Certificate
	caKey  *sm2.PrivateKey
	pool   *smx509.CertPool
	server *Certificate
	client *Certificate
}

var (
	pkiOnce sync.Once
	pkiVal  *testPKI
)

func leafCert(t testing.TB, p *testPKI, spec testpki.Spec) *Certificate {
	key := testpki.Key(t)
	cert := testpki.Issue(t, spec, key, p.caCert, p.caKey)
	return &Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key}
}

func getPKI(t testing.TB) *testPKI {
	pkiOnce.Do(func() {
		p := &testPKI{caKey: testpki.Key(t)}
		p.caCert = testpki.Issue(t, testpki.Spec{CN: "gmgate test CA", Usage: smx509.KeyUsageCertSign | smx509.KeyUsageCRLSign, IsCA: true,
			NotAfter: time.Now().Add(30 * 24 * time.Hour)}, p.caKey, nil, nil)
		p.pool = smx509.NewCertPool()
		p.pool.AddCert(p.caCert)
		p.server = leafCert(t, p, testpki.Spec{CN: "server.test", DNS: []string{"server.test", "localhost"},
			Usage: smx509.KeyUsageDigitalSignature, EKU: []smx509.ExtKeyUsage{smx509.ExtKeyUsageServerAuth}})
		p.client = leafCert(t, p, testpki.Spec{CN: "terminal-0001", Usage: smx509.KeyUsageDigitalSignature,
			EKU: []smx509.ExtKeyUsage{smx509.ExtKeyUsageClientAuth}})
		pkiVal = p
	})
	return pkiVal
}

func serverConfig(t testing.TB) *Config {
	p := getPKI(t)
	return &Config{Certificate: p.server, ClientCAs: p.pool}
}

func clientConfig(t testing.TB) *Config {
	p := getPKI(t)
	return &Config{RootCAs: p.pool, ServerName: "server.test"}
}

// pipePair runs a server and a client handshake over a loopback TCP pair.
func tcpPair(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ch := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			ch <- nil
			return
		}
		ch <- c
	}()
	cc, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sc := <-ch
	if sc == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { cc.Close(); sc.Close() })
	return sc, cc
}

// handshakePair runs both handshakes and returns the connections and errors.
func handshakePair(t testing.TB, scfg, ccfg *Config) (*Conn, *Conn, error, error) {
	t.Helper()
	sraw, craw := tcpPair(t)
	s := Server(sraw, scfg)
	c := Client(craw, ccfg)
	errc := make(chan error, 1)
	go func() { errc <- s.Handshake() }()
	cerr := c.Handshake()
	if cerr != nil {
		craw.Close()
	}
	serr := <-errc
	return s, c, serr, cerr
}
