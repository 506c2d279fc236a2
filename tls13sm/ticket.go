package tls13sm

import (
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/subtle"
	"errors"
	"io"
	"strings"
	"time"

	"github.com/emmansun/gmsm/sm4"
	"github.com/gmgate/gmgate/internal/lru"
	"golang.org/x/crypto/cryptobyte"
)

// Session tickets (RFC 8446 4.6.1) are self-contained: the server seals the
// session state with SM4-GCM under a ticket key and keeps nothing. The first
// ticket key seals, every key opens. Without SetSessionTicketKeys the Config
// generates a random key and rotates it every ticketKeyRotation; a key is
// kept for opening until no ticket sealed under it can be valid any more.

const (
	ticketKeyRotation = 24 * time.Hour
	ticketKeyNameLen  = 16
	ticketVersion     = 1
	maxTicketLabel    = 4096
)

type ticketKey struct {
	name    [ticketKeyNameLen]byte
	aead    cipher.AEAD
	created time.Time
}

func newTicketKey(seed [32]byte, created time.Time) (ticketKey, error) {
	k := ticketKey{created: created}
	name, err := hkdf.Expand(newHash, seed[:], "gmgate tls13sm ticket key name", ticketKeyNameLen)
	if err != nil {
		return k, err
	}
	copy(k.name[:], name)
	key, err := hkdf.Expand(newHash, seed[:], "gmgate tls13sm ticket key", 16)
	if err != nil {
		return k, err
	}
	defer zero(key)
	block, err := sm4.NewCipher(key)
	if err != nil {
		return k, err
	}
	k.aead, err = cipher.NewGCM(block)
	return k, err
}

// SetSessionTicketKeys sets the session ticket keys of a server: the first
// key seals new tickets, all of them open tickets, so that rotation is done
// by prepending a new key and dropping the oldest later (the caddy adapter
// derives them from a vault SM4 key and rotates them). An empty list goes
// back to automatic keys. It may be called at any time, also concurrently
// with handshakes.
func (c *Config) SetSessionTicketKeys(keys [][32]byte) error {
	now := c.now()
	tks := make([]ticketKey, 0, len(keys))
	for _, seed := range keys {
		k, err := newTicketKey(seed, now)
		if err != nil {
			return err
		}
		tks = append(tks, k)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ticketKeys = tks
	c.keysSet = len(tks) > 0
	return nil
}

// currentTicketKeys returns the keys, rotating automatic ones when due.
func (c *Config) currentTicketKeys() ([]ticketKey, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.keysSet {
		return c.ticketKeys, nil
	}
	now := c.now()
	if len(c.ticketKeys) == 0 || now.Sub(c.ticketKeys[0].created) >= ticketKeyRotation || now.Before(c.ticketKeys[0].created) {
		var seed [32]byte
		if _, err := io.ReadFull(c.rand(), seed[:]); err != nil {
			return nil, err
		}
		k, err := newTicketKey(seed, now)
		zero(seed[:])
		if err != nil {
			return nil, err
		}
		c.ticketKeys = append([]ticketKey{k}, c.ticketKeys...)
	}
	// A key older than one rotation plus the ticket lifetime can open no valid ticket.
	keep := c.ticketKeys[:1]
	for _, k := range c.ticketKeys[1:] {
		if now.Sub(k.created) < ticketKeyRotation+c.ticketLifetime() {
			keep = append(keep, k)
		}
	}
	c.ticketKeys = keep
	return append([]ticketKey(nil), keep...), nil
}

// sessionState is what a ticket carries.
type sessionState struct {
	suite      uint16
	createdAt  uint64 // unix seconds
	lifetime   uint32 // seconds
	ageAdd     uint32
	psk        []byte
	serverName string
	alpn       string
	peerCerts  [][]byte
}

func (s *sessionState) marshal() ([]byte, error) {
	var b cryptobyte.Builder
	b.AddUint8(ticketVersion)
	b.AddUint16(s.suite)
	b.AddUint64(s.createdAt)
	b.AddUint32(s.lifetime)
	b.AddUint32(s.ageAdd)
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(s.psk) })
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(s.serverName)) })
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(s.alpn)) })
	b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, c := range s.peerCerts {
			b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(c) })
		}
	})
	return b.Bytes()
}

