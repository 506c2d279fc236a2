package conncore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gmgate/gmgate/internal/recordio"
)

// Handshake is a connection's run-once handshake: the mutex held while it runs (and by
// ConnectionState), and its permanent error. The "complete" flag stays in the protocol's Conn.
type Handshake struct {
	sync.Mutex
	Err error
}

// Run is HandshakeContext: it runs run once, under the mutex, and remembers a failure for good.
// prepare, called first, returns the handshake timeout, or an error that fails the handshake
// (a missing or invalid configuration). A timeout or the end of ctx interrupts the handshake's
// blocking I/O on conn; the error then says so ("<proto>: handshake interrupted: ..."). On
// success complete is set.
func (h *Handshake) Run(ctx context.Context, complete *atomic.Bool, conn net.Conn, proto string,
	prepare func() (time.Duration, error), run func(context.Context) error) error {
	if complete.Load() {
		return nil
	}
	h.Lock()
	defer h.Unlock()
	if h.Err != nil {
		return h.Err
	}
	if complete.Load() {
		return nil
	}
	timeout, err := prepare()
	if err != nil {
		h.Err = err
		return err
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	interrupted, release := recordio.InterruptOnDone(ctx, conn)
	defer release()
	if err = run(ctx); err == nil {
		complete.Store(true)
		return nil
	}
	if interrupted() && ctx.Err() != nil {
		err = fmt.Errorf("%s: handshake interrupted: %w", proto, ctx.Err())
	}
	h.Err = err
	return err
}

// RunLocked runs handshake (a protocol's state machine) under the read lock in and, when it
// succeeded, ends flight buffering and drops the flight buffer under the write lock out.
func RunLocked(ctx context.Context, in, out sync.Locker, buffering *bool, sendBuf *[]byte, handshake func(context.Context) error) error {
	in.Lock()
	err := handshake(ctx)
	in.Unlock()
	if err != nil {
		return err
	}
	out.Lock()
	*buffering = false
	*sendBuf = nil
	out.Unlock()
	return nil
}

// Read is the application-data read of both protocols (after the handshake): under the read
// lock, it reads records until one carries application data into *input, handling every
// complete post-handshake message on the way (post, called while hand holds bytes), and copies
// from *input into b.
func Read(b []byte, in sync.Locker, input *[]byte, hand *bytes.Buffer, readRecord, post func() error) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	in.Lock()
	defer in.Unlock()
	for len(*input) == 0 {
		if err := readRecord(); err != nil {
			return 0, err
		}
		for hand.Len() > 0 {
			if err := post(); err != nil {
				return 0, err
			}
		}
	}
	n := copy(b, *input)
	*input = (*input)[n:]
	return n, nil
}

// Write is the application-data write of both protocols (after the handshake): under the write
// lock, refused after close_notify, and write (the protocol's record writer) for the data.
func Write(b []byte, out sync.Locker, closeNotifySent *bool, proto string, write func([]byte) (int, error)) (int, error) {
	out.Lock()
	defer out.Unlock()
	if *closeNotifySent {
		return 0, errors.New(proto + ": write after close_notify")
	}
	if len(b) == 0 {
		return 0, nil
	}
	return write(b)
}

// CloseNotify sends close_notify once, under the write lock, with a 5 s write deadline so that
// a peer that does not read cannot hold Close. send writes the alert and sets *sent.
func CloseNotify(out sync.Locker, sent *bool, conn net.Conn, send func() error) error {
	out.Lock()
	defer out.Unlock()
	if *sent {
		return nil
	}
	conn.SetWriteDeadline(time.Now().Add(5 * time.Second)) //nolint:errcheck
	err := send()
	conn.SetWriteDeadline(time.Time{}) //nolint:errcheck
	return err
}

// Close sends close_notify after a completed handshake (closeNotify), closes conn and then runs
// after (may be nil). The error of the close comes first, then the alert's.
func Close(complete *atomic.Bool, conn net.Conn, closeNotify func() error, after func()) error {
	var alertErr error
	if complete.Load() {
		alertErr = closeNotify()
	}
	err := conn.Close()
	if after != nil {
		after()
	}
	if err != nil {
		return err
	}
	return alertErr
}

// CloseWrite sends close_notify without closing the connection; only after the handshake.
func CloseWrite(complete *atomic.Bool, proto string, closeNotify func() error) error {
	if !complete.Load() {
		return errors.New(proto + ": CloseWrite before handshake completion")
	}
	return closeNotify()
}

// Flush writes the buffered handshake flight and ends buffering. The caller holds the write
// lock; a write error is stored in *outErr (the write direction's permanent error).
func Flush(conn net.Conn, sendBuf *[]byte, buffering *bool, outErr *error) error {
	*buffering = false
	if len(*sendBuf) == 0 {
		return nil
	}
	_, err := conn.Write(*sendBuf)
	*sendBuf = (*sendBuf)[:0]
	if err != nil {
		*outErr = err
	}
	return err
}
