package audit

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm3"
)

// FsyncPolicy says when the audit file is flushed to stable storage.
type FsyncPolicy int

// Fsync policies.
const (
	// FsyncAlways syncs before Append returns (concurrent appends share one
	// fsync: group commit). An entry for which Append returned nil survives a
	// power loss.
	FsyncAlways FsyncPolicy = iota
	// FsyncInterval syncs every FsyncInterval and on rotation/close. An entry
	// for which Append returned nil survives a process crash (it is in the
	// kernel), not necessarily a power loss within the interval.
	FsyncInterval
	// FsyncNever leaves flushing to the operating system (still synced on
	// rotation and Close).
	FsyncNever
)

// Options configures Open.
type Options struct {
	// Path is the base name; segments are written as Path.000001, Path.000002, ...
	Path string
	// Signer is the platform SM2 key signing checkpoints. Its Sign method is
	// called with the raw message and sm2.DefaultSM2SignerOpts (SM3 with Z_A,
	// default user ID), and must return an ASN.1 DER signature, as gmsm's
	// *sm2.PrivateKey does. Required.
	Signer crypto.Signer
	// CheckpointEvery writes a checkpoint after this many entries (default 1000).
	CheckpointEvery int
	// CheckpointInterval writes a checkpoint this often when entries were
	// added since the last one (default 1m; negative disables the timer).
	CheckpointInterval time.Duration
	// MaxSegmentSize rotates to a new segment when the current one reaches
	// this size in bytes (default 64 MiB).
	MaxSegmentSize int64
	// Fsync is the flush policy (default FsyncAlways).
	Fsync FsyncPolicy
	// FsyncInterval is the period for FsyncInterval (default 1s).
	FsyncInterval time.Duration
	// FileMode for new segments (default 0600).
	FileMode os.FileMode
	// Now is the clock (default time.Now).
	Now func() time.Time
	// OnError receives background failures (timer checkpoints, interval
	// fsync, checkpoint signing, witness publication), for logs and metrics.
	OnError func(error)
	// Witness, when set, receives every checkpoint as a SignedHead (in the
	// background, the newest first; the final one on Close), so that a tail cut
	// back on this host shows against a record the host cannot rewrite.
	Witness Witness
}

// Log is an append-only, hash-chained, checkpointed audit log. It is safe
// for concurrent use.
//
// Entries are chained in the order Append takes the lock, queued in a batch, and written to the
// file one batch per write (group commit): while one appender writes a batch, the entries of the
// appenders arriving meanwhile collect in the next batch, which the first of them writes when the
// write in progress returns. Batches reach the file in chain order; Append returns only once its
// batch is in the file (and, under FsyncAlways, on stable storage: one fsync covers every batch
// written before it). A failed write refuses its batch and every entry queued behind it (they are
// chained to it), and the chain goes on from the last line in the file.
type Log struct {
	opts Options

	mu         sync.Mutex
	written    *sync.Cond // on mu: a batch was written or refused
	f          *os.File
	gen        uint64 // incremented when the file changes
	size       int64  // bytes in f (written batches)
	segment    int
	logID      string
	seq        uint64 // seq of the last queued line
	prev       string // hash of the last queued line
	sinceCkpt  int    // lines since the last checkpoint (queued)
	wseq       uint64 // seq of the last line in the file
	wprev      string // hash of the last line in the file
	wSinceCkpt int    // sinceCkpt as of the last line in the file
	cur        *batch // lines queued behind the write in progress
	writing    bool   // a batch is being written (outside mu)
	spare      []byte // buffer of the last written batch, for the next one
	closed     bool
	broken     error

	syncMu    sync.Mutex
	syncedGen uint64
	synced    int64

	stop chan struct{}
	done chan struct{}

	headMu    sync.Mutex
	head      *SignedHead   // newest checkpoint not yet published
	headSig   chan struct{} // signals head
	witDone   chan struct{}
	syncFile  func(*os.File) error                // f.Sync; replaced by tests to inject failures
	writeFile func(*os.File, []byte) (int, error) // f.Write; replaced by tests
}

// batch is a run of encoded lines written with one write.
type batch struct {
	buf       []byte
	lastSeq   uint64
	lastHash  string
	sinceCkpt int
	head      *SignedHead // newest checkpoint in the batch
	done      bool        // written (err nil) or refused
	err       error
	syncErr   error // FsyncAlways: the fsync that followed the write failed
	// where it landed, for the fsync of FsyncAlways
	f   *os.File
	gen uint64
	end int64
}

