package tlcp

import (
	"net"
	"time"

	"github.com/gmgate/gmgate/internal/firstrecord"
)

// firstRecordPeekLen is what the classifier needs: record header (5),
// handshake type (1), length (3) and client_version (2).
const firstRecordPeekLen = 11

// classifyFirstRecord decides from the first bytes of a connection whether
// it starts with a TLCP ClientHello: record type handshake, record version
// 0x0101, handshake type client_hello, client_version 0x0101. needMore is
// true while b is a matching prefix shorter than needed.
func classifyFirstRecord(b []byte) (isTLCP, needMore bool) {
	want := [...]struct {
		off int
		val byte
	}{{0, recordTypeHandshake}, {1, 1}, {2, 1}, {5, typeClientHello}, {9, 1}, {10, 1}}
	for _, w := range want {
		if len(b) <= w.off {
			return false, true
		}
		if b[w.off] != w.val {
			return false, false
		}
	}
	return true, false
}

// Mux serves TLCP and another protocol (TLS 1.2/1.3 for crypto/tls) on one
// listener, routing each accepted connection by its first record. The
// returned connections replay the peeked bytes, so nothing is lost.
//
// The accept loop and its bounds are internal/firstrecord's: the loop never
// waits for a peer (each connection is peeked in its own goroutine), a
// source address with MaxPendingPerSource connections still being peeked
// (or the whole Mux with MaxPending) has new connections closed at once,
// and temporary accept errors (EMFILE, ENFILE, ECONNABORTED, timeouts) are
// retried with a backoff of 5 ms doubling to 1 s, as net/http does.
type Mux struct {
	m *firstrecord.Mux
}

// MuxConfig bounds a Mux. Zero values take the defaults.
type MuxConfig struct {
	// PeekTimeout bounds how long a client may take to send its first 11
	// bytes (default 10 s); connections that send nothing in time are closed.
	PeekTimeout time.Duration
	// MaxPendingPerSource bounds the connections of one source IP that are
	// still being peeked (default 256); more are closed at accept.
	MaxPendingPerSource int
	// MaxPending bounds all connections still being peeked (default 65536).
	MaxPending int
}

// Mux defaults.
const (
	DefaultMuxPeekTimeout         = firstrecord.DefaultPeekTimeout
	DefaultMuxMaxPendingPerSource = firstrecord.DefaultMaxPendingPerSource
	DefaultMuxMaxPending          = firstrecord.DefaultMaxPending
)

// NewMux starts routing connections accepted from inner with the default
// bounds and the given peek timeout (default 10 s).
func NewMux(inner net.Listener, peekTimeout time.Duration) *Mux {
	return NewMuxConfig(inner, MuxConfig{PeekTimeout: peekTimeout})
}

// NewMuxConfig starts routing connections accepted from inner.
func NewMuxConfig(inner net.Listener, cfg MuxConfig) *Mux {
	return &Mux{m: firstrecord.New(inner, firstrecord.Config{
		PeekTimeout:         cfg.PeekTimeout,
		MaxPendingPerSource: cfg.MaxPendingPerSource,
		MaxPending:          cfg.MaxPending,
		MaxPeek:             firstRecordPeekLen,
	}, classifyFirstRecord)}
}

// TLCP returns the listener that receives TLCP connections (raw; wrap it
// with NewListener to serve TLCP).
func (m *Mux) TLCP() net.Listener { return m.m.Match() }

// Other returns the listener that receives every other connection (for
// example to hand to crypto/tls).
func (m *Mux) Other() net.Listener { return m.m.Other() }

// Close closes the inner listener and both routed listeners and waits for
// the routing goroutines to finish.
func (m *Mux) Close() error { return m.m.Close() }
