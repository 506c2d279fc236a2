package cosign

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"
)

// FuzzParseShareAndPoint: a share (read back from the terminal's sealed file or the platform's
// store) and a public key or partial public key (sent by the peer) parse only in canonical form:
// refusals are ErrInvalidScalar / ErrInvalidPoint, accepted values re-encode to the same bytes.
func FuzzParseShareAndPoint(f *testing.F) {
	d, _ := GenerateShare(rand.Reader)
	f.Add(d.Bytes())
	f.Add(d.PartialPublicKey())
	f.Add(make([]byte, 32))
	f.Add(bytes.Repeat([]byte{0xff}, 32))
	f.Add(append([]byte{4}, make([]byte, 64)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseShare(b)
		if err != nil {
			if !errors.Is(err, ErrInvalidScalar) {
				t.Fatalf("untyped share refusal %v", err)
			}
		} else if !bytes.Equal(s.Bytes(), b) {
			t.Fatalf("share %x re-encodes as %x", b, s.Bytes())
		}
		pub, err := ParsePublicKey(b)
		if err != nil {
			if !errors.Is(err, ErrInvalidPoint) {
				t.Fatalf("untyped point refusal %v", err)
			}
			return
		}
		if !bytes.Equal(MarshalPublicKey(pub), b) || !pub.Curve.IsOnCurve(pub.X, pub.Y) {
			t.Fatalf("point %x accepted but not canonical or off the curve", b)
		}
	})
}
