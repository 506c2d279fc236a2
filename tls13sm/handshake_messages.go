package tls13sm

import (
	"golang.org/x/crypto/cryptobyte"
)

// Handshake message types (RFC 8446 4).
const (
	typeClientHello         uint8 = 1
	typeServerHello         uint8 = 2
	typeNewSessionTicket    uint8 = 4
	typeEndOfEarlyData      uint8 = 5
	typeEncryptedExtensions uint8 = 8
	typeCertificate         uint8 = 11
	typeCertificateRequest  uint8 = 13
	typeCertificateVerify   uint8 = 15
	typeFinished            uint8 = 20
	typeKeyUpdate           uint8 = 24
	typeMessageHash         uint8 = 254
)

// Extension types (RFC 8446 4.2).
const (
	extServerName              uint16 = 0
	extSupportedGroups         uint16 = 10
	extSignatureAlgorithms     uint16 = 13
	extALPN                    uint16 = 16
	extPreSharedKey            uint16 = 41
	extEarlyData               uint16 = 42
	extSupportedVersions       uint16 = 43
	extCookie                  uint16 = 44
	extPSKModes                uint16 = 45
	extCertificateAuthorities  uint16 = 47
	extSignatureAlgorithmsCert uint16 = 50
	extKeyShare                uint16 = 51
)

const (
	// VersionTLS13 is the only version this package speaks.
	VersionTLS13 uint16 = 0x0304
	versionTLS12 uint16 = 0x0303
	versionTLS10 uint16 = 0x0301

	// groupCurveSM2 is the curveSM2 key-share group of RFC 8998.
	groupCurveSM2 uint16 = 0x0029
	// schemeSM2SM3 is the sm2sig_sm3 signature scheme of RFC 8998.
	schemeSM2SM3 uint16 = 0x0708

	pskModeDHE uint8 = 1 // psk_dhe_ke

	maxCertificates = 17 // leaf + pki.MaxPeerIntermediates
	maxListEntries  = 512
)

// helloRetryRequestRandom marks a ServerHello as a HelloRetryRequest (RFC 8446 4.1.3).
var helloRetryRequestRandom = []byte{
	0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11,
	0xBE, 0x1D, 0x8C, 0x02, 0x1E, 0x65, 0xB8, 0x91,
	0xC2, 0xA2, 0x11, 0x16, 0x7A, 0xBB, 0x8C, 0x5E,
	0x07, 0x9E, 0x09, 0xE2, 0xC8, 0xA8, 0x33, 0x9C,
}

type keyShare struct {
	group uint16
	data  []byte
}

type pskIdentity struct {
	label               []byte
	obfuscatedTicketAge uint32
}

// handshakeMessage is implemented by every message.
type handshakeMessage interface {
	marshal() []byte
	unmarshal([]byte) bool
}

func addHandshakeHeader(b *cryptobyte.Builder, typ uint8, body func(*cryptobyte.Builder)) {
	b.AddUint8(typ)
	b.AddUint24LengthPrefixed(body)
}

// readHeader checks the 4-byte header of data against typ and returns the body.
func readHeader(data []byte, typ uint8) (cryptobyte.String, bool) {
	s := cryptobyte.String(data)
	var t uint8
	var body cryptobyte.String
	if !s.ReadUint8(&t) || t != typ || !s.ReadUint24LengthPrefixed(&body) || !s.Empty() {
		return nil, false
	}
	return body, true
}

func readUint16List(s *cryptobyte.String, out *[]uint16, allowEmpty bool) bool {
	var l cryptobyte.String
	if !s.ReadUint16LengthPrefixed(&l) || (!allowEmpty && l.Empty()) || len(l)%2 != 0 || len(l)/2 > maxListEntries {
		return false
	}
	for !l.Empty() {
		var v uint16
		if !l.ReadUint16(&v) {
			return false
		}
		*out = append(*out, v)
	}
	return true
}

func addUint16List(b *cryptobyte.Builder, l []uint16) {
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, v := range l {
			b.AddUint16(v)
		}
	})
}

// ---- ClientHello ----

