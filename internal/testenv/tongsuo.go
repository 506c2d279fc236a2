package testenv

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// TongsuoServer runs `bin s_server -accept <port> args...` on a free loopback port, waits
// (bounded) until it accepts and returns its address; the process is killed at the end of
// the test. A port taken by someone else between choosing and binding it is retried with
// another port.
func TongsuoServer(t testing.TB, bin string, args ...string) string {
	t.Helper()
	var lastErr error
	var out *SyncBuffer
	for attempt := 0; attempt < 3; attempt++ {
		port := FreePort(t)
		out = new(SyncBuffer)
		cmd := exec.Command(bin, append([]string{"s_server", "-accept", fmt.Sprint(port)}, args...)...)
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		for deadline := time.Now().Add(10 * time.Second); ; {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
				return addr
			}
			lastErr = err
			select {
			case <-exited:
			default:
				if time.Now().Before(deadline) {
					time.Sleep(50 * time.Millisecond)
					continue
				}
			}
			break
		}
		if !strings.Contains(out.String(), "Address already in use") {
			break
		}
	}
	t.Fatalf("tongsuo s_server did not start: %v\n%s", lastErr, out.String())
	return ""
}

// TongsuoClient runs `bin s_client -connect addr args...` (bounded to 20 s) with stdin
// "ping\n" and returns its combined output.
func TongsuoClient(t testing.TB, bin, addr string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"s_client", "-connect", addr}, args...)...)
	cmd.Stdin = strings.NewReader("ping\n")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// SyncBuffer collects a process's output while the test may read it (an io.Writer safe for
// concurrent use).
type SyncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

// Write implements io.Writer.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func runTongsuo(bin string, args ...string) ([]byte, error) {
	return exec.Command(bin, args...).CombinedOutput()
}
