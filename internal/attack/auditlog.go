package attack

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/emmansun/gmsm/sm3"
)

// The attacker of the audit log is someone who can write the log directory of a gateway host
// but does not hold the platform key: cut the tail, delete segments, tear a line, or write a
// log from scratch.

// Segments lists base.NNNNNN in order.
func Segments(base string) ([]string, error) {
	m, err := filepath.Glob(base + ".[0-9][0-9][0-9][0-9][0-9][0-9]")
	sort.Strings(m)
	return m, err
}

// CutToLastCheckpoint truncates the newest segment of base right after its last checkpoint
// line before the final one (keep the log sealed while losing the entries after that earlier
// checkpoint). With which = 1 it cuts after the last checkpoint, 2 after the one before, ...
func CutToLastCheckpoint(base string, which int) error {
	segs, err := Segments(base)
	if err != nil || len(segs) == 0 {
		return fmt.Errorf("attack: no segments: %v", err)
	}
	path := segs[len(segs)-1]
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var ends []int
	off := 0
	for _, line := range bytes.SplitAfter(data, []byte("\n")) {
		off += len(line)
		if bytes.Contains(line, []byte(`"type":"checkpoint"`)) {
			ends = append(ends, off)
		}
	}
	if len(ends) < which {
		return errors.New("attack: not enough checkpoints to cut back to")
	}
	return os.Truncate(path, int64(ends[len(ends)-which]))
}

// DeleteNewest removes the n newest segments of base.
func DeleteNewest(base string, n int) error {
	segs, err := Segments(base)
	if err != nil || len(segs) <= n {
		return fmt.Errorf("attack: %d segments, cannot delete %d: %v", len(segs), n, err)
	}
	for _, p := range segs[len(segs)-n:] {
		if err := os.Remove(p); err != nil {
			return err
		}
	}
	return nil
}

// DeleteOldest removes the n oldest segments of base.
func DeleteOldest(base string, n int) error {
	segs, err := Segments(base)
	if err != nil || len(segs) <= n {
		return fmt.Errorf("attack: %d segments, cannot delete %d: %v", len(segs), n, err)
	}
	for _, p := range segs[:n] {
		if err := os.Remove(p); err != nil {
			return err
		}
	}
	return nil
}

// TearLastLine appends half an entry without a newline to the newest segment: what a crash (or
// an attacker imitating one) leaves.
func TearLastLine(base string) error {
	segs, err := Segments(base)
	if err != nil || len(segs) == 0 {
		return fmt.Errorf("attack: no segments: %v", err)
	}
	f, err := os.OpenFile(segs[len(segs)-1], os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.WriteString(`{"seq":999999,"type":"decision","time":"2026-12-04T00:00:00Z","verdict":"acc`)
	return err
}

// ForgeLog writes a complete, correctly chained log at base (segment 1) with n accepted
// decisions, from scratch, without the platform key: every hash is right, no checkpoint can be.
func ForgeLog(base string, n int) error {
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return err
	}
	logID := hex.EncodeToString(id[:])
	g := sm3.Sum([]byte("gmgate-audit-v1 genesis " + logID))
	prev := hex.EncodeToString(g[:])
	var buf bytes.Buffer
	now := time.Now().UTC().Format(time.RFC3339Nano)
	add := func(e map[string]any) error {
		e["prev"] = prev
		line, err := json.Marshal(orderedEntry(e))
		if err != nil {
			return err
		}
		buf.Write(line)
		buf.WriteByte('\n')
		h := sm3.Sum(line)
		prev = hex.EncodeToString(h[:])
		return nil
	}
	if err := add(map[string]any{"seq": 1, "type": "segment", "time": now, "log_id": logID, "segment": 1}); err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		if err := add(map[string]any{"seq": i + 2, "type": "decision", "time": now, "direction": "inbound",
			"scheme": "wechatpay-v3-sm2", "key_id": "forged", "verdict": "accept", "reason": "ok"}); err != nil {
			return err
		}
	}
	return os.WriteFile(base+".000001", buf.Bytes(), 0o600)
}

// orderedEntry renders the fields in the log's wire order (seq, type, time, ..., prev).
type orderedEntry map[string]any

func (o orderedEntry) MarshalJSON() ([]byte, error) {
	order := []string{"seq", "type", "time", "log_id", "segment", "direction", "scheme", "key_id", "verdict", "reason", "prev"}
	var b bytes.Buffer
	b.WriteByte('{')
	first := true
	for _, k := range order {
		v, ok := o[k]
		if !ok {
			continue
		}
		if !first {
			b.WriteByte(',')
		}
		first = false
		kb, _ := json.Marshal(k)
		vb, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		b.Write(kb)
		b.WriteByte(':')
		b.Write(vb)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}