type clientHelloMsg struct {
	raw                     []byte
	vers                    uint16
	random                  []byte
	sessionID               []byte
	cipherSuites            []uint16
	compressionMethods      []uint8
	serverName              string
	supportedVersions       []uint16
	supportedGroups         []uint16
	signatureAlgorithms     []uint16
	signatureAlgorithmsCert []uint16
	keyShares               []keyShare
	pskModes                []uint8
	pskIdentities           []pskIdentity
	pskBinders              [][]byte
	cookie                  []byte
	earlyData               bool
	alpnProtocols           []string
	// extensions lists the extension types in the order received.
	extensions []uint16
}

func (m *clientHelloMsg) has(ext uint16) bool {
	for _, e := range m.extensions {
		if e == ext {
			return true
		}
	}
	return false
}

func (m *clientHelloMsg) marshal() []byte {
	var b cryptobyte.Builder
	addHandshakeHeader(&b, typeClientHello, func(b *cryptobyte.Builder) {
		b.AddUint16(m.vers)
		b.AddBytes(m.random)
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.sessionID) })
		addUint16List(b, m.cipherSuites)
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.compressionMethods) })
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			m.marshalExtensionsWithoutBinders(b)
			if len(m.pskIdentities) > 0 {
				b.AddUint16(extPreSharedKey)
				b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
					b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
						for _, id := range m.pskIdentities {
							b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(id.label) })
							b.AddUint32(id.obfuscatedTicketAge)
						}
					})
					b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
						for _, binder := range m.pskBinders {
							b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(binder) })
						}
					})
				})
			}
		})
	})
	out, err := b.Bytes()
	if err != nil {
		return nil
	}
	m.raw = out
	return out
}

func (m *clientHelloMsg) marshalExtensionsWithoutBinders(b *cryptobyte.Builder) {
	if m.serverName != "" {
		b.AddUint16(extServerName)
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
				b.AddUint8(0) // host_name
				b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(m.serverName)) })
			})
		})
	}
	if len(m.supportedGroups) > 0 {
		b.AddUint16(extSupportedGroups)
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { addUint16List(b, m.supportedGroups) })
	}
	if len(m.signatureAlgorithms) > 0 {
		b.AddUint16(extSignatureAlgorithms)
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { addUint16List(b, m.signatureAlgorithms) })
	}
	if len(m.signatureAlgorithmsCert) > 0 {
		b.AddUint16(extSignatureAlgorithmsCert)
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { addUint16List(b, m.signatureAlgorithmsCert) })
	}
	if len(m.alpnProtocols) > 0 {
		b.AddUint16(extALPN)
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
				for _, p := range m.alpnProtocols {
					b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(p)) })
				}
			})
		})
	}
	if len(m.supportedVersions) > 0 {
		b.AddUint16(extSupportedVersions)
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) {
				for _, v := range m.supportedVersions {
					b.AddUint16(v)
				}
			})
		})
	}
	if len(m.cookie) > 0 {
		b.AddUint16(extCookie)
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.cookie) })
		})
	}
	if m.keyShares != nil {
		b.AddUint16(extKeyShare)
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
				for _, ks := range m.keyShares {
					b.AddUint16(ks.group)
					b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(ks.data) })
				}
			})
		})
	}
	if len(m.pskModes) > 0 {
		b.AddUint16(extPSKModes)
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.pskModes) })
		})
	}
	if m.earlyData {
		b.AddUint16(extEarlyData)
		b.AddUint16(0)
	}
}

// bindersLen is the length of the binders list at the end of raw, length prefix included.
func (m *clientHelloMsg) bindersLen() int {
	n := 2
	for _, b := range m.pskBinders {
		n += 1 + len(b)
	}
	return n
}

// truncatedForBinders is raw without the binders list (RFC 8446 4.2.11.2).
func (m *clientHelloMsg) truncatedForBinders() []byte {
	return m.raw[:len(m.raw)-m.bindersLen()]
}

