package refusal_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gmgate/gmgate/channel"
	"github.com/gmgate/gmgate/gateway"
)

// TestBothSidesWriteOneFormat: a client refused by gm_verify and a back end refused by
// gm_channel get the same body shape and the same protective headers (the two writers drifted:
// nosniff was set on the inbound side only); the channel adds only its code header. The two
// code sets are disjoint.
func TestBothSidesWriteOneFormat(t *testing.T) {
	common := []string{"Content-Type", "Content-Length", "Cache-Control", "X-Content-Type-Options"}
	seen := map[string]string{}
	for _, c := range gateway.Codes() {
		seen[string(c)] = "gateway"
		rec := httptest.NewRecorder()
		gateway.WriteError(rec, c)
		if rec.Code != c.Status() {
			t.Errorf("gateway %s: status %d, want %d", c, rec.Code, c.Status())
		}
		checkHeaders(t, "gateway "+string(c), rec.Header(), common)
	}
	for _, c := range channel.Codes() {
		if side, dup := seen[string(c)]; dup {
			t.Errorf("code %s is in both %s and channel", c, side)
		}
		resp := channel.ErrorResponse(nil, c)
		if resp.StatusCode != c.Status() || resp.Header.Get(channel.HeaderChannelError) != string(c) {
			t.Errorf("channel %s: status %d header %q", c, resp.StatusCode, resp.Header.Get(channel.HeaderChannelError))
		}
		_, _ = io.ReadAll(resp.Body)
		checkHeaders(t, "channel "+string(c), resp.Header, append(common, channel.HeaderChannelError))
	}
}

func checkHeaders(t *testing.T, what string, h http.Header, want []string) {
	t.Helper()
	if len(h) != len(want) {
		t.Errorf("%s: headers %v, want exactly %v", what, h, want)
	}
	for _, k := range want {
		if h.Get(k) == "" {
			t.Errorf("%s: header %s missing", what, k)
		}
	}
	if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Cache-Control") != "no-store" {
		t.Errorf("%s: %v", what, h)
	}
}