// Segments returns the existing segment files of base in order.
func Segments(base string) ([]string, error) {
	matches, err := filepath.Glob(globEscape(base) + ".[0-9][0-9][0-9][0-9][0-9][0-9]")
	if err != nil {
		return nil, err
	}
	type seg struct {
		n int
		p string
	}
	var segs []seg
	for _, m := range matches {
		n, err := strconv.Atoi(m[len(m)-6:])
		if err != nil || n < 1 {
			continue
		}
		segs = append(segs, seg{n, m})
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i].n < segs[j].n })
	out := make([]string, len(segs))
	for i, s := range segs {
		out[i] = s.p
	}
	return out, nil
}

func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

func segmentPath(base string, n int) string { return fmt.Sprintf("%s.%06d", base, n) }

// Open opens (or creates) the log at opts.Path. When segments exist,
// it continues the chain of the last one; an incomplete last line (a write
// that never returned success) is cut off first.
func Open(opts Options) (*Log, error) {
	if opts.Path == "" {
		return nil, errors.New("audit: log path required")
	}
	if opts.Signer == nil {
		return nil, errors.New("audit: log checkpoint signer required")
	}
	if !sm2.IsSM2PublicKey(opts.Signer.Public()) {
		return nil, errors.New("audit: checkpoint signer is not an SM2 key")
	}
	if opts.CheckpointEvery <= 0 {
		opts.CheckpointEvery = DefaultCheckpointEvery
	}
	if opts.CheckpointInterval == 0 {
		opts.CheckpointInterval = DefaultCheckpointInterval
	}
	if opts.MaxSegmentSize <= 0 {
		opts.MaxSegmentSize = DefaultMaxSegmentSize
	}
	if opts.FsyncInterval <= 0 {
		opts.FsyncInterval = DefaultFsyncInterval
	}
	if opts.FileMode == 0 {
		opts.FileMode = 0o600
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	l := &Log{opts: opts, stop: make(chan struct{}), done: make(chan struct{}),
		headSig: make(chan struct{}, 1), witDone: make(chan struct{}), syncFile: (*os.File).Sync,
		writeFile: (*os.File).Write, cur: &batch{}}
	l.written = sync.NewCond(&l.mu)
	segs, err := Segments(opts.Path)
	if err != nil {
		return nil, err
	}
	if len(segs) == 0 {
		var id [16]byte
		if _, err := rand.Read(id[:]); err != nil {
			return nil, err
		}
		l.logID = hex.EncodeToString(id[:])
		l.prev = auditGenesis(l.logID)
		l.wprev = l.prev
		if err := l.startSegment(1); err != nil {
			return nil, err
		}
	} else if err := l.resume(segs[len(segs)-1]); err != nil {
		return nil, err
	}
	go l.background()
	go l.publishHeads()
	return l, nil
}

// publishHeads sends the newest checkpoint to the witness until Close.
func (l *Log) publishHeads() {
	defer close(l.witDone)
	for {
		select {
		case <-l.stop:
			return
		case <-l.headSig:
			l.publishPending()
		}
	}
}

func (l *Log) publishPending() {
	l.headMu.Lock()
	h := l.head
	l.head = nil
	l.headMu.Unlock()
	if h == nil || l.opts.Witness == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.opts.Witness.Publish(ctx, *h); err != nil {
		l.report(fmt.Errorf("audit: witness: %w", err))
	}
}

// resume reopens the last segment and restores the chain state.
func (l *Log) resume(path string) error {
	n, err := strconv.Atoi(path[len(path)-6:])
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	fail := func(err error) error { f.Close(); return err }
	st, err := f.Stat()
	if err != nil {
		return fail(err)
	}
	size := st.Size()
	// First line: the segment header.
	head := make([]byte, min(size, MaxLineLen+1))
	if _, err := f.ReadAt(head, 0); err != nil && err != io.EOF {
		return fail(err)
	}
	i := bytes.IndexByte(head, '\n')
	if i < 0 {
		return fail(fmt.Errorf("audit: segment %s has no complete header; move it away", path))
	}
	var hdr auditEntry
	if err := json.Unmarshal(head[:i], &hdr); err != nil || hdr.Type != TypeSegment || hdr.LogID == "" {
		return fail(fmt.Errorf("audit: segment %s has a bad header", path))
	}
	// Last complete line.
	tailLen := min(size, 2*MaxLineLen+2)
	tail := make([]byte, tailLen)
	if _, err := f.ReadAt(tail, size-tailLen); err != nil && err != io.EOF {
		return fail(err)
	}
	end := bytes.LastIndexByte(tail, '\n')
	if end < 0 {
		return fail(fmt.Errorf("audit: segment %s: last line too long", path))
	}
	var cut []byte
	if int64(end+1) != tailLen { // incomplete last line: never acknowledged
		cut = append([]byte(nil), tail[end+1:]...)
		if err := f.Truncate(size - tailLen + int64(end+1)); err != nil {
			return fail(err)
		}
		size = size - tailLen + int64(end+1)
	}
	start := bytes.LastIndexByte(tail[:end], '\n') + 1
	last := tail[start:end]
	var le auditEntry
	if err := json.Unmarshal(last, &le); err != nil {
		return fail(fmt.Errorf("audit: segment %s: last line unreadable", path))
	}
	l.f, l.size, l.segment, l.logID = f, size, n, hdr.LogID
	l.seq, l.prev = le.Seq, lineHash(last)
	l.gen++
	l.sinceCkpt = 1 // force a checkpoint covering whatever is unsealed
	if le.Type == TypeCheckpoint {
		l.sinceCkpt = 0
	}
	l.wseq, l.wprev, l.wSinceCkpt = l.seq, l.prev, l.sinceCkpt
	if len(cut) > 0 {
		// The crash is part of the record: what was cut, and its digest.
		d := sm3.Sum(cut)
		if err := l.writeNowLocked(&auditEntry{Type: TypeRecovery, CutBytes: int64(len(cut)),
			CutSM3: hex.EncodeToString(d[:])}); err != nil {
			l.f = nil
			return fail(err)
		}
		if err := f.Sync(); err != nil {
			l.f = nil
			return fail(err)
		}
	}
	return nil
}

// startSegment creates segment n and writes its header (linked to l.prev).
// On failure the previous file and state are kept and the new file removed.
// Caller holds l.mu (or is the constructor).
func (l *Log) startSegment(n int) error {
	path := segmentPath(l.opts.Path, n)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, l.opts.FileMode)
	if err != nil {
		return err
	}
	oldF, oldSize, oldSeg := l.f, l.size, l.segment
	l.f, l.size, l.segment = f, 0, n
	l.gen++
	if err := l.writeNowLocked(&auditEntry{Type: TypeSegment, LogID: l.logID, Segment: n}); err != nil {
		f.Close()
		os.Remove(path)
		l.f, l.size, l.segment = oldF, oldSize, oldSeg
		l.gen++
		if errors.Is(err, ErrBroken) && oldF != nil {
			l.broken = nil // the failed file is gone; the old one is intact
		}
		return err
	}
	if dir, err := os.Open(filepath.Dir(path)); err == nil {
		_ = dir.Sync() // make the new file name durable
		dir.Close()
	}
	return nil
}

