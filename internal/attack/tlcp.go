package attack

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"errors"
	"net"
	"sync"

	"github.com/emmansun/gmsm/sm2"
)

// Tap is a passive observer of a link: it records every byte written through the connection
// it wraps (for a client's connection, everything the client sends).
type Tap struct {
	net.Conn
	mu  sync.Mutex
	out bytes.Buffer
}

// NewTap wraps c.
func NewTap(c net.Conn) *Tap { return &Tap{Conn: c} }

// Write records p and writes it.
func (t *Tap) Write(p []byte) (int, error) {
	t.mu.Lock()
	t.out.Write(p)
	t.mu.Unlock()
	return t.Conn.Write(p)
}

// Written returns a copy of the bytes written so far.
func (t *Tap) Written() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]byte(nil), t.out.Bytes()...)
}

// ErrNoKeyExchange: the captured flight holds no ECC ClientKeyExchange.
var ErrNoKeyExchange = errors.New("attack: no ECC ClientKeyExchange in the captured bytes")

// TLCPPreMaster is the passive attacker holding a server's encryption private key (a
// compromised key whose certificate was revoked): it reads the plaintext handshake records a
// TLCP client sent before its ChangeCipherSpec, finds the ECC suites' ClientKeyExchange and
// decrypts the pre-master secret from it. With the pre-master and the two randoms in the clear,
// every record of the connection can be decrypted.
func TLCPPreMaster(clientBytes []byte, encKey *sm2.PrivateKey) ([]byte, error) {
	var hs []byte
	for b := clientBytes; len(b) >= 5; {
		typ, n := b[0], int(b[3])<<8|int(b[4])
		if len(b) < 5+n {
			break
		}
		if typ == 20 { // ChangeCipherSpec: what follows is encrypted
			break
		}
		if typ == 22 {
			hs = append(hs, b[5:5+n]...)
		}
		b = b[5+n:]
	}
	for len(hs) >= 4 {
		typ, n := hs[0], int(hs[1])<<16|int(hs[2])<<8|int(hs[3])
		if len(hs) < 4+n {
			break
		}
		body := hs[4 : 4+n]
		hs = hs[4+n:]
		if typ != 16 || len(body) < 2 {
			continue
		}
		l := int(body[0])<<8 | int(body[1])
		if len(body) < 2+l {
			return nil, ErrNoKeyExchange
		}
		ct := body[2 : 2+l]
		var opts crypto.DecrypterOpts = sm2.ASN1DecrypterOpts
		if len(ct) > 0 && ct[0] == 0x04 {
			opts = sm2.NewPlainDecrypterOpts(sm2.C1C3C2)
		}
		return encKey.Decrypt(rand.Reader, ct, opts)
	}
	return nil, ErrNoKeyExchange
}
