package tlcp

import (
	"bytes"
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/gmgate/gmgate/internal/attack"
)

// honestTLCPOpening is the first 11 bytes of a TLCP ClientHello.
var honestTLCPOpening = []byte{22, 1, 1, 0x00, 0x40, 1, 0x00, 0x00, 0x3c, 1, 1}

// muxOutcome waits until the mux has routed the next connection to one of its listeners or
// closed sc. The deadline only means "the mux is stuck".
func muxOutcome(t *testing.T, tlcpCh, otherCh <-chan net.Conn, sc *attack.ScriptConn) (routed net.Conn, toTLCP bool) {
	t.Helper()
	select {
	case c := <-tlcpCh:
		return c, true
	case c := <-otherCh:
		return c, false
	case <-sc.Closed():
		return nil, false
	case <-time.After(10 * time.Second):
		t.Fatal("mux neither routed nor closed the connection")
	}
	return nil, false
}

func acceptInto(l net.Listener) <-chan net.Conn {
	ch := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			ch <- c
		}
	}()
	return ch
}

// FuzzMuxHostilePeer drives the dual-stack mux with one hostile first flight delivered in
// arbitrary fragments with read timeouts in between (a deadline firing during the peek), the peer
// then going silent (hold) or away. Whatever it sends: the mux routes it to TLCP exactly when
// the bytes received before the first read error start a TLCP ClientHello, to the other side
// when they decide against it, and closes it otherwise; a routed connection replays every byte
// once, in order; nothing stays counted as pending; and an honest client is still routed.
func FuzzMuxHostilePeer(f *testing.F) {
	f.Add([]byte{22, 1, 1, 0, 0x40, 1, 0, 0, 0x3c, 1, 1, 9, 9}, []byte{0, 1, 0x82}, false)
	f.Add([]byte{22, 3, 1, 0xff, 0xff, 1, 0xff, 0xff, 0xff, 3, 3}, []byte{0x80, 0x80, 3}, true)
	f.Add([]byte{22, 1, 1, 0xff, 0xff}, []byte{0, 0, 0, 0, 0}, true)
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"), []byte{}, false)
	for _, o := range attack.HostileOpenings() {
		f.Add(o.Data, []byte{0, 0x81, 2}, o.Partial)
	}
	f.Fuzz(func(t *testing.T, data, plan []byte, hold bool) {
		if len(data) > 1<<12 || len(plan) > 256 {
			return
		}
		l := attack.NewConnListener()
		m := NewMuxConfig(l, MuxConfig{PeekTimeout: time.Minute, MaxPendingPerSource: 1})
		defer m.Close()
		tlcpCh, otherCh := acceptInto(m.TLCP()), acceptInto(m.Other())

		steps := attack.Fragment(data, plan)
		sc := attack.NewScriptConn(steps, nil)
		if hold {
			sc.End = os.ErrDeadlineExceeded // silent until the peek deadline fires
		}
		// The oracle: the bytes the peer gets across before its first read error.
		var before []byte
		for _, st := range steps {
			if len(st.Data) == 0 {
				break
			}
			before = append(before, st.Data...)
		}
		if len(before) > firstRecordPeekLen {
			before = before[:firstRecordPeekLen]
		}
		wantTLCP, wantClose := classifyFirstRecord(before)

		if !l.Deliver(sc) {
			t.Fatal("listener closed")
		}
		routed, toTLCP := muxOutcome(t, tlcpCh, otherCh, sc)
		switch {
		case wantClose && routed != nil:
			t.Fatalf("undecided opening %x routed (TLCP %v)", before, toTLCP)
		case !wantClose && routed == nil:
			t.Fatalf("decided opening %x closed instead of routed", before)
		case routed != nil && toTLCP != wantTLCP:
			t.Fatalf("opening %x routed to TLCP=%v, want %v", before, toTLCP, wantTLCP)
		}
		if routed != nil {
			// The routed connection replays the peeked bytes and then reads on.
			var got []byte
			buf := make([]byte, 37)
			for i := 0; i < len(data)+len(steps)+16; i++ { // every Read returns a byte or pops a step
				n, err := routed.Read(buf)
				got = append(got, buf[:n]...)
				if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
					break
				}
				if len(got) >= len(data) && hold {
					break
				}
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("routed connection reads %d bytes (%.32x...), the peer sent %d (%.32x...)", len(got), got, len(data), data)
			}
		}
		total, pending, peeking := m.m.Pending()
		if total != 0 || pending != 0 || peeking != 0 {
			t.Fatalf("after the peer: total %d, sources %d, peeking %d still pending", total, pending, peeking)
		}
		// The per-source bound of 1 is free again: the same source is served.
		honest := attack.NewScriptConn([]attack.Step{{Data: honestTLCPOpening}}, nil)
		if !l.Deliver(honest) {
			t.Fatal("listener closed")
		}
		if c, toTLCP := muxOutcome(t, tlcpCh, otherCh, honest); c == nil || !toTLCP {
			t.Fatal("honest TLCP client not routed after the hostile peer")
		}
	})
}