// setBinders overwrites the binders at the end of raw (same lengths).
func (m *clientHelloMsg) setBinders(binders [][]byte) bool {
	if len(binders) != len(m.pskBinders) {
		return false
	}
	for i := range binders {
		if len(binders[i]) != len(m.pskBinders[i]) {
			return false
		}
	}
	m.pskBinders = binders
	off := len(m.raw) - m.bindersLen() + 2
	for _, b := range binders {
		m.raw[off] = byte(len(b))
		copy(m.raw[off+1:], b)
		off += 1 + len(b)
	}
	return true
}

func (m *clientHelloMsg) unmarshal(data []byte) bool {
	*m = clientHelloMsg{raw: data}
	s, ok := readHeader(data, typeClientHello)
	if !ok {
		return false
	}
	var sid, comp cryptobyte.String
	if !s.ReadUint16(&m.vers) || !s.ReadBytes(&m.random, 32) ||
		!s.ReadUint8LengthPrefixed(&sid) || len(sid) > 32 ||
		!readUint16List(&s, &m.cipherSuites, false) ||
		!s.ReadUint8LengthPrefixed(&comp) || comp.Empty() {
		return false
	}
	m.sessionID = sid
	m.compressionMethods = comp
	if s.Empty() { // no extensions: valid syntax, refused later (no supported_versions)
		return true
	}
	var exts cryptobyte.String
	if !s.ReadUint16LengthPrefixed(&exts) || !s.Empty() {
		return false
	}
	seen := make(map[uint16]bool)
	for !exts.Empty() {
		var ext uint16
		var d cryptobyte.String
		if !exts.ReadUint16(&ext) || !exts.ReadUint16LengthPrefixed(&d) {
			return false
		}
		if seen[ext] || len(seen) >= 64 {
			return false
		}
		seen[ext] = true
		m.extensions = append(m.extensions, ext)
		switch ext {
		case extServerName:
			var list cryptobyte.String
			if !d.ReadUint16LengthPrefixed(&list) || list.Empty() {
				return false
			}
			for !list.Empty() {
				var typ uint8
				var name cryptobyte.String
				if !list.ReadUint8(&typ) || !list.ReadUint16LengthPrefixed(&name) || name.Empty() {
					return false
				}
				if typ != 0 {
					continue
				}
				if m.serverName != "" {
					return false
				}
				m.serverName = string(name)
			}
		case extSupportedGroups:
			if !readUint16List(&d, &m.supportedGroups, false) {
				return false
			}
		case extSignatureAlgorithms:
			if !readUint16List(&d, &m.signatureAlgorithms, false) {
				return false
			}
		case extSignatureAlgorithmsCert:
			if !readUint16List(&d, &m.signatureAlgorithmsCert, false) {
				return false
			}
		case extALPN:
			var list cryptobyte.String
			if !d.ReadUint16LengthPrefixed(&list) || list.Empty() {
				return false
			}
			for !list.Empty() {
				var p cryptobyte.String
				if !list.ReadUint8LengthPrefixed(&p) || p.Empty() || len(m.alpnProtocols) >= maxListEntries {
					return false
				}
				m.alpnProtocols = append(m.alpnProtocols, string(p))
			}
		case extSupportedVersions:
			var l cryptobyte.String
			if !d.ReadUint8LengthPrefixed(&l) || l.Empty() || len(l)%2 != 0 {
				return false
			}
			for !l.Empty() {
				var v uint16
				if !l.ReadUint16(&v) {
					return false
				}
				m.supportedVersions = append(m.supportedVersions, v)
			}
		case extCookie:
			var c cryptobyte.String
			if !d.ReadUint16LengthPrefixed(&c) || c.Empty() {
				return false
			}
			m.cookie = c
		case extKeyShare:
			var l cryptobyte.String
			if !d.ReadUint16LengthPrefixed(&l) {
				return false
			}
			m.keyShares = []keyShare{}
			for !l.Empty() {
				var ks keyShare
				var kd cryptobyte.String
				if !l.ReadUint16(&ks.group) || !l.ReadUint16LengthPrefixed(&kd) || kd.Empty() || len(m.keyShares) >= 64 {
					return false
				}
				ks.data = kd
				m.keyShares = append(m.keyShares, ks)
			}
		case extPSKModes:
			var l cryptobyte.String
			if !d.ReadUint8LengthPrefixed(&l) || l.Empty() {
				return false
			}
			m.pskModes = l
		case extEarlyData:
			m.earlyData = true
		case extPreSharedKey:
			if !exts.Empty() { // must be last; the handshake refuses with illegal_parameter
				m.extensions = append(m.extensions, 0xFFFF)
			}
			var ids, binders cryptobyte.String
			if !d.ReadUint16LengthPrefixed(&ids) || ids.Empty() {
				return false
			}
			for !ids.Empty() {
				var id pskIdentity
				var label cryptobyte.String
				if !ids.ReadUint16LengthPrefixed(&label) || label.Empty() ||
					!ids.ReadUint32(&id.obfuscatedTicketAge) || len(m.pskIdentities) >= 16 {
					return false
				}
				id.label = label
				m.pskIdentities = append(m.pskIdentities, id)
			}
			if !d.ReadUint16LengthPrefixed(&binders) || binders.Empty() {
				return false
			}
			for !binders.Empty() {
				var binder cryptobyte.String
				if !binders.ReadUint8LengthPrefixed(&binder) || len(binder) < 32 {
					return false
				}
				m.pskBinders = append(m.pskBinders, binder)
			}
			if len(m.pskBinders) != len(m.pskIdentities) {
				return false
			}
		default:
			continue // unknown extensions are ignored (RFC 8446 4.2)
		}
		if !d.Empty() {
			return false
		}
	}
	return true
}

