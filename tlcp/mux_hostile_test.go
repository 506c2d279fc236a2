package tlcp

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gmgate/gmgate/internal/attack"
)

// TestAttackHostilePeersOnMux puts slow-loris peers (trickling a TLCP hello one byte at a time,
// each byte well inside any per-read timeout) and garbage peers (oversized and zero record
// lengths, truncated hellos, plaintext, random bytes) on a dual-stack port at once. Ordinary TLCP
// and TLS clients must still be served; the peek deadline is absolute, so every peer that has not
// sent a complete opening by peek_timeout is closed by the mux however slowly it keeps sending;
// and once they are gone nothing stays counted as pending.
func TestAttackHostilePeersOnMux(t *testing.T) {
	p := getPKI(t)
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := NewMuxConfig(inner, MuxConfig{PeekTimeout: 400 * time.Millisecond})
	defer m.Close()
	go echoServe(NewListener(m.TLCP(), serverConfig(p)))
	go echoServe(tls.NewListener(m.Other(), tlsTestConfig(t)))
	addr := inner.Addr().String()

	// The mux must close these: their opening never completes within the peek timeout.
	var mustClose []net.Conn
	for i := 0; i < 20; i++ {
		c, _, err := attack.SlowPeer(addr, honestTLCPOpening, 150*time.Millisecond) // 1.5 s > 400 ms
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		mustClose = append(mustClose, c)
	}
	var garbage []net.Conn
	for _, o := range attack.HostileOpenings() {
		for i := 0; i < 10; i++ {
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write(o.Data); err != nil {
				t.Fatalf("%s: %v", o.Name, err)
			}
			if o.Partial {
				mustClose = append(mustClose, c)
			} else {
				garbage = append(garbage, c)
			}
		}
	}

	echo := func(c net.Conn, proto string) {
		t.Helper()
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second)) // "not stalled"
		if _, err := c.Write([]byte("hello")); err != nil {
			t.Fatalf("%s write: %v", proto, err)
		}
		buf := make([]byte, 5)
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hello" {
			t.Fatalf("%s among hostile peers: %q %v", proto, buf, err)
		}
	}
	for i := 0; i < 3; i++ {
		tc, err := Dial("tcp", addr, clientConfig(p, false))
		if err != nil {
			t.Fatalf("TLCP among hostile peers: %v", err)
		}
		echo(tc, "TLCP")
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatalf("TLS among hostile peers: %v", err)
		}
		echo(c, "TLS")
	}

	for i, c := range mustClose {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := io.Copy(io.Discard, c)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("peer %d with an incomplete opening still open long after the peek timeout", i)
		}
	}
	for _, c := range garbage {
		c.Close()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		total, sources, _ := m.m.Pending()
		if total == 0 && sources == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connections from %d sources still counted as pending", total, sources)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestAttackAppDataInsideHandshakeMessage: application data between the fragments of a
// post-handshake handshake message used to overwrite the application data read before it, so a
// peer's bytes were dropped and later ones delivered in their place. It is now a fatal
// unexpected_message, as in crypto/tls.
func TestAttackAppDataInsideHandshakeMessage(t *testing.T) {
	sealer, in := recordCipherPair(t, true)
	sink := attack.NewScriptConn(nil, nil)
	w := Client(sink, &Config{})
	w.vers = VersionTLCP
	w.out.cipher = sealer
	for _, r := range []struct {
		typ  uint8
		data string
	}{{recordTypeHandshake, "\x01\x00"}, {recordTypeApplicationData, "abc"}, {recordTypeApplicationData, "def"}, {recordTypeHandshake, "\x00\x00"}} {
		w.out.Lock()
		_, err := w.writeRecordLocked(r.typ, []byte(r.data))
		w.out.Unlock()
		if err != nil {
			t.Fatal(err)
		}
	}
	out, errText := readAllRecords(t, attack.NewScriptConn([]attack.Step{{Data: sink.Written()}}, nil), in, false)
	if len(out) != 0 || !strings.Contains(errText, "application data inside a handshake message") {
		t.Fatalf("read %q (%s), want nothing and unexpected_message", out, errText)
	}
}
