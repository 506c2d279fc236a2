package caddymodule

import (
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"
	"go.uber.org/zap"

	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/tlcp"
)

// oneConnListener hands out one server end of a pipe per Accept.
type oneConnListener struct {
	net.Listener
	c net.Conn
}

func (l *oneConnListener) Accept() (net.Conn, error) { return l.c, nil }

// BenchmarkTLCPListenerConn is the per-connection cost of the tlcp listener wrapper (metrics,
// connection registry, handshake on first use) against the bare tlcp server, for a resumed and a
// full ECC handshake with one byte each way: what the Caddy site adds before Caddy's HTTP server
// sees the connection. Compare the sub-benchmarks side by side (docs/perf/tlcp.md).
func BenchmarkTLCPListenerConn(b *testing.B) {
	dev, err := pki.EnsureDevPKI(filepath.Join(b.TempDir(), "pki"), nil)
	if err != nil {
		b.Fatal(err)
	}
	cert := func(i *pki.Issued) tlcp.Certificate {
		return tlcp.Certificate{Certificate: [][]byte{i.Cert.Raw}, PrivateKey: i.Key, Leaf: i.Cert}
	}
	roots := smx509.NewCertPool()
	roots.AddCert(dev.Root.Cert)
	srvCfg := &tlcp.Config{SignCertificate: cert(dev.Server.Sign), EncCertificate: cert(dev.Server.Enc),
		ClientAuth: tlcp.VerifyClientCertIfGiven, ClientCAs: roots, SessionCache: tlcp.NewLRUSessionCache(100, time.Hour)}
	w := &ListenerWrapper{config: srvCfg, logger: zap.NewNop()}
	for _, resume := range []bool{true, false} {
		for _, wrapped := range []bool{true, false} {
			name := map[bool]string{true: "resumed", false: "full"}[resume] + "/" + map[bool]string{true: "wrapper", false: "bare"}[wrapped]
			b.Run(name, func(b *testing.B) {
				cliCfg := &tlcp.Config{RootCAs: roots, ServerName: "localhost", CipherSuites: []uint16{tlcp.ECC_SM4_GCM_SM3}}
				if resume {
					cliCfg.SessionCache = tlcp.NewLRUSessionCache(4, time.Hour)
				}
				b.ReportAllocs()
				for b.Loop() {
					cEnd, sEnd := tcpPair(b)
					var srv net.Conn
					if wrapped {
						srv, _ = (&tlcpListener{Listener: &oneConnListener{c: sEnd}, w: w}).Accept()
					} else {
						srv = tlcp.Server(sEnd, srvCfg)
					}
					done := make(chan error, 1)
					go func() {
						var one [1]byte
						_, err := io.ReadFull(srv, one[:])
						if err == nil {
							_, err = srv.Write(one[:])
						}
						srv.Close()
						done <- err
					}()
					cli := tlcp.Client(cEnd, cliCfg)
					var one [1]byte
					if _, err := cli.Write([]byte{'x'}); err != nil {
						b.Fatal(err)
					}
					if _, err := io.ReadFull(cli, one[:]); err != nil {
						b.Fatal(err)
					}
					cli.Close()
					if err := <-done; err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// tcpPair is a connected loopback TCP pair (real addresses, as the registry keys need).
func tcpPair(b *testing.B) (client, server net.Conn) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	ch := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		ch <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	server = <-ch
	if server == nil {
		b.Fatal("accept failed")
	}
	return client, server
}
