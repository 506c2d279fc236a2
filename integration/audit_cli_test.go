package integration

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/gmgate/gmgate/audit"
	"github.com/gmgate/gmgate/internal/attack"
	"github.com/gmgate/gmgate/pki"
)

type fileWitness struct {
	mu    sync.Mutex
	lines []string
}

func (w *fileWitness) Publish(_ context.Context, h audit.SignedHead) error {
	b, _ := json.Marshal(h)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lines = append(w.lines, string(b))
	return nil
}

// TestAuditVerifyCLIExitCodes runs `gmgate audit verify` on logs an attacker with write access to
// the log directory (and no platform key) has worked on: every case used to print "audit log
// intact" and exit 0. Each now has its own exit code, --accept takes a known one, and --json
// prints only JSON with snake_case keys.
func TestAuditVerifyCLIExitCodes(t *testing.T) {
	root, _, err := pki.NewRootCA(pki.IssueOptions{CommonName: "audit test root"})
	if err != nil {
		t.Fatal(err)
	}
	plat, err := root.IssuePlatform(pki.IssueOptions{CommonName: "platform"})
	if err != nil {
		t.Fatal(err)
	}
	certFile := filepath.Join(t.TempDir(), "platform.pem")
	if err := os.WriteFile(certFile, pki.EncodeCertificatesPEM(plat.Cert), 0o644); err != nil {
		t.Fatal(err)
	}
	write := func(t *testing.T, base string, n int, maxSeg int64, w audit.Witness, closeIt bool) {
		l, err := audit.Open(audit.Options{Path: base, Signer: plat.Key, CheckpointEvery: 3,
			CheckpointInterval: -1, MaxSegmentSize: maxSeg, Witness: w})
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			if err := l.Append(audit.Record{Direction: audit.DirectionInbound, Verdict: audit.VerdictAccept, Reason: audit.ReasonOK}); err != nil {
				t.Fatal(err)
			}
		}
		if closeIt {
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
	run := func(t *testing.T, args ...string) (int, string) {
		out, err := exec.Command(gmgateBin(t), append([]string{"audit", "verify", "--cert", certFile}, args...)...).Output()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), string(out)
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0, string(out)
	}
	cases := []struct {
		name    string
		maxSeg  int64
		open    bool // leave the log open (a live log)
		attack  func(base string) error
		witness bool
		accept  string
		want    int
	}{
		{name: "intact", want: 0},
		{name: "tail cut to a checkpoint, witness", attack: func(b string) error { return attack.CutToLastCheckpoint(b, 2) }, witness: true, want: 4},
		{name: "newest segment deleted", maxSeg: 1500, attack: func(b string) error { return attack.DeleteNewest(b, 1) }, want: 4},
		{name: "oldest segment deleted", maxSeg: 1500, attack: func(b string) error { return attack.DeleteOldest(b, 1) }, want: 5},
		{name: "oldest segment deleted, accepted", maxSeg: 1500, attack: func(b string) error { return attack.DeleteOldest(b, 1) }, accept: "mid_chain_start", want: 0},
		{name: "forged from scratch", attack: func(b string) error {
			segs, _ := attack.Segments(b)
			for _, s := range segs {
				os.Remove(s)
			}
			return attack.ForgeLog(b, 4)
		}, want: 3},
		{name: "unsealed tail of a live log", open: true, want: 6},
		{name: "unsealed tail accepted", open: true, accept: "unsealed_tail", want: 0},
		{name: "torn line then restart", attack: func(b string) error { return attack.TearLastLine(b) }, want: 7},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			base := filepath.Join(dir, "audit.log")
			w := &fileWitness{}
			n := 20 // ends on a checkpoint (one after the header and 2 entries, then every 3)
			if tc.open {
				n = 21 // one entry after the last checkpoint, never sealed: a live log
			}
			write(t, base, n, tc.maxSeg, w, !tc.open)
			if tc.attack != nil {
				if err := tc.attack(base); err != nil {
					t.Fatal(err)
				}
			}
			if tc.name == "torn line then restart" {
				write(t, base, 1, 0, nil, true)
			}
			args := []string{"--json"}
			if tc.witness {
				wf := filepath.Join(dir, "heads.jsonl")
				if err := os.WriteFile(wf, []byte(strings.Join(w.lines, "\n")), 0o600); err != nil {
					t.Fatal(err)
				}
				args = append(args, "--witness-file", wf)
			}
			if tc.accept != "" {
				args = append(args, "--accept", tc.accept)
			}
			code, out := run(t, append(args, base)...)
			if code != tc.want {
				t.Fatalf("exit %d, want %d\n%s", code, tc.want, out)
			}
			var rep map[string]any
			if err := json.Unmarshal([]byte(out), &rep); err != nil {
				t.Fatalf("--json printed more than JSON: %v\n%s", err, out)
			}
			if _, ok := rep["last_seq"]; !ok || rep["intact"] != (tc.want == 0) {
				t.Fatalf("report keys %v", rep)
			}
		})
	}
}
