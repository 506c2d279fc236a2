package caddymodule

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/gmgate/gmgate/tlcp"
)

// A dual-stack tlcp wrapper whose tlcp_join is missing must refuse TLCP connections (not park
// them until the mux stalls) and keep routing everything else.
func TestDualStackWithoutJoinRefusesTLCP(t *testing.T) {
	old := joinGrace
	joinGrace = 50 * time.Millisecond
	defer func() { joinGrace = old }()

	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w := &ListenerWrapper{DualStack: true, logger: zap.NewNop()}
	other := w.WrapListener(inner)
	defer other.Close()
	time.Sleep(200 * time.Millisecond) // past the grace: nobody joined

	// More TLCP clients than a stalled mux could hold would block; each must be closed.
	for i := 0; i < 5; i++ {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write([]byte{0x16, 0x01, 0x01, 0x00, 0x40, 0x01, 0x00, 0x00, 0x3c, 0x01, 0x01})
		if _, err := io.ReadAll(c); err != nil {
			t.Fatalf("TLCP connection %d was not closed: %v", i, err)
		}
		c.Close()
	}

	// A TLS ClientHello still reaches the other listener.
	got := make(chan net.Conn, 1)
	go func() {
		c, err := other.Accept()
		if err == nil {
			got <- c
		}
	}()
	c, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte{0x16, 0x03, 0x01, 0x00, 0x40, 0x01, 0x00, 0x00, 0x3c, 0x03, 0x03})
	select {
	case oc := <-got:
		oc.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("TLS connection not routed to the other listener")
	}
}

// Handshake results are Prometheus label values: snake_case, one per failure class.
func TestHandshakeResultLabels(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{nil, "ok"},
		{&tlcp.AlertError{Alert: tlcp.AlertHandshakeFailure}, "handshake_failure"},
		{fmt.Errorf("wrapped: %w", &tlcp.AlertError{Alert: tlcp.AlertBadRecordMAC, Remote: true}), "remote_bad_record_mac"},
		{&tlcp.AlertError{Alert: tlcp.Alert(250)}, "alert_250"},
		{io.ErrUnexpectedEOF, "eof"},
		{os.ErrDeadlineExceeded, "timeout"},
		{errors.New("other"), "error"},
	} {
		if got := handshakeResult(tc.err); got != tc.want {
			t.Errorf("handshakeResult(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

// Suite names as gmgate, Tongsuo and Tengine spell them select the same suites.
func TestParseSuitesTongsuoNames(t *testing.T) {
	for _, c := range []struct {
		in   string
		want uint16
	}{
		{"ECC_SM4_GCM_SM3", tlcp.ECC_SM4_GCM_SM3},
		{"ECC-SM2-SM4-GCM-SM3", tlcp.ECC_SM4_GCM_SM3},
		{"ecc-sm2-sm4-cbc-sm3", tlcp.ECC_SM4_CBC_SM3},
		{"ECDHE-SM2-SM4-GCM-SM3", tlcp.ECDHE_SM4_GCM_SM3},
		{"ECDHE-SM2-SM4-CBC-SM3", tlcp.ECDHE_SM4_CBC_SM3},
		{"ECC-SM2-WITH-SM4-SM3", tlcp.ECC_SM4_CBC_SM3},
		{"ECDHE-SM2-WITH-SM4-SM3", tlcp.ECDHE_SM4_CBC_SM3},
	} {
		got, err := parseSuites([]string{c.in})
		if err != nil || len(got) != 1 || got[0] != c.want {
			t.Errorf("%s: %v %v", c.in, got, err)
		}
	}
	for _, bad := range []string{"ECC-SM4-GCM-SM3", "TLS_SM4_GCM_SM3", "ECC-SM2-SM4-GCM"} {
		if _, err := parseSuites([]string{bad}); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}
