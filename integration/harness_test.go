// Package integration runs the real gmgate binary against real peers. The binary is built once
// per test run (or taken from $GMGATE_BIN, which the project's test command sets).
package integration

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// gmgateBin returns the path of the gmgate binary, building it once if $GMGATE_BIN is unset.
func gmgateBin(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		if p := os.Getenv("GMGATE_BIN"); p != "" {
			binPath = p
			return
		}
		dir, err := os.MkdirTemp("", "gmgate-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "gmgate")
		cmd := exec.Command("go", "build", "-o", binPath, "../cmd/gmgate")
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("building gmgate: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// instance is one running gmgate process.
type instance struct {
	t       testing.TB
	cmd     *exec.Cmd
	dir     string
	admin   string
	out     *syncBuffer
	exited  chan struct{}
	waitErr error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startGmgate writes caddyfile (with {ADMIN} and {DIR} substituted) and runs `gmgate run` on it
// with its own data and config directories, waiting until the admin endpoint answers.
func startGmgate(t testing.TB, caddyfile string, env ...string) *instance {
	t.Helper()
	bin := gmgateBin(t)
	dir := t.TempDir()
	admin := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	caddyfile = strings.NewReplacer("{ADMIN}", admin, "{DIR}", dir).Replace(caddyfile)
	cfgPath := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(cfgPath, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	inst := &instance{t: t, dir: dir, admin: admin, out: &syncBuffer{}, exited: make(chan struct{})}
	inst.cmd = exec.Command(bin, "run", "--config", cfgPath, "--adapter", "caddyfile")
	inst.cmd.Env = append(os.Environ(),
		"XDG_DATA_HOME="+filepath.Join(dir, "data"),
		"XDG_CONFIG_HOME="+filepath.Join(dir, "config"),
		"HOME="+dir)
	inst.cmd.Env = append(inst.cmd.Env, env...)
	inst.cmd.Stdout, inst.cmd.Stderr = inst.out, inst.out
	if err := inst.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { inst.waitErr = inst.cmd.Wait(); close(inst.exited) }()
	t.Cleanup(inst.stop)
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-inst.exited:
			t.Fatalf("gmgate exited early: %v\n%s", inst.waitErr, inst.out)
		default:
		}
		resp, err := http.Get("http://" + admin + "/config/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return inst
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("gmgate did not start in time:\n%s", inst.out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (i *instance) stop() {
	if i.cmd.Process == nil {
		return
	}
	select {
	case <-i.exited:
		return
	default:
	}
	_ = i.cmd.Process.Signal(os.Interrupt)
	select {
	case <-i.exited:
	case <-time.After(15 * time.Second):
		_ = i.cmd.Process.Kill()
		<-i.exited
	}
	if i.t.Failed() {
		i.t.Logf("gmgate output:\n%s", i.out)
	}
}