// pskNotLast reports whether pre_shared_key was not the last extension.
func (m *clientHelloMsg) pskNotLast() bool { return m.has(0xFFFF) }

// ---- ServerHello / HelloRetryRequest ----

type serverHelloMsg struct {
	raw               []byte
	vers              uint16
	random            []byte
	sessionID         []byte
	cipherSuite       uint16
	compressionMethod uint8
	supportedVersion  uint16
	serverShare       keyShare
	selectedIdentity  uint16
	hasPSK            bool
	cookie            []byte
	selectedGroup     uint16 // HRR only
	extensions        []uint16
}

func (m *serverHelloMsg) isHRR() bool { return string(m.random) == string(helloRetryRequestRandom) }

func (m *serverHelloMsg) marshal() []byte {
	var b cryptobyte.Builder
	addHandshakeHeader(&b, typeServerHello, func(b *cryptobyte.Builder) {
		b.AddUint16(m.vers)
		b.AddBytes(m.random)
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.sessionID) })
		b.AddUint16(m.cipherSuite)
		b.AddUint8(m.compressionMethod)
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			if m.supportedVersion != 0 {
				b.AddUint16(extSupportedVersions)
				b.AddUint16(2)
				b.AddUint16(m.supportedVersion)
			}
			if m.serverShare.group != 0 {
				b.AddUint16(extKeyShare)
				b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
					b.AddUint16(m.serverShare.group)
					b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.serverShare.data) })
				})
			}
			if m.selectedGroup != 0 {
				b.AddUint16(extKeyShare)
				b.AddUint16(2)
				b.AddUint16(m.selectedGroup)
			}
			if m.hasPSK {
				b.AddUint16(extPreSharedKey)
				b.AddUint16(2)
				b.AddUint16(m.selectedIdentity)
			}
			if len(m.cookie) > 0 {
				b.AddUint16(extCookie)
				b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
					b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.cookie) })
				})
			}
		})
	})
	out, err := b.Bytes()
	if err != nil {
		return nil
	}
	m.raw = out
	return out
}

