package enroll

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestLimits: token guessing from one client address locks the address after max_failures
// failed attempts (enroll_locked, even with a valid token), and guessing the secret of one
// token ID from many addresses locks that token; another address and another token are not
// affected; a lockout ends after its period; the request rate of an address is bounded
// (enroll_rate_limited). Each lockout is reported once.
func TestLimits(t *testing.T) {
	var mu sync.Mutex
	lockouts := map[string]int{}
	addr := "198.51.100.1"
	f := newFixture(t, func(c *Config) {
		c.Limits = Limits{RatePerMinute: 600, Burst: 30, MaxFailures: 3, Lockout: time.Minute}
		c.ClientAddress = func(r *http.Request) string { return r.Header.Get("X-Test-Client") }
		c.OnLockout = func(scope string) { mu.Lock(); lockouts[scope]++; mu.Unlock() }
	})
	try := func(client, tok string) Code {
		t.Helper()
		h := enrolHeaders(tok)
		h.Set("X-Test-Client", client)
		resp, body := f.post(OpSimpleEnroll, h, b64(simpleCSR(t, newKey(t), "T1100")))
		if resp.StatusCode == http.StatusOK {
			return "ok"
		}
		return codeOf(body)
	}
	good := f.token("T1100", time.Hour)
	id := tokenID(good)
	wrong := "gmet1." + id + "." + strings.Repeat("A", 43)
	// Unknown tokens from one address: locked at the third failure.
	other := f.token("T1100", time.Hour)
	for i := 0; i < 3; i++ {
		unknown := "gmet1.AAAAAAAAAAAAAAA" + string(rune('A'+i)) + "." + strings.Repeat("A", 43)
		if code := try(addr, unknown); code != CodeTokenInvalid {
			t.Fatalf("guess %d: %s", i, code)
		}
	}
	if code := try(addr, other); code != CodeLocked {
		t.Fatalf("valid token from a locked address: %s", code)
	}
	// The secret of one token guessed from several addresses: the token is locked.
	for i := 0; i < 3; i++ {
		if code := try("203.0.113."+string(rune('1'+i)), wrong); code != CodeTokenInvalid {
			t.Fatalf("secret guess %d: %s", i, code)
		}
	}
	if code := try("192.0.2.50", good); code != CodeLocked {
		t.Fatalf("locked token with its secret: %s", code)
	}
	mu.Lock()
	if lockouts["address"] != 1 || lockouts["token"] != 1 {
		t.Fatalf("lockouts reported: %v", lockouts)
	}
	mu.Unlock()
	if code := try("192.0.2.51", other); code != "ok" {
		t.Fatalf("another token from another address: %s", code)
	}
	// The lockouts end.
	f.clock.add(61 * time.Second)
	if code := try(addr, good); code != "ok" {
		t.Fatalf("after the lockout: %s", code)
	}
	// The rate of one address.
	n := 0
	for i := 0; i < 40; i++ {
		h := enrolHeaders(other)
		h.Set("X-Test-Client", "192.0.2.99")
		_, body := f.post(OpSimpleEnroll, h, []byte("!")) // enroll_csr_invalid: not a failed attempt
		if c := codeOf(body); c == CodeRateLimited {
			n++
		} else if c != CodeCSRInvalid {
			t.Fatalf("request %d: %s", i, c)
		}
	}
	if n != 10 {
		t.Fatalf("%d of 40 requests at one instant rate limited, want 10 (burst 30)", n)
	}
	if a := f.audit.last(); a.Reason != string(CodeRateLimited) || a.Verdict != "reject" {
		t.Fatalf("audit: %+v", a)
	}
}
