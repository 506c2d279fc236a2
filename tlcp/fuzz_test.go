package tlcp

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"
)

func seedHandshake(f *testing.F, msgs ...[]byte) {
	for _, m := range msgs {
		f.Add(m)
	}
}

func FuzzClientHello(f *testing.F) {
	seedHandshake(f, (&clientHelloMsg{vers: VersionTLCP, random: make([]byte, 32), cipherSuites: []uint16{ECC_SM4_GCM_SM3, 0xff},
		compressionMethods: []byte{0}, serverName: "a.example"}).marshal())
	f.Add(mustHexF("010000350101" + "15d57028884a1261d99d0aec529143ae3d93004b26f563e4ad996c32dfc59f4e" + "000004e05300ff0100000400230000"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var m clientHelloMsg
		if m.unmarshal(data) {
			m2 := m
			m2.raw = nil
			var m3 clientHelloMsg
			if !m3.unmarshal(m2.marshal()) || m3.serverName != m.serverName || len(m3.cipherSuites) != len(m.cipherSuites) {
				t.Fatal("ClientHello does not round-trip")
			}
		}
	})
}

func FuzzServerHello(f *testing.F) {
	seedHandshake(f, (&serverHelloMsg{vers: VersionTLCP, random: make([]byte, 32), sessionID: make([]byte, 32), cipherSuite: ECC_SM4_CBC_SM3}).marshal())
	f.Fuzz(func(t *testing.T, data []byte) {
		var m serverHelloMsg
		if m.unmarshal(data) {
			m.raw = nil
			var m2 serverHelloMsg
			if !m2.unmarshal(m.marshal()) || m2.cipherSuite != m.cipherSuite || !bytes.Equal(m2.sessionID, m.sessionID) {
				t.Fatal("ServerHello does not round-trip")
			}
		}
	})
}

func FuzzCertificateMsg(f *testing.F) {
	seedHandshake(f, (&certificateMsg{certificates: [][]byte{{1, 2, 3}, {4}}}).marshal(), (&certificateMsg{}).marshal())
	f.Fuzz(func(t *testing.T, data []byte) {
		var m certificateMsg
		if m.unmarshal(data) {
			m.raw = nil
			if !bytes.Equal(m.marshal(), data) {
				t.Fatal("Certificate does not round-trip")
			}
		}
	})
}

func FuzzServerKeyExchange(f *testing.F) {
	params := append(append([]byte{}, ecdhParamsPrefix...), append([]byte{4}, make([]byte, 64)...)...)
	seedHandshake(f, (&serverKeyExchangeMsg{signature: make([]byte, 71)}).marshal(),
		(&serverKeyExchangeMsg{params: params, signature: make([]byte, 70)}).marshal())
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, ecdhe := range []bool{false, true} {
			var m serverKeyExchangeMsg
			if m.unmarshalSuite(data, ecdhe) {
				if ecdhe && len(m.params) != 69 {
					t.Fatal("bad params length")
				}
				m.raw = nil
				if !bytes.Equal(m.marshal(), data) {
					t.Fatal("ServerKeyExchange does not round-trip")
				}
			}
		}
		var m serverKeyExchangeMsg
		m.unmarshal(data)
	})
}

func FuzzClientKeyExchange(f *testing.F) {
	seedHandshake(f, (&clientKeyExchangeMsg{body: append([]byte{0, 3}, 0x30, 1, 0)}).marshal(),
		(&clientKeyExchangeMsg{body: append(append([]byte{}, ecdhParamsPrefix...), append([]byte{4}, make([]byte, 64)...)...)}).marshal())
	f.Fuzz(func(t *testing.T, data []byte) {
		var m clientKeyExchangeMsg
		if m.unmarshal(data) {
			if ct, ok := m.eccCiphertext(); ok && len(ct) == 0 {
				t.Fatal("empty ciphertext accepted")
			}
			if pt, ok := m.ecdhePoint(); ok && len(pt) != 65 {
				t.Fatal("bad point length")
			}
		}
	})
}

