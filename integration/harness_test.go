// Package integration runs the real gmgate binary against real peers. The binary is built once
// per test run (or taken from $GMGATE_BIN, which the project's test command sets).
package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/gmgate/gmgate/integration/gmproc"
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
	port, err := gmproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// instance is one running gmgate process (a gmproc.Proc seen by a test).
type instance struct {
	t      testing.TB
	p      *gmproc.Proc
	cmd    *exec.Cmd
	dir    string
	admin  string
	out    *gmproc.Buffer
	exited <-chan struct{}
}

// waitErr is the process's exit error once it has exited.
func (i *instance) waitErr() error { return i.p.Err() }

// startGmgate writes caddyfile (with {ADMIN} and {DIR} substituted) and runs `gmgate run` on it
// with its own data and config directories, waiting until the admin endpoint answers.
func startGmgate(t testing.TB, caddyfile string, env ...string) *instance {
	t.Helper()
	p, err := gmproc.Start(gmgateBin(t), t.TempDir(), caddyfile, env...)
	if err != nil {
		t.Fatal(err)
	}
	inst := &instance{t: t, p: p, cmd: p.Cmd, dir: p.Dir, admin: p.Admin, out: p.Out, exited: p.Exited()}
	t.Cleanup(inst.stop)
	return inst
}

func (i *instance) stop() {
	i.p.Stop()
	if i.t.Failed() {
		i.t.Logf("gmgate output:\n%s", i.out)
	}
}
