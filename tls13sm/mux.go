package tls13sm

import (
	"net"
	"time"

	"github.com/gmgate/gmgate/internal/firstrecord"
)

// classifyClientHello decides from the first bytes of a connection whether
// they start a TLS ClientHello that this package should serve: one whose
// first offered cipher suite (GREASE and signalling values skipped) is an
// RFC 8998 suite, i.e. a client offering only SM suites or preferring them.
// needMore is true while b is a matching prefix too short to decide. The
// decision reads only the record and handshake headers, the session ID and
// the cipher-suite list of the first record.
func classifyClientHello(b []byte) (isSM, needMore bool) {
	const hdr = recordHeaderLen + 4 + 2 + 32 + 1 // record hdr, handshake hdr, version, random, sid length
	if len(b) < hdr {
		// Reject early what cannot be a ClientHello record.
		if len(b) > 0 && b[0] != recordTypeHandshake || len(b) > 1 && b[1] != 3 || len(b) > 5 && b[5] != typeClientHello {
			return false, false
		}
		return false, true
	}
	if b[0] != recordTypeHandshake || b[1] != 3 || b[5] != typeClientHello {
		return false, false
	}
	recLen := int(b[3])<<8 | int(b[4])
	if recLen > maxPlaintext {
		return false, false
	}
	end := recordHeaderLen + recLen // the hello must be decidable within the first record
	off := hdr + int(b[hdr-1])      // after the session ID
	if off+2 > end {
		return false, false
	}
	if len(b) < off+2 {
		return false, true
	}
	n := int(b[off])<<8 | int(b[off+1])
	off += 2
	if n == 0 || n%2 != 0 || off+n > end {
		return false, false
	}
	for i := 0; i < n; i += 2 {
		if len(b) < off+i+2 {
			return false, true
		}
		s := uint16(b[off+i])<<8 | uint16(b[off+i+1])
		if s&0x0F0F == 0x0A0A && s>>8 == s&0xFF || s == 0x00FF || s == 0x5600 { // GREASE, SCSVs
			continue
		}
		return supportedSuite(s), false
	}
	return false, false
}

// muxPeekMax bounds what the Mux reads before deciding: a full first record.
const muxPeekMax = recordHeaderLen + maxPlaintext

// Mux splits one listener into connections for this package (ClientHellos
// offering only or first the RFC 8998 suites) and every other connection
// (for crypto/tls, or the tlcp Mux in front of it), by peeking at the first
// record; the routed connections replay the peeked bytes. The accept loop
// and its bounds are internal/firstrecord's, as for tlcp.Mux: each
// connection is peeked in its own goroutine under PeekTimeout, and a source
// IP with MaxPendingPerSource connections still undecided (or the Mux with
// MaxPending) has new ones closed at once.
type Mux struct {
	m *firstrecord.Mux
}

// MuxConfig bounds a Mux. Zero values take the defaults.
type MuxConfig struct {
	// PeekTimeout bounds how long a client may take to send the bytes that
	// decide its protocol (default 10 s).
	PeekTimeout time.Duration
	// MaxPendingPerSource bounds the undecided connections of one source IP
	// (default 256).
	MaxPendingPerSource int
	// MaxPending bounds all undecided connections (default 65536).
	MaxPending int
}

// NewMux starts routing connections accepted from inner.
func NewMux(inner net.Listener, cfg MuxConfig) *Mux {
	return &Mux{m: firstrecord.New(inner, firstrecord.Config{
		PeekTimeout:         cfg.PeekTimeout,
		MaxPendingPerSource: cfg.MaxPendingPerSource,
		MaxPending:          cfg.MaxPending,
		MaxPeek:             muxPeekMax,
	}, classifyClientHello)}
}

// SM returns the listener of the RFC 8998 connections (raw; wrap it with
// NewListener to serve them).
func (m *Mux) SM() net.Listener { return m.m.Match() }

// Other returns the listener of every other connection.
func (m *Mux) Other() net.Listener { return m.m.Other() }

// Close closes the inner listener and both routed listeners.
func (m *Mux) Close() error { return m.m.Close() }
