package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestCodeStatusAndBody(t *testing.T) {
	want := map[Code]int{
		CodeMissingSignature: 401, CodeMalformedHeader: 400, CodeUnknownKey: 401,
		CodeCertExpired: 401, CodeCertNotYetValid: 401, CodeCertRevoked: 401,
		CodeCertWrongUsage: 401, CodeCertUntrusted: 401, CodeBadSignature: 401,
		CodeTimestampOutOfWindow: 401, CodeReplay: 401, CodeReplayStoreUnavailable: 503,
		CodeEnvelopeInvalid: 400, CodeKeyUnavailable: 503, CodeBodyTooLarge: 413, CodeInternal: 500,
	}
	if len(Codes()) != len(want) {
		t.Fatalf("Codes() has %d codes, table %d", len(Codes()), len(want))
	}
	seen := map[string]bool{}
	for _, c := range Codes() {
		st, ok := want[c]
		if !ok {
			t.Fatalf("code %q not in table", c)
		}
		if c.Status() != st {
			t.Errorf("%s: status %d, want %d", c, c.Status(), st)
		}
		if seen[c.Message()] {
			t.Errorf("%s: message not distinct", c)
		}
		seen[c.Message()] = true
		rec := httptest.NewRecorder()
		WriteError(rec, c)
		if rec.Code != st {
			t.Errorf("%s: WriteError status %d", c, rec.Code)
		}
		if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Errorf("%s: content type %q", c, ct)
		}
		var body map[string]string
		dec := json.NewDecoder(rec.Body)
		if err := dec.Decode(&body); err != nil {
			t.Fatal(err)
		}
		if len(body) != 2 || body["code"] != string(c) || body["message"] != c.Message() {
			t.Errorf("%s: body %v", c, body)
		}
	}
	if Code("nope").Status() != 500 || !strings.Contains(string(refusals.Body(Code("nope"))), "internal_error") {
		t.Error("unknown code not mapped to internal_error")
	}
	rec := httptest.NewRecorder()
	WriteError(rec, CodeOK)
	if rec.Code != http.StatusInternalServerError {
		t.Errorf("WriteError(CodeOK) status %d", rec.Code)
	}
}

func TestCodeOf(t *testing.T) {
	secret := errors.New("redis 10.0.0.7:6379 password=hunter2")
	tests := []struct {
		err  error
		want Code
	}{
		{nil, CodeOK},
		{ErrReplay, CodeReplay},
		{fmt.Errorf("x: %w", ErrTimestampOutOfWindow), CodeTimestampOutOfWindow},
		{ErrNonceInvalid, CodeMalformedHeader},
		{fmt.Errorf("%w: %w", ErrReplayStoreUnavailable, secret), CodeReplayStoreUnavailable},
		{ErrReplayStoreFull, CodeReplayStoreUnavailable},
		{fmt.Errorf("%w: bad asn1", ErrEnvelope), CodeEnvelopeInvalid},
		{ErrBodyTooLarge, CodeBodyTooLarge},
		{WithCode(CodeCertRevoked, secret), CodeCertRevoked},
		{fmt.Errorf("outer: %w", WithCode(CodeUnknownKey, secret)), CodeUnknownKey},
		{WithCode(Code("bogus"), ErrReplay), CodeReplay},
		{secret, CodeInternal},
	}
	for _, tc := range tests {
		if got := CodeOf(tc.err); got != tc.want {
			t.Errorf("CodeOf(%v) = %s, want %s", tc.err, got, tc.want)
		}
		if tc.err != nil {
			if b := string(refusals.Body(CodeOf(tc.err))); strings.Contains(b, "hunter2") || strings.Contains(b, "10.0.0.7") {
				t.Errorf("body leaks detail: %s", b)
			}
		}
	}
	if WithCode(CodeReplay, nil) != nil {
		t.Error("WithCode(nil) != nil")
	}
}
