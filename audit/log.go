package audit

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
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

// Audit log format version tag, bound into the genesis value and every
// checkpoint signature.
const auditVersion = "gmgate-audit-v1"

// Bounds and defaults of the audit log.
const (
	// MaxLineLen bounds one JSON line (longer lines are a verify failure).
	MaxLineLen = 16 << 10
	// MaxFieldLen bounds each text field of an entry; longer values are
	// truncated (and marked with a trailing "...") when written.
	MaxFieldLen = 512
	// MaxSignatureLen bounds the signature bytes recorded per entry.
	MaxSignatureLen = 2048
	// DefaultCheckpointEvery is the default number of entries between checkpoints.
	DefaultCheckpointEvery = 1000
	// DefaultCheckpointInterval is the default time between checkpoints.
	DefaultCheckpointInterval = time.Minute
	// DefaultMaxSegmentSize is the default rotation size.
	DefaultMaxSegmentSize = 64 << 20
	// DefaultFsyncInterval is the fsync period under FsyncInterval.
	DefaultFsyncInterval = time.Second
)

// Audit entry types (field "type").
const (
	TypeSegment    = "segment"
	TypeDecision   = "decision"
	TypeCheckpoint = "checkpoint"
	// TypeRecovery records, on restart, the bytes of a torn last line that were cut
	// (cut_bytes, cut_sm3): a crash leaves a trace instead of vanishing.
	TypeRecovery = "recovery"
	// TypeRotate ends a segment: the next one (next_segment) must follow. A checkpoint
	// seals it, so a log whose newest segments were deleted ends in a signed promise of more.
	TypeRotate = "rotate"
)

// Errors of the audit log.
var (
	// ErrClosed is returned by Append after Close.
	ErrClosed = errors.New("audit: log closed")
	// ErrBroken is returned when an earlier write failed and could not be
	// rolled back; the log refuses further entries rather than corrupt the chain.
	ErrBroken = errors.New("audit: log unusable after write failure")
	// ErrVerify is the root of every verification failure.
	ErrVerify = errors.New("audit: log verification failed")
)

// Direction tells whether a decision concerns a request received from a
// client (inbound) or a message exchanged with a bank channel (outbound).
type Direction string

// Directions.
const (
	DirectionInbound  Direction = "inbound"
	DirectionOutbound Direction = "outbound"
)

// Verdict is the outcome of a decision.
type Verdict string

