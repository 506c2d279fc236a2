package attack

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
)

// Captured is a signed request taken off the wire, to be replayed byte for byte.
type Captured struct {
	Method string
	URI    string // path and query
	Header http.Header
	Body   []byte
}

// ErrCaptured is what a client using Capture gets instead of a reply: its request was taken,
// never delivered.
var ErrCaptured = errors.New("attack: request captured, not delivered")

// Capture is an http.RoundTripper that records every request a signing client sends and delivers
// none: the attacker who captured valid payment instructions and now sends them where he likes
// (to every gateway instance at once, after a failover of the nonce store, ...).
type Capture struct {
	mu   sync.Mutex
	reqs []Captured
}

// RoundTrip records req and answers ErrCaptured.
func (c *Capture) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		body = b
	}
	c.mu.Lock()
	c.reqs = append(c.reqs, Captured{Method: req.Method, URI: req.URL.RequestURI(), Header: req.Header.Clone(), Body: body})
	c.mu.Unlock()
	return nil, ErrCaptured
}

// Requests returns the requests captured so far, oldest first.
func (c *Capture) Requests() []Captured {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Captured(nil), c.reqs...)
}

// Send replays r to baseURL (scheme://host:port) with client and returns the status and body.
func (r Captured) Send(ctx context.Context, client *http.Client, baseURL string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, r.Method, baseURL+r.URI, bytes.NewReader(r.Body))
	if err != nil {
		return 0, nil, err
	}
	req.Header = r.Header.Clone()
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, body, err
}
