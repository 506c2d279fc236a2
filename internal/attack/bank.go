package attack

import (
	"bytes"
	"io"
	"net/http"
	"sync"
)

// Reply is a captured HTTP reply: what a man in the middle on the bank link sees and rewrites.
type Reply struct {
	Status int
	Header http.Header
	Body   []byte
}

// MITM is an http.RoundTripper between a gateway and a bank (a link that is not mutually
// authenticated TLCP) that may rewrite each reply: Rewrite gets the request's sequence number
// (from 0) and the genuine reply, and returns what the gateway receives instead.
type MITM struct {
	Inner   http.RoundTripper
	Rewrite func(n int, genuine Reply) Reply

	mu sync.Mutex
	n  int
}

// RoundTrip forwards req and rewrites the reply.
func (m *MITM) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := m.Inner.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	n := m.n
	m.n++
	m.mu.Unlock()
	r := Reply{Status: resp.StatusCode, Header: resp.Header.Clone(), Body: body}
	if m.Rewrite != nil {
		r = m.Rewrite(n, r)
	}
	out := *resp
	out.StatusCode, out.Status = r.Status, http.StatusText(r.Status)
	out.Header = r.Header
	out.Body = io.NopCloser(bytes.NewReader(r.Body))
	out.ContentLength = int64(len(r.Body))
	return &out, nil
}

// ReplayFirst returns a rewrite that captures the first genuine reply and puts it in front of
// every later request (a captured, validly signed reply replayed or swapped in).
func ReplayFirst() func(int, Reply) Reply {
	var first *Reply
	var mu sync.Mutex
	return func(n int, genuine Reply) Reply {
		mu.Lock()
		defer mu.Unlock()
		if first == nil {
			c := genuine
			c.Header = genuine.Header.Clone()
			first = &c
			return genuine
		}
		r := *first
		r.Header = first.Header.Clone()
		return r
	}
}
