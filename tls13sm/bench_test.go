package tls13sm

import (
	"io"
	"testing"
)

// Benchmarks: a full and a resumed handshake (both sides, in-process), and bulk throughput
// per suite. Compare with tlcp's BenchmarkHandshake* for the side-by-side ratio.

func benchHandshake(b *testing.B, resume bool) {
	scfg := serverConfig(b)
	ccfg := clientConfig(b)
	if resume {
		ccfg.ClientSessionCache = NewLRUClientSessionCache(4)
	} else {
		scfg.SessionTicketsDisabled = true
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		s, c, serr, cerr := handshakePair(b, scfg, ccfg)
		if serr != nil || cerr != nil {
			b.Fatal(serr, cerr)
		}
		if resume {
			// Let the client take the ticket.
			go s.Write([]byte{1})
			if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
				b.Fatal(err)
			}
		}
		c.Close()
		s.Close()
	}
}

func BenchmarkHandshakeFull(b *testing.B)    { benchHandshake(b, false) }
func BenchmarkHandshakeResumed(b *testing.B) { benchHandshake(b, true) }

func benchThroughput(b *testing.B, suite uint16) {
	ccfg := clientConfig(b)
	ccfg.CipherSuites = []uint16{suite}
	s, c, serr, cerr := handshakePair(b, serverConfig(b), ccfg)
	if serr != nil || cerr != nil {
		b.Fatal(serr, cerr)
	}
	buf := make([]byte, 64<<10)
	done := make(chan error, 1)
	go func() {
		_, err := io.CopyN(io.Discard, s, int64(b.N)*int64(len(buf)))
		done <- err
	}()
	b.SetBytes(int64(len(buf)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}

func BenchmarkThroughputGCM(b *testing.B) { benchThroughput(b, TLS_SM4_GCM_SM3) }
func BenchmarkThroughputCCM(b *testing.B) { benchThroughput(b, TLS_SM4_CCM_SM3) }
