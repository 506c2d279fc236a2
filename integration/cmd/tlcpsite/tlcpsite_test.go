package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"
)

func TestRenderVerdicts(t *testing.T) {
	r := &report{Started: time.Unix(0, 0), Finished: time.Unix(60, 0), CPUs: 2, Clients: 2, Rounds: 3, Window: time.Second,
		Cmd: "tlcpsite -duration 1s",
		Rows: []rowResult{
			// 1000 connections in 250 ms of CPU: 250 µs, within 260; bare 200 µs.
			{Row: rows[0], Site: measurement{Conns: 1000, CPU: 250 * time.Millisecond}, Bare: measurement{Conns: 1000, CPU: 200 * time.Millisecond}},
			// Resumed: 150 µs against a target of 110.
			{Row: rows[4], Site: measurement{Conns: 2000, CPU: 300 * time.Millisecond}, Bare: measurement{Conns: 2000, CPU: 200 * time.Millisecond}},
		},
		IdleTLCP:  idleResult{Conns: 1000, Before: 100 << 20, With: 100<<20 + 30*1024*1000},
		IdleTLS13: idleResult{Conns: 1000, Before: 80 << 20, With: 80<<20 + 20*1024*1000},
	}
	var buf bytes.Buffer
	r.render(&buf)
	md := buf.String()
	for _, want := range []string{
		"| full ECC_SM4_GCM_SM3 | 250 | 200 | +50 (1.25) | ≤ 260 | **met** |",
		"| resumed (session ID) | 150 | 100 | +50 (1.50) | ≤ 110 | **not met** |",
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
