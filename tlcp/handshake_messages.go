package tlcp

import (
	"golang.org/x/crypto/cryptobyte"
)

// Handshake message types.
const (
	typeHelloRequest       uint8 = 0
	typeClientHello        uint8 = 1
	typeServerHello        uint8 = 2
	typeCertificate        uint8 = 11
	typeServerKeyExchange  uint8 = 12
	typeCertificateRequest uint8 = 13
	typeServerHelloDone    uint8 = 14
	typeCertificateVerify  uint8 = 15
	typeClientKeyExchange  uint8 = 16
	typeFinished           uint8 = 20
)

const extServerName uint16 = 0

// handshakeMessage is a typed handshake message.
type handshakeMessage interface {
	marshal() []byte
	unmarshal([]byte) bool
}

// wrapHandshake prepends the 4-byte header.
func wrapHandshake(typ uint8, body func(b *cryptobyte.Builder)) []byte {
	var b cryptobyte.Builder
	b.AddUint8(typ)
	b.AddUint24LengthPrefixed(body)
	out, err := b.Bytes()
	if err != nil {
		return nil
	}
	return out
}

// readHeader checks the 4-byte header of a complete message and returns the body.
func readHeader(data []byte, typ uint8) (cryptobyte.String, bool) {
	s := cryptobyte.String(data)
	var t uint8
	var body cryptobyte.String
	if !s.ReadUint8(&t) || t != typ || !s.ReadUint24LengthPrefixed(&body) || !s.Empty() {
		return nil, false
	}
	return body, true
}

type clientHelloMsg struct {
	raw                []byte
	vers               uint16
	random             []byte
	sessionID          []byte
	cipherSuites       []uint16
	compressionMethods []uint8
	serverName         string
	hasExtensions      bool
}

func (m *clientHelloMsg) marshal() []byte {
	if m.raw != nil {
		return m.raw
	}
	m.raw = wrapHandshake(typeClientHello, func(b *cryptobyte.Builder) {
		b.AddUint16(m.vers)
		b.AddBytes(m.random)
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.sessionID) })
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			for _, s := range m.cipherSuites {
				b.AddUint16(s)
			}
		})
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.compressionMethods) })
		if m.serverName != "" {
			// Only extensions the settings ask for: SNI.
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
				b.AddUint16(extServerName)
				b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
					b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
						b.AddUint8(0) // host_name
						b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(m.serverName)) })
					})
				})
			})
		}
	})
	return m.raw
}

func (m *clientHelloMsg) unmarshal(data []byte) bool {
	*m = clientHelloMsg{raw: data}
	s, ok := readHeader(data, typeClientHello)
	if !ok {
		return false
	}
	var suites, comp cryptobyte.String
	if !s.ReadUint16(&m.vers) || !s.ReadBytes(&m.random, 32) ||
		!s.ReadUint8LengthPrefixed((*cryptobyte.String)(&m.sessionID)) || len(m.sessionID) > 32 ||
		!s.ReadUint16LengthPrefixed(&suites) || len(suites) < 2 || len(suites)%2 != 0 ||
		!s.ReadUint8LengthPrefixed(&comp) || len(comp) < 1 {
		return false
	}
	for !suites.Empty() {
		var id uint16
		suites.ReadUint16(&id)
		m.cipherSuites = append(m.cipherSuites, id)
	}
	m.compressionMethods = comp
	if s.Empty() {
		return true
	}
	var exts cryptobyte.String
	if !s.ReadUint16LengthPrefixed(&exts) || !s.Empty() {
		return false
	}
	m.hasExtensions = true
	seen := map[uint16]bool{}
	for !exts.Empty() {
		var typ uint16
		var ext cryptobyte.String
		if !exts.ReadUint16(&typ) || !exts.ReadUint16LengthPrefixed(&ext) {
			return false
		}
		if seen[typ] {
			return false
		}
		seen[typ] = true
		if typ != extServerName {
			continue // unknown extensions are ignored
		}
		var list cryptobyte.String
		if !ext.ReadUint16LengthPrefixed(&list) || list.Empty() || !ext.Empty() {
			return false
		}
		for !list.Empty() {
			var nameType uint8
			var name cryptobyte.String
			if !list.ReadUint8(&nameType) || !list.ReadUint16LengthPrefixed(&name) || len(name) == 0 {
				return false
			}
			if nameType != 0 {
				continue
			}
			if m.serverName != "" {
				return false
			}
			m.serverName = string(name)
			for _, c := range name {
				if c < 0x21 || c > 0x7e {
					return false
				}
			}
		}
	}
	return true
}

type serverHelloMsg struct {
	raw               []byte
	vers              uint16
	random            []byte
	sessionID         []byte
	cipherSuite       uint16
	compressionMethod uint8
}