func (s *sessionState) unmarshal(data []byte) bool {
	*s = sessionState{}
	in := cryptobyte.String(data)
	var v uint8
	var psk, name, alpn, certs cryptobyte.String
	if !in.ReadUint8(&v) || v != ticketVersion || !in.ReadUint16(&s.suite) || !in.ReadUint64(&s.createdAt) ||
		!in.ReadUint32(&s.lifetime) || !in.ReadUint32(&s.ageAdd) || !in.ReadUint8LengthPrefixed(&psk) ||
		len(psk) != hashLen || !in.ReadUint8LengthPrefixed(&name) || !in.ReadUint8LengthPrefixed(&alpn) ||
		!in.ReadUint24LengthPrefixed(&certs) || !in.Empty() {
		return false
	}
	s.psk, s.serverName, s.alpn = psk, string(name), string(alpn)
	for !certs.Empty() {
		var c cryptobyte.String
		if !certs.ReadUint24LengthPrefixed(&c) || c.Empty() || len(s.peerCerts) >= maxCertificates {
			return false
		}
		s.peerCerts = append(s.peerCerts, c)
	}
	return true
}

// sealTicket encrypts s into a ticket label: key name || nonce || SM4-GCM.
func (c *Config) sealTicket(s *sessionState) ([]byte, error) {
	keys, err := c.currentTicketKeys()
	if err != nil {
		return nil, err
	}
	plain, err := s.marshal()
	if err != nil {
		return nil, err
	}
	defer zero(plain)
	k := keys[0]
	out := make([]byte, ticketKeyNameLen+k.aead.NonceSize(), ticketKeyNameLen+k.aead.NonceSize()+len(plain)+k.aead.Overhead())
	copy(out, k.name[:])
	if _, err := io.ReadFull(c.rand(), out[ticketKeyNameLen:]); err != nil {
		return nil, err
	}
	out = k.aead.Seal(out, out[ticketKeyNameLen:], plain, out[:ticketKeyNameLen])
	if len(out) > maxTicketLabel {
		return nil, errors.New("tls13sm: session ticket too large")
	}
	return out, nil
}

// openTicket decrypts a ticket label; nil if no key opens it.
func (c *Config) openTicket(label []byte) *sessionState {
	keys, err := c.currentTicketKeys()
	if err != nil {
		return nil
	}
	for _, k := range keys {
		ns := k.aead.NonceSize()
		if len(label) < ticketKeyNameLen+ns+k.aead.Overhead() {
			return nil
		}
		if subtle.ConstantTimeCompare(label[:ticketKeyNameLen], k.name[:]) != 1 {
			continue
		}
		plain, err := k.aead.Open(nil, label[ticketKeyNameLen:ticketKeyNameLen+ns], label[ticketKeyNameLen+ns:], label[:ticketKeyNameLen])
		if err != nil {
			return nil
		}
		s := new(sessionState)
		if !s.unmarshal(plain) {
			return nil
		}
		// s aliases plain, which holds the PSK and is zeroed: copy what is kept.
		s.psk = append([]byte(nil), s.psk...)
		for i, c := range s.peerCerts {
			s.peerCerts[i] = append([]byte(nil), c...)
		}
		s.serverName, s.alpn = strings.Clone(s.serverName), strings.Clone(s.alpn)
		zero(plain)
		return s
	}
	return nil
}

// ClientSession is a resumable session held by a client: a ticket and the
// PSK that goes with it. Its contents are private.
type ClientSession struct {
	suite      uint16
	psk        []byte
	label      []byte
	ageAdd     uint32
	lifetime   time.Duration
	receivedAt time.Time
	serverName string
	alpn       string
	peerCerts  [][]byte
}

type lruSessionCache struct {
	c *lru.Cache[*ClientSession]
}

// NewLRUClientSessionCache returns a ClientSessionCache holding up to
// capacity sessions (64 if capacity < 1), dropping the least recently used.
func NewLRUClientSessionCache(capacity int) ClientSessionCache {
	if capacity < 1 {
		capacity = 64
	}
	return &lruSessionCache{c: lru.New[*ClientSession](capacity, nil)}
}

func (c *lruSessionCache) Put(key string, s *ClientSession) {
	if s == nil {
		c.c.Delete(key)
		return
	}
	c.c.Put(key, s)
}

func (c *lruSessionCache) Get(key string) (*ClientSession, bool) { return c.c.Get(key) }
