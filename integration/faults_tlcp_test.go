package integration

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gmgate/gmgate/tlcp"
)

// Garbage on the TLCP port. TestTLCPListener (tlcp_test.go) already sends a plain HTTP request,
// a truncated record header, a TLS-versioned short hello and 4 KiB of zeros; this adds random
// bytes, a real TLS 1.3 ClientHello, an oversized record header, a half-sent ClientHello followed
// by silence (closed by handshake_timeout), and 200 connections left idle while a valid TLCP
// client is served. After each the gateway still serves a valid TLCP request and is alive.

const fltTLCPCaddyfile = `{
	admin {ADMIN}
	skip_install_trust
	auto_https off
	gmgate {
		dev_pki {DIR}/pki
	}
	servers :{TLCP} {
		listener_wrappers {
			tlcp {
				handshake_timeout 1s
			}
		}
	}
}

http://:{TLCP} {
	tlcp_vars
	respond "over tlcp {tlcp.cipher_suite}"
}
`

// fltClientHello returns the first record a TLCP client sends (its ClientHello), captured
// over an in-memory pipe.
func fltClientHello(t *testing.T, cfg *tlcp.Config) []byte {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go func() {
		c := tlcp.Client(a, cfg)
		c.Handshake()
	}()
	b.SetDeadline(time.Now().Add(5 * time.Second))
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(b, hdr); err != nil {
		t.Fatal(err)
	}
	rec := make([]byte, 5+int(binary.BigEndian.Uint16(hdr[3:])))
	copy(rec, hdr)
	if _, err := io.ReadFull(b, rec[5:]); err != nil {
		t.Fatal(err)
	}
	if rec[0] != 0x16 || rec[5] != 0x01 {
		t.Fatalf("captured record is not a ClientHello: % x", rec[:6])
	}
	return rec
}

// fltReadUntilClosed reads what the server sends until it closes the connection. It fails when
// the server is still holding the connection open at the deadline.
func fltReadUntilClosed(t *testing.T, c net.Conn, within time.Duration) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(within))
	got, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server kept the connection open (%d bytes received: % x)", len(got), got)
	}
	return got
}

func fltProcessAlive(t *testing.T, inst *instance) {
	t.Helper()
	select {
	case <-inst.exited:
		t.Fatalf("gmgate exited: %v\n%s", inst.waitErr(), inst.out)
	default:
	}
	if err := inst.cmd.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("gmgate process is gone: %v", err)
	}
}

func TestFaultGarbageOnTLCPPort(t *testing.T) {
	t.Parallel()
	port := freePort(t)
	inst := startGmgate(t, strings.ReplaceAll(fltTLCPCaddyfile, "{TLCP}", fmt.Sprint(port)))
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	pkiDir := filepath.Join(inst.dir, "pki")
	cfg := tlcpClientConfig(t, pkiDir, tlcp.ECC_SM4_GCM_SM3)
	hello := fltClientHello(t, cfg)

	stillServing := func(t *testing.T) {
		t.Helper()
		body, st := getOverTLCP(t, addr, tlcpClientConfig(t, pkiDir, tlcp.ECC_SM4_GCM_SM3))
		if !strings.HasPrefix(body, "over tlcp ECC_SM4_GCM_SM3") || st.CipherSuite != tlcp.ECC_SM4_GCM_SM3 {
			t.Fatalf("valid TLCP request after the fault: %q", body)
		}
		fltProcessAlive(t, inst)
	}
	stillServing(t)
	failedHandshakes := func() float64 {
		return fltMetric(t, inst.admin, "gmgate_tlcp_handshakes_total") - fltMetric(t, inst.admin, "gmgate_tlcp_handshakes_total", "result", "ok")
	}
	dial := func(t *testing.T) net.Conn {
		t.Helper()
		c, err := netDial(addr)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	t.Run("random bytes", func(t *testing.T) {
		before := failedHandshakes()
		for i := 0; i < 5; i++ {
			junk := make([]byte, 1024<<i)
			rand.Read(junk)
			c := dial(t)
			c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			c.Write(junk) // the server may close before reading it all
			fltReadUntilClosed(t, c, 5*time.Second)
			c.Close()
		}
		if after := failedHandshakes(); after < before+5 {
			t.Fatalf("failed handshakes counted %v -> %v, want +5", before, after)
		}
		stillServing(t)
	})

	t.Run("TLS 1.3 ClientHello", func(t *testing.T) {
		c := dial(t)
		defer c.Close()
		tc := tls.Client(c, &tls.Config{ServerName: "localhost", InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
		tc.SetDeadline(time.Now().Add(5 * time.Second))
		err := tc.Handshake()
		var ne net.Error
		if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
			t.Fatalf("TLS 1.3 handshake on a TLCP-only port: %v, want a refusal", err)
		}
		t.Logf("TLS 1.3 client sees: %v", err)
		stillServing(t)
	})

	t.Run("record header announcing 2^14+2048+1 bytes", func(t *testing.T) {
		c := dial(t)
		defer c.Close()
		n := 1<<14 + 2048 + 1
		c.Write([]byte{0x16, 0x01, 0x01, byte(n >> 8), byte(n)})
		got := fltReadUntilClosed(t, c, 5*time.Second)
		// A fatal record_overflow alert, sent without waiting for the announced bytes.
		want := []byte{0x15, 0x01, 0x01, 0x00, 0x02, 0x02, byte(tlcp.AlertRecordOverflow)}
		if string(got) != string(want) {
			t.Fatalf("server answered % x, want the record_overflow alert % x", got, want)
		}
		stillServing(t)
	})

	t.Run("half a ClientHello then silence", func(t *testing.T) {
		c := dial(t)
		defer c.Close()
		c.Write(hello[:len(hello)/2])
		// handshake_timeout is 1s: the server closes it (fails if still open after 5s; the
		// default timeout would be 10s).
		got := fltReadUntilClosed(t, c, 5*time.Second)
		t.Logf("after the half hello the server sent % x and closed", got)
		stillServing(t)
	})

	t.Run("200 idle connections", func(t *testing.T) {
		const n = 200
		conns := make([]net.Conn, 0, n)
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for i := 0; i < n; i++ {
			c := dial(t)
			if i%2 == 1 {
				c.Write(hello[:10]) // half of them stall inside the record header
			}
			conns = append(conns, c)
		}
		// While all 200 are held open, valid clients are served.
		for i := 0; i < 3; i++ {
			stillServing(t)
		}
		// And every idle connection is closed by the server (handshake_timeout).
		for i, c := range conns {
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err := c.Read(make([]byte, 64))
			for err == nil {
				_, err = c.Read(make([]byte, 64))
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("idle connection %d is still open", i)
			}
		}
		stillServing(t)
	})
}
