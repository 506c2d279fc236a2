package firstrecord

import (
	"errors"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// classifyM matches connections whose first 4 bytes are "MMMM"; a prefix of
// it needs more, anything else goes to Other.
func classifyM(b []byte) (bool, bool) {
	for i := 0; i < len(b) && i < 4; i++ {
		if b[i] != 'M' {
			return false, false
		}
	}
	if len(b) < 4 {
		return false, true
	}
	return true, false
}

func newMux(t *testing.T, cfg Config) (*Mux, string) {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxPeek == 0 {
		cfg.MaxPeek = 64
	}
	m := New(inner, cfg, classifyM)
	t.Cleanup(func() { m.Close() })
	return m, inner.Addr().String()
}

func acceptRead(t *testing.T, l net.Listener, n int) []byte {
	t.Helper()
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRouteAndReplay(t *testing.T) {
	m, addr := newMux(t, Config{})
	tests := []struct {
		name, send string
		match      bool
	}{
		{"match", "MMMM payment", true},
		{"other", "GET / HTTP/1.1", false},
		{"other after matching prefix", "MMX tail", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			// Sent in two writes: the classifier may need more than the first.
			io.WriteString(c, tt.send[:2])
			time.Sleep(20 * time.Millisecond)
			io.WriteString(c, tt.send[2:])
			l := m.Other()
			if tt.match {
				l = m.Match()
			}
			if got := string(acceptRead(t, l, len(tt.send))); got != tt.send {
				t.Fatalf("routed connection reads %q, peer sent %q", got, tt.send)
			}
		})
	}
}

// TestMaxPeekBound: a peer that keeps sending a matching prefix forever is
// decided (Other) after MaxPeek bytes; the bytes are replayed.
func TestMaxPeekBound(t *testing.T) {
	m, addr := newMux(t, Config{MaxPeek: 3})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "MMM")
	if got := string(acceptRead(t, m.Other(), 3)); got != "MMM" {
		t.Fatalf("got %q", got)
	}
}

// TestSilentPeersBounded: silent connections of one source beyond
// MaxPendingPerSource are closed at accept, the others end at PeekTimeout,
// and meanwhile a talking peer is still routed.
func TestSilentPeersBounded(t *testing.T) {
	m, addr := newMux(t, Config{PeekTimeout: 2 * time.Second, MaxPendingPerSource: 3})
	var silent []net.Conn
	for range 5 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		silent = append(silent, c)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		total, sources, peeking := m.Pending()
		if total == 3 && sources == 1 && peeking == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pending %d/%d/%d, want 3 connections of 1 source", total, sources, peeking)
		}
		time.Sleep(10 * time.Millisecond)
	}
	closed := 0
	for _, c := range silent {
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); err == io.EOF || errors.Is(err, syscall.ECONNRESET) {
			closed++
		}
	}
	if closed != 2 {
		t.Fatalf("%d connections over the per-source bound closed, want 2", closed)
	}
	// The bound counts undecided connections only: once they time out, the source is served again.
	deadline = time.Now().Add(5 * time.Second)
	for {
		if total, _, _ := m.Pending(); total == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("silent connections not closed at PeekTimeout")
		}
		time.Sleep(20 * time.Millisecond)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "MMMM")
	acceptRead(t, m.Match(), 4)
}

func TestCloseEndsSilentPeers(t *testing.T) {
	m, addr := newMux(t, Config{PeekTimeout: time.Minute})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if total, _, _ := m.Pending(); total == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("connection not accepted")
		}
	}
	done := make(chan error, 1)
	go func() { done <- m.Close() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close waited for a silent peer")
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("silent peer still open after Close")
	}
	if _, err := m.Match().Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close = %v, want net.ErrClosed", err)
	}
}

// flakyListener fails Accept with EMFILE a few times, then accepts.
type flakyListener struct {
	net.Listener
	fails atomic.Int32
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if l.fails.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
	}
	return l.Listener.Accept()
}

// TestTemporaryAcceptErrorsRetried: running out of descriptors does not end
// the listener; a fatal accept error does.
func TestTemporaryAcceptErrorsRetried(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fl := &flakyListener{Listener: inner}
	fl.fails.Store(4)
	m := New(fl, Config{MaxPeek: 8}, classifyM)
	defer m.Close()
	c, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "MMMM")
	acceptRead(t, m.Match(), 4)

	if !temporaryAcceptError(&net.OpError{Err: syscall.ECONNABORTED}) || temporaryAcceptError(net.ErrClosed) {
		t.Fatal("temporaryAcceptError misclassifies")
	}
	inner.Close() // fatal: the Mux ends
	if _, err := m.Other().Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after a fatal inner error = %v, want net.ErrClosed", err)
	}
}

func FuzzRoute(f *testing.F) {
	f.Add([]byte("MMMM"), 2)
	f.Add([]byte("GET"), 1)
	f.Fuzz(func(t *testing.T, data []byte, maxPeek int) {
		if len(data) == 0 || len(data) > 256 {
			return
		}
		maxPeek = 1 + (maxPeek&0xff)%16
		match, more := classifyM(data[:min(len(data), maxPeek)])
		if more && len(data) < maxPeek {
			return // undecided when the peer stops: closed, not routed
		}
		m, addr := newMux(t, Config{MaxPeek: maxPeek, PeekTimeout: time.Second})
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write(data)
		c.(*net.TCPConn).CloseWrite()
		l := m.Other()
		if match {
			l = m.Match()
		}
		got := acceptRead(t, l, len(data))
		if string(got) != string(data) {
			t.Fatalf("replayed %q, sent %q", got, data)
		}
	})
}
