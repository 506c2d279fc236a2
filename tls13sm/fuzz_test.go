package tls13sm

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// Every parser of network input has a fuzz target: the handshake messages (each must parse
// without panicking, and what it accepts must survive a marshal/unmarshal round trip), the
// ticket plaintext, and the record layer (plaintext and protected records, post-handshake
// messages).

func fuzzMessage(f *testing.F, newMsg func() handshakeMessage, seeds ...[]byte) {
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m := newMsg()
		if !m.unmarshal(data) {
			return
		}
		out := m.marshal()
		if out == nil {
			return // e.g. an over-long list that the builder refuses
		}
		m2 := newMsg()
		if !m2.unmarshal(out) {
			t.Fatalf("re-marshalled message does not parse: %x", out)
		}
		if out2 := m2.marshal(); !bytes.Equal(out, out2) {
			t.Fatalf("marshal is not stable:\n%x\n%x", out, out2)
		}
	})
}

func seedHello() []byte {
	h := &clientHelloMsg{vers: versionTLS12, random: make([]byte, 32), sessionID: make([]byte, 32),
		cipherSuites: []uint16{TLS_SM4_GCM_SM3, TLS_SM4_CCM_SM3}, compressionMethods: []uint8{0}, serverName: "bank.example",
		supportedVersions: []uint16{VersionTLS13}, supportedGroups: []uint16{groupCurveSM2, 0x17},
		signatureAlgorithms: []uint16{schemeSM2SM3}, signatureAlgorithmsCert: []uint16{schemeSM2SM3},
		keyShares: []keyShare{{group: groupCurveSM2, data: bytes.Repeat([]byte{4}, 65)}}, pskModes: []uint8{1},
		alpnProtocols: []string{"h2", "http/1.1"}, cookie: []byte("cookie"),
		pskIdentities: []pskIdentity{{label: []byte("ticket"), obfuscatedTicketAge: 7}}, pskBinders: [][]byte{make([]byte, 32)}}
	return h.marshal()
}

func FuzzClientHello(f *testing.F) {
	fuzzMessage(f, func() handshakeMessage { return new(clientHelloMsg) }, seedHello())
}

func FuzzServerHello(f *testing.F) {
	sh := (&serverHelloMsg{vers: versionTLS12, random: make([]byte, 32), sessionID: make([]byte, 32), cipherSuite: TLS_SM4_GCM_SM3,
		supportedVersion: VersionTLS13, serverShare: keyShare{group: groupCurveSM2, data: bytes.Repeat([]byte{4}, 65)}, hasPSK: true}).marshal()
	hrr := (&serverHelloMsg{vers: versionTLS12, random: helloRetryRequestRandom, cipherSuite: TLS_SM4_GCM_SM3,
		supportedVersion: VersionTLS13, selectedGroup: groupCurveSM2, cookie: []byte("c")}).marshal()
	fuzzMessage(f, func() handshakeMessage { return new(serverHelloMsg) }, sh, hrr)
}

func FuzzEncryptedExtensions(f *testing.F) {
	fuzzMessage(f, func() handshakeMessage { return new(encryptedExtensionsMsg) },
		(&encryptedExtensionsMsg{alpnProtocol: "h2"}).marshal(), (&encryptedExtensionsMsg{}).marshal())
}

func FuzzCertificateRequest(f *testing.F) {
	fuzzMessage(f, func() handshakeMessage { return new(certificateRequestMsg) },
		(&certificateRequestMsg{signatureAlgorithms: []uint16{schemeSM2SM3}, certificateAuthorities: [][]byte{[]byte("0\x00")}}).marshal())
}

func FuzzCertificate(f *testing.F) {
	fuzzMessage(f, func() handshakeMessage { return new(certificateMsg) },
		(&certificateMsg{certificates: [][]byte{[]byte("leaf"), []byte("ca")}}).marshal(), (&certificateMsg{}).marshal())
}

func FuzzCertificateVerify(f *testing.F) {
	fuzzMessage(f, func() handshakeMessage { return new(certificateVerifyMsg) },
		(&certificateVerifyMsg{scheme: schemeSM2SM3, signature: bytes.Repeat([]byte{0x30}, 70)}).marshal())
}

func FuzzFinished(f *testing.F) {
	fuzzMessage(f, func() handshakeMessage { return new(finishedMsg) }, (&finishedMsg{verifyData: make([]byte, 32)}).marshal())
}

func FuzzNewSessionTicket(f *testing.F) {
	fuzzMessage(f, func() handshakeMessage { return new(newSessionTicketMsg) },
		(&newSessionTicketMsg{lifetime: 7200, ageAdd: 9, nonce: make([]byte, 8), label: []byte("ticket")}).marshal())
}

