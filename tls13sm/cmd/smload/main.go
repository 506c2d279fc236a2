// Command smload measures RFC 8998 servers side by side: it drives N concurrent tls13sm
// clients against a server and prints handshakes per second and the server's CPU time per
// handshake (utime+stime from /proc/PID/stat over the window), or, in bulk mode, the
// server's CPU seconds per GiB sent. The server is ours (-serve) or any other, e.g. Tongsuo:
//
//	smload -serve 127.0.0.1:4434 -cert s.pem -key s.key [-client-ca ca.pem]
//	tongsuo s_server -accept 4435 -tls1_3 -ciphersuites TLS_SM4_GCM_SM3:TLS_SM4_CCM_SM3 \
//	    -groups curveSM2 -sigalgs sm2sig_sm3 -cert s.pem -key s.key -WWW -quiet   # in a dir with bulk.bin
//	smload -addr 127.0.0.1:4434 -ca ca.pem -server-name localhost -server-pid PID \
//	    -suite TLS_SM4_GCM_SM3 -n 4 -duration 10s [-resume] [-bulk -bulk-path /bulk.bin]
//
// Both servers answer "GET <path> HTTP/1.0": ours with -bulk-size zero bytes for any path,
// Tongsuo's -WWW with the file. Pin client and server to different cores with taskset.
package main

import (
	"bufio"
	"crypto/ecdsa"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/tls13sm"
)

func main() {
	serve := flag.String("serve", "", "run our server on this address")
	addr := flag.String("addr", "127.0.0.1:4434", "server address (client mode)")
	certFile := flag.String("cert", "", "PEM certificate (server: its own; client: for client auth)")
	keyFile := flag.String("key", "", "PEM SM2 key of -cert")
	caFile := flag.String("ca", "", "client: PEM root of the server")
	clientCA := flag.String("client-ca", "", "server: require and verify client certificates from this PEM root")
	serverName := flag.String("server-name", "localhost", "client: name checked against the server certificate")
	suiteName := flag.String("suite", "TLS_SM4_GCM_SM3", "cipher suite (client mode)")
	n := flag.Int("n", 4, "concurrent clients")
	duration := flag.Duration("duration", 10*time.Second, "measurement window")
	warmup := flag.Duration("warmup", 2*time.Second, "warm-up before the window")
	pid := flag.Int("server-pid", 0, "server pid for CPU accounting (0: none)")
	resume := flag.Bool("resume", false, "resume with tickets (each connection reads the reply to take the next ticket)")
	bulk := flag.Bool("bulk", false, "bulk mode: each connection downloads -bulk-path")
	bulkPath := flag.String("bulk-path", "/bulk.bin", "bulk mode: the path requested")
	bulkSize := flag.Int64("bulk-size", 64<<20, "our server: bytes sent for a bulk path")
	flag.Parse()
	var cert *tls13sm.Certificate
	if *certFile != "" {
		c, err := loadCert(*certFile, *keyFile)
		if err != nil {
			log.Fatal(err)
		}
		cert = c
	}
	if *serve != "" {
		if err := runServer(*serve, cert, *clientCA, *bulkSize); err != nil {
			log.Fatal(err)
		}
		return
	}
	cfg := &tls13sm.Config{ServerName: *serverName, Certificate: cert}
	switch *suiteName {
	case "TLS_SM4_GCM_SM3":
		cfg.CipherSuites = []uint16{tls13sm.TLS_SM4_GCM_SM3}
	case "TLS_SM4_CCM_SM3":
		cfg.CipherSuites = []uint16{tls13sm.TLS_SM4_CCM_SM3}
	default:
		log.Fatalf("unknown suite %q", *suiteName)
	}
	pool, err := loadPool(*caFile)
	if err != nil {
		log.Fatal(err)
	}
	cfg.RootCAs = pool
	if *resume {
		cfg.ClientSessionCache = tls13sm.NewLRUClientSessionCache(64)
	} else {
		cfg.SessionTicketsDisabled = true
	}
	run(cfg, *addr, *n, *warmup, *duration, *pid, *resume, *bulk, *bulkPath, *suiteName)
}

func loadPEM(path, typ string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return nil, fmt.Errorf("%s: no %s block", path, typ)
		}
		if strings.Contains(blk.Type, typ) {
			return blk.Bytes, nil
		}
	}
}

