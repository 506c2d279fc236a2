// Command tlcpload drives N concurrent TLCP clients against a server and
// prints handshakes per second and the server's CPU time per handshake
// (utime+stime from /proc/PID/stat over the measurement window), or, in
// bulk mode, the server's CPU seconds per GiB sent.
//
// Start a server (prints its pid; writes a throwaway test PKI to -pki):
//
//	tlcpload -serve 127.0.0.1:4433 -pki /tmp/tlcpload-pki
//
// Drive it:
//
//	tlcpload -addr 127.0.0.1:4433 -pki /tmp/tlcpload-pki -server-pid PID \
//	    -suite ECC_SM4_GCM_SM3 -n 8 -duration 10s [-client-auth] [-resume] [-bulk]
//
// Pin the two processes to different cores with taskset to repeat the
// figures in docs/tlcp.md.
package main

import (
	"crypto/rand"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/tlcp"
)

func main() {
	serve := flag.String("serve", "", "run a TLCP server on this address")
	addr := flag.String("addr", "127.0.0.1:4433", "server address (client mode)")
	pkiDir := flag.String("pki", filepath.Join(os.TempDir(), "tlcpload-pki"), "directory for the throwaway test PKI")
	clientAuth := flag.Bool("client-auth", false, "server: require and verify client certificates; client: send them")
	suiteName := flag.String("suite", "ECC_SM4_GCM_SM3", "cipher suite (client mode)")
	n := flag.Int("n", 8, "concurrent clients")
	duration := flag.Duration("duration", 10*time.Second, "measurement window")
	warmup := flag.Duration("warmup", 2*time.Second, "warm-up before the window")
	pid := flag.Int("server-pid", 0, "server pid for CPU accounting (0: none)")
	resume := flag.Bool("resume", false, "resume sessions by session ID")
	bulk := flag.Bool("bulk", false, "bulk mode: each client downloads -bulk-size per connection")
	bulkSize := flag.Int64("bulk-size", 256<<20, "bytes per bulk download")
	flag.Parse()

	if *serve != "" {
		if err := runServer(*serve, *pkiDir, *clientAuth); err != nil {
			log.Fatal(err)
		}
		return
	}
	suite, err := parseSuite(*suiteName)
	if err != nil {
		log.Fatal(err)
	}
	cfg, err := clientConfig(*pkiDir, suite, *clientAuth || strings.HasPrefix(*suiteName, "ECDHE"))
	if err != nil {
		log.Fatal(err)
	}
	if *resume {
		cfg.SessionCache = tlcp.NewLRUSessionCache(64, time.Hour)
	}
	run(cfg, *addr, *n, *warmup, *duration, *pid, *bulk, *bulkSize, *suiteName)
}

func parseSuite(name string) (uint16, error) {
	for _, id := range tlcp.CipherSuites() {
		if tlcp.CipherSuiteName(id) == name {
			return id, nil
		}
	}
	return 0, fmt.Errorf("unknown suite %q", name)
}

// cpuTicks reads utime+stime (clock ticks, 100 Hz on Linux) of pid.
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("malformed stat")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, errors.New("malformed stat")
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("malformed stat")
	}
	return u + st, nil
}

const clockTick = 10 * time.Millisecond // USER_HZ = 100

