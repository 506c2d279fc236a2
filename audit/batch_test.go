package audit

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// gatedWriter replaces Log.writeFile: the first write waits for release (so that the entries of
// other appenders queue behind it), the second is handled by second.
type gatedWriter struct {
	mu      sync.Mutex
	writes  [][]byte // every batch handed to the file
	entered chan struct{}
	release chan struct{}
	second  func(f *os.File, b []byte) (int, error)
}

func newGatedWriter(second func(*os.File, []byte) (int, error)) *gatedWriter {
	return &gatedWriter{entered: make(chan struct{}), release: make(chan struct{}), second: second}
}

func (g *gatedWriter) write(f *os.File, b []byte) (int, error) {
	g.mu.Lock()
	g.writes = append(g.writes, append([]byte(nil), b...))
	n := len(g.writes)
	g.mu.Unlock()
	switch {
	case n == 1:
		close(g.entered)
		<-g.release
	case n == 2 && g.second != nil:
		return g.second(f, b)
	}
	return f.Write(b)
}

func (g *gatedWriter) batches() [][]byte {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([][]byte(nil), g.writes...)
}

// queueBehind appends decision A (its write held by g), then n decisions from n goroutines,
// and returns once all n are queued behind A's write. Their results arrive on the channel.
func queueBehind(t *testing.T, l *Log, g *gatedWriter, n int) (errA, errs chan error) {
	t.Helper()
	l.mu.Lock()
	base := l.seq
	l.mu.Unlock()
	errA = make(chan error, 1)
	go func() { errA <- l.Append(testRecord(0)) }()
	<-g.entered
	errs = make(chan error, n)
	for i := 1; i <= n; i++ {
		go func(i int) {
			r := testRecord(i)
			r.RequestID = fmt.Sprintf("queued-%d", i)
			errs <- l.Append(r)
		}(i)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		l.mu.Lock()
		queued := l.seq - base
		l.mu.Unlock()
		if queued == uint64(n+1) {
			return errA, errs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d entries queued", queued, n+1)
		}
	}
}

