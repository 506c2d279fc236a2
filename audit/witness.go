package audit

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/redis/go-redis/v9"
)

// SignedHead is a checkpoint of an audit log as published to a witness: the chain head at seq,
// signed with the platform key (the checkpoint's own signature). A witness that the gateway
// host cannot rewrite keeps the newest one; `gmgate audit verify --witness` then proves that no
// entry up to it was removed: a log whose last seq is lower, or whose checkpoint at that seq
// has another head, lost its tail or was rewritten.
type SignedHead struct {
	LogID   string `json:"log_id"`
	Seq     uint64 `json:"seq"`
	Segment int    `json:"segment"`
	Time    string `json:"time"`
	Head    string `json:"head"`
	Sig     string `json:"sig"`
}

// Verify checks the head's signature with the platform public key.
func (h SignedHead) Verify(pub *ecdsa.PublicKey) bool {
	sig, err := base64.StdEncoding.DecodeString(h.Sig)
	return err == nil && pub != nil &&
		sm2.VerifyASN1WithSM2(pub, nil, checkpointMessage(h.LogID, h.Seq, h.Segment, h.Time, h.Head), sig)
}

// Witness receives the signed heads of an audit log.
type Witness interface {
	Publish(ctx context.Context, h SignedHead) error
}

// RedisWitness appends signed heads to a Redis stream per log (XADD only: give the gateway's
// ACL user no other right on these keys, so a compromised gateway host can add heads but never
// remove one; a head it adds without the platform key does not verify).
type RedisWitness struct {
	Client redis.UniversalClient
	// Prefix of the stream keys (default "gmgate:audit:witness:"); the log ID follows.
	Prefix string
}

func (w *RedisWitness) key(logID string) string {
	p := w.Prefix
	if p == "" {
		p = "gmgate:audit:witness:"
	}
	return p + logID
}

// Publish appends h.
func (w *RedisWitness) Publish(ctx context.Context, h SignedHead) error {
	b, err := json.Marshal(h)
	if err != nil {
		return err
	}
	return w.Client.XAdd(ctx, &redis.XAddArgs{Stream: w.key(h.LogID), Values: map[string]any{"head": string(b)}}).Err()
}

// Heads returns up to max of the newest heads published for logID (unverified).
func (w *RedisWitness) Heads(ctx context.Context, logID string, max int64) ([]SignedHead, error) {
	msgs, err := w.Client.XRevRangeN(ctx, w.key(logID), "+", "-", max).Result()
	if err != nil {
		return nil, err
	}
	var out []SignedHead
	for _, m := range msgs {
		s, _ := m.Values["head"].(string)
		var h SignedHead
		if json.Unmarshal([]byte(s), &h) == nil {
			out = append(out, h)
		}
	}
	return out, nil
}

// HTTPWitness POSTs each signed head as JSON to URL (a remote collector, a log service): any
// 2xx is an acknowledgement.
type HTTPWitness struct {
	URL    string
	Client *http.Client
}

// Publish posts h.
func (w *HTTPWitness) Publish(ctx context.Context, h SignedHead) error {
	b, err := json.Marshal(h)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	c := w.Client
	if c == nil {
		c = &http.Client{Timeout: 10 * time.Second}
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("audit: witness answered %d", resp.StatusCode)
	}
	return nil
}

// Witness check results (CheckWitness).
var (
	// ErrWitnessTail: the witness holds a signed head newer than the log's end: entries were
	// removed from the tail (or the newest segments deleted).
	ErrWitnessTail = errors.New("audit: log is shorter than its witnessed head (tail deleted)")
	// ErrWitnessMismatch: the log's checkpoint at a witnessed seq signs another head.
	ErrWitnessMismatch = errors.New("audit: log differs from its witnessed head")
	// ErrWitnessNone: the witness holds no valid head for this log.
	ErrWitnessNone = errors.New("audit: the witness holds no signed head of this log")
)