// Verdicts.
const (
	VerdictAccept Verdict = "accept"
	VerdictReject Verdict = "reject"
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

// Record is one decision to record.
type Record struct {
	// Time of the decision (default: the log's clock).
	Time time.Time
	// Direction of the message.
	Direction Direction
	// Scheme is the signature scheme name (e.g. "wechatpay-v3-sm2").
	Scheme string
	// KeyID is the key ID claimed by the sender.
	KeyID string
	// CertSerial is the signing certificate serial (hex), if resolved.
	CertSerial string
	// SignedSM3 is the SM3 digest of the signed bytes (signing.SM3).
	SignedSM3 []byte
	// Signature is the signature as received or produced.
	Signature []byte
	// Verdict is accept or reject.
	Verdict Verdict
	// Reason is the reason code of the side that decided ("ok" for an accepted message; the
	// inbound codes of gateway, the outbound codes of channel).
	Reason string
	// RequestID correlates the entry with access logs.
	RequestID string
}

// Sink receives decisions: *Log, or a test double. gm_verify and gm_channel write through it.
type Sink interface {
	Append(Record) error
}

// ReasonOK is the Reason of an accepted message.
const ReasonOK = "ok"

// auditEntry is the JSON form of one line. Field order is the wire order.
type auditEntry struct {
	Seq  uint64 `json:"seq"`
	Type string `json:"type"`
	Time string `json:"time"`

	// segment header
	LogID   string `json:"log_id,omitempty"`
	Segment int    `json:"segment,omitempty"`

	// decision
	Direction  Direction `json:"direction,omitempty"`
	Scheme     string    `json:"scheme,omitempty"`
	KeyID      string    `json:"key_id,omitempty"`
	CertSerial string    `json:"cert_serial,omitempty"`
	SignedSM3  string    `json:"signed_sm3,omitempty"`
	Signature  string    `json:"signature,omitempty"`
	Verdict    Verdict   `json:"verdict,omitempty"`
	Reason     string    `json:"reason,omitempty"`
	RequestID  string    `json:"request_id,omitempty"`

	// checkpoint
	Head string `json:"head,omitempty"`
	Sig  string `json:"sig,omitempty"`

	// recovery
	CutBytes int64  `json:"cut_bytes,omitempty"`
	CutSM3   string `json:"cut_sm3,omitempty"`
	// rotate
	NextSegment int `json:"next_segment,omitempty"`

	Prev string `json:"prev"`
}

// auditGenesis is the prev value of the first entry of segment 1.
func auditGenesis(logID string) string {
	s := sm3.Sum([]byte(auditVersion + " genesis " + logID))
	return hex.EncodeToString(s[:])
}

// checkpointMessage is the byte string signed by a checkpoint.
func checkpointMessage(logID string, seq uint64, segment int, tm, head string) []byte {
	return []byte(auditVersion + " checkpoint\n" + logID + "\n" + strconv.FormatUint(seq, 10) + "\n" +
		strconv.Itoa(segment) + "\n" + tm + "\n" + head)
}

func lineHash(line []byte) string {
	s := sm3.Sum(line)
	return hex.EncodeToString(s[:])
}

// clip bounds a text field.
func clip(s string) string {
	if len(s) <= MaxFieldLen {
		return s
	}
	return strings.ToValidUTF8(s[:MaxFieldLen-3], "") + "..."
}

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

// FailureKind classifies the first problem VerifyFile found.
type FailureKind string

// Failure kinds.
const (
	FailMalformed        FailureKind = "malformed"         // not a valid entry line
	FailTruncated        FailureKind = "truncated"         // file ends inside a line
	FailEdited           FailureKind = "edited"            // entry content changed
	FailDeleted          FailureKind = "deleted"           // entries missing
	FailInserted         FailureKind = "inserted"          // extra entry
	FailReordered        FailureKind = "reordered"         // entries out of order
	FailForgedCheckpoint FailureKind = "forged_checkpoint" // checkpoint signature invalid
	FailSegment          FailureKind = "segment"           // bad segment header or sequence of files
)

// VerifyFailure locates the first problem.
type VerifyFailure struct {
	Path   string      `json:"path"`   // file
	Line   int         `json:"line"`   // 1-based line number in Path
	Seq    uint64      `json:"seq"`    // seq of the affected entry (the first missing one for FailDeleted)
	Kind   FailureKind `json:"kind"`   // what happened
	Detail string      `json:"detail"` // human-readable explanation
}

// VerifyReport summarizes a verification.
type VerifyReport struct {
	OK          bool   `json:"ok"`          // the chain is intact (see Problems for completeness)
	LogID       string `json:"log_id"`      // log identity from the segment headers
	Files       int    `json:"files"`       // files read
	Entries     int    `json:"entries"`     // lines verified before the failure (or all)
	Decisions   int    `json:"decisions"`   // decision entries among them
	Checkpoints int    `json:"checkpoints"` // valid checkpoints among them
	FirstSeq    uint64 `json:"first_seq"`   // seq range verified
	LastSeq     uint64 `json:"last_seq"`
	// LastCheckpointSeq is the seq of the last valid checkpoint (0 if none).
	LastCheckpointSeq uint64 `json:"last_checkpoint_seq"`
	// UnsealedTail counts entries after the last valid checkpoint: they are
	// chained but not yet covered by a signature, so their loss or a
	// consistent rewrite of them cannot be detected.
	UnsealedTail int `json:"unsealed_tail"`
	// StartsMidChain is true when the first file is not segment 1: its link to
	// earlier segments is taken on trust (anchored by the first checkpoint).
	// The oldest segments were archived or deleted.
	StartsMidChain bool `json:"starts_mid_chain"`
	// MissingNextSegment is the segment a sealed rotation entry promised but
	// that is not there (0: none): the newest segments were deleted.
	MissingNextSegment int `json:"missing_next_segment,omitempty"`
	// Recoveries counts recovery entries: restarts after a crash that cut a
	// torn last line (their cut_bytes and cut_sm3 say what was cut).
	Recoveries int `json:"recoveries"`
	// Witnessed is the newest signed head of the witness this log was checked
	// against (CheckWitness), if any.
	Witnessed *SignedHead `json:"witnessed,omitempty"`
	// checkpoints maps the seq of each valid checkpoint to the head it signs,
	// for CheckWitness.
	checkpoints map[uint64]string
	// Failure is the first problem, nil when OK.
	Failure *VerifyFailure `json:"failure,omitempty"`
}

type vline struct {
	path string
	no   int
	raw  []byte
	last bool // last line of its file
	e    auditEntry
	perr error
}

// VerifyFile checks the segments in paths (in chain order, e.g. from
// Segments) against the platform public key pub: the hash chain, the
// seq numbering, the segment links and every checkpoint signature. It returns
// a report and, when the log is not intact, an error wrapping ErrVerify
// that names the first edited, deleted, inserted or reordered entry. The files
// are read into memory.
func VerifyFile(paths []string, pub *ecdsa.PublicKey) (*VerifyReport, error) {
	rep := &VerifyReport{}
	if pub == nil || !sm2.IsSM2PublicKey(pub) {
		return rep, fmt.Errorf("%w: an SM2 public key is required", ErrVerify)
	}
	if len(paths) == 0 {
		return rep, fmt.Errorf("%w: no files", ErrVerify)
	}
	datas := make([][]byte, len(paths))
	for i, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return rep, fmt.Errorf("%w: %w", ErrVerify, err)
		}
		datas[i] = data
	}
	return verifyAudit(paths, datas, pub)
}

