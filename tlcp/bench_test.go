package tlcp

import (
	"io"
	"net"
	"testing"
	"time"
)

func benchHandshake(b *testing.B, sc, cc *Config) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		cside, sside := net.Pipe()
		srv := Server(sside, sc)
		errc := make(chan error, 1)
		go func() { errc <- srv.Handshake() }()
		cli := Client(cside, cc)
		if err := cli.Handshake(); err != nil {
			b.Fatal(err)
		}
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
		cside.Close()
		sside.Close()
	}
}

// BenchmarkHandshake measures a full handshake (client and server CPU together).
func BenchmarkHandshake(b *testing.B) {
	p := getPKI(b)
	for _, suite := range defaultSuites {
		b.Run(CipherSuiteName(suite), func(b *testing.B) {
			cc := clientConfig(p, suiteByID(suite).ecdhe)
			cc.CipherSuites = []uint16{suite}
			benchHandshake(b, serverConfig(p), cc)
		})
	}
	b.Run("ECC_SM4_GCM_SM3-clientauth", func(b *testing.B) {
		sc := serverConfig(p)
		sc.ClientAuth = RequireAndVerifyClientCert
		benchHandshake(b, sc, clientConfig(p, true))
	})
}

// BenchmarkResumedHandshake measures a session-ID resumption.
func BenchmarkResumedHandshake(b *testing.B) {
	p := getPKI(b)
	sc := serverConfig(p)
	sc.SessionCache = NewLRUSessionCache(100, time.Hour)
	cc := clientConfig(p, false)
	cc.SessionCache = NewLRUSessionCache(100, time.Hour)
	benchHandshake(b, sc, cc) // warm: the first iteration is full
}

// BenchmarkBulk measures sending 16 KiB records (one side's seal plus the
// other's open).
func BenchmarkBulk(b *testing.B) {
	p := getPKI(b)
	for _, suite := range []uint16{ECC_SM4_GCM_SM3, ECC_SM4_CBC_SM3} {
		b.Run(CipherSuiteName(suite), func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			done := make(chan error, 1)
			go func() {
				raw, err := ln.Accept()
				if err != nil {
					done <- err
					return
				}
				s := Server(raw, serverConfig(p))
				_, err = io.Copy(io.Discard, s)
				s.Close()
				done <- err
			}()
			cc := clientConfig(p, false)
			cc.CipherSuites = []uint16{suite}
			c, err := Dial("tcp", ln.Addr().String(), cc)
			if err != nil {
				b.Fatal(err)
			}
			buf := make([]byte, 16384)
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
			c.Close()
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkRecordSeal measures record protection alone (one direction).
func BenchmarkRecordSeal(b *testing.B) {
	for _, suite := range []uint16{ECC_SM4_GCM_SM3, ECC_SM4_CBC_SM3} {
		b.Run(CipherSuiteName(suite), func(b *testing.B) {
			s := suiteByID(suite)
			rc, _ := newRecordCipher(s, make([]byte, s.macLen), make([]byte, 16), make([]byte, s.ivLen))
			pt := make([]byte, 16384)
			out := make([]byte, 0, maxCiphertext+5)
			var seq [8]byte
			hdr := []byte{23, 1, 1}
			b.SetBytes(16384)
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				var err error
				out, err = rc.seal(out[:0], &seq, hdr, pt, cryptoRandReader)
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