// queueLocked assigns seq/prev/time to e (signing it when it is a checkpoint), encodes it and
// queues it in the current batch. Caller holds l.mu.
func (l *Log) queueLocked(e *auditEntry) error {
	if l.broken != nil {
		return l.broken
	}
	e.Seq = l.seq + 1
	e.Prev = l.prev
	if e.Time == "" {
		e.Time = l.opts.Now().UTC().Format(time.RFC3339Nano)
	}
	if e.Type == TypeCheckpoint {
		e.Head = l.prev
		sig, err := l.opts.Signer.Sign(rand.Reader, checkpointMessage(l.logID, e.Seq, l.segment, e.Time, e.Head), sm2.DefaultSM2SignerOpts)
		if err != nil {
			return fmt.Errorf("audit: checkpoint signing: %w", err)
		}
		e.Sig = base64.StdEncoding.EncodeToString(sig)
	}
	line, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if len(line) > MaxLineLen {
		return errors.New("audit: entry too long")
	}
	b := l.cur
	start := len(b.buf)
	b.buf = append(b.buf, line...)
	l.queuedLocked(b, start, e.Type)
	if e.Type == TypeCheckpoint && l.opts.Witness != nil {
		b.head = &SignedHead{LogID: l.logID, Seq: e.Seq, Segment: l.segment, Time: e.Time, Head: e.Head, Sig: e.Sig}
	}
	return nil
}

// Encoding of a decision with Seq 0 and Prev "": the part between is encoded before taking the
// lock, and the line is completed with the seq and prev the chain gives it (both need no JSON
// escaping, so the line is byte for byte what json.Marshal gives for the whole entry).
const (
	tmplPrefix = `{"seq":0`
	tmplSuffix = `"prev":""}`
)

