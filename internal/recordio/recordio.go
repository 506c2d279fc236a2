// Package recordio holds the record-layer plumbing that tlcp.Conn and
// tls13sm.Conn share and that does not depend on the protocol: the
// read-ahead buffer of received records, the bounded reassembly of
// handshake messages and the interruption of a handshake's blocking I/O when
// its context ends. Record formats, protection and state machines stay in
// each protocol package.
package recordio

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"time"
)

// ReadBuffer is a connection's read-ahead buffer: Buf[Start:End] is received
// and not yet consumed. The zero value is ready to use.
type ReadBuffer struct {
	Buf        []byte
	Start, End int
}

// Len is the number of unconsumed bytes.
func (b *ReadBuffer) Len() int { return b.End - b.Start }

// Fill makes at least n unconsumed bytes available in Buf[Start:End],
// reading ahead from r when the buffer has room. The buffer grows to 4 KiB,
// then to maxRecord (one whole record) when n needs more; bytes of a partly
// received record are kept across errors (a read timeout does not lose
// them). A connection closed before n bytes is io.ErrUnexpectedEOF when part
// of them came, io.EOF when none did.
func (b *ReadBuffer) Fill(r io.Reader, n, maxRecord int) error {
	if b.End-b.Start >= n {
		return nil
	}
	if b.Start > 0 && b.Start == b.End {
		b.Start, b.End = 0, 0
	}
	if len(b.Buf)-b.Start < n {
		size := max(len(b.Buf), 4096)
		if size < n {
			size = max(maxRecord, n)
		}
		if size != len(b.Buf) {
			nb := make([]byte, size)
			b.End = copy(nb, b.Buf[b.Start:b.End])
			b.Buf = nb
		} else {
			b.End = copy(b.Buf, b.Buf[b.Start:b.End])
		}
		b.Start = 0
	}
	for b.End-b.Start < n {
		m, err := r.Read(b.Buf[b.End:])
		b.End += m
		if err != nil {
			if b.End-b.Start >= n {
				return nil
			}
			if err == io.EOF && b.End > b.Start {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// InterruptOnDone makes the end of ctx interrupt blocking I/O on conn (by a
// deadline in the past). interrupted reports whether it did; release, to be
// deferred, disarms it and clears the deadline it set.
func InterruptOnDone(ctx context.Context, conn net.Conn) (interrupted func() bool, release func()) {
	var fired atomic.Bool
	if ctx.Done() == nil {
		return fired.Load, func() {}
	}
	stop := context.AfterFunc(ctx, func() {
		fired.Store(true)
		conn.SetDeadline(time.Unix(1, 0)) //nolint:errcheck
	})
	return fired.Load, func() {
		if !stop() || fired.Load() {
			conn.SetDeadline(time.Time{}) //nolint:errcheck
		}
	}
}

// TooLargeError is ReadHandshake's error for a handshake message whose
// header announces more than the limit.
type TooLargeError struct{ N int }

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("handshake message of %d bytes exceeds the limit", e.N)
}

// ReadHandshake reassembles the next handshake message (its 4-byte header
// included) from the handshake bytes received in hand, calling more to
// receive another record while the message is incomplete. A message longer
// than max is refused from its header (*TooLargeError), before its bytes
// are waited for. The returned message is a copy.
func ReadHandshake(hand *bytes.Buffer, max int, more func() error) ([]byte, error) {
	for hand.Len() < 4 {
		if err := more(); err != nil {
			return nil, err
		}
	}
	h := hand.Bytes()
	n := int(h[1])<<16 | int(h[2])<<8 | int(h[3])
	if n > max {
		return nil, &TooLargeError{N: n}
	}
	for hand.Len() < 4+n {
		if err := more(); err != nil {
			return nil, err
		}
	}
	msg := make([]byte, 4+n)
	copy(msg, hand.Next(4+n))
	if hand.Len() == 0 {
		hand.Reset()
	}
	return msg, nil
}
