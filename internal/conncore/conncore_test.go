package conncore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type testAlert uint8

func (a testAlert) String() string { return AlertName(map[testAlert]string{1: "one"}, a) }

type protoA struct{}

func (protoA) Name() string { return "proto-a" }

type protoB struct{}

func (protoB) Name() string { return "proto-b" }

type unavailable struct{}

func (unavailable) Error() string     { return "token gone" }
func (unavailable) Unavailable() bool { return true }

func TestAlertError(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{&AlertError[testAlert, protoA]{Alert: 1, Remote: true}, "proto-a: remote error: one"},
		{&AlertError[testAlert, protoA]{Alert: 1}, "proto-a: local error: one"},
		{NewAlert[testAlert, protoB](7, "bad hello"), "proto-b: bad hello (sent alert: alert(7))"},
		{WrapAlert[testAlert, protoA](1, io.EOF), "proto-a: EOF (sent alert: one)"},
	} {
		if got := c.err.Error(); got != c.want {
			t.Errorf("%q, want %q", got, c.want)
		}
	}
	if err := WrapAlert[testAlert, protoA](1, io.EOF); !errors.Is(err, io.EOF) {
		t.Error("the cause does not unwrap")
	}
	// One protocol's alert is not the other's.
	wrapped := fmt.Errorf("dial: %w", NewAlert[testAlert, protoA](1, "x"))
	if a, ok := AlertOf[testAlert, protoA](wrapped); !ok || a != 1 {
		t.Errorf("AlertOf = %v, %v", a, ok)
	}
	if _, ok := AlertOf[testAlert, protoB](wrapped); ok {
		t.Error("protocol A's alert read as protocol B's")
	}
	// A key that reports its own failure gets internal_error, not the peer's alert.
	if a, _ := AlertOf[testAlert, protoA](KeyAlert[testAlert, protoA](42, 80, fmt.Errorf("sign: %w", unavailable{}))); a != 80 {
		t.Errorf("unavailable key: alert %d, want 80", a)
	}
	if a, _ := AlertOf[testAlert, protoA](KeyAlert[testAlert, protoA](42, 80, errors.New("bad point"))); a != 42 {
		t.Errorf("bad peer input: alert %d, want 42", a)
	}
}

