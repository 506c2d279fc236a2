package tlcp

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gmgate/gmgate/internal/attack"
)

// raiseNoFile lifts the soft descriptor limit to the hard one, or fails when that is too small
// for n connections (each costs a descriptor on both ends).
func raiseNoFile(t *testing.T, n uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			t.Fatal(err)
		}
	}
	if lim.Cur < n {
		t.Fatalf("RLIMIT_NOFILE %d < %d needed for the silent-connection test", lim.Cur, n)
	}
}

// TestAttackSilentConnectionsDoNotStallMux is finding 5 of the security review: a dual-stack port
// peeks at each connection's first record. The accept loop used to wait on a 1024-slot semaphore
// while connections were peeked for up to peek_timeout, so 1024 silent sockets froze every TLS and
// TLCP user. Here 5,000 silent connections from 20 source addresses (each under the per-source
// bound) are held open while ordinary TLCP and TLS clients from another address must be served.
func TestAttackSilentConnectionsDoNotStallMux(t *testing.T) {
	const silent = 5000
	raiseNoFile(t, 2*silent+512)
	p := getPKI(t)
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := NewMuxConfig(inner, MuxConfig{PeekTimeout: time.Minute, MaxPendingPerSource: silent / 20})
	go echoServe(NewListener(m.TLCP(), serverConfig(p)))
	go echoServe(tls.NewListener(m.Other(), tlsTestConfig(t)))
	addr := inner.Addr().String()

	conns, err := attack.SilentPeers(addr, silent, attack.Loopbacks(2, 20))
	if err != nil {
		t.Fatal(err)
	}
	// The mux closes the silent connections first (Close ends them), so the TIME_WAIT states
	// stay on the listening port instead of occupying 5,000 ephemeral ports other tests need.
	defer attack.CloseAll(conns)
	defer m.Close()
	// Let the mux accept them all: the pending count must reach the silent ones.
	deadline := time.Now().Add(30 * time.Second)
	for {
		n, _, _ := m.m.Pending()
		if n >= silent {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d silent connections accepted", n, silent)
		}
		time.Sleep(10 * time.Millisecond)
	}

	client := &net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.200")}}
	echo := func(c net.Conn, proto string) {
		t.Helper()
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second)) // "not stalled"; the old code waited a minute
		if _, err := c.Write([]byte("hello")); err != nil {
			t.Fatalf("%s write: %v", proto, err)
		}
		buf := make([]byte, 5)
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hello" {
			t.Fatalf("%s while %d connections are silent: %q %v", proto, silent, buf, err)
		}
	}
	for i := 0; i < 3; i++ {
		raw, err := client.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		tc := Client(raw, clientConfig(p, false))
		echo(tc, "TLCP")
		raw, err = client.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		echo(tls.Client(raw, &tls.Config{InsecureSkipVerify: true}), "TLS")
	}

	// One source over its bound has its extra connections closed at once.
	extra, err := attack.SilentPeers(addr, 1, []string{"127.0.0.2"})
	if err != nil {
		t.Fatal(err)
	}
	defer attack.CloseAll(extra)
	extra[0].SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := extra[0].Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection over the per-source bound not closed: %v", err)
	}
}

// flakyListener fails Accept with err the first n times, then accepts from the real listener.
type flakyListener struct {
	net.Listener
	n   atomic.Int32
	err error
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if l.n.Add(-1) >= 0 {
		return nil, l.err
	}
	return l.Listener.Accept()
}

// TestAttackAcceptErrorsDoNotCloseMux is finding 6: one EMFILE, ENFILE or ECONNABORTED from
// accept used to shut the mux (and through tlcp_join the TLS side) for good. Now such errors are
// retried with a backoff and the port keeps serving.
func TestAttackAcceptErrorsDoNotCloseMux(t *testing.T) {
	p := getPKI(t)
	for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ECONNABORTED} {
		t.Run(errno.Error(), func(t *testing.T) {
			inner, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			fl := &flakyListener{Listener: inner, err: &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", errno)}}
			fl.n.Store(5)
			m := NewMux(fl, time.Second)
			defer m.Close()
			go echoServe(NewListener(m.TLCP(), serverConfig(p)))
			go echoServe(tls.NewListener(m.Other(), tlsTestConfig(t)))
			tc, err := Dial("tcp", inner.Addr().String(), clientConfig(p, false))
			if err != nil {
				t.Fatalf("TLCP after %v: %v", errno, err)
			}
			tc.Close()
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", inner.Addr().String(), &tls.Config{InsecureSkipVerify: true})
			if err != nil {
				t.Fatalf("TLS after %v: %v", errno, err)
			}
			c.Close()
		})
	}
}