// encodeDecision encodes e (Seq and Prev unset) for queueDecisionLocked.
func encodeDecision(e *auditEntry) ([]byte, error) {
	t, err := json.Marshal(e)
	if err != nil {
		return nil, err
	}
	if !bytes.HasPrefix(t, []byte(tmplPrefix)) || !bytes.HasSuffix(t, []byte(tmplSuffix)) {
		return nil, errors.New("audit: unexpected entry encoding")
	}
	mid := t[len(tmplPrefix) : len(t)-len(tmplSuffix)]
	// seq (at most 20 digits) and prev (64 hex digits) complete the line.
	if len(`{"seq":`)+20+len(mid)+len(`"prev":"`)+2*sm3.Size+len(`"}`) > MaxLineLen {
		return nil, errors.New("audit: entry too long")
	}
	return mid, nil
}

// queueDecisionLocked queues the decision encoded by encodeDecision. Caller holds l.mu.
func (l *Log) queueDecisionLocked(mid []byte) error {
	if l.broken != nil {
		return l.broken
	}
	b := l.cur
	start := len(b.buf)
	b.buf = append(b.buf, `{"seq":`...)
	b.buf = strconv.AppendUint(b.buf, l.seq+1, 10)
	b.buf = append(b.buf, mid...)
	b.buf = append(b.buf, `"prev":"`...)
	b.buf = append(b.buf, l.prev...)
	b.buf = append(b.buf, `"}`...)
	l.queuedLocked(b, start, TypeDecision)
	return nil
}

// queuedLocked advances the chain over the line b.buf[start:] and ends it.
func (l *Log) queuedLocked(b *batch, start int, typ string) {
	l.seq++
	l.prev = lineHash(b.buf[start:])
	b.buf = append(b.buf, '\n')
	if typ == TypeCheckpoint {
		l.sinceCkpt = 0
	} else {
		l.sinceCkpt++
	}
	b.lastSeq, b.lastHash, b.sinceCkpt = l.seq, l.prev, l.sinceCkpt
}

// waitWriterLocked waits until no batch is being written. Caller holds l.mu; it is released
// while waiting.
func (l *Log) waitWriterLocked() {
	for l.writing {
		l.written.Wait()
	}
}

// writeBatchLocked writes the current batch. Caller holds l.mu and no write is in progress;
// with unlock, l.mu is released during the write (appenders queue the next batch meanwhile),
// else held (rotation, segment start, Close: nothing may come between).
func (l *Log) writeBatchLocked(unlock bool) *batch {
	b := l.cur
	l.cur = &batch{buf: l.spare[:0]}
	l.spare = nil
	f := l.f
	var n int
	var err error
	if unlock {
		l.writing = true
		gen, end := l.gen, l.size+int64(len(b.buf))
		l.mu.Unlock()
		n, err = l.writeFile(f, b.buf)
		if err == nil && n == len(b.buf) && l.opts.Fsync == FsyncAlways {
			// Group commit: the appenders arriving during this fsync queue the next batch,
			// which gets one write and one fsync in turn.
			b.syncErr = l.syncWritten(f, gen, end)
		}
		l.mu.Lock()
		l.writing = false
	} else {
		n, err = l.writeFile(f, b.buf)
	}
	if err == nil && n != len(b.buf) {
		err = io.ErrShortWrite
	}
	if err != nil {
		err = fmt.Errorf("audit: write: %w", err)
		if n > 0 {
			if terr := f.Truncate(l.size); terr != nil {
				l.broken = fmt.Errorf("%w: %w", ErrBroken, err)
				err = l.broken
			}
		}
		// The lines queued behind this batch are chained to it: refused with it. The chain
		// goes on from the last line in the file.
		l.seq, l.prev, l.sinceCkpt = l.wseq, l.wprev, l.wSinceCkpt
		next := l.cur
		next.done, next.err = true, err
		l.cur = &batch{buf: next.buf[:0]}
		next.buf = nil
	} else {
		l.size += int64(n)
		l.wseq, l.wprev, l.wSinceCkpt = b.lastSeq, b.lastHash, b.sinceCkpt
		b.f, b.gen, b.end = f, l.gen, l.size
		if b.head != nil {
			l.headMu.Lock()
			l.head = b.head
			l.headMu.Unlock()
			select {
			case l.headSig <- struct{}{}:
			default:
			}
		}
	}
	b.done, b.err = true, err
	if cap(b.buf) <= 1<<20 {
		l.spare = b.buf[:0]
	}
	b.buf = nil
	l.written.Broadcast()
	return b
}