func FuzzKeyUpdate(f *testing.F) {
	fuzzMessage(f, func() handshakeMessage { return new(keyUpdateMsg) }, (&keyUpdateMsg{updateRequested: true}).marshal())
}

func FuzzSessionState(f *testing.F) {
	seed, _ := (&sessionState{suite: TLS_SM4_GCM_SM3, createdAt: 1, lifetime: 7200, psk: make([]byte, 32),
		serverName: "bank.example", peerCerts: [][]byte{[]byte("cert")}}).marshal()
	f.Add(seed)
	f.Fuzz(func(t *testing.T, data []byte) {
		var s sessionState
		if !s.unmarshal(data) {
			return
		}
		out, err := s.marshal()
		if err != nil || !bytes.Equal(out, data) {
			t.Fatalf("session state round trip: %v\n%x\n%x", err, data, out)
		}
	})
}

// FuzzServerHandshakeInput feeds arbitrary bytes to a server as everything its client sends.
func FuzzServerHandshakeInput(f *testing.F) {
	f.Add(plainRecord(recordTypeHandshake, seedHello()))
	f.Add(append(plainRecord(recordTypeHandshake, seedHello()), plainRecord(recordTypeChangeCipherSpec, []byte{1})...))
	cfg := serverConfig(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		c := Server(&scriptConn{r: bytes.NewReader(data)}, cfg)
		if err := c.Handshake(); err == nil {
			t.Fatal("handshake succeeded on fuzzed input")
		}
	})
}

// FuzzProtectedRecords: records sealed with the right keys but carrying any inner plaintext
// (content type, padding, post-handshake messages, alerts) reach the connection's Read. The
// input is a sequence of [length byte][inner plaintext] chunks; a leading 0xFF byte makes
// the rest raw (unsealed) bytes instead.
func FuzzProtectedRecords(f *testing.F) {
	f.Add([]byte{6, 'p', 'i', 'n', 'g', '\n', recordTypeApplicationData})
	f.Add(append([]byte{6}, append((&keyUpdateMsg{updateRequested: true}).marshal(), recordTypeHandshake)...))
	f.Add([]byte{3, 1, 0, recordTypeAlert})
	f.Add([]byte{4, 0, 0, 0, 0})
	f.Add([]byte{0xFF, 23, 3, 3, 0, 1, 0})
	secret := bytes.Repeat([]byte{0x42}, hashLen)
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, suite := range []uint16{TLS_SM4_GCM_SM3, TLS_SM4_CCM_SM3} {
			var stream []byte
			if len(data) > 0 && data[0] == 0xFF {
				stream = data[1:]
			} else {
				w, err := newProtection(suite, secret)
				if err != nil {
					t.Fatal(err)
				}
				seq := uint64(0)
				for rest := data; len(rest) > 0; {
					n := int(rest[0])
					rest = rest[1:]
					if n > len(rest) {
						n = len(rest)
					}
					inner := rest[:n]
					rest = rest[n:]
					hdr := []byte{recordTypeApplicationData, 3, 3, byte((n + aeadTagLen) >> 8), byte(n + aeadTagLen)}
					nonce := w.nonce(seq)
					seq++
					stream = append(stream, w.aead.Seal(hdr, nonce[:], inner, hdr)...)
				}
			}
			c := &Conn{conn: &scriptConn{r: bytes.NewReader(stream)}, config: &Config{}, isClient: true}
			c.handshakeComplete.Store(true)
			c.sentCH, c.peerFin = true, true
			if err := c.in.setTrafficSecret(suite, secret); err != nil {
				t.Fatal(err)
			}
			if err := c.out.setTrafficSecret(suite, secret); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 64)
			for i := 0; i < 1000; i++ {
				if _, err := c.Read(buf); err != nil {
					var ae *AlertError
					if err != io.EOF && !errors.As(err, &ae) && !errors.Is(err, io.ErrUnexpectedEOF) {
						t.Fatalf("unexpected error type: %v", err)
					}
					break
				}
			}
		}
	})
}

// scriptConn is a net.Conn reading from r and discarding writes.
type scriptConn struct {
	r io.Reader
}

func (s *scriptConn) Read(p []byte) (int, error)         { return s.r.Read(p) }
func (s *scriptConn) Write(p []byte) (int, error)        { return len(p), nil }
func (s *scriptConn) Close() error                       { return nil }
func (s *scriptConn) LocalAddr() net.Addr                { return &net.TCPAddr{} }
func (s *scriptConn) RemoteAddr() net.Addr               { return &net.TCPAddr{} }
func (s *scriptConn) SetDeadline(t time.Time) error      { return nil }
func (s *scriptConn) SetReadDeadline(t time.Time) error  { return nil }
func (s *scriptConn) SetWriteDeadline(t time.Time) error { return nil }
