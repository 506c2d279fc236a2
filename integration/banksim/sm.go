package banksim

import (
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"math/big"
	"net"
	"sort"
	"strings"

	"github.com/emmansun/gmsm/padding"
	"github.com/emmansun/gmsm/pkcs"
	"github.com/emmansun/gmsm/pkcs7"
	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/sm4"
	"github.com/emmansun/gmsm/smx509"
)

// This file holds the simulator's own cryptography, written from the format description with
// gmsm directly (no call into packages signing or channel), so that it is an independent check.

var defaultUID = []byte("1234567812345678")

type ecSig struct{ R, S *big.Int }

// smSign signs msg with key (SM3 with Z_A of uid), returning DER or raw r||s.
func smSign(key *sm2.PrivateKey, msg, uid []byte, raw bool) ([]byte, error) {
	if uid == nil {
		uid = defaultUID
	}
	e, err := sm2.CalculateSM2Hash(&key.PublicKey, msg, uid)
	if err != nil {
		return nil, err
	}
	r, s, err := sm2.Sign(rand.Reader, &key.PrivateKey, e)
	if err != nil {
		return nil, err
	}
	if raw {
		out := make([]byte, 64)
		r.FillBytes(out[:32])
		s.FillBytes(out[32:])
		return out, nil
	}
	return asn1.Marshal(ecSig{r, s})
}

// smVerify verifies a DER or raw r||s signature.
func smVerify(pub *ecdsa.PublicKey, msg, sig, uid []byte, raw bool) bool {
	if uid == nil {
		uid = defaultUID
	}
	var r, s *big.Int
	if raw {
		if len(sig) != 64 {
			return false
		}
		r, s = new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
	} else {
		var v ecSig
		rest, err := asn1.Unmarshal(sig, &v)
		if err != nil || len(rest) != 0 || v.R == nil || v.S == nil {
			return false
		}
		r, s = v.R, v.S
	}
	if r.Sign() <= 0 || s.Sign() <= 0 {
		return false
	}
	e, err := sm2.CalculateSM2Hash(pub, msg, uid)
	if err != nil {
		return false
	}
	return sm2.Verify(pub, e, r, s)
}

func sm3Hex(b []byte) string {
	h := sm3.New()
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}

func sm3Sum(b []byte) []byte {
	h := sm3.New()
	h.Write(b)
	return h.Sum(nil)
}

// sortedString is the sorted `k=v&...` string of the non-blank fields not excluded.
func sortedString(params map[string]string, exclude ...string) string {
	keys := make([]string, 0, len(params))
	for k, v := range params {
		if v == "" || contains(exclude, k) {
			continue
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + params[k]
	}
	return strings.Join(parts, "&")
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func encodeText(b []byte, hexText bool) string {
	if hexText {
		return hex.EncodeToString(b)
	}
	return base64.StdEncoding.EncodeToString(b)
}

func decodeText(s string, hexText bool) ([]byte, error) {
	if len(s) > 1024 {
		return nil, errors.New("signature text too long")
	}
	if hexText {
		return hex.DecodeString(s)
	}
	return base64.StdEncoding.DecodeString(s)
}

// symmetric is the simulator's SM4 with the channel data key.
type symmetric struct {
	block cipher.Block
	gcm   cipher.AEAD
}

func newSymmetric(key []byte) (*symmetric, error) {
	b, err := sm4.NewCipher(key)
	if err != nil {
		return nil, err
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		return nil, err
	}
	return &symmetric{block: b, gcm: g}, nil
}

// seal: GCM nonce(12)||ct||tag(16) with aad; CBC IV(16)||ct with PKCS#7.
func (s *symmetric) seal(cbc bool, p, aad []byte) ([]byte, error) {
	if cbc {
		pp := padding.NewPKCS7Padding(16).Pad(p)
		out := make([]byte, 16+len(pp))
		if _, err := rand.Read(out[:16]); err != nil {
			return nil, err
		}
		cipher.NewCBCEncrypter(s.block, out[:16]).CryptBlocks(out[16:], pp)
		return out, nil
	}
	nonce := make([]byte, 12)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return s.gcm.Seal(nonce, nonce, p, aad), nil
}

func (s *symmetric) open(cbc bool, c, aad []byte) ([]byte, error) {
	if cbc {
		if len(c) < 32 || len(c)%16 != 0 {
			return nil, errors.New("bad CBC length")
		}
		pt := make([]byte, len(c)-16)
		cipher.NewCBCDecrypter(s.block, c[:16]).CryptBlocks(pt, c[16:])
		return padding.NewPKCS7Padding(16).Unpad(pt)
	}
	if len(c) < 28 {
		return nil, errors.New("GCM data too short")
	}
	return s.gcm.Open(nil, c[:12], c[12:], aad)
}

// envelopeSeal makes a GM/T 0010 EnvelopedData (SM4-CBC, fresh key) to cert.
func envelopeSeal(p []byte, cert *smx509.Certificate) ([]byte, error) {
	return pkcs7.EncryptSM(pkcs.SM4CBC, p, []*smx509.Certificate{cert})
}

func envelopeOpen(der []byte, cert *smx509.Certificate, key *sm2.PrivateKey) (out []byte, err error) {
	defer func() {
		if recover() != nil {
			out, err = nil, errors.New("malformed envelope")
		}
	}()
	p7, err := pkcs7.Parse(der)
	if err != nil {
		return nil, err
	}
	return p7.Decrypt(cert, key)
}

func loopbackIPs() []net.IP { return []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")} }

func serialHex(n *big.Int) string { return strings.ToUpper(n.Text(16)) }

// pubOf returns the SM2 public key of c (a zero key that verifies nothing when it is not one).
func pubOf(c *smx509.Certificate) *ecdsa.PublicKey {
	if p, ok := c.PublicKey.(*ecdsa.PublicKey); ok {
		return p
	}
	return &ecdsa.PublicKey{Curve: sm2.P256(), X: big.NewInt(0), Y: big.NewInt(0)}
}