// CheckWitness compares a verified log (rep from VerifyFile) with the heads a witness holds: the
// newest head that verifies with pub and names the log's ID must be in the log, as a checkpoint
// with the same head. It returns that head, and nil, ErrWitnessTail, ErrWitnessMismatch or
// ErrWitnessNone.
func CheckWitness(rep *VerifyReport, heads []SignedHead, pub *ecdsa.PublicKey) (*SignedHead, error) {
	var best *SignedHead
	for i := range heads {
		h := &heads[i]
		if h.LogID != rep.LogID || !h.Verify(pub) {
			continue
		}
		if best == nil || h.Seq > best.Seq {
			best = h
		}
	}
	if best == nil {
		return nil, ErrWitnessNone
	}
	if best.Seq > rep.LastSeq {
		return best, fmt.Errorf("%w: witnessed seq %d, log ends at %d", ErrWitnessTail, best.Seq, rep.LastSeq)
	}
	if best.Seq < rep.FirstSeq {
		return best, nil // archived before the first segment verified here
	}
	if got, ok := rep.checkpoints[best.Seq]; !ok || got != best.Head {
		return best, fmt.Errorf("%w at seq %d", ErrWitnessMismatch, best.Seq)
	}
	return best, nil
}

// ParseSignedHeads reads heads as JSON lines or a JSON array (a witness export).
func ParseSignedHeads(data []byte) ([]SignedHead, error) {
	data = bytes.TrimSpace(data)
	if len(data) > 0 && data[0] == '[' {
		var hs []SignedHead
		return hs, json.Unmarshal(data, &hs)
	}
	var out []SignedHead
	for i, line := range bytes.Split(data, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		var h SignedHead
		if err := json.Unmarshal(line, &h); err != nil {
			return nil, fmt.Errorf("witness heads line %s: %w", strconv.Itoa(i+1), err)
		}
		out = append(out, h)
	}
	return out, nil
}

// Problem is a reason why a log whose chain is intact is still not complete evidence.
type Problem string

// Audit problems, in the order Problems reports them.
const (
	// ProblemTampered: the chain is broken (edited, deleted, inserted, reordered entries,
	// forged checkpoints, malformed or truncated lines).
	ProblemTampered Problem = "tampered"
	// ProblemNoCheckpoint: no entry is sealed by a valid checkpoint: nothing ties the log to the
	// platform key (for example a log written from scratch by someone without it).
	ProblemNoCheckpoint Problem = "no_checkpoint"
	// ProblemTailDeleted: a witnessed head, or a sealed rotation, promises entries the log does
	// not have: its tail or its newest segments were removed.
	ProblemTailDeleted Problem = "tail_deleted"
	// ProblemMidChainStart: the log starts after segment 1: the oldest segments are missing
	// (archived or deleted).
	ProblemMidChainStart Problem = "mid_chain_start"
	// ProblemUnsealedTail: entries after the last checkpoint are not covered by a signature
	// (a log still being written, or entries appended without the key).
	ProblemUnsealedTail Problem = "unsealed_tail"
	// ProblemCrashRecovered: the log records restarts that cut a torn last line.
	ProblemCrashRecovered Problem = "crash_recovered"
	// ProblemWitnessMismatch: the log's checkpoint at a witnessed seq signs another head.
	ProblemWitnessMismatch Problem = "witness_mismatch"
)

// AllProblems lists every problem, for documentation and flag parsing.
func AllProblems() []Problem {
	return []Problem{ProblemTampered, ProblemNoCheckpoint, ProblemTailDeleted, ProblemWitnessMismatch,
		ProblemMidChainStart, ProblemUnsealedTail, ProblemCrashRecovered}
}

// Problems lists what keeps the verified log from being complete evidence, most serious first.
// verifyErr is VerifyFile's error; witnessErr is CheckWitness's (nil when no witness was asked).
func (r *VerifyReport) Problems(verifyErr, witnessErr error) []Problem {
	var out []Problem
	if verifyErr != nil || r == nil || !r.OK {
		return []Problem{ProblemTampered}
	}
	if r.Checkpoints == 0 && r.Entries > 0 {
		out = append(out, ProblemNoCheckpoint)
	}
	if r.MissingNextSegment != 0 || errors.Is(witnessErr, ErrWitnessTail) {
		out = append(out, ProblemTailDeleted)
	}
	if errors.Is(witnessErr, ErrWitnessMismatch) {
		out = append(out, ProblemWitnessMismatch)
	}
	if r.StartsMidChain {
		out = append(out, ProblemMidChainStart)
	}
	if r.UnsealedTail > 0 && r.Checkpoints > 0 {
		out = append(out, ProblemUnsealedTail)
	}
	if r.Recoveries > 0 {
		out = append(out, ProblemCrashRecovered)
	}
	return out
}
