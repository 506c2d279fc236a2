package audit

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm3"
)

func sm3Sum(b []byte) []byte {
	s := sm3.Sum(b)
	return s[:]
}

func newSM2Key(t testing.TB) *sm2.PrivateKey {
	t.Helper()
	k, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func testRecord(i int) Record {
	v, r := VerdictAccept, ReasonOK
	if i%3 == 0 {
		v, r = VerdictReject, "bad_signature"
	}
	return Record{
		Direction: DirectionInbound, Scheme: "wechatpay-v3-sm2", KeyID: "mch-1900000001",
		CertSerial: "5A3C", SignedSM3: sm3Sum([]byte(fmt.Sprint("req", i))),
		Signature: []byte(fmt.Sprint("sig", i)), Verdict: v, Reason: r, RequestID: fmt.Sprint("req-", i),
	}
}

// writeLog creates a closed log with n decisions and returns its segments.
func writeLog(t *testing.T, key *sm2.PrivateKey, n int, opts Options) []string {
	t.Helper()
	if opts.Path == "" {
		opts.Path = filepath.Join(t.TempDir(), "audit.log")
	}
	opts.Signer = key
	if opts.CheckpointInterval == 0 {
		opts.CheckpointInterval = -1
	}
	l, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if err := l.Append(testRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	segs, err := Segments(opts.Path)
	if err != nil || len(segs) == 0 {
		t.Fatalf("segments %v %v", segs, err)
	}
	return segs
}

func readLines(t *testing.T, p string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.SplitAfter(b, []byte("\n"))[:bytes.Count(b, []byte("\n"))]
}

func writeLines(t *testing.T, p string, lines [][]byte) {
	t.Helper()
	if err := os.WriteFile(p, bytes.Join(lines, nil), 0o600); err != nil {
		t.Fatal(err)
	}
}

func entryOf(t *testing.T, line []byte) auditEntry {
	t.Helper()
	var e auditEntry
	if err := json.Unmarshal(bytes.TrimSpace(line), &e); err != nil {
		t.Fatal(err)
	}
	return e
}

func TestAuditAppendAndVerify(t *testing.T) {
	key := newSM2Key(t)
	segs := writeLog(t, key, 25, Options{CheckpointEvery: 10})
	rep, err := VerifyFile(segs, &key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK || rep.Decisions != 25 || rep.Checkpoints < 3 || rep.UnsealedTail != 0 || rep.StartsMidChain || rep.FirstSeq != 1 {
		t.Fatalf("report %+v", rep)
	}
	lines := readLines(t, segs[0])
	if rep.Entries != len(lines) || rep.LastSeq != uint64(len(lines)) {
		t.Fatalf("entries %d lines %d last %d", rep.Entries, len(lines), rep.LastSeq)
	}
	// Every field of a decision is recorded.
	e := entryOf(t, lines[1])
	if e.Type != TypeDecision || e.Direction != DirectionInbound || e.Scheme != "wechatpay-v3-sm2" ||
		e.KeyID != "mch-1900000001" || e.CertSerial != "5A3C" || len(e.SignedSM3) != 64 ||
		e.Signature != base64.StdEncoding.EncodeToString([]byte("sig0")) || e.Verdict != VerdictReject ||
		e.Reason != "bad_signature" || e.RequestID != "req-0" || e.Time == "" || e.Seq != 2 {
		t.Fatalf("entry %+v", e)
	}
	if last := entryOf(t, lines[len(lines)-1]); last.Type != TypeCheckpoint {
		t.Fatalf("closed log does not end with a checkpoint: %+v", last)
	}
	// Another key does not verify the checkpoints.
	other := newSM2Key(t)
	rep, err = VerifyFile(segs, &other.PublicKey)
	if !errors.Is(err, ErrVerify) || rep.Failure == nil || rep.Failure.Kind != FailForgedCheckpoint {
		t.Fatalf("other key: %v %+v", err, rep.Failure)
	}
}

func TestAuditTamperDetected(t *testing.T) {
	key := newSM2Key(t)
	attacker := newSM2Key(t)
	decisionLine := func(t *testing.T, lines [][]byte, from int) int {
		for i := from; i < len(lines); i++ {
			if entryOf(t, lines[i]).Type == TypeDecision {
				return i
			}
		}
		t.Fatal("no decision line")
		return 0
	}
	tests := []struct {
		name     string
		mutate   func(t *testing.T, lines [][]byte) ([][]byte, int) // returns lines and expected 0-based failing line
		wantKind FailureKind
	}{
		{"edit verdict", func(t *testing.T, l [][]byte) ([][]byte, int) {
			i := decisionLine(t, l, 4)
			l[i] = bytes.Replace(l[i], []byte(`"verdict":"reject"`), []byte(`"verdict":"accept"`), 1)
			if !bytes.Contains(l[i], []byte("accept")) || bytes.Contains(l[i], []byte("reject")) {
				i = decisionLine(t, l, i+1)
				l[i] = bytes.Replace(l[i], []byte(`"verdict":"reject"`), []byte(`"verdict":"accept"`), 1)
			}
			return l, i
		}, FailEdited},
		{"edit key id", func(t *testing.T, l [][]byte) ([][]byte, int) {
			l[7] = bytes.Replace(l[7], []byte(`mch-1900000001`), []byte(`mch-1900000002`), 1)
			return l, 7
		}, FailEdited},
		{"delete one", func(t *testing.T, l [][]byte) ([][]byte, int) {
			return append(l[:5:5], l[6:]...), 5
		}, FailDeleted},
		{"delete first decision", func(t *testing.T, l [][]byte) ([][]byte, int) {
			return append(l[:1:1], l[2:]...), 1
		}, FailDeleted},
		{"swap two", func(t *testing.T, l [][]byte) ([][]byte, int) {
			l[8], l[9] = l[9], l[8]
			return l, 8
		}, FailReordered},
		{"move one later", func(t *testing.T, l [][]byte) ([][]byte, int) {
			m := l[3]
			out := append(append(append([][]byte{}, l[:3]...), l[4:8]...), m)
			return append(out, l[8:]...), 3
		}, FailReordered},
		{"insert duplicate", func(t *testing.T, l [][]byte) ([][]byte, int) {
			out := append(append([][]byte{}, l[:10]...), l[4])
			return append(out, l[10:]...), 10
		}, FailInserted},
		{"insert forged consistent entry", func(t *testing.T, l [][]byte) ([][]byte, int) {
			prev := entryOf(t, l[5])
			e := entryOf(t, l[6])
			e.Prev = lineHash(bytes.TrimSuffix(l[5], []byte("\n")))
			e.Seq = prev.Seq + 1
			e.RequestID = "forged"
			b, _ := json.Marshal(e)
			out := append(append([][]byte{}, l[:6]...), append(b, '\n'))
			return append(out, l[6:]...), 6
		}, FailInserted},
		{"truncate mid-line", func(t *testing.T, l [][]byte) ([][]byte, int) {
			l = l[:12]
			l[11] = l[11][:len(l[11])/2]
			return l, 11
		}, FailTruncated},
		{"forge checkpoint", func(t *testing.T, l [][]byte) ([][]byte, int) {
			for i := range l {
				e := entryOf(t, l[i])
				if e.Type != TypeCheckpoint {
					continue
				}
				sig, _ := attacker.Sign(rand.Reader, []byte("x"), sm2.DefaultSM2SignerOpts)
				l[i] = bytes.Replace(l[i], []byte(e.Sig), []byte(base64.StdEncoding.EncodeToString(sig)), 1)
				return l, i
			}
			t.Fatal("no checkpoint")
			return nil, 0
		}, FailForgedCheckpoint},
		{"edit and rewrite the chain", func(t *testing.T, l [][]byte) ([][]byte, int) {
			// The attacker edits entry 3 and recomputes every later prev: the
			// chain is consistent, the next checkpoint's signature is not.
			e := entryOf(t, l[3])
			e.RequestID = "tampered"
			want := -1
			for i := 3; i < len(l); i++ {
				if i > 3 {
					e = entryOf(t, l[i])
					e.Prev = lineHash(bytes.TrimSuffix(l[i-1], []byte("\n")))
					if e.Type == TypeCheckpoint {
						e.Head = e.Prev
						if want < 0 {
							want = i
						}
					}
				}
				b, _ := json.Marshal(e)
				l[i] = append(b, '\n')
			}
			return l, want
		}, FailForgedCheckpoint},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			segs := writeLog(t, key, 30, Options{CheckpointEvery: 8})
			lines, wantLine := tc.mutate(t, readLines(t, segs[0]))
			writeLines(t, segs[0], lines)
			rep, err := VerifyFile(segs, &key.PublicKey)
			if !errors.Is(err, ErrVerify) || rep.OK || rep.Failure == nil {
				t.Fatalf("tampering not detected: err=%v rep=%+v", err, rep)
			}
			if rep.Failure.Kind != tc.wantKind || rep.Failure.Line != wantLine+1 {
				t.Fatalf("failure %+v, want %s at line %d", rep.Failure, tc.wantKind, wantLine+1)
			}
			if rep.Failure.Path != segs[0] || !strings.Contains(err.Error(), fmt.Sprintf(":%d ", wantLine+1)) {
				t.Fatalf("error does not locate the entry: %v", err)
			}
		})
	}
}

func TestAuditRotation(t *testing.T) {
	key := newSM2Key(t)
	segs := writeLog(t, key, 60, Options{CheckpointEvery: 7, MaxSegmentSize: 2048})
	if len(segs) < 3 {
		t.Fatalf("only %d segments", len(segs))
	}
	rep, err := VerifyFile(segs, &key.PublicKey)
	if err != nil || rep.Decisions != 60 || rep.Files != len(segs) {
		t.Fatalf("verify: %v %+v", err, rep)
	}
	for i, p := range segs {
		l := readLines(t, p)
		h := entryOf(t, l[0])
		if h.Type != TypeSegment || h.Segment != i+1 || h.LogID != rep.LogID {
			t.Fatalf("segment %d header %+v", i+1, h)
		}
		if i < len(segs)-1 {
			if entryOf(t, l[len(l)-1]).Type != TypeCheckpoint {
				t.Fatalf("rotated segment %d not sealed", i+1)
			}
			next := entryOf(t, readLines(t, segs[i+1])[0])
			if next.Prev != lineHash(bytes.TrimSuffix(l[len(l)-1], []byte("\n"))) {
				t.Fatalf("segment %d does not link to segment %d", i+2, i+1)
			}
		}
	}
	// A later subset verifies on its own, anchored mid-chain.
	rep, err = VerifyFile(segs[1:], &key.PublicKey)
	if err != nil || !rep.StartsMidChain {
		t.Fatalf("subset: %v %+v", err, rep)
	}
	// Missing middle segment, reversed order, truncated tail of a segment.
	if _, err := VerifyFile([]string{segs[0], segs[2]}, &key.PublicKey); !errors.Is(err, ErrVerify) {
		t.Fatal("missing segment not detected")
	}
	rep, err = VerifyFile([]string{segs[1], segs[0]}, &key.PublicKey)
	if err == nil {
		t.Fatalf("reversed segments accepted: %+v", rep)
	}
	// An edit in a later segment is located in that segment.
	l2 := readLines(t, segs[1])
	orig2 := bytes.Join(l2, nil)
	l2[3] = bytes.Replace(l2[3], []byte(`"scheme":"wechatpay-v3-sm2"`), []byte(`"scheme":"form-sm2"`), 1)
	writeLines(t, segs[1], l2)
	rep, err = VerifyFile(segs, &key.PublicKey)
	if !errors.Is(err, ErrVerify) || rep.Failure.Kind != FailEdited || rep.Failure.Path != segs[1] || rep.Failure.Line != 4 {
		t.Fatalf("edit in segment 2: %v %+v", err, rep.Failure)
	}
	if err := os.WriteFile(segs[1], orig2, 0o600); err != nil {
		t.Fatal(err)
	}
	l := readLines(t, segs[0])
	writeLines(t, segs[0], l[:len(l)-2])
	rep, err = VerifyFile(segs, &key.PublicKey)
	if !errors.Is(err, ErrVerify) || rep.Failure.Kind != FailDeleted || rep.Failure.Path != segs[1] || rep.Failure.Line != 1 {
		t.Fatalf("truncated segment tail: %v %+v", err, rep.Failure)
	}
}

func TestAuditResumeAfterCrash(t *testing.T) {
	key := newSM2Key(t)
	path := filepath.Join(t.TempDir(), "a.log")
	writeLog(t, key, 5, Options{Path: path})
	segs, _ := Segments(path)
	// Simulate a crash inside a write that never returned.
	f, err := os.OpenFile(segs[0], os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"seq":99,"type":"decis`)
	f.Close()
	if _, err := VerifyFile(segs, &key.PublicKey); err == nil {
		t.Fatal("partial line accepted")
	}
	segs = writeLog(t, key, 4, Options{Path: path})
	rep, err := VerifyFile(segs, &key.PublicKey)
	if err != nil || rep.Decisions != 9 {
		t.Fatalf("after resume: %v %+v", err, rep)
	}
}

func TestAuditConcurrentAppend(t *testing.T) {
	key := newSM2Key(t)
	path := filepath.Join(t.TempDir(), "c.log")
	l, err := Open(Options{Path: path, Signer: key, CheckpointEvery: 50, MaxSegmentSize: 16 << 10, CheckpointInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	const workers, each = 8, 100
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				r := testRecord(i)
				r.RequestID = fmt.Sprintf("w%d-%d", w, i)
				if err := l.Append(r); err != nil {
					t.Error(err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Append(testRecord(0)); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}
	segs, _ := Segments(path)
	rep, err := VerifyFile(segs, &key.PublicKey)
	if err != nil || rep.Decisions != workers*each {
		t.Fatalf("%v %+v", err, rep)
	}
	seen := map[string]int{}
	for _, p := range segs {
		for _, line := range readLines(t, p) {
			if e := entryOf(t, line); e.Type == TypeDecision {
				seen[e.RequestID]++
			}
		}
	}
	for w := 0; w < workers; w++ {
		for i := 0; i < each; i++ {
			if seen[fmt.Sprintf("w%d-%d", w, i)] != 1 {
				t.Fatalf("entry w%d-%d recorded %d times", w, i, seen[fmt.Sprintf("w%d-%d", w, i)])
			}
		}
	}
}

func TestAuditTimedCheckpointAndFsyncPolicies(t *testing.T) {
	key := newSM2Key(t)
	for _, pol := range []FsyncPolicy{FsyncAlways, FsyncInterval, FsyncNever} {
		path := filepath.Join(t.TempDir(), "t.log")
		l, err := Open(Options{Path: path, Signer: key, CheckpointInterval: 10 * time.Millisecond, Fsync: pol, FsyncInterval: 5 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Append(testRecord(1)); err != nil {
			t.Fatal(err)
		}
		segs, _ := Segments(path)
		deadline := time.Now().Add(5 * time.Second)
		for {
			lines := readLines(t, segs[0])
			if entryOf(t, lines[len(lines)-1]).Type == TypeCheckpoint {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("policy %d: no timed checkpoint", pol)
			}
			time.Sleep(5 * time.Millisecond)
		}
		rep, err := VerifyFile(segs, &key.PublicKey)
		if err != nil || rep.UnsealedTail != 0 || rep.Checkpoints != 1 {
			t.Fatalf("policy %d: %v %+v", pol, err, rep)
		}
		l.Close()
	}
}

func TestAuditOptionsAndBounds(t *testing.T) {
	key := newSM2Key(t)
	dir := t.TempDir()
	if _, err := Open(Options{Signer: key}); err == nil {
		t.Error("empty path accepted")
	}
	if _, err := Open(Options{Path: filepath.Join(dir, "x")}); err == nil {
		t.Error("nil signer accepted")
	}
	ec, _ := ecdsa.GenerateKey(ellipticP256(), rand.Reader)
	if _, err := Open(Options{Path: filepath.Join(dir, "x"), Signer: ec}); err == nil {
		t.Error("non-SM2 signer accepted")
	}
	if _, err := VerifyFile(nil, &key.PublicKey); err == nil {
		t.Error("no files accepted")
	}
	if _, err := VerifyFile([]string{filepath.Join(dir, "nope")}, &key.PublicKey); err == nil {
		t.Error("missing file accepted")
	}
	// Oversized fields are clipped so a line stays bounded.
	path := filepath.Join(dir, "big.log")
	l, err := Open(Options{Path: path, Signer: key, CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	r := testRecord(1)
	r.KeyID = strings.Repeat("k", 1<<20)
	r.Signature = make([]byte, 1<<20)
	if err := l.Append(r); err != nil {
		t.Fatal(err)
	}
	l.Close()
	segs, _ := Segments(path)
	for _, line := range readLines(t, segs[0]) {
		if len(line) > MaxLineLen {
			t.Fatalf("line of %d bytes", len(line))
		}
	}
	if _, err := VerifyFile(segs, &key.PublicKey); err != nil {
		t.Fatal(err)
	}
}

// FuzzVerifyAudit feeds arbitrary files to the verifier: it must never
// panic, and must never accept a file without a valid checkpoint signature
// chain from a log it did not write.
func FuzzVerifyAudit(f *testing.F) {
	key, _ := sm2.GenerateKey(rand.Reader)
	dir := f.TempDir()
	path := filepath.Join(dir, "seed.log")
	l, err := Open(Options{Path: path, Signer: key, CheckpointEvery: 3, CheckpointInterval: -1})
	if err != nil {
		f.Fatal(err)
	}
	for i := 0; i < 7; i++ {
		l.Append(testRecord(i))
	}
	l.Close()
	segs, _ := Segments(path)
	seed, _ := os.ReadFile(segs[0])
	f.Add(seed)
	f.Add([]byte("{}\n"))
	f.Add([]byte(`{"seq":0,"type":"segment","time":"","log_id":"x","segment":2,"prev":"` + strings.Repeat("0", 64) + "\"}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rep, err := verifyAudit([]string{"f.log"}, [][]byte{data}, &key.PublicKey)
		if err == nil && (rep.Failure != nil || !rep.OK) {
			t.Fatal("nil error with a failure")
		}
		if err != nil && (rep == nil || rep.Failure == nil || rep.OK) {
			t.Fatalf("error without failure report: %v", err)
		}
	})
}

func ellipticP256() elliptic.Curve { return elliptic.P256() }

// TestAuditTailTruncationReported: cutting whole lines off the end of the
// newest segment leaves a valid prefix; the report must show that the tail is
// no longer sealed by a checkpoint (the CLI warns on UnsealedTail > 0).
func TestAuditTailTruncationReported(t *testing.T) {
	key := newSM2Key(t)
	segs := writeLog(t, key, 20, Options{CheckpointEvery: 6})
	rep, err := VerifyFile(segs, &key.PublicKey)
	if err != nil || rep.UnsealedTail != 0 {
		t.Fatalf("intact: %v %+v", err, rep)
	}
	l := readLines(t, segs[0])
	writeLines(t, segs[0], l[:len(l)-2]) // drop the closing checkpoint and the last decision
	rep, err = VerifyFile(segs, &key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if rep.UnsealedTail == 0 || rep.LastSeq != uint64(len(l)-2) || rep.LastCheckpointSeq >= rep.LastSeq {
		t.Fatalf("truncated tail not reported: %+v", rep)
	}
}

// countingSigner counts the signatures made through it.
type countingSigner struct {
	crypto.Signer
	n atomic.Int32
}

func (c *countingSigner) Sign(r io.Reader, d []byte, o crypto.SignerOpts) ([]byte, error) {
	c.n.Add(1)
	return c.Signer.Sign(r, d, o)
}

// A reload hands the open log to a new handle of the same key; another key is refused.
func TestAuditSetSigner(t *testing.T) {
	key := newSM2Key(t)
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(Options{Path: path, Signer: key, CheckpointEvery: 2, CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.SetSigner(newSM2Key(t)); err == nil {
		t.Fatal("another key accepted")
	}
	if err := l.SetSigner(nil); err == nil {
		t.Fatal("nil signer accepted")
	}
	next := &countingSigner{Signer: key}
	if err := l.SetSigner(next); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 4; i++ {
		if err := l.Append(testRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if next.n.Load() < 2 {
		t.Fatalf("checkpoints signed %d times with the new handle", next.n.Load())
	}
	segs, err := Segments(path)
	if err != nil {
		t.Fatal(err)
	}
	if rep, err := VerifyFile(segs, &key.PublicKey); err != nil || rep.Decisions != 4 {
		t.Fatalf("verify: %v %+v", err, rep)
	}
}

// Under FsyncInterval the background sync reaches every appended byte (outside the append lock).
func TestAuditIntervalSyncCatchesUp(t *testing.T) {
	l, err := Open(Options{Path: filepath.Join(t.TempDir(), "s.log"), Signer: newSM2Key(t),
		CheckpointInterval: -1, Fsync: FsyncInterval, FsyncInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := 0; i < 20; i++ {
		if err := l.Append(testRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	l.mu.Lock()
	gen, size := l.gen, l.size
	l.mu.Unlock()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		l.syncMu.Lock()
		done := l.syncedGen == gen && l.synced >= size
		l.syncMu.Unlock()
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("interval fsync did not reach offset %d", size)
		}
	}
}

// TestFsyncFailureAfterWrite: when the fsync after an entry fails, Append reports it although the
// entry is in the file; the caller must record the outcome it then gives (gateway and channel
// append a reject entry).
func TestFsyncFailureAfterWrite(t *testing.T) {
	key := newSM2Key(t)
	base := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(Options{Path: base, Signer: key, CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	l.syncFile = func(*os.File) error { return errors.New("injected EIO") }
	if err := l.Append(testRecord(1)); err == nil {
		t.Fatal("Append hid the fsync failure")
	}
	l.syncFile = (*os.File).Sync
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	segs, _ := Segments(base)
	if rep, err := VerifyFile(segs, &key.PublicKey); err != nil || rep.Decisions != 1 {
		t.Fatalf("the entry whose fsync failed: %v %+v", err, rep)
	}
}