func (m *serverHelloMsg) marshal() []byte {
	if m.raw != nil {
		return m.raw
	}
	m.raw = wrapHandshake(typeServerHello, func(b *cryptobyte.Builder) {
		b.AddUint16(m.vers)
		b.AddBytes(m.random)
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.sessionID) })
		b.AddUint16(m.cipherSuite)
		b.AddUint8(m.compressionMethod)
	})
	return m.raw
}

func (m *serverHelloMsg) unmarshal(data []byte) bool {
	*m = serverHelloMsg{raw: data}
	s, ok := readHeader(data, typeServerHello)
	if !ok {
		return false
	}
	if !s.ReadUint16(&m.vers) || !s.ReadBytes(&m.random, 32) ||
		!s.ReadUint8LengthPrefixed((*cryptobyte.String)(&m.sessionID)) || len(m.sessionID) > 32 ||
		!s.ReadUint16(&m.cipherSuite) || !s.ReadUint8(&m.compressionMethod) {
		return false
	}
	if s.Empty() {
		return true
	}
	// Extensions are parsed for well-formedness and ignored.
	var exts cryptobyte.String
	if !s.ReadUint16LengthPrefixed(&exts) || !s.Empty() {
		return false
	}
	for !exts.Empty() {
		var typ uint16
		var ext cryptobyte.String
		if !exts.ReadUint16(&typ) || !exts.ReadUint16LengthPrefixed(&ext) {
			return false
		}
	}
	return true
}

type certificateMsg struct {
	raw          []byte
	certificates [][]byte
}

func (m *certificateMsg) marshal() []byte {
	if m.raw != nil {
		return m.raw
	}
	m.raw = wrapHandshake(typeCertificate, func(b *cryptobyte.Builder) {
		b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
			for _, c := range m.certificates {
				b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(c) })
			}
		})
	})
	return m.raw
}

func (m *certificateMsg) unmarshal(data []byte) bool {
	*m = certificateMsg{raw: data}
	s, ok := readHeader(data, typeCertificate)
	if !ok {
		return false
	}
	var list cryptobyte.String
	if !s.ReadUint24LengthPrefixed(&list) || !s.Empty() {
		return false
	}
	for !list.Empty() {
		var c []byte
		if !list.ReadUint24LengthPrefixed((*cryptobyte.String)(&c)) || len(c) == 0 {
			return false
		}
		m.certificates = append(m.certificates, c)
	}
	return true
}

// serverKeyExchangeMsg: ECC: signature<2>; ECDHE: params(69) || signature<2>.
type serverKeyExchangeMsg struct {
	raw       []byte
	params    []byte // ECDHE only: 03 00 29 41 04 X Y as on the wire
	signature []byte
}

func (m *serverKeyExchangeMsg) marshal() []byte {
	if m.raw != nil {
		return m.raw
	}
	m.raw = wrapHandshake(typeServerKeyExchange, func(b *cryptobyte.Builder) {
		b.AddBytes(m.params)
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.signature) })
	})
	return m.raw
}

// unmarshalSuite parses the message for an ECC (ecdhe false) or ECDHE suite.
func (m *serverKeyExchangeMsg) unmarshalSuite(data []byte, ecdhe bool) bool {
	*m = serverKeyExchangeMsg{raw: data}
	s, ok := readHeader(data, typeServerKeyExchange)
	if !ok {
		return false
	}
	if ecdhe {
		if !s.ReadBytes(&m.params, 4) || m.params[0] != 3 || m.params[3] != 65 {
			return false
		}
		var pt []byte
		if !s.ReadBytes(&pt, 65) || pt[0] != 4 {
			return false
		}
		m.params = data[4 : 4+69]
	}
	if !s.ReadUint16LengthPrefixed((*cryptobyte.String)(&m.signature)) || len(m.signature) == 0 || !s.Empty() {
		return false
	}
	return true
}

func (m *serverKeyExchangeMsg) unmarshal(data []byte) bool {
	if len(data) > 4 && data[4] == 3 {
		return m.unmarshalSuite(data, true)
	}
	return m.unmarshalSuite(data, false)
}

type certificateRequestMsg struct {
	raw                    []byte
	certificateTypes       []byte
	certificateAuthorities [][]byte
}

func (m *certificateRequestMsg) marshal() []byte {
	if m.raw != nil {
		return m.raw
	}
	m.raw = wrapHandshake(typeCertificateRequest, func(b *cryptobyte.Builder) {
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.certificateTypes) })
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			for _, ca := range m.certificateAuthorities {
				b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(ca) })
			}
		})
	})
	return m.raw
}

func (m *certificateRequestMsg) unmarshal(data []byte) bool {
	*m = certificateRequestMsg{raw: data}
	s, ok := readHeader(data, typeCertificateRequest)
	if !ok {
		return false
	}
	var cas cryptobyte.String
	if !s.ReadUint8LengthPrefixed((*cryptobyte.String)(&m.certificateTypes)) || len(m.certificateTypes) == 0 ||
		!s.ReadUint16LengthPrefixed(&cas) || !s.Empty() {
		return false
	}
	for !cas.Empty() {
		var ca []byte
		if !cas.ReadUint16LengthPrefixed((*cryptobyte.String)(&ca)) || len(ca) == 0 {
			return false
		}
		m.certificateAuthorities = append(m.certificateAuthorities, ca)
	}
	return true
}

