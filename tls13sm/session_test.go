package tls13sm

import (
	"bytes"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"
)

// fakeClock is a settable Config.Time.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (f *fakeClock) now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.t
}

func (f *fakeClock) add(d time.Duration) {
	f.mu.Lock()
	f.t = f.t.Add(d)
	f.mu.Unlock()
}

// connect runs one handshake, lets the client read the ticket the server sends after it,
// and returns both states.
func connect(t *testing.T, scfg, ccfg *Config) (ConnectionState, ConnectionState, error, error) {
	t.Helper()
	s, c, serr, cerr := handshakePair(t, scfg, ccfg)
	if serr != nil || cerr != nil {
		return s.ConnectionState(), c.ConnectionState(), serr, cerr
	}
	// One round trip so that the client processes the NewSessionTicket.
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 5)
		if _, err := io.ReadFull(s, buf); err != nil {
			done <- err
			return
		}
		_, err := s.Write(buf)
		done <- err
	}()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 5)); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	c.Close()
	s.Close()
	return s.ConnectionState(), c.ConnectionState(), nil, nil
}

func TestResumption(t *testing.T) {
	for _, auth := range []ClientAuthType{NoClientCert, RequireAndVerifyClientCert} {
		t.Run(auth.String(), func(t *testing.T) {
			scfg := serverConfig(t)
			scfg.ClientAuth = auth
			ccfg := clientConfig(t)
			ccfg.ClientSessionCache = NewLRUClientSessionCache(2)
			if auth != NoClientCert {
				ccfg.Certificate = getPKI(t).client
			}
			for i, want := range []bool{false, true, true} {
				ss, cs, serr, cerr := connect(t, scfg, ccfg)
				if serr != nil || cerr != nil {
					t.Fatalf("connection %d: server %v client %v", i, serr, cerr)
				}
				if ss.DidResume != want || cs.DidResume != want {
					t.Fatalf("connection %d: resumed server %v client %v, want %v", i, ss.DidResume, cs.DidResume, want)
				}
				if len(cs.VerifiedChains) == 0 {
					t.Fatalf("connection %d: client has no verified server chain", i)
				}
				if auth != NoClientCert && len(ss.VerifiedChains) == 0 {
					t.Fatalf("connection %d: server has no verified client chain", i)
				}
			}
		})
	}
}

func TestTicketKeyRotation(t *testing.T) {
	k1, k2 := [32]byte{1}, [32]byte{2}
	scfg := serverConfig(t)
	ccfg := clientConfig(t)
	ccfg.ClientSessionCache = NewLRUClientSessionCache(2)
	steps := []struct {
		keys [][32]byte
		want bool
	}{
		{[][32]byte{k1}, false},    // full handshake, ticket under k1
		{[][32]byte{k2, k1}, true}, // k1 still opens; the new ticket is under k2
		{[][32]byte{k2}, true},     // k2 opens it
		{[][32]byte{k1}, false},    // k2 retired: full handshake
	}
	for i, st := range steps {
		if err := scfg.SetSessionTicketKeys(st.keys); err != nil {
			t.Fatal(err)
		}
		ss, _, serr, cerr := connect(t, scfg, ccfg)
		if serr != nil || cerr != nil {
			t.Fatalf("step %d: %v %v", i, serr, cerr)
		}
		if ss.DidResume != st.want {
			t.Fatalf("step %d: resumed %v, want %v", i, ss.DidResume, st.want)
		}
	}
}

func TestAutomaticTicketKeysRotate(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	scfg := serverConfig(t)
	scfg.Time = clock.now
	scfg.SessionTicketLifetime = 2 * time.Hour
	keys, err := scfg.currentTicketKeys()
	if err != nil || len(keys) != 1 {
		t.Fatalf("%d keys, %v", len(keys), err)
	}
	s := &sessionState{suite: TLS_SM4_GCM_SM3, createdAt: uint64(clock.now().Unix()), lifetime: 7200, psk: make([]byte, 32)}
	label, err := scfg.sealTicket(s)
	if err != nil {
		t.Fatal(err)
	}
	clock.add(ticketKeyRotation + time.Minute)
	keys, _ = scfg.currentTicketKeys()
	if len(keys) != 2 || keys[0].name == keys[1].name {
		t.Fatalf("after one rotation period: %d keys", len(keys))
	}
	if scfg.openTicket(label) == nil {
		t.Fatal("ticket under the previous key no longer opens")
	}
	clock.add(2 * time.Hour)
	keys, _ = scfg.currentTicketKeys()
	if len(keys) != 1 {
		t.Fatalf("old key kept beyond rotation+lifetime: %d keys", len(keys))
	}
	if scfg.openTicket(label) != nil {
		t.Fatal("ticket opened after its key was dropped")
	}
}

