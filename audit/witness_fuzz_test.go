package audit

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzWitnessHeads feeds arbitrary witness exports (JSON lines or a JSON array) to
// ParseSignedHeads and the heads to CheckWitness against a genuine log: a head CheckWitness
// returns always verifies under the platform key, names the log and carries the signed fields
// of a head the log published (a head whose signed fields were changed, a byte flipped, never
// counts); a nil error means the log holds that checkpoint; every refusal is one of the
// witness errors.
func FuzzWitnessHeads(f *testing.F) {
	key := newSM2Key(f)
	w := &memWitness{}
	path := filepath.Join(f.TempDir(), "audit.log")
	l, err := Open(Options{Path: path, Signer: key, CheckpointEvery: 3, CheckpointInterval: -1, Witness: w})
	if err != nil {
		f.Fatal(err)
	}
	for i := 0; i < 7; i++ {
		if err := l.Append(testRecord(i)); err != nil {
			f.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		f.Fatal(err)
	}
	segs, _ := Segments(path)
	rep, err := VerifyFile(segs, &key.PublicKey)
	if err != nil {
		f.Fatal(err)
	}
	genuine := w.all()
	if len(genuine) == 0 {
		f.Fatal("no head published")
	}
	signed := func(h SignedHead) string {
		b, _ := json.Marshal([]any{h.LogID, h.Seq, h.Segment, h.Time, h.Head})
		return string(b)
	}
	known := map[string]bool{}
	var lines []string
	for _, h := range genuine {
		known[signed(h)] = true
		b, _ := json.Marshal(h)
		lines = append(lines, string(b))
	}
	arr, _ := json.Marshal(genuine)
	f.Add([]byte(strings.Join(lines, "\n")))
	f.Add(arr)
	f.Add([]byte(lines[len(lines)-1]))
	f.Add([]byte("[]"))
	f.Add([]byte("{}\n\n{\"seq\":18446744073709551615}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		heads, err := ParseSignedHeads(data)
		if err != nil {
			return
		}
		best, werr := CheckWitness(rep, heads, &key.PublicKey)
		if best == nil {
			if !errors.Is(werr, ErrWitnessNone) {
				t.Fatalf("no head, error %v", werr)
			}
			return
		}
		if !best.Verify(&key.PublicKey) || best.LogID != rep.LogID || !known[signed(*best)] {
			t.Fatalf("counted a head the log never published: %+v", best)
		}
		if werr != nil && !errors.Is(werr, ErrWitnessTail) && !errors.Is(werr, ErrWitnessMismatch) {
			t.Fatalf("untyped witness error %v", werr)
		}
		if werr == nil && best.Seq >= rep.FirstSeq && rep.checkpoints[best.Seq] != best.Head {
			t.Fatal("accepted a head the log does not hold")
		}
	})
}

// FuzzResumeSegment: the writer reopens whatever it finds as the last segment (someone with
// write access to the log directory chooses those bytes). It never panics, reads at most a
// bounded header and tail, and a segment that verified before it was reopened still verifies
// after entries are appended and the log closed.
func FuzzResumeSegment(f *testing.F) {
	key := newSM2Key(f)
	dir := f.TempDir()
	seed := filepath.Join(dir, "seed.log")
	l, err := Open(Options{Path: seed, Signer: key, CheckpointEvery: 3, CheckpointInterval: -1})
	if err != nil {
		f.Fatal(err)
	}
	for i := 0; i < 4; i++ {
		l.Append(testRecord(i))
	}
	l.Close()
	segs, _ := Segments(seed)
	good, err := os.ReadFile(segs[0])
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(append(append([]byte(nil), good...), `{"seq":9,"ty`...))
	f.Add(good[:strings.IndexByte(string(good), '\n')+1])
	f.Add([]byte("{}\n"))
	f.Add([]byte(`{"type":"segment","log_id":"x"}` + "\n" + `{"seq":18446744073709551615,"type":"checkpoint"}` + "\n"))
	n := 0
	f.Fuzz(func(t *testing.T, data []byte) {
		n++
		base := filepath.Join(dir, "l"+strings.Repeat("x", n%2), "audit.log")
		os.RemoveAll(filepath.Dir(base))
		if err := os.MkdirAll(filepath.Dir(base), 0o700); err != nil {
			t.Fatal(err)
		}
		seg := segmentPath(base, 1)
		if err := os.WriteFile(seg, data, 0o600); err != nil {
			t.Fatal(err)
		}
		_, berr := VerifyFile([]string{seg}, &key.PublicKey)
		l, err := Open(Options{Path: base, Signer: key, CheckpointEvery: 3, CheckpointInterval: -1})
		if err != nil {
			if berr == nil {
				t.Fatalf("a segment that verifies was not reopened: %v", err)
			}
			return
		}
		for i := 0; i < 2; i++ {
			_ = l.Append(testRecord(i))
		}
		if err := l.Close(); err != nil && berr == nil {
			t.Fatalf("close: %v", err)
		}
		if berr != nil {
			return
		}
		segs, err := Segments(base)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := VerifyFile(segs, &key.PublicKey); err != nil {
			t.Fatalf("a segment that verified no longer does after resuming: %v", err)
		}
	})
}
