package gmproc

import (
	"bytes"
	"strings"
	"testing"
)

// The output buffer keeps the head (start-up errors) and drops the rest.
func TestBufferKeepsTheHead(t *testing.T) {
	var b Buffer
	b.Write([]byte("start-up error\n"))
	for i := 0; i < 3; i++ {
		if n, err := b.Write(bytes.Repeat([]byte("x"), maxOutput)); n != maxOutput || err != nil {
			t.Fatalf("write: %d %v", n, err)
		}
	}
	if s := b.String(); !strings.HasPrefix(s, "start-up error\n") || len(s) > 2*maxOutput+16 {
		t.Fatalf("kept %d bytes", len(s))
	}
}

// A binary that exits at once is reported with its output, not waited for.
func TestStartReportsEarlyExit(t *testing.T) {
	_, err := Start("/bin/sh", t.TempDir(), "{ADMIN} {DIR}")
	if err == nil || !strings.Contains(err.Error(), "exited early") {
		t.Fatalf("err = %v", err)
	}
	if p, err := FreePort(); err != nil || p <= 0 {
		t.Fatalf("FreePort: %d %v", p, err)
	}
}