// TestTicketsThatMustNotResume: expired, forged, tampered, for another server name, or whose
// client certificate was revoked since: a full handshake instead (and for the revoked
// certificate, its refusal).
func TestTicketsThatMustNotResume(t *testing.T) {
	type setup struct {
		scfg, ccfg *Config
		clock      *fakeClock
	}
	prime := func(t *testing.T, auth ClientAuthType) setup {
		clock := &fakeClock{t: time.Now()}
		scfg := serverConfig(t)
		scfg.Time = clock.now
		scfg.ClientAuth = auth
		scfg.SessionTicketLifetime = time.Hour
		ccfg := clientConfig(t)
		ccfg.ClientSessionCache = NewLRUClientSessionCache(2)
		ccfg.Certificate = getPKI(t).client
		if _, _, serr, cerr := connect(t, scfg, ccfg); serr != nil || cerr != nil {
			t.Fatal(serr, cerr)
		}
		if s, ok := ccfg.ClientSessionCache.Get("server.test"); !ok || s == nil {
			t.Fatal("no ticket cached")
		}
		return setup{scfg, ccfg, clock}
	}
	mutateSession := func(ccfg *Config, f func(s *ClientSession)) {
		s, _ := ccfg.ClientSessionCache.Get("server.test")
		f(s)
	}
	cases := []struct {
		name   string
		auth   ClientAuthType
		change func(st setup)
		revoke bool
	}{
		{"expired on the server's clock", NoClientCert, func(st setup) { st.clock.add(2 * time.Hour) }, false},
		{"forged label", NoClientCert, func(st setup) {
			mutateSession(st.ccfg, func(s *ClientSession) { s.label = bytes.Repeat([]byte{7}, len(s.label)) })
		}, false},
		{"tampered label", NoClientCert, func(st setup) {
			mutateSession(st.ccfg, func(s *ClientSession) { s.label[len(s.label)-1] ^= 1 })
		}, false},
		{"issued for another server name", NoClientCert, func(st setup) {
			s, _ := st.ccfg.ClientSessionCache.Get("server.test")
			st.ccfg.ServerName = "localhost"
			s.serverName = "localhost"
			st.ccfg.ClientSessionCache.Put("localhost", s)
		}, false},
		{"client certificate revoked since", RequireAndVerifyClientCert, func(st setup) {}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := prime(t, tc.auth)
			tc.change(st)
			if tc.revoke {
				st.scfg.VerifyPeerCertificate = func([][]byte, [][]*smx509.Certificate) error { return ErrCertificateRevoked }
			}
			ss, cs, serr, cerr := connect(t, st.scfg, st.ccfg)
			if tc.revoke {
				if a, ok := alertOf(serr); !ok || a != AlertCertificateRevoked {
					t.Fatalf("server: %v, want certificate_revoked", serr)
				}
				return
			}
			if serr != nil || cerr != nil {
				t.Fatal(serr, cerr)
			}
			if ss.DidResume || cs.DidResume {
				t.Fatal("resumed")
			}
		})
	}
}

// TestWrongBinderRefused: a client whose PSK does not match the ticket (or an attacker who
// replays a ticket label without its secret) is refused with decrypt_error.
func TestWrongBinderRefused(t *testing.T) {
	scfg := serverConfig(t)
	ccfg := clientConfig(t)
	ccfg.ClientSessionCache = NewLRUClientSessionCache(2)
	if _, _, serr, cerr := connect(t, scfg, ccfg); serr != nil || cerr != nil {
		t.Fatal(serr, cerr)
	}
	s, _ := ccfg.ClientSessionCache.Get("server.test")
	s.psk = bytes.Repeat([]byte{9}, hashLen)
	_, _, serr, cerr := handshakePair(t, scfg, ccfg)
	if a, ok := alertOf(serr); !ok || a != AlertDecryptError {
		t.Fatalf("server: %v, want decrypt_error", serr)
	}
	var ae *AlertError
	if !errors.As(cerr, &ae) || !ae.Remote || ae.Alert != AlertDecryptError {
		t.Fatalf("client: %v", cerr)
	}
}

func TestKeyUpdate(t *testing.T) {
	for _, suite := range []uint16{TLS_SM4_GCM_SM3, TLS_SM4_CCM_SM3} {
		t.Run(CipherSuiteName(suite), func(t *testing.T) {
			ccfg := clientConfig(t)
			ccfg.CipherSuites = []uint16{suite}
			s, c, serr, cerr := handshakePair(t, serverConfig(t), ccfg)
			if serr != nil || cerr != nil {
				t.Fatal(serr, cerr)
			}
			s.SetDeadline(time.Now().Add(10 * time.Second))
			c.SetDeadline(time.Now().Add(10 * time.Second))
			echo := func(from, to *Conn, msg string) {
				t.Helper()
				errc := make(chan error, 1)
				go func() { _, err := from.Write([]byte(msg)); errc <- err }()
				buf := make([]byte, len(msg))
				if _, err := io.ReadFull(to, buf); err != nil || string(buf) != msg {
					t.Fatalf("%q: %v", buf, err)
				}
				if err := <-errc; err != nil {
					t.Fatal(err)
				}
			}
			oldC, oldS := append([]byte(nil), c.out.secret...), append([]byte(nil), s.out.secret...)
			if err := c.updateKeys(true); err != nil {
				t.Fatal(err)
			}
			echo(c, s, "after client update") // server reads the KeyUpdate, answers with its own
			echo(s, c, "server reply")
			if bytes.Equal(oldC, c.out.secret) || bytes.Equal(oldS, s.out.secret) {
				t.Fatal("traffic secrets did not change on both sides")
			}
			for i := 0; i < 5; i++ {
				if err := s.updateKeys(false); err != nil {
					t.Fatal(err)
				}
				echo(s, c, "again")
			}
		})
	}
}

