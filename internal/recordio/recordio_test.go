package recordio

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"testing/iotest"
	"time"
)

func TestFill(t *testing.T) {
	tests := []struct {
		name    string
		r       func() io.Reader
		n, max  int
		wantErr error
		wantLen int
	}{
		{"one byte at a time", func() io.Reader { return iotest.OneByteReader(bytes.NewReader(make([]byte, 100))) }, 50, 16384, nil, 50},
		{"read ahead", func() io.Reader { return bytes.NewReader(make([]byte, 100)) }, 5, 16384, nil, 100},
		{"whole record beyond 4 KiB", func() io.Reader { return bytes.NewReader(make([]byte, 10000)) }, 9000, 16384, nil, 10000},
		{"n beyond maxRecord", func() io.Reader { return bytes.NewReader(make([]byte, 300)) }, 300, 10, nil, 300},
		{"truncated record", func() io.Reader { return bytes.NewReader(make([]byte, 3)) }, 5, 16384, io.ErrUnexpectedEOF, 3},
		{"closed before any byte", func() io.Reader { return bytes.NewReader(nil) }, 5, 16384, io.EOF, 0},
		{"data with EOF", func() io.Reader { return iotest.DataErrReader(bytes.NewReader(make([]byte, 5))) }, 5, 16384, nil, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b ReadBuffer
			err := b.Fill(tt.r(), tt.n, tt.max)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("Fill = %v, want %v", err, tt.wantErr)
			}
			if b.Len() != tt.wantLen {
				t.Fatalf("%d bytes buffered, want %d", b.Len(), tt.wantLen)
			}
		})
	}
}

// TestFillKeepsPartialRecordAcrossTimeout: bytes of a record received before
// a read timeout are still there when the caller reads again.
func TestFillKeepsPartialRecordAcrossTimeout(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go a.Write([]byte("abc"))
	var rb ReadBuffer
	b.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if err := rb.Fill(b, 6, 16384); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Fill = %v, want a timeout", err)
	}
	b.SetReadDeadline(time.Time{})
	go a.Write([]byte("def"))
	if err := rb.Fill(b, 6, 16384); err != nil {
		t.Fatal(err)
	}
	if got := string(rb.Buf[rb.Start:rb.End]); got != "abcdef" {
		t.Fatalf("buffered %q, want abcdef", got)
	}
	// Consumed bytes are compacted away when more room is needed.
	rb.Start = rb.End
	go a.Write([]byte("gh"))
	if err := rb.Fill(b, 2, 16384); err != nil || string(rb.Buf[rb.Start:rb.End]) != "gh" || rb.Start != 0 {
		t.Fatalf("after consuming: %v %q start %d", err, rb.Buf[rb.Start:rb.End], rb.Start)
	}
}

func TestInterruptOnDone(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	ctx, cancel := context.WithCancel(context.Background())
	interrupted, release := InterruptOnDone(ctx, b)
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	if _, err := b.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read = %v, want interrupted", err)
	}
	if !interrupted() {
		t.Fatal("interrupted() false after the context ended")
	}
	release()
	// The deadline it set is cleared: the connection is usable again.
	go a.Write([]byte("x"))
	if _, err := b.Read(make([]byte, 1)); err != nil {
		t.Fatalf("Read after release = %v", err)
	}

	// Not fired: nothing interrupted, release is harmless.
	interrupted, release = InterruptOnDone(context.Background(), b)
	release()
	if interrupted() {
		t.Fatal("background context reported interrupted")
	}
	ctx, cancel = context.WithCancel(context.Background())
	interrupted, release = InterruptOnDone(ctx, b)
	release()
	cancel()
	time.Sleep(20 * time.Millisecond)
	if interrupted() {
		t.Fatal("released guard fired")
	}
}

func FuzzFill(f *testing.F) {
	f.Add([]byte("record"), 3, 10)
	f.Fuzz(func(t *testing.T, data []byte, n, maxRecord int) {
		n = 1 + (n&0xffff)%20000
		maxRecord = maxRecord & 0xffff
		var b ReadBuffer
		err := b.Fill(iotest.HalfReader(bytes.NewReader(data)), n, maxRecord)
		if (err == nil) != (len(data) >= n) {
			t.Fatalf("Fill(%d of %d bytes) = %v", n, len(data), err)
		}
		if got := b.Buf[b.Start:b.End]; !bytes.Equal(got, data[:len(got)]) {
			t.Fatal("buffered bytes differ from the input")
		}
	})
}

func TestReadHandshake(t *testing.T) {
	msg := func(typ byte, body string) []byte {
		n := len(body)
		return append([]byte{typ, byte(n >> 16), byte(n >> 8), byte(n)}, body...)
	}
	tests := []struct {
		name    string
		records [][]byte // what each call of more adds
		max     int
		want    []byte
		wantErr error
	}{
		{"one record", [][]byte{msg(1, "hello")}, 100, msg(1, "hello"), nil},
		{"split header and body", [][]byte{{1, 0}, {0, 5, 'h'}, []byte("ello")}, 100, msg(1, "hello"), nil},
		{"empty body", [][]byte{{20, 0, 0, 0}}, 100, []byte{20, 0, 0, 0}, nil},
		{"too large refused from its header", [][]byte{{1, 0x01, 0, 0}}, 1000, nil, &TooLargeError{N: 0x10000}},
		{"truncated", [][]byte{{1, 0, 0, 9, 'x'}}, 100, nil, io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hand bytes.Buffer
			recs := tt.records
			more := func() error {
				if len(recs) == 0 {
					return io.ErrUnexpectedEOF
				}
				hand.Write(recs[0])
				recs = recs[1:]
				return nil
			}
			got, err := ReadHandshake(&hand, tt.max, more)
			if tt.wantErr != nil {
				var tl *TooLargeError
				if want, ok := tt.wantErr.(*TooLargeError); ok {
					if !errors.As(err, &tl) || tl.N != want.N {
						t.Fatalf("err = %v, want %v", err, want)
					}
					if len(recs) != 0 {
						t.Fatal("waited for the bytes of a message refused by its header")
					}
					return
				}
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil || !bytes.Equal(got, tt.want) {
				t.Fatalf("ReadHandshake = %x, %v; want %x", got, err, tt.want)
			}
		})
	}
	// Two messages in one record come out one at a time.
	var hand bytes.Buffer
	hand.Write(append(msg(1, "a"), msg(2, "bc")...))
	noMore := func() error { return io.ErrUnexpectedEOF }
	first, err1 := ReadHandshake(&hand, 10, noMore)
	second, err2 := ReadHandshake(&hand, 10, noMore)
	if err1 != nil || err2 != nil || !bytes.Equal(first, msg(1, "a")) || !bytes.Equal(second, msg(2, "bc")) || hand.Len() != 0 {
		t.Fatalf("coalesced messages: %x %v, %x %v", first, err1, second, err2)
	}
}