// Entries arriving while a write is in progress go to the file in one write and share one fsync.
func TestAuditBatchOneWritePerBatch(t *testing.T) {
	key := newSM2Key(t)
	base := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(Options{Path: base, Signer: key, CheckpointInterval: -1, Fsync: FsyncAlways})
	if err != nil {
		t.Fatal(err)
	}
	g := newGatedWriter(nil)
	var syncs int
	var syncMu sync.Mutex
	l.mu.Lock()
	l.writeFile = g.write
	l.syncFile = func(f *os.File) error { syncMu.Lock(); syncs++; syncMu.Unlock(); return f.Sync() }
	l.mu.Unlock()
	const queued = 5
	errA, errs := queueBehind(t, l, g, queued)
	close(g.release)
	if err := <-errA; err != nil {
		t.Fatal(err)
	}
	for i := 0; i < queued; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	b := g.batches()
	if len(b) != 2 || bytes.Count(b[0], []byte("\n")) != 1 || bytes.Count(b[1], []byte("\n")) != queued {
		t.Fatalf("want 2 writes (1 line, then %d lines), got %d", queued, len(b))
	}
	if syncs != 2 {
		t.Fatalf("%d fsyncs for 2 batches", syncs)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	segs, _ := Segments(base)
	rep, err := VerifyFile(segs, &key.PublicKey)
	if err != nil || rep.Decisions != queued+1 {
		t.Fatalf("%v %+v", err, rep)
	}
}

// TestAuditTornBatchRecovery: the process dies inside the write of a batch (the disk holds two of
// its lines and part of the third). On restart the partial line is cut and recorded; the whole
// lines of the batch stay chained (never acknowledged, but intact evidence), and the log verifies.
func TestAuditTornBatchRecovery(t *testing.T) {
	key := newSM2Key(t)
	dir := t.TempDir()
	base := filepath.Join(dir, "audit.log")
	l, err := Open(Options{Path: base, Signer: key, CheckpointInterval: -1, Fsync: FsyncAlways})
	if err != nil {
		t.Fatal(err)
	}
	crashed := make(chan struct{})
	dead := make(chan struct{})
	var torn []byte
	g := newGatedWriter(func(f *os.File, b []byte) (int, error) {
		// Two whole lines and half of the third reach the disk, then the process dies.
		end := 0
		for i := 0; i < 2; i++ {
			end += bytes.IndexByte(b[end:], '\n') + 1
		}
		next := bytes.IndexByte(b[end:], '\n')
		torn = b[end : end+next/2]
		if _, err := f.Write(b[:end+next/2]); err != nil {
			t.Error(err)
		}
		close(crashed)
		<-dead
		return 0, errors.New("process gone")
	})
	l.mu.Lock()
	l.writeFile = g.write
	l.mu.Unlock()
	const queued = 4
	errA, errs := queueBehind(t, l, g, queued)
	close(g.release)
	if err := <-errA; err != nil {
		t.Fatal(err)
	}
	<-crashed
	select {
	case err := <-errs:
		t.Fatalf("an entry of the torn batch was acknowledged: %v", err)
	default:
	}
	// What the disk holds at the crash.
	crashDir := t.TempDir()
	crashBase := filepath.Join(crashDir, "audit.log")
	segs, _ := Segments(base)
	for _, p := range segs {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(crashDir, filepath.Base(p)), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	close(dead) // let the original process's goroutines end
	for i := 0; i < queued; i++ {
		if err := <-errs; err == nil {
			t.Fatal("entry of a failed write acknowledged")
		}
	}
	l.Close()

	crashSegs, _ := Segments(crashBase)
	if _, err := VerifyFile(crashSegs, &key.PublicKey); err == nil {
		t.Fatal("torn batch verified before recovery")
	}
	l2, err := Open(Options{Path: crashBase, Signer: key, CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	if err := l2.Append(testRecord(9)); err != nil {
		t.Fatal(err)
	}
	if err := l2.Close(); err != nil {
		t.Fatal(err)
	}
	crashSegs, _ = Segments(crashBase)
	rep, err := VerifyFile(crashSegs, &key.PublicKey)
	if err != nil || rep.Recoveries != 1 || rep.Decisions != 1+2+1 || rep.UnsealedTail != 0 {
		t.Fatalf("after recovery: %v %+v", err, rep)
	}
	var rec *auditEntry
	var ids []string
	for _, line := range readLines(t, crashSegs[0]) {
		e := entryOf(t, line)
		switch e.Type {
		case TypeRecovery:
			rec = &e
		case TypeDecision:
			ids = append(ids, e.RequestID)
		}
	}
	if rec == nil || rec.CutBytes != int64(len(torn)) || rec.CutSM3 != hex.EncodeToString(sm3Sum(torn)) {
		t.Fatalf("recovery entry %+v does not describe the %d torn bytes", rec, len(torn))
	}
	// The whole lines of the torn batch are two of the queued entries, in their chain order.
	if len(ids) != 4 || ids[0] != "req-0" || ids[3] != "req-9" || ids[1] == ids[2] {
		t.Fatalf("decisions %v", ids)
	}
}

// A failed write refuses its batch and every entry queued behind it; the chain goes on from the
// last line in the file, without a trace of the refused entries.
func TestAuditFailedBatchRefusesQueued(t *testing.T) {
	key := newSM2Key(t)
	base := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(Options{Path: base, Signer: key, CheckpointInterval: -1, Fsync: FsyncInterval})
	if err != nil {
		t.Fatal(err)
	}
	var behind chan error
	g := newGatedWriter(nil)
	g.second = func(f *os.File, b []byte) (int, error) {
		// While this batch is being written, one more entry queues behind it.
		behind = make(chan error, 1)
		go func() { behind <- l.Append(testRecord(7)) }()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
			l.mu.Lock()
			n := len(l.cur.buf)
			l.mu.Unlock()
			if n > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Error("no entry queued behind the failing write")
				break
			}
		}
		n, _ := f.Write(b[:len(b)/2])
		return n, errors.New("injected ENOSPC")
	}
	l.mu.Lock()
	l.writeFile = g.write
	l.mu.Unlock()
	const queued = 3
	errA, errs := queueBehind(t, l, g, queued)
	close(g.release)
	if err := <-errA; err != nil {
		t.Fatal(err)
	}
	for i := 0; i < queued; i++ {
		if err := <-errs; err == nil {
			t.Fatal("entry of a failed write acknowledged")
		}
	}
	if err := <-behind; err == nil {
		t.Fatal("entry chained to a failed write acknowledged")
	}
	r := testRecord(8)
	r.RequestID = "after"
	if err := l.Append(r); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	segs, _ := Segments(base)
	rep, err := VerifyFile(segs, &key.PublicKey)
	if err != nil || rep.Decisions != 2 || rep.Recoveries != 0 {
		t.Fatalf("%v %+v", err, rep)
	}
	for _, line := range readLines(t, segs[0]) {
		if e := entryOf(t, line); e.Type == TypeDecision && e.RequestID != "req-0" && e.RequestID != "after" {
			t.Fatalf("refused entry %q in the file", e.RequestID)
		}
	}
}

// Appends racing Close under FsyncAlways end in nil (the entry is in the file, synced by Close or
// by its own batch) or ErrClosed, never in an fsync error on the file Close just closed.
func TestAuditCloseDuringAppends(t *testing.T) {
	key := newSM2Key(t)
	for round := 0; round < 20; round++ {
		base := filepath.Join(t.TempDir(), "audit.log")
		l, err := Open(Options{Path: base, Signer: key, CheckpointInterval: -1, Fsync: FsyncAlways})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		var acked int
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					err := l.Append(testRecord(i))
					if errors.Is(err, ErrClosed) {
						return
					}
					if err != nil {
						t.Errorf("append racing Close: %v", err)
						return
					}
					mu.Lock()
					acked++
					mu.Unlock()
				}
			}()
		}
		time.Sleep(time.Duration(round%5) * time.Millisecond)
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		segs, _ := Segments(base)
		rep, err := VerifyFile(segs, &key.PublicKey)
		if err != nil || rep.Decisions < acked {
			t.Fatalf("%v: %d decisions in the file, %d acknowledged", err, rep.Decisions, acked)
		}
	}
}
