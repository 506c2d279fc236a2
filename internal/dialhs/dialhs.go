// Package dialhs is the one "dial, then handshake" of gmgate's protocol
// packages (tlcp.Dial/Dialer and tls13sm.Dial/Dialer): the TCP dial and the
// handshake share one context bounded by the net.Dialer's Timeout and
// Deadline, the handshake gets the host part of the address (the default
// server name), and the raw connection is closed when the handshake fails.
package dialhs

import (
	"context"
	"net"
)

// Handshake runs a protocol's client handshake over raw; host is the host
// part of the dialled address.
type Handshake[C any] func(ctx context.Context, raw net.Conn, host string) (C, error)

// Dial dials addr with nd (a zero net.Dialer if nil) and runs hs.
func Dial[C any](ctx context.Context, nd *net.Dialer, network, addr string, hs Handshake[C]) (C, error) {
	var zero C
	if nd == nil {
		nd = new(net.Dialer)
	}
	if nd.Timeout != 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, nd.Timeout)
		defer cancel()
	}
	if !nd.Deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, nd.Deadline)
		defer cancel()
	}
	raw, err := nd.DialContext(ctx, network, addr)
	if err != nil {
		return zero, err
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	c, err := hs(ctx, raw, host)
	if err != nil {
		raw.Close()
		return zero, err
	}
	return c, nil
}
