package audit

import (
	"bytes"
	"crypto/ecdsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm3"
)

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
	// The writer numbers entries from 1 and names its log and segments (FuzzResumeSegment):
	// a header it could not have written is malformed, not the start of a log.
	if e.Seq == 0 {
		return errors.New("seq 0")
	}
	if e.Type == TypeSegment && (e.LogID == "" || e.Segment < 1) {
		return errors.New("segment header without log ID or segment number")
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
