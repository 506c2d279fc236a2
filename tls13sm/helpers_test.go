package tls13sm

import (
	"crypto/rand"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
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
	serial  atomic.Int64
)

type certSpec struct {
	cn        string
	dns       []string
	usage     smx509.KeyUsage
	eku       []smx509.ExtKeyUsage
	notBefore time.Time
	notAfter  time.Time
	isCA      bool
}

func mustKey(t testing.TB) *sm2.PrivateKey {
	k, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func issue(t testing.TB, spec certSpec, key *sm2.PrivateKey, parent *smx509.Certificate, parentKey *sm2.PrivateKey) *smx509.Certificate {
	t.Helper()
	if spec.notBefore.IsZero() {
		spec.notBefore = time.Now().Add(-time.Hour)
	}
	if spec.notAfter.IsZero() {
		spec.notAfter = time.Now().Add(24 * time.Hour)
	}
	tmpl := &smx509.Certificate{
		SerialNumber:          big.NewInt(1000 + serial.Add(1)),
		Subject:               pkix.Name{CommonName: spec.cn, Organization: []string{"gmgate test"}},
		NotBefore:             spec.notBefore,
		NotAfter:              spec.notAfter,
		KeyUsage:              spec.usage,
		ExtKeyUsage:           spec.eku,
		DNSNames:              spec.dns,
		BasicConstraintsValid: true,
		IsCA:                  spec.isCA,
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := smx509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := smx509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func leafCert(t testing.TB, p *testPKI, spec certSpec) *Certificate {
	key := mustKey(t)
	cert := issue(t, spec, key, p.caCert, p.caKey)
	return &Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key}
}

func getPKI(t testing.TB) *testPKI {
	pkiOnce.Do(func() {
		p := &testPKI{caKey: mustKey(t)}
		p.caCert = issue(t, certSpec{cn: "gmgate test CA", usage: smx509.KeyUsageCertSign | smx509.KeyUsageCRLSign, isCA: true,
			notAfter: time.Now().Add(30 * 24 * time.Hour)}, p.caKey, nil, nil)
		p.pool = smx509.NewCertPool()
		p.pool.AddCert(p.caCert)
		p.server = leafCert(t, p, certSpec{cn: "server.test", dns: []string{"server.test", "localhost"},
			usage: smx509.KeyUsageDigitalSignature, eku: []smx509.ExtKeyUsage{smx509.ExtKeyUsageServerAuth}})
		p.client = leafCert(t, p, certSpec{cn: "terminal-0001", usage: smx509.KeyUsageDigitalSignature,
			eku: []smx509.ExtKeyUsage{smx509.ExtKeyUsageClientAuth}})
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

// writePEM writes DER blocks of type typ to dir/name and returns the path.
func writePEM(t testing.TB, dir, name, typ string, ders ...[]byte) string {
	t.Helper()
	var out []byte
	for _, d := range ders {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: d})...)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, out, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func writeKey(t testing.TB, dir, name string, k any) string {
	t.Helper()
	der, err := smx509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return writePEM(t, dir, name, "PRIVATE KEY", der)
}
