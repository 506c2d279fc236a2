package gateway

import (
	"net/http"
	"testing"
)

// TestStripIdentityHeaders: every spelling a back end could read as an identity header is
// removed (case, '_' and '.' for '-', a custom prefix), and other headers stay.
func TestStripIdentityHeaders(t *testing.T) {
	for _, tc := range []struct {
		name   string
		prefix string
		in     []string // raw header names as a client sends them
		keep   []string
	}{
		{"canonical", "X-Gm-", []string{"X-Gm-Client-Subject", "X-Gm-Client-Serial", "X-Gm-Verify-Scheme", "X-Gm-Other"}, nil},
		{"lower and upper case", "X-Gm-", []string{"x-gm-client-subject", "X-GM-CLIENT-SERIAL"}, nil},
		{"underscores", "X-Gm-", []string{"X_Gm_Client_Subject", "X-Gm_Client-Serial", "x_gm_verify_scheme"}, nil},
		{"dots", "X-Gm-", []string{"X.Gm.Client.Subject"}, nil},
		{"custom prefix also strips the defaults", "X-Pay-", []string{"X-Pay-Client-Subject", "X_Pay_Anything", "X-Gm-Client-Serial", "X_Gm_Client_Subject"}, []string{"X-Gm-Other"}},
		{"other headers stay", "X-Gm-", nil, []string{"X-Gmx-Client", "Authorization", "X-Request-Id", "Content-Type"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			for _, n := range tc.in {
				h[n] = []string{"forged"} // raw, uncanonicalized, as net/textproto may deliver
			}
			for _, n := range tc.keep {
				h[n] = []string{"v"}
			}
			StripIdentityHeaders(h, tc.prefix)
			for _, n := range tc.in {
				if _, ok := h[n]; ok {
					t.Errorf("%s kept", n)
				}
			}
			for _, n := range tc.keep {
				if h.Get(n) != "v" {
					t.Errorf("%s removed", n)
				}
			}
			if len(h) != len(tc.keep) {
				t.Errorf("left %v", h)
			}
		})
	}
}