// TestHandshakeRun: the handshake runs once; a failure is permanent; a preparation error fails
// it without running; the timeout interrupts blocking I/O and says so.
func TestHandshakeRun(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	noTimeout := func() (time.Duration, error) { return 0, nil }

	var h Handshake
	var done atomic.Bool
	runs := 0
	for i := 0; i < 3; i++ {
		if err := h.Run(context.Background(), &done, a, "p", noTimeout, func(context.Context) error { runs++; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	if runs != 1 || !done.Load() {
		t.Fatalf("runs %d, complete %v", runs, done.Load())
	}

	var hf Handshake
	var df atomic.Bool
	boom := errors.New("boom")
	runs = 0
	for i := 0; i < 2; i++ {
		if err := hf.Run(context.Background(), &df, a, "p", noTimeout, func(context.Context) error { runs++; return boom }); err != boom {
			t.Fatalf("err %v", err)
		}
	}
	if runs != 1 || df.Load() {
		t.Fatalf("failed handshake: runs %d, complete %v", runs, df.Load())
	}

	var hp Handshake
	var dp atomic.Bool
	bad := errors.New("no config")
	if err := hp.Run(context.Background(), &dp, a, "p", func() (time.Duration, error) { return 0, bad },
		func(context.Context) error { t.Fatal("ran"); return nil }); err != bad || hp.Err != bad {
		t.Fatalf("prepare error: %v", err)
	}

	var ht Handshake
	var dt atomic.Bool
	err := ht.Run(context.Background(), &dt, a, "p", func() (time.Duration, error) { return 50 * time.Millisecond, nil },
		func(context.Context) error { _, err := a.Read(make([]byte, 1)); return err })
	if err == nil || !strings.HasPrefix(err.Error(), "p: handshake interrupted:") || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("timeout: %v", err)
	}
}

type lockCounter struct {
	sync.Mutex
	held bool
}

func (l *lockCounter) Lock()   { l.Mutex.Lock(); l.held = true }
func (l *lockCounter) Unlock() { l.held = false; l.Mutex.Unlock() }

// TestReadWrite: Read takes records until one carries data, handling post-handshake messages
// on the way, under the read lock; Write refuses after close_notify.
func TestReadWrite(t *testing.T) {
	var in lockCounter
	var input []byte
	var hand bytes.Buffer
	records := []func(){
		func() { hand.WriteString("ticket") },
		func() { input = []byte("payment") },
	}
	posts := 0
	readRecord := func() error {
		if !in.held {
			t.Fatal("record read without the read lock")
		}
		if len(records) == 0 {
			return io.EOF
		}
		records[0]()
		records = records[1:]
		return nil
	}
	post := func() error { posts++; hand.Reset(); return nil }
	buf := make([]byte, 4)
	n, err := Read(buf, &in, &input, &hand, readRecord, post)
	if err != nil || string(buf[:n]) != "paym" || posts != 1 {
		t.Fatalf("read %q %v, posts %d", buf[:n], err, posts)
	}
	n, err = Read(buf, &in, &input, &hand, readRecord, post)
	if err != nil || string(buf[:n]) != "ent" {
		t.Fatalf("second read %q %v", buf[:n], err)
	}
	if _, err := Read(buf, &in, &input, &hand, readRecord, post); err != io.EOF {
		t.Fatalf("end: %v", err)
	}

	var out lockCounter
	sent := false
	var wrote []byte
	write := func(b []byte) (int, error) {
		if !out.held {
			t.Fatal("write without the write lock")
		}
		wrote = append(wrote, b...)
		return len(b), nil
	}
	if n, err := Write([]byte("order"), &out, &sent, "p", write); n != 5 || err != nil || string(wrote) != "order" {
		t.Fatalf("write %d %v", n, err)
	}
	sent = true
	if _, err := Write([]byte("more"), &out, &sent, "p", write); err == nil || err.Error() != "p: write after close_notify" {
		t.Fatalf("write after close_notify: %v", err)
	}
}

type closeConn struct {
	net.Conn
	closed   bool
	closeErr error
}

func (c *closeConn) Close() error                     { c.closed = true; return c.closeErr }
func (c *closeConn) SetWriteDeadline(time.Time) error { return nil }

// TestClose: close_notify only after the handshake and only once; the close error comes first,
// then the alert's; after runs once the connection is closed.
func TestClose(t *testing.T) {
	var out sync.Mutex
	var complete atomic.Bool
	alertErr := errors.New("alert write failed")
	for _, c := range []struct {
		complete           bool
		closeErr, alertErr error
		want               error
		notified           bool
	}{
		{false, nil, nil, nil, false},
		{true, nil, nil, nil, true},
		{true, nil, alertErr, alertErr, true},
		{true, net.ErrClosed, alertErr, net.ErrClosed, true},
	} {
		complete.Store(c.complete)
		conn := &closeConn{closeErr: c.closeErr}
		sent, notified, after := false, false, 0
		notify := func() error {
			return CloseNotify(&out, &sent, conn, func() error { notified = true; sent = true; return c.alertErr })
		}
		if err := Close(&complete, conn, notify, func() { after++ }); err != c.want || !conn.closed || after != 1 || notified != c.notified {
			t.Fatalf("%+v: err %v, closed %v, after %d, notified %v", c, err, conn.closed, after, notified)
		}
		notified = false
		if err := notify(); c.notified && (err != nil || notified) {
			t.Fatalf("close_notify sent twice")
		}
	}
	complete.Store(false)
	if err := CloseWrite(&complete, "p", func() error { return nil }); err == nil {
		t.Fatal("CloseWrite before the handshake")
	}
}

type writeConn struct {
	net.Conn
	got []byte
	err error
}

func (c *writeConn) Write(b []byte) (int, error) { c.got = append(c.got, b...); return len(b), c.err }

func TestFlush(t *testing.T) {
	wc := &writeConn{}
	buf, buffering, outErr := []byte("flight"), true, error(nil)
	if err := Flush(wc, &buf, &buffering, &outErr); err != nil || string(wc.got) != "flight" || len(buf) != 0 || buffering || outErr != nil {
		t.Fatalf("flush: %v %q", err, wc.got)
	}
	wc = &writeConn{err: io.ErrClosedPipe}
	buf = []byte("x")
	if err := Flush(wc, &buf, &buffering, &outErr); err != io.ErrClosedPipe || outErr != io.ErrClosedPipe {
		t.Fatalf("failed flush: %v, stored %v", err, outErr)
	}
}
