package tlcp

import (
	"crypto/cipher"
	"crypto/hmac"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"hash"
	"io"

	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/sm4"
)

// cipherSuite describes one TLCP suite.
type cipherSuite struct {
	id     uint16
	name   string
	ecdhe  bool
	gcm    bool
	macLen int
	keyLen int
	ivLen  int
}

var cipherSuites = []*cipherSuite{
	{ECC_SM4_GCM_SM3, "ECC_SM4_GCM_SM3", false, true, 0, 16, 4},
	{ECC_SM4_CBC_SM3, "ECC_SM4_CBC_SM3", false, false, 32, 16, 16},
	{ECDHE_SM4_GCM_SM3, "ECDHE_SM4_GCM_SM3", true, true, 0, 16, 4},
	{ECDHE_SM4_CBC_SM3, "ECDHE_SM4_CBC_SM3", true, false, 32, 16, 16},
}

func suiteByID(id uint16) *cipherSuite {
	for _, s := range cipherSuites {
		if s.id == id {
			return s
		}
	}
	return nil
}

// CipherSuiteName returns the GB/T name of a suite ID, or a hex form.
func CipherSuiteName(id uint16) string {
	if s := suiteByID(id); s != nil {
		return s.name
	}
	const hexd = "0123456789ABCDEF"
	return "0x" + string([]byte{hexd[id>>12], hexd[id>>8&15], hexd[id>>4&15], hexd[id&15]})
}

// CipherSuites returns the IDs of all supported suites in default order.
func CipherSuites() []uint16 {
	return append([]uint16(nil), defaultSuites...)
}

// recordCipher protects records in one direction.
type recordCipher interface {
	// seal appends the protected fragment for the given header/plaintext to dst.
	seal(dst []byte, seq *[8]byte, hdr []byte, plaintext []byte, rand io.Reader) ([]byte, error)
	// open decrypts fragment in place and returns the plaintext.
	open(seq *[8]byte, typ uint8, fragment []byte) ([]byte, error)
	overhead() int
}

var errBadRecordMAC = errors.New("tlcp: bad record MAC")

// newRecordCipher builds the cipher for one direction.
func newRecordCipher(s *cipherSuite, macKey, key, iv []byte) (recordCipher, error) {
	block, err := sm4.NewCipher(key)
	if err != nil {
		return nil, err
	}
	if s.gcm {
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		g := &gcmCipher{aead: aead}
		copy(g.nonce[:4], iv)
		return g, nil
	}
	return &cbcCipher{block: block, mac: hmac.New(sm3.New, macKey)}, nil
}

// gcmCipher: explicit_nonce(8) || ciphertext || tag(16), RFC 5288 style.
type gcmCipher struct {
	aead  cipher.AEAD
	nonce [12]byte
	ad    [13]byte
}

func (g *gcmCipher) overhead() int { return 8 + 16 }

func (g *gcmCipher) seal(dst []byte, seq *[8]byte, hdr []byte, plaintext []byte, _ io.Reader) ([]byte, error) {
	// Explicit nonce = sequence number: never repeats under one key.
	copy(g.nonce[4:], seq[:])
	copy(g.ad[:8], seq[:])
	g.ad[8] = hdr[0]
	g.ad[9], g.ad[10] = hdr[1], hdr[2]
	binary.BigEndian.PutUint16(g.ad[11:], uint16(len(plaintext)))
	dst = append(dst, seq[:]...)
	return g.aead.Seal(dst, g.nonce[:], plaintext, g.ad[:]), nil
}

func (g *gcmCipher) open(seq *[8]byte, typ uint8, frag []byte) ([]byte, error) {
	if len(frag) < 8+16 {
		return nil, errBadRecordMAC
	}
	copy(g.nonce[4:], frag[:8])
	copy(g.ad[:8], seq[:])
	g.ad[8] = typ
	binary.BigEndian.PutUint16(g.ad[9:], VersionTLCP)
	binary.BigEndian.PutUint16(g.ad[11:], uint16(len(frag)-24))
	out, err := g.aead.Open(frag[8:8], g.nonce[:], frag[8:], g.ad[:])
	if err != nil {
		return nil, errBadRecordMAC
	}
	return out, nil
}

// cbcCipher: MAC-then-encrypt, explicit random IV per record.
type cbcCipher struct {
	block   cipher.Block
	mac     hash.Hash
	macBuf  [32]byte
	scratch [13]byte
}

