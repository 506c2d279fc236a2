package keyvault

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Shared SoftHSM2 set-up. C_Initialize reads SOFTHSM2_CONF once per process, so TestMain builds
// one token directory with every token the tests need, before any test loads the module.

const softhsmModule = "/usr/lib/softhsm/libsofthsm2.so"

const (
	testPIN   = "123456"
	testSOPIN = "12345678"
	pinEnv    = "GMGATE_TEST_KV_PIN"
	badPINEnv = "GMGATE_TEST_KV_BADPIN"
)

var hsm struct {
	skip    string
	dir     string
	serials map[string][]string // label -> serials
}

// Token labels created by TestMain.
const (
	tokMain = "kv-main"
	tokPair = "kv-pair" // two tokens with this label
	tokSess = "kv-sess"
	tokPIN  = "kv-pin"
	tokRace = "kv-race"
)

func TestMain(m *testing.M) {
	code := func() int {
		if err := setupSoftHSM(); err != nil {
			hsm.skip = err.Error()
		}
		if hsm.dir != "" {
			defer os.RemoveAll(hsm.dir)
		}
		return m.Run()
	}()
	os.Exit(code)
}

func setupSoftHSM() error {
	if _, err := os.Stat(softhsmModule); err != nil {
		return fmt.Errorf("SoftHSM2 module %s not installed (apt-get install softhsm2)", softhsmModule)
	}
	util, err := exec.LookPath("softhsm2-util")
	if err != nil {
		return fmt.Errorf("softhsm2-util not on PATH (apt-get install softhsm2)")
	}
	dir, err := os.MkdirTemp("", "keyvault-softhsm-")
	if err != nil {
		return err
	}
	hsm.dir = dir
	tokdir := filepath.Join(dir, "tokens")
	if err := os.Mkdir(tokdir, 0o700); err != nil {
		return err
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	body := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", tokdir)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		return err
	}
	os.Setenv("SOFTHSM2_CONF", conf)
	os.Setenv(pinEnv, testPIN)
	os.Setenv(badPINEnv, "999999")
	for _, label := range []string{tokMain, tokPair, tokPair, tokSess, tokPIN, tokRace} {
		out, err := exec.Command(util, "--init-token", "--free", "--label", label, "--so-pin", testSOPIN, "--pin", testPIN).CombinedOutput()
		if err != nil {
			return fmt.Errorf("softhsm2-util --init-token %s: %v: %s", label, err, out)
		}
	}
	out, err := exec.Command(util, "--show-slots").CombinedOutput()
	if err != nil {
		return fmt.Errorf("softhsm2-util --show-slots: %v", err)
	}
	hsm.serials = parseShowSlots(out)
	if len(hsm.serials[tokPair]) != 2 {
		return fmt.Errorf("expected two %s tokens, got %v", tokPair, hsm.serials)
	}
	return nil
}

func parseShowSlots(out []byte) map[string][]string {
	res := map[string][]string{}
	var label, serial string
	flush := func() {
		if label != "" && serial != "" {
			res[label] = append(res[label], serial)
		}
		label, serial = "", ""
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "Slot ") && !strings.HasPrefix(line, "Slot info") {
			flush()
		}
		if v, ok := strings.CutPrefix(line, "Label:"); ok {
			label = strings.TrimSpace(v)
		}
		if v, ok := strings.CutPrefix(line, "Serial number:"); ok {
			serial = strings.TrimSpace(v)
		}
	}
	flush()
	return res
}

// needHSM skips (or, with GMGATE_REQUIRE_SERVICES=1, fails) when SoftHSM2 is unavailable.
func needHSM(t testing.TB) {
	t.Helper()
	if hsm.skip == "" {
		return
	}
	if os.Getenv("GMGATE_REQUIRE_SERVICES") == "1" {
		t.Fatalf("SoftHSM2 required (GMGATE_REQUIRE_SERVICES=1) but unavailable: %s", hsm.skip)
	}
	t.Skipf("SoftHSM2 unavailable: %s", hsm.skip)
}

func tokenCfg(name, label string) TokenConfig {
	return TokenConfig{Name: name, Module: softhsmModule, TokenLabel: label, PINEnv: pinEnv, PoolSize: 4, BorrowTimeout: Duration(2 * time.Second)}
}

// recObserver records observer calls.
type recObserver struct {
	mu        sync.Mutex
	ops       map[string]int
	errs      map[string]int
	failovers []string
	health    map[string]bool
	waits     int
}

func newRecObserver() *recObserver {
	return &recObserver{ops: map[string]int{}, errs: map[string]int{}, health: map[string]bool{}}
}

func (r *recObserver) ObserveOperation(token, key, op string, d time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops[op]++
	if err != nil {
		r.errs[op+":"+ErrorKind(err)]++
	}
}
func (r *recObserver) ObservePoolWait(token string, d time.Duration) {
	r.mu.Lock()
	r.waits++
	r.mu.Unlock()
}
func (r *recObserver) ObserveFailover(key, from, to string) {
	r.mu.Lock()
	r.failovers = append(r.failovers, key+":"+from+"->"+to)
	r.mu.Unlock()
}
func (r *recObserver) ObserveTokenHealth(token string, healthy bool) {
	r.mu.Lock()
	r.health[token] = healthy
	r.mu.Unlock()
}
func (r *recObserver) failoverCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.failovers)
}
