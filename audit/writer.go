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
type Log struct {
	opts Options

	mu        sync.Mutex
	f         *os.File
	gen       uint64 // incremented when the file changes
	size      int64
	segment   int
	logID     string
	seq       uint64 // seq of the last written line
	prev      string // hash of the last written line
	sinceCkpt int    // lines since the last checkpoint
	closed    bool
	broken    error

	syncMu    sync.Mutex
	syncedGen uint64
	synced    int64

	stop chan struct{}
	done chan struct{}

	headMu   sync.Mutex
	head     *SignedHead   // newest checkpoint not yet published
	headSig  chan struct{} // signals head
	witDone  chan struct{}
	syncFile func(*os.File) error // f.Sync; replaced by tests to inject failures
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
		headSig: make(chan struct{}, 1), witDone: make(chan struct{}), syncFile: (*os.File).Sync}
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
	if len(cut) > 0 {
		// The crash is part of the record: what was cut, and its digest.
		d := sm3.Sum(cut)
		if err := l.writeLocked(&auditEntry{Type: TypeRecovery, CutBytes: int64(len(cut)),
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
	if err := l.writeLocked(&auditEntry{Type: TypeSegment, LogID: l.logID, Segment: n}); err != nil {
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

// writeLocked assigns seq/prev/time, writes one line and advances the chain.
// On failure it rolls the file back, or marks the log broken.
func (l *Log) writeLocked(e *auditEntry) error {
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
		defer func() {
			if l.opts.Witness != nil && l.seq == e.Seq { // written
				l.headMu.Lock()
				l.head = &SignedHead{LogID: l.logID, Seq: e.Seq, Segment: l.segment, Time: e.Time, Head: e.Head, Sig: e.Sig}
				l.headMu.Unlock()
				select {
				case l.headSig <- struct{}{}:
				default:
				}
			}
		}()
	}
	line, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if len(line) > MaxLineLen {
		return errors.New("audit: entry too long")
	}
	line = append(line, '\n')
	n, err := l.f.Write(line)
	if err != nil {
		if n > 0 {
			if terr := l.f.Truncate(l.size); terr != nil {
				l.broken = fmt.Errorf("%w: %w", ErrBroken, err)
				return l.broken
			}
		}
		return fmt.Errorf("audit: write: %w", err)
	}
	l.size += int64(n)
	l.seq = e.Seq
	l.prev = lineHash(line[:len(line)-1])
	if e.Type == TypeCheckpoint {
		l.sinceCkpt = 0
	} else {
		l.sinceCkpt++
	}
	return nil
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
	if !r.Time.IsZero() {
		e.Time = r.Time.UTC().Format(time.RFC3339Nano)
	}
	if len(r.SignedSM3) > 0 {
		e.SignedSM3 = hex.EncodeToString(r.SignedSM3[:min(len(r.SignedSM3), 64)])
	}
	if len(r.Signature) > 0 {
		e.Signature = base64.StdEncoding.EncodeToString(r.Signature[:min(len(r.Signature), MaxSignatureLen)])
	}

	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	if err := l.writeLocked(e); err != nil {
		l.mu.Unlock()
		return err
	}
	gen, off, f := l.gen, l.size, l.f
	var ckErr error
	if l.sinceCkpt >= l.opts.CheckpointEvery {
		ckErr = l.writeLocked(&auditEntry{Type: TypeCheckpoint})
	}
	var rotErr error
	if l.size >= l.opts.MaxSegmentSize {
		rotErr = l.rotateLocked()
	}
	l.mu.Unlock()
	if ckErr != nil {
		l.report(ckErr)
	}
	if rotErr != nil {
		l.report(rotErr)
	}
	if l.opts.Fsync == FsyncAlways {
		return l.syncTo(f, gen, off)
	}
	return nil
}

// rotateLocked seals the current segment with a checkpoint, syncs and closes
// it, and starts the next segment linked to its last line.
func (l *Log) rotateLocked() error {
	if err := l.writeLocked(&auditEntry{Type: TypeRotate, NextSegment: l.segment + 1}); err != nil {
		return err
	}
	if err := l.writeLocked(&auditEntry{Type: TypeCheckpoint}); err != nil {
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
	err := l.writeLocked(&auditEntry{Type: TypeCheckpoint})
	gen, off, f := l.gen, l.size, l.f
	l.mu.Unlock()
	if err != nil {
		return err
	}
	if l.opts.Fsync == FsyncAlways {
		return l.syncTo(f, gen, off)
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
	var errs []error
	if l.sinceCkpt > 0 {
		errs = append(errs, l.writeLocked(&auditEntry{Type: TypeCheckpoint}))
	}
	errs = append(errs, l.f.Sync(), l.f.Close())
	l.closed = true
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
// of the last line).
func (l *Log) Head() (segment int, seq uint64, head string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.segment, l.seq, l.prev
}