func run(cfg *tlcp.Config, addr string, n int, warmup, window time.Duration, pid int, bulk bool, bulkSize int64, suite string) {
	var count, bytesIn, errs atomic.Int64
	var measuring atomic.Bool
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				got, err := oneConn(cfg, addr, bulk, bulkSize, &bytesIn, &measuring)
				if err != nil {
					errs.Add(1)
					if errs.Load() < 5 {
						log.Printf("connection error: %v", err)
					}
					time.Sleep(10 * time.Millisecond)
					continue
				}
				if got && measuring.Load() {
					count.Add(1)
				}
			}
		}()
	}
	time.Sleep(warmup)
	var t0 int64
	if pid > 0 {
		var err error
		if t0, err = cpuTicks(pid); err != nil {
			log.Fatal(err)
		}
	}
	bytesIn.Store(0)
	measuring.Store(true)
	start := time.Now()
	time.Sleep(window)
	measuring.Store(false)
	elapsed := time.Since(start)
	var t1 int64
	if pid > 0 {
		t1, _ = cpuTicks(pid)
	}
	hs := count.Load()
	bs := bytesIn.Load()
	close(stop)
	cpu := time.Duration(t1-t0) * clockTick
	fmt.Printf("suite=%s clients=%d window=%v handshakes=%d errors=%d\n", suite, n, elapsed.Round(time.Millisecond), hs, errs.Load())
	fmt.Printf("handshakes/s: %.1f\n", float64(hs)/elapsed.Seconds())
	if pid > 0 {
		fmt.Printf("server CPU: %v over the window\n", cpu)
		if hs > 0 && !bulk {
			fmt.Printf("server CPU per handshake: %.0f us\n", float64(cpu.Microseconds())/float64(hs))
		}
		if bulk && bs > 0 {
			gib := float64(bs) / (1 << 30)
			fmt.Printf("bulk: %.1f MB/s received, server CPU %.2f s/GiB\n", float64(bs)/1e6/elapsed.Seconds(), cpu.Seconds()/gib)
		}
	}
	wg.Wait()
}

// oneConn runs one connection: a handshake (then close), or a bulk download.
func oneConn(cfg *tlcp.Config, addr string, bulk bool, size int64, bytesIn *atomic.Int64, measuring *atomic.Bool) (bool, error) {
	c, err := tlcp.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return false, err
	}
	defer c.Close()
	if !bulk {
		_, err := c.Write([]byte{'H'})
		return err == nil, err
	}
	req := make([]byte, 9)
	req[0] = 'B'
	binary.BigEndian.PutUint64(req[1:], uint64(size))
	if _, err := c.Write(req); err != nil {
		return false, err
	}
	buf := make([]byte, 64<<10)
	var total int64
	for total < size {
		m, err := c.Read(buf)
		total += int64(m)
		if measuring.Load() {
			bytesIn.Add(int64(m))
		}
		if err != nil {
			return false, err
		}
	}
	return false, nil
}

func runServer(addr, dir string, clientAuth bool) error {
	pk, err := ensurePKI(dir)
	if err != nil {
		return err
	}
	cfg := &tlcp.Config{
		SignCertificate: pk.serverSign, EncCertificate: pk.serverEnc,
		ClientCAs: pk.pool, SessionCache: tlcp.NewLRUSessionCache(100000, time.Hour),
		HandshakeTimeout: 10 * time.Second,
	}
	if clientAuth {
		cfg.ClientAuth = tlcp.RequireAndVerifyClientCert
	}
	ln, err := tlcp.Listen("tcp", addr, cfg)
	if err != nil {
		return err
	}
	fmt.Printf("tlcpload server pid %d listening on %s (client auth %v)\n", os.Getpid(), ln.Addr(), clientAuth)
	zero := make([]byte, 16384)
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func(c net.Conn) {
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Minute))
			var req [1]byte
			if _, err := io.ReadFull(c, req[:]); err != nil || req[0] != 'B' {
				return
			}
			var sz [8]byte
			if _, err := io.ReadFull(c, sz[:]); err != nil {
				return
			}
			left := int64(binary.BigEndian.Uint64(sz[:]))
			for left > 0 {
				m := int64(len(zero))
				if m > left {
					m = left
				}
				if _, err := c.Write(zero[:m]); err != nil {
					return
				}
				left -= m
			}
		}(c)
	}
}

type loadPKI struct {
	pool                  *smx509.CertPool
	serverSign, serverEnc tlcp.Certificate
	clientSign, clientEnc tlcp.Certificate
}