func (m *serverHelloMsg) unmarshal(data []byte) bool {
	*m = serverHelloMsg{raw: data}
	s, ok := readHeader(data, typeServerHello)
	if !ok {
		return false
	}
	var sid cryptobyte.String
	if !s.ReadUint16(&m.vers) || !s.ReadBytes(&m.random, 32) ||
		!s.ReadUint8LengthPrefixed(&sid) || len(sid) > 32 ||
		!s.ReadUint16(&m.cipherSuite) || !s.ReadUint8(&m.compressionMethod) {
		return false
	}
	m.sessionID = sid
	if s.Empty() {
		return true
	}
	var exts cryptobyte.String
	if !s.ReadUint16LengthPrefixed(&exts) || !s.Empty() {
		return false
	}
	hrr := m.isHRR()
	seen := make(map[uint16]bool)
	for !exts.Empty() {
		var ext uint16
		var d cryptobyte.String
		if !exts.ReadUint16(&ext) || !exts.ReadUint16LengthPrefixed(&d) || seen[ext] {
			return false
		}
		seen[ext] = true
		m.extensions = append(m.extensions, ext)
		switch ext {
		case extSupportedVersions:
			if !d.ReadUint16(&m.supportedVersion) {
				return false
			}
		case extKeyShare:
			if hrr {
				if !d.ReadUint16(&m.selectedGroup) {
					return false
				}
			} else {
				var kd cryptobyte.String
				if !d.ReadUint16(&m.serverShare.group) || !d.ReadUint16LengthPrefixed(&kd) || kd.Empty() {
					return false
				}
				m.serverShare.data = kd
			}
		case extPreSharedKey:
			m.hasPSK = true
			if !d.ReadUint16(&m.selectedIdentity) {
				return false
			}
		case extCookie:
			var c cryptobyte.String
			if !d.ReadUint16LengthPrefixed(&c) || c.Empty() {
				return false
			}
			m.cookie = c
		default:
			continue // checked by the client against what it sent
		}
		if !d.Empty() {
			return false
		}
	}
	return true
}

// ---- EncryptedExtensions ----

type encryptedExtensionsMsg struct {
	raw          []byte
	alpnProtocol string
	extensions   []uint16
}

func (m *encryptedExtensionsMsg) marshal() []byte {
	var b cryptobyte.Builder
	addHandshakeHeader(&b, typeEncryptedExtensions, func(b *cryptobyte.Builder) {
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			if m.alpnProtocol != "" {
				b.AddUint16(extALPN)
				b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
					b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
						b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(m.alpnProtocol)) })
					})
				})
			}
		})
	})
	out, err := b.Bytes()
	if err != nil {
		return nil
	}
	m.raw = out
	return out
}

func (m *encryptedExtensionsMsg) unmarshal(data []byte) bool {
	*m = encryptedExtensionsMsg{raw: data}
	s, ok := readHeader(data, typeEncryptedExtensions)
	if !ok {
		return false
	}
	var exts cryptobyte.String
	if !s.ReadUint16LengthPrefixed(&exts) || !s.Empty() {
		return false
	}
	seen := make(map[uint16]bool)
	for !exts.Empty() {
		var ext uint16
		var d cryptobyte.String
		if !exts.ReadUint16(&ext) || !exts.ReadUint16LengthPrefixed(&d) || seen[ext] {
			return false
		}
		seen[ext] = true
		m.extensions = append(m.extensions, ext)
		if ext == extALPN {
			var list, p cryptobyte.String
			if !d.ReadUint16LengthPrefixed(&list) || !list.ReadUint8LengthPrefixed(&p) || p.Empty() || !list.Empty() || !d.Empty() {
				return false
			}
			m.alpnProtocol = string(p)
		}
	}
	return true
}

// ---- CertificateRequest ----

type certificateRequestMsg struct {
	raw                     []byte
	context                 []byte
	signatureAlgorithms     []uint16
	signatureAlgorithmsCert []uint16
	certificateAuthorities  [][]byte
}

