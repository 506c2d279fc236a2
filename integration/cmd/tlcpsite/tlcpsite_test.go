package main

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestRenderVerdicts(t *testing.T) {
	r := &report{Started: time.Unix(0, 0), Finished: time.Unix(60, 0), CPUs: 2, Clients: 2, Rounds: 3, Window: time.Second,
		Cmd: "tlcpsite -duration 1s",
		Rows: []rowResult{
			// 1000 connections in 250 ms of CPU: 250 µs, within 260; bare 200 µs.
			// Peer 500 µs: 0.50, met.
			{Row: rows[0], Site: measurement{Conns: 1000, CPU: 250 * time.Millisecond}, Bare: measurement{Conns: 1000, CPU: 200 * time.Millisecond},
				Peer: measurement{Conns: 1000, CPU: 500 * time.Millisecond}},
			// Resumed: 150 µs against a peer at 140 µs: 1.07, not met.
			{Row: rows[4], Site: measurement{Conns: 2000, CPU: 300 * time.Millisecond}, Bare: measurement{Conns: 2000, CPU: 200 * time.Millisecond},
				Peer: measurement{Conns: 1000, CPU: 140 * time.Millisecond}},
		},
		Peer: true, Pinning: "servers on CPU 0, clients (this process) on CPU 1", Load: "0.5 0.4 0.3", LoadEnd: "0.6 0.4 0.3",
		IdleTLCP:  idleResult{Conns: 1000, Before: 100 << 20, With: 100<<20 + 30*1024*1000},
		IdleTLS13: idleResult{Conns: 1000, Before: 80 << 20, With: 80<<20 + 20*1024*1000},
	}
	var buf bytes.Buffer
	r.render(&buf)
	md := buf.String()
	for _, want := range []string{
		"| full ECC_SM4_GCM_SM3 | 250 | 200 | 500 | +50 (1.25) | 0.50 | ≤ 1.00 | **met** | 260 |",
		"| resumed (session ID) | 150 | 100 | 140 | +50 (1.50) | 1.07 | ≤ 1.00 | **not met** | 110 |",
		"CPU placement: servers on CPU 0, clients (this process) on CPU 1. Load average (1, 5, 15 min) at start 0.5 0.4 0.3, at end 0.6 0.4 0.3.",
		"| caddy tlcp | 1000 | 100.0 | 129.3 | 30.0 | 293 |",
		"TLCP ÷ TLS 1.3 per idle connection: 1.50 (target ≤ 1.2): **not met**",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	r.IdleTLCP.With = 100<<20 + 22*1024*1000 // 22 KiB against 20: 1.10
	buf.Reset()
	r.render(&buf)
	if !strings.Contains(buf.String(), "1.10 (target ≤ 1.2): **met**") {
		t.Errorf("idle verdict:\n%s", buf.String())
	}
	// Without a peer, target 2 is not judged, whatever the absolute figures.
	r.Peer, r.Pinning = false, ""
	buf.Reset()
	r.render(&buf)
	for _, want := range []string{
		"| full ECC_SM4_GCM_SM3 | 250 | 200 | not run | +50 (1.25) | n/a | ≤ 1.00 | not judged (no peer) | 260 |",
		"CPU placement: not pinned (`-pin=false`).",
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("report without a peer lacks %q:\n%s", want, buf.String())
		}
	}
}

func TestProcReaders(t *testing.T) {
	if _, err := procCPU(1 << 30); err == nil {
		t.Error("CPU of a process that does not exist")
	}
	if rss, err := procRSS(os.Getpid()); err != nil || rss <= 0 {
		t.Errorf("own RSS: %d %v", rss, err)
	}
	if _, err := procCPU(os.Getpid()); err != nil {
		t.Errorf("own CPU: %v", err)
	}
}

func TestOKReply(t *testing.T) {
	for _, c := range []struct {
		reply string
		ok    bool
	}{
		{"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", true},
		{"HTTP/1.0 200 ok\r\nContent-type: text/plain\r\n\r\nok", true},
		{"HTTP/1.0 404 Not Found\r\n\r\nok", false},
		{"HTTP/1.1 200 OK\r\n\r\nnot ok!", false},
		{"", false},
	} {
		if got := okReply([]byte(c.reply)); got != c.ok {
			t.Errorf("okReply(%q) = %v", c.reply, got)
		}
	}
}

func TestSplitCPUs(t *testing.T) {
	var one, three cpuMask
	one.set(3)
	if _, _, ok := splitCPUs(one); ok {
		t.Error("split a single CPU")
	}
	three.set(1)
	three.set(2)
	three.set(65)
	srv, cli, ok := splitCPUs(three)
	if !ok || cpuList(srv) != "1" || cpuList(cli) != "2,65" {
		t.Errorf("split %s: servers %s, clients %s, %v", cpuList(three), cpuList(srv), cpuList(cli), ok)
	}
}

// TestPinProcess pins a child process to one allowed CPU and reads the affinity back from the
// kernel.
func TestPinProcess(t *testing.T) {
	allowed, err := getAffinity(0)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	var one cpuMask
	one.set(allowed.cpus()[len(allowed.cpus())-1])
	if err := pinProcess(cmd.Process.Pid, one); err != nil {
		t.Fatal(err)
	}
	got, err := getAffinity(cmd.Process.Pid)
	if err != nil || got != one {
		t.Errorf("affinity after pinning: %s (%v), want %s", cpuList(got), err, cpuList(one))
	}
}
