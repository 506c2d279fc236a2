package dialhs

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"
)

func listen(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func TestHostAndClose(t *testing.T) {
	l := listen(t)
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	errHS := errors.New("handshake refused")
	var gotHost string
	_, err := Dial(context.Background(), nil, "tcp", l.Addr().String(), func(ctx context.Context, raw net.Conn, host string) (net.Conn, error) {
		gotHost = host
		return nil, errHS
	})
	if !errors.Is(err, errHS) {
		t.Fatalf("Dial = %v, want the handshake error", err)
	}
	if gotHost != "127.0.0.1" {
		t.Fatalf("host %q, want 127.0.0.1", gotHost)
	}
	srv := <-accepted
	defer srv.Close()
	srv.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := srv.Read(make([]byte, 1)); err == nil {
		t.Fatal("raw connection left open after a failed handshake")
	}
}

// TestHandshakeBounded: a silent server cannot hold the handshake past the
// dialer's Timeout or Deadline.
func TestHandshakeBounded(t *testing.T) {
	l := listen(t)
	for _, nd := range []*net.Dialer{{Timeout: 200 * time.Millisecond}, {Deadline: time.Now().Add(200 * time.Millisecond)}} {
		start := time.Now()
		_, err := Dial(context.Background(), nd, "tcp", l.Addr().String(), func(ctx context.Context, raw net.Conn, host string) (int, error) {
			<-ctx.Done() // a handshake waiting for the silent peer
			return 0, ctx.Err()
		})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Dial = %v, want deadline exceeded", err)
		}
		if time.Since(start) > 10*time.Second {
			t.Fatal("handshake not bounded")
		}
	}
}

func TestSuccess(t *testing.T) {
	l := listen(t)
	c, err := Dial(context.Background(), nil, "tcp", l.Addr().String(), func(ctx context.Context, raw net.Conn, host string) (net.Conn, error) {
		return raw, nil
	})
	if err != nil || c == nil {
		t.Fatalf("Dial = %v, %v", c, err)
	}
	c.Close()
}