func (c *cbcCipher) overhead() int { return 16 + 32 + 16 }

func (c *cbcCipher) computeMAC(out []byte, seq *[8]byte, typ uint8, n int, data, extra []byte) []byte {
	c.mac.Reset()
	copy(c.scratch[:8], seq[:])
	c.scratch[8] = typ
	binary.BigEndian.PutUint16(c.scratch[9:], VersionTLCP)
	binary.BigEndian.PutUint16(c.scratch[11:], uint16(n))
	c.mac.Write(c.scratch[:])
	c.mac.Write(data)
	res := c.mac.Sum(out)
	if extra != nil {
		// Hash the remaining bytes too so that the time spent does not
		// depend (much) on the padding length, as crypto/tls does.
		c.mac.Write(extra)
	}
	return res
}

func (c *cbcCipher) seal(dst []byte, seq *[8]byte, hdr []byte, plaintext []byte, rand io.Reader) ([]byte, error) {
	start := len(dst)
	padLen := 16 - (len(plaintext)+32)%16 // 1..16 bytes including the length byte
	total := 16 + len(plaintext) + 32 + padLen
	dst = growSlice(dst, total)
	out := dst[start:]
	iv := out[:16]
	if _, err := io.ReadFull(rand, iv); err != nil {
		return nil, err
	}
	body := out[16:]
	copy(body, plaintext)
	c.computeMAC(body[len(plaintext):len(plaintext)], seq, hdr[0], len(plaintext), plaintext, nil)
	for i := len(plaintext) + 32; i < len(body); i++ {
		body[i] = byte(padLen - 1)
	}
	cipher.NewCBCEncrypter(c.block, iv).CryptBlocks(body, body)
	return dst, nil
}

func (c *cbcCipher) open(seq *[8]byte, typ uint8, frag []byte) ([]byte, error) {
	// At least IV + one block holding MAC and padding (32+1 -> 48).
	if len(frag)%16 != 0 || len(frag) < 16+48 {
		return nil, errBadRecordMAC
	}
	iv, payload := frag[:16], frag[16:]
	cipher.NewCBCDecrypter(c.block, iv).CryptBlocks(payload, payload)
	paddingLen, paddingGood := extractPadding(payload)
	n := len(payload) - 32 - paddingLen
	n = subtle.ConstantTimeSelect(int(uint32(n)>>31), 0, n) // if n < 0 { n = 0 }
	remoteMAC := payload[n : n+32]
	localMAC := c.computeMAC(c.macBuf[:0], seq, typ, n, payload[:n], payload[n+32:])
	good := subtle.ConstantTimeCompare(localMAC, remoteMAC) & int(paddingGood)
	if good != 1 {
		return nil, errBadRecordMAC
	}
	return payload[:n], nil
}

// extractPadding returns, in constant time, the number of trailing padding
// bytes to remove (padding plus length byte) and 255 if the padding is
// valid, 0 otherwise. It is crypto/tls's TLS 1.0+ check.
func extractPadding(payload []byte) (toRemove int, good byte) {
	if len(payload) < 1 {
		return 0, 0
	}
	paddingLen := payload[len(payload)-1]
	t := uint(len(payload)-1) - uint(paddingLen)
	// if len(payload) >= (paddingLen - 1) then the MSB of t is zero
	good = byte(int32(^t) >> 31)
	toCheck := 256
	if toCheck > len(payload) {
		toCheck = len(payload)
	}
	for i := 0; i < toCheck; i++ {
		t := uint(paddingLen) - uint(i)
		// if i <= paddingLen then the MSB of t is zero
		mask := byte(int32(^t) >> 31)
		b := payload[len(payload)-1-i]
		good &^= mask&paddingLen ^ mask&b
	}
	good &= good << 4
	good &= good << 2
	good &= good << 1
	good = uint8(int8(good) >> 7)
	// Zero the padding length on error. The MAC check then fails anyway,
	// but runs over the same amount of data.
	paddingLen &= good
	toRemove = int(paddingLen) + 1
	return
}

// growSlice extends b by n bytes, reusing capacity.
func growSlice(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b[:len(b)+n]
	}
	nb := make([]byte, len(b)+n, 2*len(b)+n)
	copy(nb, b)
	return nb
}