func loadCert(certFile, keyFile string) (*tls13sm.Certificate, error) {
	der, err := loadPEM(certFile, "CERTIFICATE")
	if err != nil {
		return nil, err
	}
	kd, err := loadPEM(keyFile, "PRIVATE KEY")
	if err != nil {
		return nil, err
	}
	var key *sm2.PrivateKey
	if k, err := smx509.ParsePKCS8PrivateKey(kd); err == nil {
		key, _ = k.(*sm2.PrivateKey)
	}
	if key == nil {
		if key, err = smx509.ParseSM2PrivateKey(kd); err != nil {
			return nil, err
		}
	}
	return &tls13sm.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

func loadPool(path string) (*smx509.CertPool, error) {
	if path == "" {
		return nil, errors.New("-ca is required")
	}
	der, err := loadPEM(path, "CERTIFICATE")
	if err != nil {
		return nil, err
	}
	c, err := smx509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	if _, ok := c.PublicKey.(*ecdsa.PublicKey); !ok {
		return nil, errors.New("root is not an EC/SM2 certificate")
	}
	pool := smx509.NewCertPool()
	pool.AddCert(c)
	return pool, nil
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

func run(cfg *tls13sm.Config, addr string, n int, warmup, window time.Duration, pid int, resume, bulk bool, path, suite string) {
	var count, resumed, bytesIn, errs atomic.Int64
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
				st, err := oneConn(cfg, addr, resume, bulk, path, &bytesIn, &measuring)
				if err != nil {
					if errs.Add(1) < 5 {
						log.Printf("connection error: %v", err)
					}
					time.Sleep(10 * time.Millisecond)
					continue
				}
				if measuring.Load() {
					count.Add(1)
					if st.DidResume {
						resumed.Add(1)
					}
				}
			}
		}()
	}
	time.Sleep(warmup)
	var t0, t1 int64
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
	if pid > 0 {
		t1, _ = cpuTicks(pid)
	}
	hs, bs := count.Load(), bytesIn.Load()
	close(stop)
	cpu := time.Duration(t1-t0) * clockTick
	fmt.Printf("suite=%s clients=%d window=%v connections=%d resumed=%d errors=%d\n", suite, n, elapsed.Round(time.Millisecond), hs, resumed.Load(), errs.Load())
	fmt.Printf("connections/s: %.1f\n", float64(hs)/elapsed.Seconds())
	if pid > 0 {
		fmt.Printf("server CPU: %v over the window\n", cpu)
		if hs > 0 && !bulk {
			fmt.Printf("server CPU per connection: %.0f us\n", float64(cpu.Microseconds())/float64(hs))
		}
		if bulk && bs > 0 {
			gib := float64(bs) / (1 << 30)
			fmt.Printf("bulk: %.1f MB/s received, server CPU %.2f s/GiB\n", float64(bs)/1e6/elapsed.Seconds(), cpu.Seconds()/gib)
		}
	}
	wg.Wait()
}

// oneConn runs one connection: a handshake (then close), a handshake and a small reply
// (resume: to take the ticket), or a bulk download.
func oneConn(cfg *tls13sm.Config, addr string, resume, bulk bool, path string, bytesIn *atomic.Int64, measuring *atomic.Bool) (tls13sm.ConnectionState, error) {
	d := &tls13sm.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second}, Config: cfg}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		return tls13sm.ConnectionState{}, err
	}
	c := nc.(*tls13sm.Conn)
	defer c.Close()
	st := c.ConnectionState()
	if !resume && !bulk {
		return st, nil
	}
	if !bulk {
		path = "/"
	}
	c.SetDeadline(time.Now().Add(5 * time.Minute))
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.0\r\n\r\n"); err != nil {
		return st, err
	}
	r := bufio.NewReaderSize(c, 64<<10)
	buf := make([]byte, 64<<10)
	for {
		m, err := r.Read(buf)
		if bulk && measuring.Load() {
			bytesIn.Add(int64(m))
		}
		if err == io.EOF {
			return st, nil
		}
		if err != nil {
			return st, err
		}
	}
}

func runServer(addr string, cert *tls13sm.Certificate, clientCA string, bulkSize int64) error {
	if cert == nil {
		return errors.New("-cert and -key are required")
	}
	cfg := &tls13sm.Config{Certificate: cert, HandshakeTimeout: 10 * time.Second}
	if clientCA != "" {
		pool, err := loadPool(clientCA)
		if err != nil {
			return err
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls13sm.RequireAndVerifyClientCert
	}
	ln, err := tls13sm.Listen("tcp", addr, cfg)
	if err != nil {
		return err
	}
	fmt.Printf("smload server pid %d listening on %s\n", os.Getpid(), ln.Addr())
	zero := make([]byte, 16384)
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func(c net.Conn) {
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Minute))
			line, err := bufio.NewReader(c).ReadString('\n')
			if err != nil {
				return
			}
			f := strings.Fields(line)
			if len(f) < 2 || f[0] != "GET" {
				return
			}
			if f[1] == "/" {
				io.WriteString(c, "HTTP/1.0 200 ok\r\n\r\nok\n")
				return
			}
			io.WriteString(c, "HTTP/1.0 200 ok\r\n\r\n")
			for left := bulkSize; left > 0; {
				m := min(int64(len(zero)), left)
				if _, err := c.Write(zero[:m]); err != nil {
					return
				}
				left -= m
			}
		}(c)
	}
}
