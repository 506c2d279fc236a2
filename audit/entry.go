package audit

import (
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"

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
