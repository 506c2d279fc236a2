package attack

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"sync"
)

// UpstreamCA is a hostile (or merely unreachable) upstream CA as a registration authority sees
// it: an http.Handler in front of the genuine CA at To. It passes every request on and records
// the genuine 200 answers to paths ending in Record; while Answer is set it answers requests
// to those paths itself (Answer gets the request body and the genuine answers seen so far, and
// returns the status and body to send); while Down is set it answers 503 to everything.
type UpstreamCA struct {
	To     string // base URL of the genuine CA (scheme://host:port)
	Record string // path suffix of the operation to record and rewrite, e.g. "/raenroll"

	mu      sync.Mutex
	answers [][]byte
	answer  func(req []byte, genuine [][]byte) (int, []byte)
	hook    func(w http.ResponseWriter, r *http.Request, body []byte) bool
	down    bool
}

// SetAnswer makes the CA answer the recorded operation with f (nil: the genuine CA answers).
func (u *UpstreamCA) SetAnswer(f func(req []byte, genuine [][]byte) (int, []byte)) {
	u.mu.Lock()
	u.answer = f
	u.mu.Unlock()
}

// SetHook lets h answer any request first (it returns true when it did): a rolled-back or
// forged CRL, say.
func (u *UpstreamCA) SetHook(h func(w http.ResponseWriter, r *http.Request, body []byte) bool) {
	u.mu.Lock()
	u.hook = h
	u.mu.Unlock()
}

// SetDown makes the CA unreachable (503) or reachable again.
func (u *UpstreamCA) SetDown(d bool) { u.mu.Lock(); u.down = d; u.mu.Unlock() }

// Answers returns the genuine answers recorded so far.
func (u *UpstreamCA) Answers() [][]byte {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([][]byte(nil), u.answers...)
}

// ServeHTTP forwards, records or answers per the settings.
func (u *UpstreamCA) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 4<<20))
	u.mu.Lock()
	answer, hook, down, prev := u.answer, u.hook, u.down, append([][]byte(nil), u.answers...)
	u.mu.Unlock()
	recorded := u.Record != "" && strings.HasSuffix(r.URL.Path, u.Record)
	switch {
	case down:
		http.Error(w, "upstream down", http.StatusServiceUnavailable)
		return
	case hook != nil && hook(w, r, body):
		return
	case answer != nil && recorded:
		status, out := answer(body, prev)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write(out)
		return
	}
	req, err := http.NewRequestWithContext(r.Context(), r.Method, u.To+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	req.Header = r.Header.Clone()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if recorded && resp.StatusCode == http.StatusOK {
		u.mu.Lock()
		u.answers = append(u.answers, out)
		u.mu.Unlock()
	}
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(out)
}