func clientConfig(dir string, suite uint16, withCert bool) (*tlcp.Config, error) {
	pk, err := ensurePKI(dir)
	if err != nil {
		return nil, err
	}
	cfg := &tlcp.Config{RootCAs: pk.pool, ServerName: "tlcpload.test", CipherSuites: []uint16{suite}}
	if withCert {
		cfg.SignCertificate, cfg.EncCertificate = pk.clientSign, pk.clientEnc
	}
	return cfg, nil
}

// ensurePKI loads the throwaway PKI from dir, creating it if absent.
func ensurePKI(dir string) (*loadPKI, error) {
	names := []string{"ca", "server_sign", "server_enc", "client_sign", "client_enc"}
	if _, err := os.Stat(filepath.Join(dir, "ca.crt")); err != nil {
		if err := createPKI(dir, names); err != nil {
			return nil, err
		}
	}
	certs := map[string]*smx509.Certificate{}
	keys := map[string]*sm2.PrivateKey{}
	for _, n := range names {
		cb, err := os.ReadFile(filepath.Join(dir, n+".crt"))
		if err != nil {
			return nil, err
		}
		blk, _ := pem.Decode(cb)
		if blk == nil {
			return nil, fmt.Errorf("%s.crt: no PEM", n)
		}
		c, err := smx509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, err
		}
		certs[n] = c
		if n == "ca" {
			continue
		}
		kb, err := os.ReadFile(filepath.Join(dir, n+".key"))
		if err != nil {
			return nil, err
		}
		blk, _ = pem.Decode(kb)
		if blk == nil {
			return nil, fmt.Errorf("%s.key: no PEM", n)
		}
		k, err := smx509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			return nil, err
		}
		sk, ok := k.(*sm2.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("%s.key: not SM2", n)
		}
		keys[n] = sk
	}
	pool := smx509.NewCertPool()
	pool.AddCert(certs["ca"])
	mk := func(n string) tlcp.Certificate {
		return tlcp.Certificate{Certificate: [][]byte{certs[n].Raw}, PrivateKey: keys[n], Leaf: certs[n]}
	}
	return &loadPKI{pool: pool, serverSign: mk("server_sign"), serverEnc: mk("server_enc"),
		clientSign: mk("client_sign"), clientEnc: mk("client_enc")}, nil
}

func createPKI(dir string, names []string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	now := time.Now()
	caKey, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	caTmpl := &smx509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tlcpload test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(365 * 24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: smx509.KeyUsageCertSign | smx509.KeyUsageCRLSign}
	caDER, err := smx509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	ca, _ := smx509.ParseCertificate(caDER)
	if err := writePEM(filepath.Join(dir, "ca.crt"), "CERTIFICATE", caDER); err != nil {
		return err
	}
	for i, n := range names[1:] {
		k, err := sm2.GenerateKey(rand.Reader)
		if err != nil {
			return err
		}
		usage := smx509.KeyUsageDigitalSignature
		if strings.HasSuffix(n, "_enc") {
			usage = smx509.KeyUsageKeyEncipherment | smx509.KeyUsageDataEncipherment | smx509.KeyUsageKeyAgreement
		}
		eku := smx509.ExtKeyUsageServerAuth
		if strings.HasPrefix(n, "client") {
			eku = smx509.ExtKeyUsageClientAuth
		}
		tmpl := &smx509.Certificate{SerialNumber: big.NewInt(int64(i + 2)), Subject: pkix.Name{CommonName: "tlcpload.test"},
			DNSNames: []string{"tlcpload.test"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(365 * 24 * time.Hour),
			KeyUsage: usage, ExtKeyUsage: []smx509.ExtKeyUsage{eku}, BasicConstraintsValid: true}
		der, err := smx509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			return err
		}
		kd, err := smx509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			return err
		}
		if err := writePEM(filepath.Join(dir, n+".crt"), "CERTIFICATE", der); err != nil {
			return err
		}
		if err := writePEM(filepath.Join(dir, n+".key"), "PRIVATE KEY", kd); err != nil {
			return err
		}
	}
	return nil
}

func writePEM(path, typ string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}
