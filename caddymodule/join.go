package caddymodule

import (
	"net"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
)

func init() {
	caddy.RegisterModule(JoinListenerWrapper{})
}

// JoinListenerWrapper merges the TLCP connections that a dual-stack `tlcp` wrapper terminated
// (and the RFC 8998 connections of a `tls13sm` wrapper) back into the server after Caddy's TLS
// listener. Put it right after the `tls` placeholder.
type JoinListenerWrapper struct{}

// CaddyModule returns the Caddy module information.
func (JoinListenerWrapper) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "caddy.listeners.tlcp_join",
		New: func() caddy.Module { return new(JoinListenerWrapper) },
	}
}

// WrapListener merges the parked TLCP listener of the same address into ln, and the parked
// RFC 8998 listener of the `tls13sm` wrapper.
func (JoinListenerWrapper) WrapListener(ln net.Listener) net.Listener {
	addr := ln.Addr().String()
	for _, key := range []string{addr, addr + tls13smJoinSuffix} {
		if parked := joins.take(key); parked != nil {
			ln = newJoinedListener(ln, parked)
		}
	}
	return ln
}

// joinRegistry hands a dual-stack TLCP listener from `tlcp` to `tlcp_join` by address.
type joinRegistry struct {
	mu sync.Mutex
	m  map[string]net.Listener
}

var joins = &joinRegistry{m: make(map[string]net.Listener)}

func (r *joinRegistry) park(addr string, ln net.Listener) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.m[addr] = ln
}

// joinGrace is how long a parked dual-stack TLCP listener waits for tlcp_join.
var joinGrace = 5 * time.Second

// takeIf removes ln from the registry if it is still parked under addr.
func (r *joinRegistry) takeIf(addr string, ln net.Listener) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m[addr] != ln {
		return false
	}
	delete(r.m, addr)
	return true
}

// parkUntilJoined parks ln under key for tlcp_join. tlcp_join takes it while the server
// starts; if none does within joinGrace, its connections would queue in the mux until it
// stalls TLS too: unjoined reports it, then every connection of raw (the listener under ln,
// before any handshake) is refused.
func (r *joinRegistry) parkUntilJoined(key string, ln, raw net.Listener, unjoined func()) {
	r.park(key, ln)
	time.AfterFunc(joinGrace, func() {
		if !r.takeIf(key, ln) {
			return
		}
		unjoined()
		for {
			c, err := raw.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	})
}

func (r *joinRegistry) take(addr string) net.Listener {
	r.mu.Lock()
	defer r.mu.Unlock()
	ln := r.m[addr]
	delete(r.m, addr)
	return ln
}

// joinedListener accepts from two listeners.
type joinedListener struct {
	net.Listener // the primary (TLS) listener: Addr
	second       net.Listener
	conns        chan net.Conn
	done         chan struct{}
	closeOnce    sync.Once
	errc         chan error
}

func newJoinedListener(primary, second net.Listener) *joinedListener {
	j := &joinedListener{Listener: primary, second: second, conns: make(chan net.Conn),
		done: make(chan struct{}), errc: make(chan error, 2)}
	go j.pump(primary)
	go j.pump(second)
	return j
}

func (j *joinedListener) pump(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			select {
			case j.errc <- err:
			default:
			}
			return
		}
		select {
		case j.conns <- c:
		case <-j.done:
			c.Close()
			return
		}
	}
}

// Accept returns the next connection of either listener.
func (j *joinedListener) Accept() (net.Conn, error) {
	select {
	case c := <-j.conns:
		return c, nil
	case err := <-j.errc:
		j.Close()
		return nil, err
	case <-j.done:
		return nil, net.ErrClosed
	}
}

// Close closes both listeners.
func (j *joinedListener) Close() error {
	var err error
	j.closeOnce.Do(func() {
		close(j.done)
		err = j.Listener.Close()
		j.second.Close()
	})
	return err
}

// Interface guards
var _ caddy.ListenerWrapper = (*JoinListenerWrapper)(nil)
