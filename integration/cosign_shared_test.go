package integration

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gmgate/gmgate/client"
	"github.com/gmgate/gmgate/cosign"
	"github.com/gmgate/gmgate/cosign/platform"
	"github.com/gmgate/gmgate/internal/attack"
	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/refusal"
)

const cosignSharedCaddyfile = `{
	admin {ADMIN}
	skip_install_trust
	auto_https off
	gmgate {
		dev_pki {DIR}/pki
		audit {AUDIT}
		vault {
			key cosign-seal file:{DIR}/seal.sm4 {
				type sm4
			}
			key cosign-token file:{DIR}/token.sm4 {
				type sm4
			}
		}
	}
}

http://:{PORT} {
	handle /cosign/* {
		gm_cosign {
			share_dir {DIR}/shares
			seal_key cosign-seal
			token_key cosign-token
			rate_per_minute 1
			burst 6
			max_failures 3
			lockout 10m
			replay {
				store redis
				redis_address {REDIS}
				redis_prefix {PREFIX}
			}
		}
	}
}
`

// TestCosignTwoInstancesSharedRedis: two gmgate processes share gm_cosign's share directory
// and, through replay { store redis }, one Redis: a terminal enrolled through A signs through
// B; a Q_1 used on A is refused on B; a lockout reached through A holds on B; the burst is one
// for both.
func TestCosignTwoInstancesSharedRedis(t *testing.T) {
	redis := redisAddr(t)
	dir := t.TempDir()
	tokenKey := randBytes(16)
	for name, k := range map[string][]byte{"seal.sm4": randBytes(16), "token.sm4": tokenKey} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(hex.EncodeToString(k)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := pki.EnsureDevPKI(filepath.Join(dir, "pki"), nil); err != nil {
		t.Fatal(err)
	}
	prefix := fmt.Sprintf("gmgate:cosign:it%d:", time.Now().UnixNano())
	mac := attack.HMACSM3Key(tokenKey)
	token := func(keyID string, ops ...string) string {
		tok, err := platform.IssueToken(mac, keyID, ops, time.Now().Add(2*time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	var bases []string
	for _, name := range []string{"a", "b"} {
		port := freePort(t)
		startGmgate(t, strings.NewReplacer("{DIR}", dir, "{PORT}", fmt.Sprint(port), "{REDIS}", redis,
			"{PREFIX}", prefix, "{AUDIT}", filepath.Join(dir, "audit-"+name, "audit.log")).Replace(cosignSharedCaddyfile))
		bases = append(bases, fmt.Sprintf("http://127.0.0.1:%d/cosign", port))
	}
	post := func(base, op, tok string, req any) (int, string) {
		t.Helper()
		body, _ := json.Marshal(req)
		hr, _ := http.NewRequest(http.MethodPost, base+"/"+op, bytes.NewReader(body))
		hr.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(hr)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct{ Code string }
		json.NewDecoder(resp.Body).Decode(&out)
		if resp.StatusCode == http.StatusOK {
			return 200, string(refusal.OK)
		}
		return resp.StatusCode, out.Code
	}
	enrol := func(keyID string) *client.CoSigner {
		t.Helper()
		cs, err := client.EnrollCoSigner(client.CoSignConfig{URL: bases[0],
			Token: func(op string) (string, error) { return token(keyID, op), nil }}, keyID)
		if err != nil {
			t.Fatalf("enrol %s through A: %v", keyID, err)
		}
		return cs
	}
	signReq := func(cs *client.CoSigner) map[string]any {
		pub := cs.Public().(*ecdsa.PublicKey)
		e, _ := cosign.Digest(pub, nil, []byte("pay 12.00 CNY"))
		sg, err := cosign.StartSign(rand.Reader, pub, e)
		if err != nil {
			t.Fatal(err)
		}
		return map[string]any{"key_id": cs.KeyID(), "e": e, "q1": sg.Q1()}
	}

	// enrolled through A, signs through B (shared share_dir)
	cs := enrol("terminal-shared-1")
	csB, err := client.OpenCoSigner(client.CoSignConfig{URL: bases[1],
		Token: func(op string) (string, error) { return token("terminal-shared-1", op), nil }}, mustSeal(t, cs), []byte("1234"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := csB.Sign(rand.Reader, []byte("pay through B"), nil); err != nil {
		t.Fatalf("sign through B: %v", err)
	}

	// a Q_1 used on A is refused on B
	req := signReq(cs)
	if st, code := post(bases[0], "sign", token(cs.KeyID(), "sign"), req); st != 200 {
		t.Fatalf("first use on A: %d %s", st, code)
	}
	if st, code := post(bases[1], "sign", token(cs.KeyID(), "sign"), req); st != 409 || code != string(platform.CodeReusedPoint) {
		t.Fatalf("Q_1 replayed on B: %d %s, want 409 %s", st, code, platform.CodeReusedPoint)
	}

	// a lockout reached through A holds on B
	cl := enrol("terminal-shared-2")
	for i := 0; i < 3; i++ {
		bad := signReq(cl)
		bad["q1"] = []byte{4, 0, 1}
		if st, code := post(bases[0], "sign", token(cl.KeyID(), "sign"), bad); code != string(platform.CodeInvalidPoint) {
			t.Fatalf("failure %d on A: %d %s", i, st, code)
		}
	}
	if st, code := post(bases[1], "sign", token(cl.KeyID(), "sign"), signReq(cl)); st != 423 || code != string(platform.CodeLocked) {
		t.Fatalf("B after a lockout through A: %d %s, want 423 %s", st, code, platform.CodeLocked)
	}

	// the burst (6, keygen took one) is one for both instances
	cr := enrol("terminal-shared-3")
	var ok, limited int
	for i := 0; i < 8; i++ {
		switch st, code := post(bases[i%2], "sign", token(cr.KeyID(), "sign"), signReq(cr)); {
		case st == 200:
			ok++
		case code == string(platform.CodeRateLimited):
			limited++
		default:
			t.Fatalf("request %d: %d %s", i, st, code)
		}
	}
	if ok != 5 || limited != 3 {
		t.Fatalf("burst over two instances: %d admitted, %d limited; want 5 and 3", ok, limited)
	}
}

func mustSeal(t *testing.T, cs *client.CoSigner) []byte {
	t.Helper()
	b, err := cs.SealWithIterations([]byte("1234"), client.MinPINIterations)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
