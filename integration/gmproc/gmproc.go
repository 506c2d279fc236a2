// Package gmproc runs the real gmgate binary as a child process, for the end-to-end tests of
// package integration and the load harness (integration/cmd/gmload): one place that writes the
// Caddyfile, isolates the process's data and config directories, waits for its admin endpoint
// and stops it.
package gmproc

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// StartTimeout bounds the wait for a started process's admin endpoint.
const StartTimeout = 90 * time.Second

// maxOutput is how much of a process's output Buffer keeps (the head: start-up errors matter,
// a flood of access logs does not).
const maxOutput = 1 << 20

// Buffer collects a process's output, safe for concurrent use, keeping the first MiB.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write implements io.Writer; output beyond the first MiB is dropped.
func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() > maxOutput {
		return len(p), nil
	}
	return s.b.Write(p)
}

// String returns the output so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Proc is one running `gmgate run`.
type Proc struct {
	// Dir is the process's directory: its Caddyfile, and data/ and config/ (Caddy's
	// XDG_DATA_HOME and XDG_CONFIG_HOME; HOME too).
	Dir string
	// Admin is the admin endpoint address (host:port), substituted for {ADMIN}.
	Admin string
	// Cmd is the running command.
	Cmd *exec.Cmd
	// Out is its standard output and error.
	Out *Buffer

	exited chan struct{}
	err    error
}

// FreePort returns a loopback TCP port that was free a moment ago and that this process has not
// handed out before.
func FreePort() (int, error) {
	portMu.Lock()
	defer portMu.Unlock()
	for i := 0; i < 200; i++ {
		// Below Linux's ephemeral range (32768-60999 by default): a port the kernel handed out
		// for :0 is also what it hands to the next outgoing connection (a Redis client, a bank
		// dial), which then holds it when the child tries to listen ("address already in use").
		port := portLow + rand.IntN(portHigh-portLow)
		if portsGiven[port] {
			continue
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		ln.Close()
		portsGiven[port] = true
		return port, nil
	}
	return 0, errors.New("gmproc: no free port found")
}

// The range FreePort draws from, and what this process has handed out already.
const portLow, portHigh = 12000, 32000

var (
	portMu     sync.Mutex
	portsGiven = map[int]bool{}
)

// Start writes caddyfile into dir (which must exist), with {ADMIN} replaced by a free loopback
// admin address and {DIR} by dir, runs `bin run` on it with env added to the environment, and
// waits until the admin endpoint answers. A process that exits or does not answer in time is an
// error carrying its output.
func Start(bin, dir, caddyfile string, env ...string) (*Proc, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	admin := fmt.Sprintf("127.0.0.1:%d", port)
	caddyfile = strings.NewReplacer("{ADMIN}", admin, "{DIR}", dir).Replace(caddyfile)
	cfg := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(cfg, []byte(caddyfile), 0o600); err != nil {
		return nil, err
	}
	p := &Proc{Dir: dir, Admin: admin, Out: &Buffer{}, exited: make(chan struct{})}
	p.Cmd = exec.Command(bin, "run", "--config", cfg, "--adapter", "caddyfile")
	p.Cmd.Env = append(os.Environ(),
		"XDG_DATA_HOME="+filepath.Join(dir, "data"),
		"XDG_CONFIG_HOME="+filepath.Join(dir, "config"),
		"HOME="+dir)
	p.Cmd.Env = append(p.Cmd.Env, env...)
	p.Cmd.Stdout, p.Cmd.Stderr = p.Out, p.Out
	if err := p.Cmd.Start(); err != nil {
		return nil, err
	}
	go func() { p.err = p.Cmd.Wait(); close(p.exited) }()
	deadline := time.Now().Add(StartTimeout)
	for {
		select {
		case <-p.exited:
			return nil, fmt.Errorf("gmgate exited early: %v\n%s", p.err, p.Out)
		default:
		}
		resp, err := http.Get("http://" + admin + "/config/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		if time.Now().After(deadline) {
			p.Stop()
			return nil, fmt.Errorf("gmgate did not start in time:\n%s", p.Out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Exited is closed when the process has exited; Err then says how.
func (p *Proc) Exited() <-chan struct{} { return p.exited }

// Err is the process's exit error, once Exited is closed.
func (p *Proc) Err() error {
	select {
	case <-p.exited:
		return p.err
	default:
		return nil
	}
}

// Stop interrupts the process (a graceful Caddy shutdown) and kills it after 15 s.
func (p *Proc) Stop() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.Cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		_ = p.Cmd.Process.Kill()
		<-p.exited
	}
}

// Metrics returns the Prometheus text of the admin endpoint ("" when it cannot be read).
func (p *Proc) Metrics() string {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + p.Admin + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	return string(b)
}
