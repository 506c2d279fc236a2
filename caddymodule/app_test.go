package caddymodule

import (
	"crypto"
	"crypto/rand"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/emmansun/gmsm/sm2"

	"github.com/gmgate/gmgate/audit"
)

// handle is one configuration's handle of the checkpoint key: it counts its signatures.
type handle struct {
	crypto.Signer
	n atomic.Int32
}

func (h *handle) Sign(r io.Reader, d []byte, o crypto.SignerOpts) ([]byte, error) {
	h.n.Add(1)
	return h.Signer.Sign(r, d, o)
}

// A reload opens the audit log while the old configuration still has it open: both must share
// one writer (one hash chain), checkpoints go through the newest live configuration's key
// handle, a failed new configuration hands the key back, and the last release closes the log.
func TestSharedAuditLogAcrossReloads(t *testing.T) {
	key, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "audit.log")
	open := func(s crypto.Signer) (*audit.Log, func()) {
		t.Helper()
		l, release, err := openSharedAudit(audit.Options{Path: path, Signer: s, CheckpointEvery: 1, CheckpointInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		return l, release
	}
	append1 := func(l *audit.Log) {
		t.Helper()
		if err := l.Append(audit.Record{Direction: audit.DirectionInbound, Verdict: audit.VerdictAccept, Reason: audit.ReasonOK}); err != nil {
			t.Fatal(err)
		}
	}
	oldH, newH, failedH := &handle{Signer: key}, &handle{Signer: key}, &handle{Signer: key}

	oldLog, releaseOld := open(oldH)
	append1(oldLog)
	newLog, releaseNew := open(newH) // the reload provisions the new configuration
	if newLog != oldLog {
		t.Fatal("a reload opened a second writer on the same audit log")
	}
	append1(newLog)
	if newH.n.Load() == 0 {
		t.Fatal("checkpoints not signed through the newest configuration's key handle")
	}
	releaseOld() // the old configuration is unloaded

	// A later reload fails: its handle is given back, and the running one signs again.
	failedLog, releaseFailed := open(failedH)
	append1(failedLog)
	releaseFailed()
	before := newH.n.Load()
	append1(newLog)
	if newH.n.Load() == before {
		t.Fatal("after a failed reload the running configuration's key handle is not used")
	}

	// Another key cannot take an open log over.
	other, _ := sm2.GenerateKey(rand.Reader)
	if _, _, err := openSharedAudit(audit.Options{Path: path, Signer: other}); err == nil {
		t.Fatal("an open audit log was taken over with another key")
	}

	releaseNew() // the last user: the log closes
	if err := newLog.Append(audit.Record{}); err == nil {
		t.Fatal("the audit log is still open after its last release")
	}
	segs, err := audit.Segments(path)
	if err != nil {
		t.Fatal(err)
	}
	if rep, err := audit.VerifyFile(segs, &key.PublicKey); err != nil || rep.Decisions != 4 {
		t.Fatalf("one chain expected: %v %+v", err, rep)
	}
}

// Validate refuses what can be judged from the configuration alone (caddy.Validator), without a
// vault, a store or a file.
func TestValidators(t *testing.T) {
	neg := caddy.Duration(-1)
	cases := []struct {
		name string
		v    caddy.Validator
		ok   bool
	}{
		{"app ok", &App{Audit: &AuditConfig{Fsync: "interval"}}, true},
		{"app bad fsync", &App{Audit: &AuditConfig{Fsync: "sometimes"}}, false},
		{"app negative checkpoint", &App{Audit: &AuditConfig{CheckpointEvery: -1}}, false},
		{"verify ok", &Verify{}, true},
		{"verify negative body", &Verify{MaxBodySize: -1}, false},
		{"verify bad order", &Verify{Envelope: &EnvelopeConfig{Order: "sideways"}}, false},
		{"verify bad binding", &Verify{BindTLCPClient: "maybe"}, false},
		{"verify audit without path", &Verify{Audit: &VerifyAuditConfig{}}, false},
		{"verify negative window", &Verify{Replay: &ReplayConfig{Window: neg}}, false},
		{"channel ok", &ChannelTransport{Bank: "b"}, true},
		{"channel no bank", &ChannelTransport{}, false},
		{"channel retries", &ChannelTransport{Bank: "b", Retries: 6}, false},
		{"channel suite", &ChannelTransport{Bank: "b", TLCP: &ChannelTLCP{CipherSuites: []string{"RC4"}}}, false},
		{"channel half pair", &ChannelTransport{Bank: "b", TLCP: &ChannelTLCP{SignKey: "s"}}, false},
		{"tlcp ok", &ListenerWrapper{CipherSuites: []string{"ECC-SM2-SM4-GCM-SM3"}}, true},
		{"tlcp client auth", &ListenerWrapper{ClientAuth: "sometimes"}, false},
		{"tlcp suite", &ListenerWrapper{CipherSuites: []string{"TLS_SM4_GCM_SM3"}}, false},
		{"tlcp handshake size", &ListenerWrapper{MaxHandshakeMessageSize: 100}, false},
	}
	for _, c := range cases {
		if err := c.v.Validate(); (err == nil) != c.ok {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}

// A deferred audit log writes nothing until it is opened (at start or by the first entry), and
// refuses entries once its configuration gave it back (fail closed).
func TestDeferredAuditOpensOnceAndFailsClosed(t *testing.T) {
	key, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "sub", "audit.log")
	opened := 0
	d := newDeferredAudit(audit.Options{Path: path, Signer: key, CheckpointInterval: -1}, func() { opened++ })
	if _, err := os.Stat(filepath.Dir(path)); !os.IsNotExist(err) {
		t.Fatalf("configured log touched the disk: %v", err)
	}
	for i := 0; i < 3; i++ {
		if err := d.Append(audit.Record{Direction: audit.DirectionInbound, Verdict: audit.VerdictAccept, Reason: "ok"}); err != nil {
			t.Fatal(err)
		}
	}
	if opened != 1 {
		t.Fatalf("opened %d times", opened)
	}
	d.close()
	if err := d.Append(audit.Record{Direction: audit.DirectionInbound, Verdict: audit.VerdictAccept, Reason: "ok"}); err == nil {
		t.Fatal("an entry was accepted after the log was given back")
	}
}
