package lru

import (
	"fmt"
	"testing"
)

func TestEvictsLeastRecentlyUsed(t *testing.T) {
	c := New[int](2, nil)
	c.Put("a", 1)
	c.Put("b", 2)
	if v, ok := c.Get("a"); !ok || v != 1 { // a is now the most recent
		t.Fatalf("Get(a) = %d, %v", v, ok)
	}
	c.Put("c", 3) // drops b
	if _, ok := c.Get("b"); ok {
		t.Fatal("least recently used value kept")
	}
	for k, want := range map[string]int{"a": 1, "c": 3} {
		if v, ok := c.Get(k); !ok || v != want {
			t.Fatalf("Get(%s) = %d, %v; want %d", k, v, ok, want)
		}
	}
	c.Put("a", 10) // replace in place
	if v, _ := c.Get("a"); v != 10 || c.Len() != 2 {
		t.Fatalf("after replace: a=%d len=%d", v, c.Len())
	}
	c.Delete("a")
	c.Delete("missing")
	if _, ok := c.Get("a"); ok || c.Len() != 1 {
		t.Fatal("Delete kept the value")
	}
}

func TestBounded(t *testing.T) {
	for _, capacity := range []int{-1, 0, 1, 7} {
		c := New[string](capacity, nil)
		for i := range 100 {
			c.Put(fmt.Sprint(i), "session")
		}
		if want := max(capacity, 1); c.Len() != want {
			t.Fatalf("capacity %d: %d values held, want %d", capacity, c.Len(), want)
		}
	}
}

func TestStaleDropped(t *testing.T) {
	stale := map[int]bool{}
	c := New[int](4, func(v int) bool { return stale[v] })
	c.Put("old", 1)
	c.Put("new", 2)
	stale[1] = true
	if _, ok := c.Get("old"); ok {
		t.Fatal("stale value returned")
	}
	if c.Len() != 1 {
		t.Fatalf("stale value not deleted: len %d", c.Len())
	}
	if v, ok := c.Get("new"); !ok || v != 2 {
		t.Fatal("fresh value lost")
	}
}
