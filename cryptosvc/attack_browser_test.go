package cryptosvc

import (
	"net/http"
	"testing"
)

// TestAttackBrowserRequests: a page of any site can make a browser that holds a caller's client
// certificate POST an operation with that caller's rights (a text/plain form whose field name is
// `{"key":"pii","plaintext":"AA=` and value `"}` sends the JSON body {"key":"pii","plaintext":
// "AA=="}; a no-cors fetch sends any body). Browsers always mark such requests (Origin, Fetch
// Metadata); internal systems never do. Such requests are refused before the caller is judged.
func TestAttackBrowserRequests(t *testing.T) {
	rows := []struct {
		name   string
		header http.Header
		ok     bool
	}{
		{"system client", http.Header{"Content-Type": {"application/json"}, "User-Agent": {"Go-http-client/1.1"}}, true},
		{"curl form default", http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "User-Agent": {"curl/8.5.0"}}, true},
		{"cross-site form", http.Header{"Origin": {"https://evil.example"}, "Content-Type": {"text/plain"}}, false},
		{"opaque origin", http.Header{"Origin": {"null"}}, false},
		{"fetch metadata only", http.Header{"Sec-Fetch-Site": {"cross-site"}, "Sec-Fetch-Mode": {"no-cors"}}, false},
		{"same-site fetch", http.Header{"Sec-Fetch-Site": {"same-origin"}}, false},
		{"navigation", http.Header{"Sec-Fetch-Dest": {"document"}}, false},
	}
	for _, tc := range rows {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckNotBrowser(tc.header)
			if tc.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tc.ok && CodeOf(err) != CodeForbidden {
				t.Fatalf("code %s, want %s", CodeOf(err), CodeForbidden)
			}
		})
	}
}