// commitLocked returns once b is written or refused: it waits for the write in progress and
// writes the next batch itself when nobody else does. Caller holds l.mu.
func (l *Log) commitLocked(b *batch) error {
	for !b.done {
		if l.writing {
			l.written.Wait()
		} else {
			l.writeBatchLocked(true)
		}
	}
	return b.err
}

// flushLocked writes what is queued, holding l.mu. Caller holds l.mu and has waited for the
// writer (waitWriterLocked) since it last released l.mu.
func (l *Log) flushLocked() error {
	if len(l.cur.buf) == 0 {
		return nil
	}
	return l.writeBatchLocked(false).err
}

// writeNowLocked queues e and writes it (with whatever is queued) before returning, holding
// l.mu throughout. Caller holds l.mu and no write is in progress.
func (l *Log) writeNowLocked(e *auditEntry) error {
	if err := l.queueLocked(e); err != nil {
		return err
	}
	return l.flushLocked()
}

// Append records one decision. When it returns nil the entry is in the file
// (and on stable storage under FsyncAlways).
func (l *Log) Append(r Record) error {
	e := &auditEntry{
		Type:       TypeDecision,
		Direction:  Direction(clip(string(r.Direction))),
		Scheme:     clip(r.Scheme),
		KeyID:      clip(r.KeyID),
		CertSerial: clip(r.CertSerial),
		Verdict:    Verdict(clip(string(r.Verdict))),
		Reason:     clip(r.Reason),
		RequestID:  clip(r.RequestID),
	}
	if r.Time.IsZero() {
		r.Time = l.opts.Now()
	}
	e.Time = r.Time.UTC().Format(time.RFC3339Nano)
	if len(r.SignedSM3) > 0 {
		e.SignedSM3 = hex.EncodeToString(r.SignedSM3[:min(len(r.SignedSM3), 64)])
	}
	if len(r.Signature) > 0 {
		e.Signature = base64.StdEncoding.EncodeToString(r.Signature[:min(len(r.Signature), MaxSignatureLen)])
	}
	mid, err := encodeDecision(e)
	if err != nil {
		return err
	}

	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	if err := l.queueDecisionLocked(mid); err != nil {
		l.mu.Unlock()
		return err
	}
	b := l.cur
	var ckErr, rotErr error
	if l.sinceCkpt >= l.opts.CheckpointEvery {
		ckErr = l.queueLocked(&auditEntry{Type: TypeCheckpoint})
	}
	if l.size+int64(len(l.cur.buf)) >= l.opts.MaxSegmentSize {
		rotErr = l.rotateLocked()
	}
	err = l.commitLocked(b)
	l.mu.Unlock()
	if ckErr != nil {
		l.report(ckErr)
	}
	if rotErr != nil {
		l.report(rotErr)
	}
	if err != nil {
		return err
	}
	if l.opts.Fsync == FsyncAlways {
		if b.syncErr != nil {
			return b.syncErr
		}
		return l.syncTo(b.f, b.gen, b.end)
	}
	return nil
}

// rotateLocked seals the current segment with a checkpoint, syncs and closes
// it, and starts the next segment linked to its last line. It writes what is
// queued first, holding l.mu throughout.
func (l *Log) rotateLocked() error {
	l.waitWriterLocked()
	if l.size+int64(len(l.cur.buf)) < l.opts.MaxSegmentSize {
		return nil // another appender rotated while this one waited
	}
	if err := l.queueLocked(&auditEntry{Type: TypeRotate, NextSegment: l.segment + 1}); err != nil {
		return err
	}
	if err := l.queueLocked(&auditEntry{Type: TypeCheckpoint}); err != nil {
		return err
	}
	if err := l.flushLocked(); err != nil {
		return err
	}
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("audit: sync before rotation: %w", err)
	}
	old := l.f
	if err := l.startSegment(l.segment + 1); err != nil {
		return fmt.Errorf("audit: rotation: %w", err) // keep writing to the old segment
	}
	old.Close()
	return nil
}

