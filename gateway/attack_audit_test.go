package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gmgate/gmgate/audit"
)

// TestAuditFsyncFailureRecordsRefusal: the accept entry of a request is written, its fsync fails,
// the request is refused with 500. The log used to say "accept" and nothing more; now the
// refusal follows it for the same request.
func TestAuditFsyncFailureRecordsRefusal(t *testing.T) {
	p := newTestPKI(t)
	base := filepath.Join(t.TempDir(), "audit.log")
	l, err := audit.Open(audit.Options{Path: base, Signer: p.platform.Key, CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	// The entry reaches the file, then the fsync fails (audit.TestFsyncFailureAfterWrite shows
	// that the log reports it so): the sink returns the error once after writing.
	sink := &fsyncFailingSink{Log: l, failures: 1}
	v := newTestVerifier(t, p, func(o *VerifierOptions) { o.Audit = sink; o.RequestIDHeader = "X-Request-Id" })
	r := signWechat(t, p.good.Sign, http.MethodPost, "/v3/pay", []byte(`{"a":1}`), time.Now(), "")
	r.Header.Set("X-Request-Id", "req-fsync")
	if _, err := v.Verify(context.Background(), r, nil); CodeOf(err) != CodeInternal {
		t.Fatalf("Verify with a failing fsync: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	segs, _ := audit.Segments(base)
	data, err := os.ReadFile(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	var verdicts []string
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var e struct {
			RequestID string `json:"request_id"`
			Verdict   string `json:"verdict"`
			Reason    string `json:"reason"`
		}
		if json.Unmarshal([]byte(line), &e) == nil && e.RequestID == "req-fsync" {
			verdicts = append(verdicts, e.Verdict+"/"+e.Reason)
		}
	}
	if len(verdicts) != 2 || verdicts[1] != "reject/internal_error" {
		t.Fatalf("entries for the request: %v, want accept then reject/internal_error", verdicts)
	}
}

// fsyncFailingSink writes every entry and then fails the first `failures` of them, as an audit
// log whose write succeeded and whose fsync did not.
type fsyncFailingSink struct {
	*audit.Log
	failures int
}

func (s *fsyncFailingSink) Append(r audit.Record) error {
	if err := s.Log.Append(r); err != nil {
		return err
	}
	if s.failures > 0 {
		s.failures--
		return errors.New("audit: fsync: injected EIO")
	}
	return nil
}
