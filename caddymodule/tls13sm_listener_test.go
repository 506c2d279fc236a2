package caddymodule

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/gmgate/gmgate/tls13sm"
)

// smHello is the start of a TLS 1.3 ClientHello record whose first suite is TLS_SM4_GCM_SM3.
func smHello(firstSuite uint16) []byte {
	body := []byte{0x03, 0x03}
	body = append(body, bytes.Repeat([]byte{7}, 32)...)
	body = append(body, 0)                                                       // no session ID
	body = append(body, 0, 4, byte(firstSuite>>8), byte(firstSuite), 0x13, 0x01) // suites
	body = append(body, 1, 0, 0, 0)                                              // compression, no extensions
	hs := append([]byte{1, 0, byte(len(body) >> 8), byte(len(body))}, body...)
	return append([]byte{0x16, 0x03, 0x01, byte(len(hs) >> 8), byte(len(hs))}, hs...)
}

// A tls13sm wrapper whose tlcp_join is missing refuses RFC 8998 connections (it does not park
// them until its mux stalls) and keeps routing every other hello to the next wrapper.
func TestTLS13SMWithoutJoinRefuses(t *testing.T) {
	old := joinGrace
	joinGrace = 50 * time.Millisecond
	defer func() { joinGrace = old }()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w := &TLS13SMListenerWrapper{logger: zap.NewNop(), config: &tls13sm.Config{}}
	other := w.WrapListener(inner)
	defer other.Close()
	time.Sleep(200 * time.Millisecond)

	for i := 0; i < 5; i++ {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write(smHello(tls13sm.TLS_SM4_GCM_SM3))
		if _, err := io.ReadAll(c); err != nil {
			t.Fatalf("RFC 8998 connection %d was not closed: %v", i, err)
		}
		c.Close()
	}
	got := make(chan net.Conn, 1)
	go func() {
		if c, err := other.Accept(); err == nil {
			got <- c
		}
	}()
	c, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(smHello(0x1301)) // AES first: ordinary TLS
	select {
	case oc := <-got:
		oc.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("ordinary TLS hello not routed to the next wrapper")
	}
}

func TestTLS13SMResultLabels(t *testing.T) {
	cases := map[string]error{
		"ok":                          nil,
		"handshake_failure":           &tls13sm.AlertError{Alert: tls13sm.AlertHandshakeFailure},
		"remote_certificate_required": &tls13sm.AlertError{Alert: tls13sm.AlertCertificateRequired, Remote: true},
		"eof":                         io.ErrUnexpectedEOF,
		"error":                       errors.New("x"),
		"alert_200":                   &tls13sm.AlertError{Alert: 200},
	}
	for want, err := range cases {
		if got := handshakeResult(err); got != want {
			t.Errorf("%v: %q, want %q", err, got, want)
		}
	}
}