// verifyAudit verifies in-memory segments named paths.
func verifyAudit(paths []string, datas [][]byte, pub *ecdsa.PublicKey) (*VerifyReport, error) {
	rep := &VerifyReport{}
	var lines []vline
	for fi, p := range paths {
		data := datas[fi]
		rep.Files++
		no := 0
		for len(data) > 0 {
			no++
			i := bytes.IndexByte(data, '\n')
			v := vline{path: p, no: no}
			if i < 0 {
				v.raw, data = data, nil
				v.perr = io.ErrUnexpectedEOF
			} else {
				v.raw, data = data[:i], data[i+1:]
			}
			v.last = len(data) == 0
			if v.perr == nil {
				v.perr = parseAuditLine(v.raw, &v.e)
			}
			lines = append(lines, v)
		}
		if no == 0 {
			lines = append(lines, vline{path: p, no: 1, last: true, perr: io.ErrUnexpectedEOF})
		}
	}
	fail := func(v *vline, seq uint64, k FailureKind, format string, a ...any) (*VerifyReport, error) {
		rep.Failure = &VerifyFailure{Path: v.path, Line: v.no, Seq: seq, Kind: k, Detail: fmt.Sprintf(format, a...)}
		return rep, fmt.Errorf("%w: %s:%d (seq %d): %s: %s", ErrVerify, v.path, v.no, seq, k, rep.Failure.Detail)
	}

	var prevHash string
	var prevSeq uint64
	sinceCkpt := 0
	segment := 0
	pendingNext := 0
	rep.checkpoints = map[uint64]string{}
	for i := range lines {
		v := &lines[i]
		if v.perr != nil {
			if errors.Is(v.perr, io.ErrUnexpectedEOF) {
				return fail(v, prevSeq+1, FailTruncated, "file ends inside an entry (no newline)")
			}
			return fail(v, prevSeq+1, FailMalformed, "%v", v.perr)
		}
		e := &v.e
		h := lineHash(v.raw)
		first := i == 0
		if v.no == 1 { // each file starts with its segment header
			if e.Type != TypeSegment {
				if !first && e.Seq == prevSeq+1 {
					return fail(v, e.Seq, FailSegment, "file does not start with a segment header")
				}
			} else if first {
				rep.LogID = e.LogID
				if e.Segment == 1 {
					if e.Prev != auditGenesis(e.LogID) {
						return fail(v, e.Seq, FailEdited, "segment 1 does not start from the genesis value of its log ID")
					}
				} else {
					rep.StartsMidChain = true
				}
				prevHash, prevSeq = e.Prev, e.Seq-1
				rep.FirstSeq = e.Seq
			} else if e.LogID != rep.LogID {
				return fail(v, e.Seq, FailSegment, "log ID differs from the first file")
			} else if e.Segment != segment+1 && e.Seq == prevSeq+1 && e.Prev == prevHash {
				return fail(v, e.Seq, FailSegment, "segment %d follows segment %d", e.Segment, segment)
			}
		} else if e.Type == TypeSegment {
			return fail(v, e.Seq, FailInserted, "segment header inside a file")
		}
		if first && e.Type != TypeSegment {
			return fail(v, e.Seq, FailSegment, "first file does not start with a segment header")
		}

		if e.Seq != prevSeq+1 || e.Prev != prevHash {
			return classify(lines, i, prevSeq, prevHash, fail)
		}
		if e.Type != TypeCheckpoint {
			pendingNext = 0 // anything after a rotation but its seal: the log went on
		}
		switch e.Type {
		case TypeSegment:
			segment = e.Segment
		case TypeDecision:
			rep.Decisions++
		case TypeRecovery:
			rep.Recoveries++
		case TypeCheckpoint:
			sig, err := base64.StdEncoding.DecodeString(e.Sig)
			if err != nil || e.Head != e.Prev ||
				!sm2.VerifyASN1WithSM2(pub, nil, checkpointMessage(rep.LogID, e.Seq, segment, e.Time, e.Head), sig) {
				return fail(v, e.Seq, FailForgedCheckpoint, "checkpoint signature does not verify with the platform key")
			}
			rep.Checkpoints++
			rep.LastCheckpointSeq = e.Seq
			rep.checkpoints[e.Seq] = e.Head
			sinceCkpt = -1
		}
		if e.Type == TypeRotate {
			pendingNext = e.NextSegment
		}
		sinceCkpt++
		rep.Entries++
		rep.LastSeq = e.Seq
		prevSeq, prevHash = e.Seq, h
	}
	rep.UnsealedTail = sinceCkpt
	if pendingNext != 0 && rep.LastCheckpointSeq == rep.LastSeq {
		rep.MissingNextSegment = pendingNext
	}
	rep.OK = true
	return rep, nil
}