// recordPair returns a sealing Conn and the key material to open what it writes.
func recordCipherPair(t *testing.T, gcm bool) (seal, open recordCipher) {
	t.Helper()
	id := ECC_SM4_CBC_SM3
	if gcm {
		id = ECC_SM4_GCM_SM3
	}
	macKey, key, iv := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 16), bytes.Repeat([]byte{3}, 16)
	s, err := newRecordCipher(suiteByID(id), macKey, key, iv)
	if err != nil {
		t.Fatal(err)
	}
	o, err := newRecordCipher(suiteByID(id), macKey, key, iv)
	if err != nil {
		t.Fatal(err)
	}
	return s, o
}

// readAllRecords reads application data from an established connection over conn until a
// read error other than a timeout (timeouts are retried, as a caller with a deadline would).
func readAllRecords(t *testing.T, conn net.Conn, in recordCipher, client bool) ([]byte, string) {
	var c *Conn
	if client {
		c = Client(conn, &Config{})
	} else {
		c = Server(conn, &Config{})
	}
	c.vers = VersionTLCP
	c.in.cipher = in
	c.handshakeComplete.Store(true)
	var out []byte
	buf := make([]byte, 1000)
	for i := 0; i < 1<<16; i++ {
		n, err := c.Read(buf)
		out = append(out, buf[:n]...)
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			continue
		}
		return out, err.Error()
	}
	t.Fatal("reader never finished")
	return nil, ""
}

// FuzzRecordLayerFragmented is differential: a stream of sealed records (any content type,
// post-handshake hellos included) followed by raw hostile bytes (oversized lengths, garbage,
// truncation) must read the same whether it arrives in one piece or in arbitrary fragments with
// read timeouts mid-header and mid-record. What is read is always a prefix of the application
// data that was sealed, and a clean stream of application data is read entirely.
func FuzzRecordLayerFragmented(f *testing.F) {
	f.Add(true, false, []byte{2, 5, 'h', 'e', 'l', 'l', 'o', 2, 3, 'a', 'b', 'c'}, []byte{}, []byte{0, 0x80, 3, 0x84})
	f.Add(false, true, []byte{2, 5, 'h', 'e', 'l', 'l', 'o'}, []byte{23, 1, 1, 0xff, 0xff}, []byte{1, 0x81, 0x82})
	f.Add(true, false, []byte{1, 4, 1, 0, 0, 0, 2, 1, 'x'}, []byte{}, []byte{0x80, 0x80, 0x80})
	f.Add(false, false, []byte{0, 2, 1, 0, 2, 2, 'o', 'k'}, []byte{22, 1, 1, 0x48, 0x01}, []byte{4, 4, 4})
	f.Add(true, true, []byte{1, 4, 0, 0, 0, 0, 2, 2, 'o', 'k'}, []byte{0xff, 0xff, 0xff}, []byte{0x90})
	// Application data inside a fragmented post-handshake ClientHello: "abc" was silently
	// dropped and "def" read in its place.
	f.Add(true, false, []byte{2, 2, 1, 0, 3, 3, 'a', 'b', 'c', 3, 3, 'd', 'e', 'f', 2, 2, 0, 0}, []byte{}, []byte{})
	f.Fuzz(func(t *testing.T, gcm, client bool, records, tail, plan []byte) {
		if len(records) > 1<<12 || len(tail) > 1<<12 || len(plan) > 512 {
			return
		}
		sealer, _ := recordCipherPair(t, gcm)
		sink := attack.NewScriptConn(nil, nil)
		w := Client(sink, &Config{})
		w.vers = VersionTLCP
		w.out.cipher = sealer
		var appData []byte
		onlyAppData := true
		types := [...]uint8{recordTypeChangeCipherSpec, recordTypeAlert, recordTypeHandshake, recordTypeApplicationData}
		for r := records; len(r) >= 2; {
			typ := types[r[0]%4]
			n := min(int(r[1]), len(r)-2)
			payload := r[2 : 2+n]
			r = r[2+n:]
			if typ != recordTypeApplicationData || len(payload) == 0 {
				onlyAppData = false
			}
			if typ == recordTypeApplicationData {
				appData = append(appData, payload...)
			}
			w.out.Lock()
			if typ == recordTypeChangeCipherSpec {
				w.out.next = w.out.cipher // the reader refuses it: what follows is never opened
			}
			_, err := w.writeRecordLocked(typ, payload)
			w.out.Unlock()
			if err != nil {
				t.Fatal(err)
			}
		}
		stream := append(sink.Written(), tail...)

		_, in := recordCipherPair(t, gcm)
		whole, wholeErr := readAllRecords(t, attack.NewScriptConn([]attack.Step{{Data: stream}}, nil), in, client)
		_, in = recordCipherPair(t, gcm)
		frag, fragErr := readAllRecords(t, attack.NewScriptConn(attack.Fragment(stream, plan), nil), in, client)
		if !bytes.Equal(whole, frag) || wholeErr != fragErr {
			t.Fatalf("fragmentation changes what is read:\nwhole %x (%s)\nfrags %x (%s)", whole, wholeErr, frag, fragErr)
		}
		if !bytes.HasPrefix(appData, whole) {
			t.Fatalf("read %x, which was never sealed as application data %x", whole, appData)
		}
		if onlyAppData && len(tail) == 0 && (!bytes.Equal(whole, appData) || wholeErr != "EOF") {
			t.Fatalf("clean stream: read %x (%s), sealed %x", whole, wholeErr, appData)
		}
	})
}