type serverHelloDoneMsg struct{}

func (m *serverHelloDoneMsg) marshal() []byte { return []byte{typeServerHelloDone, 0, 0, 0} }

func (m *serverHelloDoneMsg) unmarshal(data []byte) bool {
	return len(data) == 4 && data[0] == typeServerHelloDone && data[1] == 0 && data[2] == 0 && data[3] == 0
}

// clientKeyExchangeMsg keeps the body; its meaning depends on the suite.
type clientKeyExchangeMsg struct {
	raw  []byte
	body []byte
}

func (m *clientKeyExchangeMsg) marshal() []byte {
	if m.raw != nil {
		return m.raw
	}
	m.raw = wrapHandshake(typeClientKeyExchange, func(b *cryptobyte.Builder) { b.AddBytes(m.body) })
	return m.raw
}

func (m *clientKeyExchangeMsg) unmarshal(data []byte) bool {
	*m = clientKeyExchangeMsg{raw: data}
	s, ok := readHeader(data, typeClientKeyExchange)
	if !ok || len(s) == 0 {
		return false
	}
	m.body = s
	return true
}

// eccCiphertext returns the SM2 ciphertext of an ECC ClientKeyExchange: a
// 2-byte length followed by DER (or raw 04||x||y||C3||C2). A DER
// ciphertext followed by junk inside the vector is trimmed.
func (m *clientKeyExchangeMsg) eccCiphertext() ([]byte, bool) {
	s := cryptobyte.String(m.body)
	var ct cryptobyte.String
	if !s.ReadUint16LengthPrefixed(&ct) || !s.Empty() || len(ct) == 0 {
		return nil, false
	}
	if ct[0] == 0x30 {
		var seq cryptobyte.String
		in := ct
		if !in.ReadASN1Element(&seq, 0x30) {
			return nil, false
		}
		return seq, true
	}
	if ct[0] == 0x04 && len(ct) > 65+32 {
		return ct, true
	}
	return nil, false
}

// ecdhePoint returns the client's ephemeral point: 69 bytes 03 00 29 41
// point, or 71 bytes with a 2-byte length prefix 00 45.
func (m *clientKeyExchangeMsg) ecdhePoint() ([]byte, bool) {
	b := m.body
	if len(b) == 71 && b[0] == 0 && b[1] == 69 {
		b = b[2:]
	}
	if len(b) != 69 || b[0] != 3 || b[3] != 65 || b[4] != 4 {
		return nil, false
	}
	return b[4:], true
}

type certificateVerifyMsg struct {
	raw       []byte
	signature []byte
}

func (m *certificateVerifyMsg) marshal() []byte {
	if m.raw != nil {
		return m.raw
	}
	m.raw = wrapHandshake(typeCertificateVerify, func(b *cryptobyte.Builder) {
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.signature) })
	})
	return m.raw
}

// unmarshal accepts a 2-byte-prefixed DER signature, or a bare DER
// signature whose DER length equals the body (GmSSL 3.0.x).
func (m *certificateVerifyMsg) unmarshal(data []byte) bool {
	*m = certificateVerifyMsg{raw: data}
	s, ok := readHeader(data, typeCertificateVerify)
	if !ok {
		return false
	}
	body := s
	if s.ReadUint16LengthPrefixed((*cryptobyte.String)(&m.signature)) && s.Empty() && len(m.signature) > 0 {
		return true
	}
	var el cryptobyte.String
	in := body
	if len(body) > 0 && body[0] == 0x30 && in.ReadASN1Element(&el, 0x30) && in.Empty() {
		m.signature = body
		return true
	}
	return false
}

type finishedMsg struct {
	raw        []byte
	verifyData []byte
}

func (m *finishedMsg) marshal() []byte {
	if m.raw != nil {
		return m.raw
	}
	m.raw = wrapHandshake(typeFinished, func(b *cryptobyte.Builder) { b.AddBytes(m.verifyData) })
	return m.raw
}

func (m *finishedMsg) unmarshal(data []byte) bool {
	*m = finishedMsg{raw: data}
	s, ok := readHeader(data, typeFinished)
	if !ok || len(s) != finishedLen {
		return false
	}
	m.verifyData = s
	return true
}

type helloRequestMsg struct{}

func (*helloRequestMsg) marshal() []byte { return []byte{typeHelloRequest, 0, 0, 0} }

func (*helloRequestMsg) unmarshal(data []byte) bool {
	return len(data) == 4 && data[0] == 0 && data[3] == 0 && data[1] == 0 && data[2] == 0
}