// parseAuditLine decodes one line strictly.
func parseAuditLine(raw []byte, e *auditEntry) error {
	if len(raw) > MaxLineLen {
		return errors.New("line too long")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(e); err != nil {
		return errors.New("not a valid audit entry")
	}
	if dec.More() {
		return errors.New("trailing data after entry")
	}
	switch e.Type {
	case TypeSegment, TypeDecision, TypeCheckpoint, TypeRecovery, TypeRotate:
	default:
		return errors.New("unknown entry type")
	}
	if len(e.Prev) != 2*sm3.Size {
		return errors.New("bad prev hash")
	}
	return nil
}

// classify explains a break of the chain at lines[i], given the last good
// seq and hash before it.
func classify(lines []vline, i int, prevSeq uint64, prevHash string,
	fail func(*vline, uint64, FailureKind, string, ...any) (*VerifyReport, error)) (*VerifyReport, error) {
	v := &lines[i]
	e := &v.e
	want := prevSeq + 1
	switch {
	case e.Seq > want:
		for j := i + 1; j < len(lines); j++ {
			if lines[j].perr == nil && lines[j].e.Seq == want {
				return fail(v, e.Seq, FailReordered, "entry seq %d appears before seq %d (found at %s:%d)", e.Seq, want, lines[j].path, lines[j].no)
			}
		}
		return fail(v, want, FailDeleted, "entries seq %d..%d are missing before this line", want, e.Seq-1)
	case e.Seq < want:
		if i > 0 && e.Seq+1 == want && i+1 < len(lines) && e.Prev == lines[i-1].e.Prev &&
			!bytes.Equal(lines[i-1].raw, v.raw) && lines[i+1].perr == nil &&
			lines[i+1].e.Prev == lineHash(v.raw) && lines[i+1].e.Seq == want {
			// Two lines claim the same place; the chain continues from this
			// one, so the previous line is the intruder.
			p := &lines[i-1]
			return fail(p, p.e.Seq, FailInserted, "entry is not part of the chain (another entry with seq %d follows it)", p.e.Seq)
		}
		if e.Seq < want-1 || i == 0 || e.Seq != lines[i-1].e.Seq {
			for j := 0; j < i; j++ {
				if lines[j].e.Seq == e.Seq && bytes.Equal(lines[j].raw, v.raw) {
					return fail(v, e.Seq, FailInserted, "duplicate of the entry at %s:%d", lines[j].path, lines[j].no)
				}
			}
			return fail(v, e.Seq, FailReordered, "entry seq %d appears after seq %d", e.Seq, prevSeq)
		}
		return fail(v, e.Seq, FailInserted, "second entry with seq %d", e.Seq)
	default: // right seq, wrong prev
		if i+1 < len(lines) && lines[i+1].perr == nil && lines[i+1].e.Seq == e.Seq && lines[i+1].e.Prev == prevHash {
			return fail(v, e.Seq, FailInserted, "entry is not part of the chain (the next entry has the same seq and links to the previous one)")
		}
		if i > 0 {
			p := &lines[i-1]
			return fail(p, p.e.Seq, FailEdited, "entry hash does not match the prev recorded by the next entry (%s:%d)", v.path, v.no)
		}
		return fail(v, e.Seq, FailEdited, "prev hash does not match")
	}
}
