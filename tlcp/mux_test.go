package tlcp

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"math/big"
	"net"
	"testing"
	"time"
)

func tlsTestConfig(t *testing.T) *tls.Config {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"server.test"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: k}}}
}

func echoServe(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			buf := make([]byte, 5)
			if _, err := io.ReadFull(c, buf); err != nil {
				return
			}
			c.Write(buf)
		}()
	}
}

func TestMuxTLCPAndTLS(t *testing.T) {
	defer checkGoroutines(t)()
	p := getPKI(t)
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := NewMux(inner, 300*time.Millisecond)
	go echoServe(NewListener(m.TLCP(), serverConfig(p)))
	go echoServe(tls.NewListener(m.Other(), tlsTestConfig(t)))
	addr := inner.Addr().String()

	check := func(c net.Conn, proto string) {
		t.Helper()
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte("hello")); err != nil {
			t.Fatalf("%s write: %v", proto, err)
		}
		buf := make([]byte, 5)
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hello" {
			t.Fatalf("%s echo: %q %v", proto, buf, err)
		}
	}
	// TLCP client.
	tc, err := Dial("tcp", addr, clientConfig(p, false))
	if err != nil {
		t.Fatal(err)
	}
	if tc.ConnectionState().Version != VersionTLCP {
		t.Fatal("not TLCP")
	}
	check(tc, "TLCP")
	// TLS 1.3 and 1.2 clients.
	for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, MinVersion: v, MaxVersion: v})
		if err != nil {
			t.Fatal(err)
		}
		check(c, "TLS")
	}
	// A TLCP client whose bytes arrive one at a time loses nothing.
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	slow := Client(&tamperConn{Conn: raw, fn: func(i int, b []byte) []byte {
		if i == 0 {
			for _, x := range b[:len(b)-1] {
				raw.Write([]byte{x})
				time.Sleep(2 * time.Millisecond)
			}
			return b[len(b)-1:]
		}
		return b
	}}, clientConfig(p, false))
	check(slow, "slow TLCP")
	// A silent client is dropped after the peek timeout.
	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	silent.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := silent.Read(make([]byte, 1)); err == nil {
		t.Fatal("silent connection was not closed")
	}
	silent.Close()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.TLCP().Accept(); err == nil {
		t.Fatal("Accept after Close succeeded")
	}
}
