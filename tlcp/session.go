package tlcp

import (
	"time"

	"github.com/emmansun/gmsm/smx509"
	"github.com/gmgate/gmgate/internal/lru"
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
	// encChains are the verified chains of the peer's encryption
	// certificate, checked again (validity, VerifyPeerCertificate) before
	// the session is resumed.
	encChains [][]*smx509.Certificate
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
	lifetime time.Duration
	now      func() time.Time
	c        *lru.Cache[*SessionState]
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
	l := &LRUSessionCache{lifetime: lifetime, now: time.Now}
	l.c = lru.New(capacity, func(s *SessionState) bool { return l.now().Sub(s.Created) > l.lifetime })
	return l
}

// Get implements SessionCache.
func (c *LRUSessionCache) Get(key string) (*SessionState, bool) { return c.c.Get(key) }

// Put implements SessionCache.
func (c *LRUSessionCache) Put(key string, s *SessionState) {
	if s == nil {
		c.c.Delete(key)
		return
	}
	c.c.Put(key, s)
}

// Len returns the number of cached sessions.
func (c *LRUSessionCache) Len() int { return c.c.Len() }
