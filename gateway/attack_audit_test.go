package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gmgate/gmgate/audit"
	"github.com/gmgate/gmgate/signing"
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

// TestHTTPSigExpiresEnforced: an http-sig-sm2 request whose signed "expires" has passed is
// refused (timestamp_out_of_window) even inside the replay window, and does not consume its
// nonce; before, expires was parsed and ignored.
func TestHTTPSigExpiresEnforced(t *testing.T) {
	p := newTestPKI(t)
	now := time.Now()
	scheme := signing.NewHTTPSig(signing.WithValidity(10 * time.Second))
	v := newTestVerifier(t, p, func(o *VerifierOptions) {
		o.Scheme = scheme
		o.Replay.Now = func() time.Time { return now.Add(2 * time.Minute) } // inside the 5m window
	})
	m := &signing.Message{Kind: signing.Request, Method: http.MethodPost, Target: "/pay", Authority: "gw.example",
		Scheme: "http", Header: http.Header{"Content-Type": {"application/json"}}, Body: []byte(`{"a":1}`)}
	key := signing.Key{Signer: p.good.Sign.Key, Cert: p.good.Sign.Cert, KeyID: signing.SerialHex(p.good.Sign.Cert.SerialNumber)}
	if err := scheme.Sign(m, key, now, ""); err != nil {
		t.Fatal(err)
	}
	send := func() error {
		r := httptest.NewRequest(http.MethodPost, "/pay", strings.NewReader(string(m.Body)))
		r.Host = "gw.example"
		r.Header = m.Header.Clone()
		_, err := v.Verify(context.Background(), r, nil)
		return err
	}
	if err := send(); CodeOf(err) != CodeTimestampOutOfWindow {
		t.Fatalf("expired signature: %v", err)
	}
	v.o.Replay.Now = func() time.Time { return now.Add(5 * time.Second) }
	if err := send(); err != nil {
		t.Fatalf("the same request before its expiry: %v (its nonce must not have been consumed)", err)
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