func (m *certificateRequestMsg) marshal() []byte {
	var b cryptobyte.Builder
	addHandshakeHeader(&b, typeCertificateRequest, func(b *cryptobyte.Builder) {
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.context) })
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			b.AddUint16(extSignatureAlgorithms)
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { addUint16List(b, m.signatureAlgorithms) })
			if len(m.signatureAlgorithmsCert) > 0 {
				b.AddUint16(extSignatureAlgorithmsCert)
				b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { addUint16List(b, m.signatureAlgorithmsCert) })
			}
			if len(m.certificateAuthorities) > 0 {
				b.AddUint16(extCertificateAuthorities)
				b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
					b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
						for _, ca := range m.certificateAuthorities {
							b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(ca) })
						}
					})
				})
			}
		})
	})
	out, err := b.Bytes()
	if err != nil {
		return nil
	}
	m.raw = out
	return out
}

func (m *certificateRequestMsg) unmarshal(data []byte) bool {
	*m = certificateRequestMsg{raw: data}
	s, ok := readHeader(data, typeCertificateRequest)
	if !ok {
		return false
	}
	var ctx, exts cryptobyte.String
	if !s.ReadUint8LengthPrefixed(&ctx) || !s.ReadUint16LengthPrefixed(&exts) || !s.Empty() {
		return false
	}
	m.context = ctx
	seen := make(map[uint16]bool)
	for !exts.Empty() {
		var ext uint16
		var d cryptobyte.String
		if !exts.ReadUint16(&ext) || !exts.ReadUint16LengthPrefixed(&d) || seen[ext] {
			return false
		}
		seen[ext] = true
		switch ext {
		case extSignatureAlgorithms:
			if !readUint16List(&d, &m.signatureAlgorithms, false) {
				return false
			}
		case extSignatureAlgorithmsCert:
			if !readUint16List(&d, &m.signatureAlgorithmsCert, false) {
				return false
			}
		case extCertificateAuthorities:
			var l cryptobyte.String
			if !d.ReadUint16LengthPrefixed(&l) || l.Empty() {
				return false
			}
			for !l.Empty() {
				var ca cryptobyte.String
				if !l.ReadUint16LengthPrefixed(&ca) || ca.Empty() || len(m.certificateAuthorities) >= maxListEntries {
					return false
				}
				m.certificateAuthorities = append(m.certificateAuthorities, ca)
			}
		default:
			continue
		}
		if !d.Empty() {
			return false
		}
	}
	return seen[extSignatureAlgorithms] // RFC 8446 4.3.2: MUST be specified
}

// ---- Certificate ----

type certificateMsg struct {
	raw          []byte
	context      []byte
	certificates [][]byte
}

func (m *certificateMsg) marshal() []byte {
	var b cryptobyte.Builder
	addHandshakeHeader(&b, typeCertificate, func(b *cryptobyte.Builder) {
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.context) })
		b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
			for _, c := range m.certificates {
				b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(c) })
				b.AddUint16(0) // no extensions
			}
		})
	})
	out, err := b.Bytes()
	if err != nil {
		return nil
	}
	m.raw = out
	return out
}

func (m *certificateMsg) unmarshal(data []byte) bool {
	*m = certificateMsg{raw: data}
	s, ok := readHeader(data, typeCertificate)
	if !ok {
		return false
	}
	var ctx, list cryptobyte.String
	if !s.ReadUint8LengthPrefixed(&ctx) || !s.ReadUint24LengthPrefixed(&list) || !s.Empty() {
		return false
	}
	m.context = ctx
	for !list.Empty() {
		var cert, exts cryptobyte.String
		if !list.ReadUint24LengthPrefixed(&cert) || cert.Empty() || !list.ReadUint16LengthPrefixed(&exts) ||
			len(m.certificates) >= maxCertificates {
			return false
		}
		// Entry extensions (status_request, SCT) are ignored but must be well formed.
		for !exts.Empty() {
			var typ uint16
			var d cryptobyte.String
			if !exts.ReadUint16(&typ) || !exts.ReadUint16LengthPrefixed(&d) {
				return false
			}
		}
		m.certificates = append(m.certificates, cert)
	}
	return true
}

// ---- CertificateVerify ----

type certificateVerifyMsg struct {
	raw       []byte
	scheme    uint16
	signature []byte
}

