package cosign

import (
	"crypto/ecdsa"
	"io"
	"sync"

	"filippo.io/bigmod"
)

// Share is one party's half of a collaborative SM2 key: the secret d_i in [1, n-1] and its
// partial public key P_i = d_i^-1 G. The terminal's share is d_1, the platform's d_2; the
// algebra is symmetric. A Share is safe for concurrent use; Destroy wipes it.
type Share struct {
	mu      sync.RWMutex
	d       *bigmod.Nat // nil once destroyed
	dInv    *bigmod.Nat
	pubOnce sync.Once
	pub     []byte // P_i, computed on first use (a platform opening a share per request to sign never needs it)
}

// GenerateShare draws a fresh share from rand (crypto/rand.Reader in production).
func GenerateShare(rand io.Reader) (*Share, error) {
	d, err := randomScalar(rand)
	if err != nil {
		return nil, err
	}
	return newShare(d), nil
}

// ParseShare reads a share encoded by Bytes (32 bytes, big-endian, in [1, n-1]). It does not
// keep b; the caller wipes it.
func ParseShare(b []byte) (*Share, error) {
	d, err := parseScalar(b)
	if err != nil {
		return nil, err
	}
	return newShare(d), nil
}

func newShare(d *bigmod.Nat) *Share {
	return &Share{d: d, dInv: invert(d)}
}

// Bytes returns d_i (32 bytes). The caller owns the copy and must wipe it.
func (s *Share) Bytes() []byte {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.d == nil {
		return nil
	}
	return scalarBytes(s.d)
}

// PartialPublicKey returns P_i = d_i^-1 G, 65 bytes uncompressed: what the party sends its peer
// during derivation (Tongsuo: sm2_threshold -derive -inkey A.key -pubout A-pub.key).
// It is computed on the first call (nil if the share was destroyed before).
func (s *Share) PartialPublicKey() []byte {
	s.pubOnce.Do(func() {
		s.mu.RLock()
		defer s.mu.RUnlock()
		if s.dInv == nil {
			return
		}
		k := scalarBytes(s.dInv)
		x, y := curve.ScalarBaseMult(k)
		clear(k)
		s.pub = point{x, y}.bytes()
	})
	return append([]byte(nil), s.pub...)
}

// Destroy wipes the share; every later operation fails with ErrUsed.
func (s *Share) Destroy() {
	s.mu.Lock()
	defer s.mu.Unlock()
	wipe(s.d, s.dInv)
	s.d, s.dInv = nil, nil
}

// JointPublicKey derives the joint public key P = d_i^-1 P_peer - G from the peer's partial
// public key (validated: on the curve, not the identity). It refuses a joint key at infinity
// (d_1 d_2 = 1, i.e. d = 0).
func (s *Share) JointPublicKey(peerPartial []byte) (*ecdsa.PublicKey, error) {
	peer, err := parsePoint(peerPartial)
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
	// d_i^-1 P_peer + (n-1) G = d_i^-1 P_peer - G, one call into gmsm.
	p, err := checked(curve.CombinedMult(peer.x, peer.y, nMinus1, k))
	if err != nil {
		return nil, err
	}
	return &ecdsa.PublicKey{Curve: curve, X: p.x, Y: p.y}, nil
}

// MarshalPublicKey encodes an SM2 public key as 65 bytes uncompressed.
func MarshalPublicKey(pub *ecdsa.PublicKey) []byte { return point{pub.X, pub.Y}.bytes() }

// ParsePublicKey reads and validates a 65-byte uncompressed SM2 public key.
func ParsePublicKey(b []byte) (*ecdsa.PublicKey, error) {
	p, err := parsePoint(b)
	if err != nil {
		return nil, err
	}
	return &ecdsa.PublicKey{Curve: curve, X: p.x, Y: p.y}, nil
}

// Share refresh (rotation without a new joint key): for any ρ in [1, n-1], d_1' = d_1 ρ and
// d_2' = d_2 ρ^-1 give d_1' d_2' = d_1 d_2 = (1 + d)^-1, so the joint key P, and every
// certificate of it, is unchanged, while a d_1 or d_2 captured before the refresh no longer
// pairs with the other party's new share. See docs/cosign.md, "Rotation".

// GenerateRefresh draws the refresh factor ρ, uniform in [1, n-1] (32 bytes). The caller wipes it.
func GenerateRefresh(rand io.Reader) ([]byte, error) {
	rho, err := randomScalar(rand)
	if err != nil {
		return nil, err
	}
	defer wipe(rho)
	return scalarBytes(rho), nil
}

// Refreshed returns the terminal's new share d ρ.
func (s *Share) Refreshed(rho []byte) (*Share, error) { return s.refresh(rho, false) }

// RefreshedInverse returns the platform's new share d ρ^-1.
func (s *Share) RefreshedInverse(rho []byte) (*Share, error) { return s.refresh(rho, true) }

func (s *Share) refresh(rhoBytes []byte, inverse bool) (*Share, error) {
	rho, err := parseScalar(rhoBytes)
	if err != nil {
		return nil, err
	}
	defer wipe(rho)
	if inverse {
		inv := invert(rho)
		wipe(rho)
		rho = inv
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.d == nil {
		return nil, ErrUsed
	}
	// n is prime and both factors are in [1, n-1]: the product is never 0.
	return newShare(mul(s.d, rho)), nil
}

// RotationChallengeDigest is e = SM3(Z_A(P, "1234567812345678") || challenge) with challenge =
// "gmgate cosign rotation confirm v1" 0x00 keyID 0x00 rotationID: the fixed, domain-separated
// message a terminal co-signs with the platform's pending share to confirm a rotation. It is
// bound to the key and the rotation and can never be a payment instruction.
func RotationChallengeDigest(pub *ecdsa.PublicKey, keyID string, rotationID []byte) ([]byte, error) {
	b := []byte("gmgate cosign rotation confirm v1\x00")
	b = append(b, keyID...)
	b = append(b, 0)
	b = append(b, rotationID...)
	return Digest(pub, []byte("1234567812345678"), b)
}
