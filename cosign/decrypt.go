package cosign

import (
	"io"
	"sync"

	"filippo.io/bigmod"
	"github.com/emmansun/gmsm/kdf"
	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm3"
)

// MaxCiphertext bounds the SM2 ciphertexts a terminal decrypts collaboratively (1 MiB).
const MaxCiphertext = 1 << 20

// CoDecrypt is the platform's step (Tongsuo's decrypt2): T_2 = d_2^-1 T_1 for the terminal's
// point T_1 (65 bytes, validated). The platform never sees C1, C2 or the plaintext.
func (s *Share) CoDecrypt(t1 []byte) ([]byte, error) {
	t, err := parsePoint(t1)
	if err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.d == nil {
		return nil, ErrUsed
	}
	k := scalarBytes(s.dInv)
	defer clear(k)
	p, err := checked(curve.ScalarMult(t.x, t.y, k))
	if err != nil {
		return nil, err
	}
	return p.bytes(), nil
}

// Decryption is the terminal's side of one collaborative decryption. It is one-shot.
type Decryption struct {
	mu     sync.Mutex
	c1     point
	c2, c3 []byte
	w      *bigmod.Nat
	t1     []byte
}

// StartDecrypt is the terminal's first step (Tongsuo's decrypt1): it parses the SM2 ciphertext
// (ASN.1 GM/T 0009, or C1C3C2 with an uncompressed C1), validates C1, draws w and computes
// T_1 = w C1, which blinds C1 from the platform.
func StartDecrypt(rand io.Reader, ciphertext []byte) (*Decryption, error) {
	if len(ciphertext) > MaxCiphertext || len(ciphertext) < PointSize+sm3.Size+1 {
		return nil, ErrDecrypt
	}
	plain := ciphertext
	if ciphertext[0] == 0x30 {
		var err error
		if plain, err = sm2.ASN1Ciphertext2Plain(ciphertext, nil); err != nil {
			return nil, ErrDecrypt
		}
	}
	if len(plain) < PointSize+sm3.Size+1 {
		return nil, ErrDecrypt
	}
	c1, err := parsePoint(plain[:PointSize])
	if err != nil {
		return nil, ErrDecrypt
	}
	w, err := randomScalar(rand)
	if err != nil {
		return nil, err
	}
	k := scalarBytes(w)
	t1, err := checked(curve.ScalarMult(c1.x, c1.y, k))
	clear(k)
	if err != nil {
		return nil, err
	}
	return &Decryption{
		c1: c1,
		c3: append([]byte(nil), plain[PointSize:PointSize+sm3.Size]...),
		c2: append([]byte(nil), plain[PointSize+sm3.Size:]...),
		w:  w,
		t1: t1.bytes(),
	}, nil
}

// T1 returns T_1 = w C1 (65 bytes) to send to the platform.
func (dc *Decryption) T1() []byte { return append([]byte(nil), dc.t1...) }

// Finish is the terminal's last step (Tongsuo's decrypt3): from the platform's T_2 (validated)
// and the terminal's share d_1 it computes (x_2, y_2) = (w d_1)^-1 T_2 - C1 = d C1, derives the
// mask with SM2's KDF, and returns the plaintext only if C3 = SM3(x_2 || M || y_2) matches.
func (dc *Decryption) Finish(d1 *Share, t2 []byte) ([]byte, error) {
	dc.mu.Lock()
	defer dc.mu.Unlock()
	if dc.w == nil {
		return nil, ErrUsed
	}
	w := dc.w
	dc.w = nil
	defer wipe(w)
	t, err := parsePoint(t2)
	if err != nil {
		return nil, err
	}
	d1.mu.RLock()
	if d1.d == nil {
		d1.mu.RUnlock()
		return nil, ErrUsed
	}
	wd := mul(w, d1.d)
	d1.mu.RUnlock()
	inv := invert(wd)
	wipe(wd)
	k := scalarBytes(inv)
	wipe(inv)
	ax, ay := curve.ScalarMult(t.x, t.y, k)
	clear(k)
	if _, err := checked(ax, ay); err != nil {
		return nil, ErrDecrypt
	}
	nx, ny := curve.ScalarMult(dc.c1.x, dc.c1.y, nMinus1) // -C1
	p, err := checked(curve.Add(ax, ay, nx, ny))
	if err != nil {
		return nil, ErrDecrypt
	}
	xy := p.bytes()[1:]
	defer clear(xy)
	mask := kdf.Kdf(sm3.New, xy, len(dc.c2))
	defer clear(mask)
	var any byte
	for _, b := range mask {
		any |= b
	}
	if any == 0 {
		return nil, ErrDecrypt
	}
	msg := make([]byte, len(dc.c2))
	for i := range msg {
		msg[i] = dc.c2[i] ^ mask[i]
	}
	h := sm3.New()
	h.Write(xy[:ScalarSize])
	h.Write(msg)
	h.Write(xy[ScalarSize:])
	if !ctEqualBytes(h.Sum(nil), dc.c3) {
		clear(msg)
		return nil, ErrDecrypt
	}
	return msg, nil
}
