package tlcp

import (
	"container/list"
	"sync"
	"time"

	"github.com/emmansun/gmsm/smx509"
)

// SessionState is a resumable TLCP session.
type SessionState struct {
	// SessionID is the 1..32-byte session ID chosen by the server.
	SessionID []byte
	// CipherSuite is the negotiated suite.
	CipherSuite uint16
	// MasterSecret is the 48-byte master secret.
	MasterSecret []byte
	// PeerCertificates and VerifiedChains are the peer's certificates as
	// verified by the full handshake.
	PeerCertificates []*smx509.Certificate
	VerifiedChains   [][]*smx509.Certificate
	// ServerName is the SNI name of the full handshake.
	ServerName string
	// Created is when the full handshake completed.
	Created time.Time
}

// SessionCache stores sessions for session-ID resumption. Servers use the
// session ID as key, clients the server name or address. Implementations
// must be safe for concurrent use.
type SessionCache interface {
	// Get returns the session for key, if present and fresh.
	Get(key string) (*SessionState, bool)
	// Put stores a session; a nil session deletes the key.
	Put(key string, s *SessionState)
}

// LRUSessionCache is a bounded LRU session cache with a lifetime.
type LRUSessionCache struct {
	mu       sync.Mutex
	capacity int
	lifetime time.Duration
	now      func() time.Time
	m        map[string]*list.Element
	q        *list.List
}

type lruEntry struct {
	key string
	s   *SessionState
}

// NewLRUSessionCache returns a cache holding at most capacity sessions
// (default 1024 if <= 0) for at most lifetime (default 1 hour if <= 0).
func NewLRUSessionCache(capacity int, lifetime time.Duration) *LRUSessionCache {
	if capacity <= 0 {
		capacity = 1024
	}
	if lifetime <= 0 {
		lifetime = time.Hour
	}
	return &LRUSessionCache{capacity: capacity, lifetime: lifetime, now: time.Now,
		m: make(map[string]*list.Element), q: list.New()}
}

// Get implements SessionCache.
func (c *LRUSessionCache) Get(key string) (*SessionState, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[key]
	if !ok {
		return nil, false
	}
	ent := e.Value.(*lruEntry)
	if c.now().Sub(ent.s.Created) > c.lifetime {
		c.q.Remove(e)
		delete(c.m, key)
		return nil, false
	}
	c.q.MoveToFront(e)
	return ent.s, true
}

// Put implements SessionCache.
func (c *LRUSessionCache) Put(key string, s *SessionState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[key]; ok {
		if s == nil {
			c.q.Remove(e)
			delete(c.m, key)
			return
		}
		e.Value.(*lruEntry).s = s
		c.q.MoveToFront(e)
		return
	}
	if s == nil {
		return
	}
	if c.q.Len() >= c.capacity {
		last := c.q.Back()
		c.q.Remove(last)
		delete(c.m, last.Value.(*lruEntry).key)
	}
	c.m[key] = c.q.PushFront(&lruEntry{key: key, s: s})
}

// Len returns the number of cached sessions.
func (c *LRUSessionCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.q.Len()
}
