package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gmgate/gmgate/client"
	"github.com/gmgate/gmgate/pki"
)

const enrollSharedCaddyfile = `{
	admin {ADMIN}
	auto_https off
	skip_install_trust
	servers {
		trusted_proxies static 127.0.0.1/32
	}
	gmgate {
		dev_pki {SHARED}/pki
	}
}

http://127.0.0.1:{PORT} {
	route /.well-known/est/* {
		gm_enroll {
			store {SHARED}/enroll
			rate_per_minute 1
			burst 4
			max_failures 3
			lockout 10m
			replay {
				store redis
				redis_address {REDIS}
				redis_prefix {PREFIX}
			}
			profile terminal {
				common_name "POS-[0-9]{4}"
			}
		}
	}
}
`

// forwardedFor sends every request as if from ip (X-Forwarded-For through a trusted proxy:
// Caddy's client IP, which gm_enroll counts under).
type forwardedFor string

func (ip forwardedFor) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("X-Forwarded-For", string(ip))
	return http.DefaultTransport.RoundTrip(r)
}

// TestEnrolTwoInstancesSharedRedis: two gmgate processes share gm_enroll's store directory and,
// through replay { store redis }, one Redis for the limits: failed attempts from one address
// spread over both lock it on both; guesses of one token's secret from several addresses
// spread over both lock that token on both; each lockout is counted once over both; the burst
// of an address is one for both.
func TestEnrolTwoInstancesSharedRedis(t *testing.T) {
	redis := redisAddr(t)
	shared := t.TempDir()
	prefix := fmt.Sprintf("gmgate:enroll:it%d:", time.Now().UnixNano())
	var insts []*instance
	var bases []string
	for range 2 {
		port := freePort(t)
		insts = append(insts, startGmgate(t, strings.NewReplacer("{SHARED}", shared, "{PORT}", fmt.Sprint(port),
			"{REDIS}", redis, "{PREFIX}", prefix).Replace(enrollSharedCaddyfile)))
		bases = append(bases, fmt.Sprintf("http://127.0.0.1:%d/.well-known/est", port))
	}
	token := func(cn string) (tok, id string) {
		t.Helper()
		cmd := exec.Command(gmgateBin(t), "enroll", "token", "--config", filepath.Join(insts[0].dir, "Caddyfile"),
			"--profile", "terminal", "--cn", cn, "--json")
		cmd.Env = append(os.Environ(), "HOME="+insts[0].dir)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("gmgate enroll token: %v\n%s", err, out)
		}
		var r struct{ Token, ID string }
		if err := json.Unmarshal(out, &r); err != nil {
			t.Fatalf("%q: %v", out, err)
		}
		return r.Token, r.ID
	}
	root, err := pki.LoadCertificatesFiles(filepath.Join(shared, "pki", pki.DevRootBase+".pem"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	enrol := func(i int, ip, tok, cn string) string {
		t.Helper()
		e := &client.Enroller{BaseURL: bases[i], Roots: root, HTTP: &http.Client{Timeout: 30 * time.Second, Transport: forwardedFor(ip)}}
		_, err := e.Enroll(ctx, tok, cn, nil)
		if err == nil {
			return "ok"
		}
		if ee, ok := err.(*client.EnrolError); ok {
			return ee.Code
		}
		t.Fatalf("enrol through %d: %v", i, err)
		return ""
	}
	if code := enrol(0, "192.0.2.1", first(token("POS-0001")), "POS-0001"); code != "ok" {
		t.Fatalf("genuine enrolment: %s\n%s", code, insts[0].out)
	}

	// Failed attempts from one address, spread over both: locked on both.
	addr := "198.51.100.7"
	for i, inst := range []int{0, 1, 0} {
		unknown := "gmet1.AAAAAAAAAAAAAAA" + string(rune('A'+i)) + "." + strings.Repeat("A", 43)
		if code := enrol(inst, addr, unknown, "POS-0002"); code != "enroll_token_invalid" {
			t.Fatalf("guess %d: %s", i, code)
		}
	}
	good, _ := token("POS-0003")
	for _, inst := range []int{1, 0} {
		if code := enrol(inst, addr, good, "POS-0003"); code != "enroll_locked" {
			t.Fatalf("instance %d: genuine token from the locked address: %s", inst, code)
		}
	}

	// The secret of one token guessed from three addresses, spread over both: locked on both.
	tok, id := token("POS-0004")
	wrong := "gmet1." + id + "." + strings.Repeat("A", 43)
	for i, inst := range []int{1, 0, 1} {
		if code := enrol(inst, fmt.Sprintf("203.0.113.%d", i+1), wrong, "POS-0004"); code != "enroll_token_invalid" {
			t.Fatalf("secret guess %d: %s", i, code)
		}
	}
	for _, inst := range []int{0, 1} {
		if code := enrol(inst, fmt.Sprintf("192.0.2.%d", 50+inst), tok, "POS-0004"); code != "enroll_locked" {
			t.Fatalf("instance %d: locked token with its secret: %s", inst, code)
		}
	}
	sum := func(metric string) int {
		n := 0
		for _, inst := range insts {
			for _, l := range strings.Split(inst.p.Metrics(), "\n") {
				var v int
				if rest, ok := strings.CutPrefix(l, metric+" "); ok {
					fmt.Sscan(rest, &v)
					n += v
				}
			}
		}
		return n
	}
	if a, tk := sum(`gmgate_enroll_lockouts_total{scope="address"}`), sum(`gmgate_enroll_lockouts_total{scope="token"}`); a != 1 || tk != 1 {
		t.Errorf("lockouts counted over both instances: address %d, token %d; want 1 and 1", a, tk)
	}

	// The burst (4) of one address is one for both: requests that are not failed attempts (a
	// name outside the profile) alternate between them.
	limited := 0
	other, _ := token("POS-0005")
	for i := 0; i < 6; i++ {
		switch code := enrol(i%2, "192.0.2.99", other, "NOT-A-POS"); code {
		case "enroll_rate_limited":
			limited++
		case "enroll_name_forbidden":
		default:
			t.Fatalf("request %d: %s", i, code)
		}
	}
	if limited != 2 {
		t.Fatalf("%d of 6 requests over two instances rate limited, want 2 (burst 4, one rate)", limited)
	}
}

func first(a, _ string) string { return a }
