package audit

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/emmansun/gmsm/sm2"

	"github.com/gmgate/gmgate/internal/attack"
)

// memWitness keeps every published head, as a remote witness would.
type memWitness struct {
	mu    sync.Mutex
	heads []SignedHead
}

func (w *memWitness) Publish(_ context.Context, h SignedHead) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.heads = append(w.heads, h)
	return nil
}

func (w *memWitness) all() []SignedHead {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.heads)
}

// TestAttackAuditLogCompleteness is finding 3 of the security review: someone who can write the
// log directory, but has no platform key, removes evidence. Each case used to verify as
// "intact" (exit 0). Now each is a named problem (the CLI's exit code), and the cut back to a
// checkpoint shows against the witness.
func TestAttackAuditLogCompleteness(t *testing.T) {
	key, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub := &key.PublicKey
	// write makes a log of n decisions (checkpoint every 3, segments of maxSeg bytes) and closes it.
	write := func(t *testing.T, base string, n int, maxSeg int64, w Witness) {
		t.Helper()
		l, err := Open(Options{Path: base, Signer: key, CheckpointEvery: 3, CheckpointInterval: -1,
			MaxSegmentSize: maxSeg, Witness: w})
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			if err := l.Append(Record{Direction: DirectionInbound, Scheme: "form-sm2", Verdict: VerdictAccept, Reason: ReasonOK}); err != nil {
				t.Fatal(err)
			}
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	verify := func(t *testing.T, base string, heads []SignedHead) []Problem {
		t.Helper()
		segs, err := Segments(base)
		if err != nil {
			t.Fatal(err)
		}
		rep, verr := VerifyFile(segs, pub)
		var werr error
		if heads != nil && verr == nil {
			_, werr = CheckWitness(rep, heads, pub)
		}
		return rep.Problems(verr, werr)
	}
	t.Run("control: a complete log has no problem", func(t *testing.T) {
		base := filepath.Join(t.TempDir(), "audit.log")
		w := &memWitness{}
		write(t, base, 10, 0, w)
		if p := verify(t, base, w.all()); len(p) != 0 {
			t.Fatalf("problems %v", p)
		}
	})
	cases := []struct {
		name   string
		maxSeg int64
		attack func(base string) error
		want   Problem
	}{
		{"tail cut back to an earlier checkpoint", 0, func(b string) error { return attack.CutToLastCheckpoint(b, 2) }, ProblemTailDeleted},
		{"newest segment deleted", 1500, func(b string) error { return attack.DeleteNewest(b, 1) }, ProblemTailDeleted},
		{"oldest segment deleted", 1500, func(b string) error { return attack.DeleteOldest(b, 1) }, ProblemMidChainStart},
		{"written from scratch without the key", 0, func(b string) error {
			for _, p := range mustSegments(b) {
				if err := removeFile(p); err != nil {
					return err
				}
			}
			return attack.ForgeLog(b, 5)
		}, ProblemNoCheckpoint},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			base := filepath.Join(t.TempDir(), "audit.log")
			w := &memWitness{}
			write(t, base, 20, tc.maxSeg, w)
			if err := tc.attack(base); err != nil {
				t.Fatal(err)
			}
			var heads []SignedHead
			if tc.want == ProblemTailDeleted && tc.maxSeg == 0 {
				heads = w.all() // the cut to a checkpoint is only visible against the witness
				if p := verify(t, base, nil); len(p) != 0 {
					t.Fatalf("without a witness the cut log has problems %v: the case does not test the witness", p)
				}
			}
			if p := verify(t, base, heads); !slices.Contains(p, tc.want) {
				t.Fatalf("problems %v, want %s", p, tc.want)
			}
		})
	}
	t.Run("torn last line leaves a recovery entry", func(t *testing.T) {
		base := filepath.Join(t.TempDir(), "audit.log")
		write(t, base, 4, 0, nil)
		if err := attack.TearLastLine(base); err != nil {
			t.Fatal(err)
		}
		write(t, base, 1, 0, nil) // restart: the torn line is cut, and recorded
		if p := verify(t, base, nil); !slices.Equal(p, []Problem{ProblemCrashRecovered}) {
			t.Fatalf("problems %v, want [%s]", p, ProblemCrashRecovered)
		}
	})
	t.Run("a witness head forged without the key is ignored", func(t *testing.T) {
		base := filepath.Join(t.TempDir(), "audit.log")
		w := &memWitness{}
		write(t, base, 6, 0, w)
		heads := w.all()
		forged := heads[len(heads)-1]
		forged.Seq += 100
		if p := verify(t, base, append(heads, forged)); len(p) != 0 {
			t.Fatalf("a head with a broken signature counted: %v", p)
		}
	})
}

func mustSegments(base string) []string {
	s, _ := Segments(base)
	return s
}

func removeFile(p string) error { return os.Remove(p) }