func TestPostHandshakeAbuse(t *testing.T) {
	t.Run("KeyUpdate flood", func(t *testing.T) {
		s, c, serr, cerr := handshakePair(t, serverConfig(t), clientConfig(t))
		if serr != nil || cerr != nil {
			t.Fatal(serr, cerr)
		}
		go func() {
			for i := 0; i < maxUselessRecords+4; i++ {
				if c.updateKeys(false) != nil {
					return
				}
			}
		}()
		s.SetDeadline(time.Now().Add(10 * time.Second))
		_, err := s.Read(make([]byte, 1))
		if a, ok := alertOf(err); !ok || a != AlertUnexpectedMessage {
			t.Fatalf("%v, want unexpected_message", err)
		}
	})
	send := func(t *testing.T, msg []byte) error {
		s, c, serr, cerr := handshakePair(t, serverConfig(t), clientConfig(t))
		if serr != nil || cerr != nil {
			t.Fatal(serr, cerr)
		}
		c.out.Lock()
		c.writeRecordLocked(recordTypeHandshake, msg)
		c.out.Unlock()
		s.SetDeadline(time.Now().Add(10 * time.Second))
		_, err := s.Read(make([]byte, 1))
		return err
	}
	cases := []struct {
		name string
		msg  []byte
		want Alert
	}{
		{"KeyUpdate value 2", []byte{typeKeyUpdate, 0, 0, 1, 2}, AlertIllegalParameter},
		{"KeyUpdate too long", []byte{typeKeyUpdate, 0, 0, 2, 0, 0}, AlertDecodeError},
		{"NewSessionTicket to a server", (&newSessionTicketMsg{lifetime: 1, label: []byte("x")}).marshal(), AlertUnexpectedMessage},
		{"second ClientHello", seedHello(), AlertUnexpectedMessage},
		{"Finished after the handshake", (&finishedMsg{verifyData: make([]byte, 32)}).marshal(), AlertUnexpectedMessage},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if a, ok := alertOf(send(t, tc.msg)); !ok || a != tc.want {
				t.Fatalf("want %v", tc.want)
			}
		})
	}
}

func TestCloseNotifyAndTruncation(t *testing.T) {
	s, c, serr, cerr := handshakePair(t, serverConfig(t), clientConfig(t))
	if serr != nil || cerr != nil {
		t.Fatal(serr, cerr)
	}
	go func() { c.Write([]byte("reply")); c.Close() }()
	s.SetDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(s)
	if err != nil || string(got) != "reply" {
		t.Fatalf("after close_notify: %q %v", got, err)
	}

	scfg := serverConfig(t)
	scfg.SessionTicketsDisabled = true // no unread ticket on the client: its close is a clean FIN, not a reset
	s, c, serr, cerr = handshakePair(t, scfg, clientConfig(t))
	if serr != nil || cerr != nil {
		t.Fatal(serr, cerr)
	}
	go func() { c.Write([]byte("partial")); c.NetConn().Close() }() // no close_notify
	s.SetDeadline(time.Now().Add(10 * time.Second))
	_, err = io.ReadAll(s)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated stream: %v, want io.ErrUnexpectedEOF", err)
	}
}

// TestCloseForgetsSecrets: after Close the traffic and resumption secrets are zeroed and the
// connection refuses further use.
func TestCloseForgetsSecrets(t *testing.T) {
	ccfg := clientConfig(t)
	ccfg.ClientSessionCache = NewLRUClientSessionCache(2)
	s, c, serr, cerr := handshakePair(t, serverConfig(t), ccfg)
	if serr != nil || cerr != nil {
		t.Fatal(serr, cerr)
	}
	in, out, res := c.in.secret, c.out.secret, c.resumptionSecret
	if len(in) == 0 || len(out) == 0 || len(res) == 0 {
		t.Fatal("secrets not set after the handshake")
	}
	c.Close()
	s.Close()
	for name, b := range map[string][]byte{"read": in, "write": out, "resumption": res} {
		if !bytes.Equal(b, make([]byte, len(b))) {
			t.Errorf("%s secret not zeroed", name)
		}
	}
	if _, err := c.Write([]byte("x")); err == nil {
		t.Error("Write after Close succeeded")
	}
}