// syncTo makes sure everything up to off in generation gen is on disk,
// sharing one fsync between concurrent callers.
func (l *Log) syncTo(f *os.File, gen uint64, off int64) error {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	if l.syncedGen > gen || (l.syncedGen == gen && l.synced >= off) {
		return nil
	}
	l.mu.Lock()
	curGen, curSize := l.gen, l.size
	l.mu.Unlock()
	if curGen != gen {
		return nil // rotation synced the old file before leaving it
	}
	if err := l.syncFile(f); err != nil {
		l.mu.Lock()
		rotated := l.gen != gen
		l.mu.Unlock()
		if rotated {
			return nil
		}
		return fmt.Errorf("audit: fsync: %w", err)
	}
	l.syncedGen, l.synced = gen, curSize
	return nil
}

// syncWritten syncs f, whose generation gen holds end bytes, right after the write of a batch
// (FsyncAlways), outside l.mu.
func (l *Log) syncWritten(f *os.File, gen uint64, end int64) error {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	if l.syncedGen > gen || (l.syncedGen == gen && l.synced >= end) {
		return nil
	}
	if err := l.syncFile(f); err != nil {
		return fmt.Errorf("audit: fsync: %w", err)
	}
	l.syncedGen, l.synced = gen, end
	return nil
}

// Checkpoint writes a signed checkpoint now if entries were added since the
// last one.
func (l *Log) Checkpoint() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	if l.sinceCkpt == 0 {
		l.mu.Unlock()
		return nil
	}
	if err := l.queueLocked(&auditEntry{Type: TypeCheckpoint}); err != nil {
		l.mu.Unlock()
		return err
	}
	b := l.cur
	err := l.commitLocked(b)
	l.mu.Unlock()
	if err != nil {
		return err
	}
	if l.opts.Fsync == FsyncAlways {
		if b.syncErr != nil {
			return b.syncErr
		}
		return l.syncTo(b.f, b.gen, b.end)
	}
	return nil
}

func (l *Log) report(err error) {
	if l.opts.OnError != nil && err != nil {
		l.opts.OnError(err)
	}
}

func (l *Log) background() {
	defer close(l.done)
	var ckC, syncC <-chan time.Time
	if l.opts.CheckpointInterval > 0 {
		t := time.NewTicker(l.opts.CheckpointInterval)
		defer t.Stop()
		ckC = t.C
	}
	if l.opts.Fsync == FsyncInterval {
		t := time.NewTicker(l.opts.FsyncInterval)
		defer t.Stop()
		syncC = t.C
	}
	for {
		select {
		case <-l.stop:
			return
		case <-ckC:
			if err := l.Checkpoint(); err != nil && !errors.Is(err, ErrClosed) {
				l.report(err)
			}
		case <-syncC:
			// fsync outside l.mu: appends go on while the disk catches up (holding the lock
			// stalled every request for the length of the fsync).
			l.mu.Lock()
			closed, f, gen, size := l.closed, l.f, l.gen, l.size
			l.mu.Unlock()
			if closed {
				continue
			}
			if err := l.syncTo(f, gen, size); err != nil {
				l.mu.Lock()
				closed = l.closed
				l.mu.Unlock()
				if !closed {
					l.report(err)
				}
			}
		}
	}
}

// Close writes a final checkpoint (so the file ends sealed), syncs and closes
// the segment.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.waitWriterLocked()
	var errs []error
	if l.sinceCkpt > 0 {
		errs = append(errs, l.queueLocked(&auditEntry{Type: TypeCheckpoint}))
	}
	ferr := l.flushLocked()
	serr := l.f.Sync()
	if ferr == nil && serr == nil {
		l.gen++ // synced: appenders still on their way to syncTo need no fsync of the closed file
	}
	errs = append(errs, ferr, serr, l.f.Close())
	l.mu.Unlock()
	close(l.stop)
	<-l.done
	<-l.witDone
	l.publishPending() // the final head, synchronously
	return errors.Join(errs...)
}

// SetSigner hands the checkpoint signing to another handle of the same key: when a
// configuration reload passes the open log on to the new configuration, whose key vault now
// holds the key. A different public key is refused: the chain's checkpoints are verified with
// one certificate, so switching keys means closing this log and opening a new one.
func (l *Log) SetSigner(s crypto.Signer) error {
	if s == nil {
		return errors.New("audit: log checkpoint signer required")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	old, ok1 := l.opts.Signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok1 || !old.Equal(s.Public()) {
		return errors.New("audit: log checkpoints are signed with another key")
	}
	l.opts.Signer = s
	return nil
}

// Head returns the current segment number, last seq and chain head (hex SM3
// of the last line in the file).
func (l *Log) Head() (segment int, seq uint64, head string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.segment, l.wseq, l.wprev
}
