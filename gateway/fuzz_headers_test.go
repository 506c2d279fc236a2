package gateway

import (
	"net/http"
	"strings"
	"testing"
)

// FuzzStripIdentityHeaders: whatever header names a client sends (any case, '_' or '.' for '-',
// any prefix), none that a back end could read as an identity header survives, and HeaderSafe
// output never carries a control character.
func FuzzStripIdentityHeaders(f *testing.F) {
	f.Add("X-Gm-Client-Subject", "X-Gm-", "CN=victim")
	f.Add("x_gm_client_serial", "X-Gm-", "1")
	f.Add("X.Gm.Verify-Scheme", "X-Pay-", "form-sm2")
	f.Add("X-Pay-Anything", "x-pay-", "\r\nInjected: 1")
	f.Fuzz(func(t *testing.T, name, prefix, value string) {
		if name == "" || len(name) > 256 || len(prefix) > 64 {
			return
		}
		h := http.Header{name: {value}, "Content-Type": {"application/json"}}
		StripIdentityHeaders(h, prefix)
		np := normalizeHeaderName(prefix)
		for k := range h {
			n := normalizeHeaderName(k)
			if np != "" && strings.HasPrefix(n, np) {
				t.Fatalf("%q kept with prefix %q", k, prefix)
			}
			for _, s := range []string{HeaderSuffixClientSubject, HeaderSuffixClientSerial, HeaderSuffixVerifyScheme} {
				if n == DefaultIdentityHeaderPrefix+s {
					t.Fatalf("%q kept", k)
				}
			}
		}
		if h.Get("Content-Type") != "application/json" && !strings.HasPrefix(normalizeHeaderName("Content-Type"), np) {
			t.Fatal("an unrelated header was removed")
		}
		for _, c := range []byte(HeaderSafe(value)) {
			if c < 0x20 || c == 0x7f {
				t.Fatalf("HeaderSafe left %#x", c)
			}
		}
	})
}