func (m *certificateVerifyMsg) marshal() []byte {
	var b cryptobyte.Builder
	addHandshakeHeader(&b, typeCertificateVerify, func(b *cryptobyte.Builder) {
		b.AddUint16(m.scheme)
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.signature) })
	})
	out, err := b.Bytes()
	if err != nil {
		return nil
	}
	m.raw = out
	return out
}

func (m *certificateVerifyMsg) unmarshal(data []byte) bool {
	*m = certificateVerifyMsg{raw: data}
	s, ok := readHeader(data, typeCertificateVerify)
	if !ok {
		return false
	}
	var sig cryptobyte.String
	if !s.ReadUint16(&m.scheme) || !s.ReadUint16LengthPrefixed(&sig) || sig.Empty() || !s.Empty() {
		return false
	}
	m.signature = sig
	return true
}

// ---- Finished ----

type finishedMsg struct {
	raw        []byte
	verifyData []byte
}

func (m *finishedMsg) marshal() []byte {
	var b cryptobyte.Builder
	addHandshakeHeader(&b, typeFinished, func(b *cryptobyte.Builder) { b.AddBytes(m.verifyData) })
	out, err := b.Bytes()
	if err != nil {
		return nil
	}
	m.raw = out
	return out
}

func (m *finishedMsg) unmarshal(data []byte) bool {
	*m = finishedMsg{raw: data}
	s, ok := readHeader(data, typeFinished)
	if !ok || len(s) != hashLen {
		return false
	}
	m.verifyData = s
	return true
}

// ---- NewSessionTicket ----

type newSessionTicketMsg struct {
	raw      []byte
	lifetime uint32
	ageAdd   uint32
	nonce    []byte
	label    []byte
	// maxEarlyData is parsed so that a server offering 0-RTT can be noticed; never sent.
	maxEarlyData uint32
}

func (m *newSessionTicketMsg) marshal() []byte {
	var b cryptobyte.Builder
	addHandshakeHeader(&b, typeNewSessionTicket, func(b *cryptobyte.Builder) {
		b.AddUint32(m.lifetime)
		b.AddUint32(m.ageAdd)
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.nonce) })
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.label) })
		b.AddUint16(0)
	})
	out, err := b.Bytes()
	if err != nil {
		return nil
	}
	m.raw = out
	return out
}

func (m *newSessionTicketMsg) unmarshal(data []byte) bool {
	*m = newSessionTicketMsg{raw: data}
	s, ok := readHeader(data, typeNewSessionTicket)
	if !ok {
		return false
	}
	var nonce, label, exts cryptobyte.String
	if !s.ReadUint32(&m.lifetime) || !s.ReadUint32(&m.ageAdd) || !s.ReadUint8LengthPrefixed(&nonce) ||
		!s.ReadUint16LengthPrefixed(&label) || label.Empty() || !s.ReadUint16LengthPrefixed(&exts) || !s.Empty() {
		return false
	}
	m.nonce, m.label = nonce, label
	seen := make(map[uint16]bool)
	for !exts.Empty() {
		var ext uint16
		var d cryptobyte.String
		if !exts.ReadUint16(&ext) || !exts.ReadUint16LengthPrefixed(&d) || seen[ext] {
			return false
		}
		seen[ext] = true
		if ext == extEarlyData {
			if !d.ReadUint32(&m.maxEarlyData) || !d.Empty() {
				return false
			}
		}
	}
	return true
}

// ---- KeyUpdate ----

type keyUpdateMsg struct {
	raw             []byte
	updateRequested bool
	// value is the raw request_update byte; values other than 0/1 are refused
	// with illegal_parameter by the connection.
	value uint8
}

func (m *keyUpdateMsg) marshal() []byte {
	v := uint8(0)
	if m.updateRequested {
		v = 1
	}
	m.raw = []byte{typeKeyUpdate, 0, 0, 1, v}
	return m.raw
}

func (m *keyUpdateMsg) unmarshal(data []byte) bool {
	*m = keyUpdateMsg{raw: data}
	s, ok := readHeader(data, typeKeyUpdate)
	if !ok || !s.ReadUint8(&m.value) || !s.Empty() {
		return false
	}
	m.updateRequested = m.value == 1
	return true
}
