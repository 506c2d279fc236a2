// Package lru is the one bounded least-recently-used map of gmgate's
// protocol packages: the session caches of tlcp (server and client) and the
// ticket cache of tls13sm's clients.
package lru

import (
	"container/list"
	"sync"
)

// Cache holds at most a fixed number of values by key, dropping the least
// recently used. It is safe for concurrent use.
type Cache[V any] struct {
	mu       sync.Mutex
	capacity int
	stale    func(V) bool
	m        map[string]*list.Element
	q        *list.List
}

type entry[V any] struct {
	key string
	v   V
}

// New returns a Cache of at most capacity values (at least 1). stale, when
// not nil, is asked under the cache's lock at each Get: a stale value is
// deleted and not returned.
func New[V any](capacity int, stale func(V) bool) *Cache[V] {
	return &Cache[V]{capacity: max(capacity, 1), stale: stale, m: make(map[string]*list.Element), q: list.New()}
}

// Get returns the value of key and marks it recently used.
func (c *Cache[V]) Get(key string) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var zero V
	e, ok := c.m[key]
	if !ok {
		return zero, false
	}
	ent := e.Value.(*entry[V])
	if c.stale != nil && c.stale(ent.v) {
		c.q.Remove(e)
		delete(c.m, key)
		return zero, false
	}
	c.q.MoveToFront(e)
	return ent.v, true
}

// Put stores v under key, dropping the least recently used value when full.
func (c *Cache[V]) Put(key string, v V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[key]; ok {
		e.Value.(*entry[V]).v = v
		c.q.MoveToFront(e)
		return
	}
	if c.q.Len() >= c.capacity {
		last := c.q.Back()
		c.q.Remove(last)
		delete(c.m, last.Value.(*entry[V]).key)
	}
	c.m[key] = c.q.PushFront(&entry[V]{key: key, v: v})
}

// Delete removes key.
func (c *Cache[V]) Delete(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[key]; ok {
		c.q.Remove(e)
		delete(c.m, key)
	}
}

// Len returns the number of values held.
func (c *Cache[V]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.q.Len()
}