func FuzzCertificateRequest(f *testing.F) {
	seedHandshake(f, (&certificateRequestMsg{certificateTypes: []byte{1, 64}, certificateAuthorities: [][]byte{{0x30, 0}}}).marshal())
	f.Fuzz(func(t *testing.T, data []byte) {
		var m certificateRequestMsg
		if m.unmarshal(data) {
			m.raw = nil
			if !bytes.Equal(m.marshal(), data) {
				t.Fatal("CertificateRequest does not round-trip")
			}
		}
	})
}

func FuzzCertificateVerify(f *testing.F) {
	seedHandshake(f, (&certificateVerifyMsg{signature: []byte{0x30, 0}}).marshal(), []byte{15, 0, 0, 2, 0x30, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		var m certificateVerifyMsg
		if m.unmarshal(data) && len(m.signature) == 0 {
			t.Fatal("empty signature accepted")
		}
	})
}

func FuzzFinished(f *testing.F) {
	seedHandshake(f, (&finishedMsg{verifyData: make([]byte, 12)}).marshal())
	f.Fuzz(func(t *testing.T, data []byte) {
		var m finishedMsg
		if m.unmarshal(data) {
			if len(m.verifyData) != 12 {
				t.Fatal("wrong verify_data length accepted")
			}
			var d serverHelloDoneMsg
			d.unmarshal(data)
			var h helloRequestMsg
			h.unmarshal(data)
		}
	})
}

// FuzzRecordLayer feeds arbitrary bytes to the record reader, in the clear
// and under CBC and GCM, and to a server handshake.
func FuzzRecordLayer(f *testing.F) {
	f.Add(byte(0), []byte{22, 1, 1, 0, 4, 1, 0, 0, 0})
	f.Add(byte(1), []byte{23, 1, 1, 0, 64})
	f.Add(byte(2), []byte{23, 1, 1, 0, 24, 1, 2, 3})
	f.Add(byte(3), []byte{22, 1, 1, 0xff, 0xff})
	f.Add(byte(3), append([]byte{22, 1, 1, 0, 0x3b}, (&clientHelloMsg{vers: VersionTLCP, random: make([]byte, 32),
		cipherSuites: []uint16{ECC_SM4_GCM_SM3}, compressionMethods: []byte{0}, serverName: "server.test"}).marshal()...))
	sc := serverConfig(getPKI(f))
	f.Fuzz(func(t *testing.T, mode byte, data []byte) {
		fc := &feedConn{}
		fc.buf.Write(data)
		c := Server(fc, &Config{})
		c.vers = VersionTLCP
		switch mode % 4 {
		case 1:
			c.in.cipher, _ = newRecordCipher(suiteByID(ECC_SM4_CBC_SM3), make([]byte, 32), make([]byte, 16), make([]byte, 16))
			c.handshakeComplete.Store(true)
		case 2:
			c.in.cipher, _ = newRecordCipher(suiteByID(ECC_SM4_GCM_SM3), nil, make([]byte, 16), make([]byte, 4))
			c.handshakeComplete.Store(true)
		case 3:
			c = Server(fc, sc)
			c.Handshake() //nolint:errcheck // only panics matter
			return
		}
		buf := make([]byte, 100)
		for i := 0; i < 100; i++ {
			if _, err := c.Read(buf); err != nil {
				break
			}
		}
	})
}

// FuzzMuxClassify checks the classifier's invariants.
func FuzzMuxClassify(f *testing.F) {
	f.Add([]byte{22, 1, 1, 0, 50, 1, 0, 0, 46, 1, 1})
	f.Add([]byte{22, 3, 1, 0, 50, 1, 0, 0, 46, 3, 3})
	f.Fuzz(func(t *testing.T, data []byte) {
		isTLCP, more := classifyFirstRecord(data)
		if isTLCP && more {
			t.Fatal("both decided and needing more")
		}
		if isTLCP && (len(data) < firstRecordPeekLen || data[0] != 22 || data[1] != 1 || data[2] != 1 || data[5] != 1) {
			t.Fatal("misclassified as TLCP")
		}
		if more && len(data) >= firstRecordPeekLen {
			t.Fatal("asks for more than the peek length")
		}
	})
}

func mustHexF(s string) []byte {
	b := make([]byte, len(s)/2)
	for i := range b {
		b[i] = unhex(s[2*i])<<4 | unhex(s[2*i+1])
	}
	return b
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

var _ = io.EOF
var _ net.Conn = (*feedConn)(nil)
var _ = time.Second
