package signing

import (
	"crypto/ecdsa"
	"crypto/rand"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"

	"github.com/gmgate/gmgate/internal/testenv"
)

// interopDir is ../shared/interop (testenv: fails under GMGATE_REQUIRE_SERVICES=1 when absent).
func interopDir(t testing.TB) string { return testenv.InteropDir(t) }

func newKey(t testing.TB) *sm2.PrivateKey {
	t.Helper()
	k, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var testNow = time.Unix(1764000000, 0)

// tamper is one change applied to a signed message and the error Parse+Verify must give
// (nil: it must still verify).
type tamper struct {
	name string
	mut  func(m *Message)
	pub  *ecdsa.PublicKey // verify with this key instead
	want error
}

func cloneMessage(m *Message) *Message {
	c := *m
	c.Header = m.Header.Clone()
	if c.Header == nil {
		c.Header = http.Header{}
	}
	c.Body = append([]byte(nil), m.Body...)
	return &c
}

func parseVerify(s Scheme, m *Message, pub *ecdsa.PublicKey) (*Signed, error) {
	sd, err := s.Parse(m)
	if err != nil {
		return nil, err
	}
	return sd, s.Verify(sd, pub)
}

func runTampers(t *testing.T, s Scheme, mk func() *Message, key Key, pub *ecdsa.PublicKey, tampers []tamper) {
	t.Helper()
	for _, tc := range tampers {
		t.Run(tc.name, func(t *testing.T) {
			m := mk()
			if err := s.Sign(m, key, testNow, "NONCE0123456789"); err != nil {
				t.Fatalf("sign: %v", err)
			}
			// The untampered message must verify, so each case tests exactly its change.
			if _, err := parseVerify(s, cloneMessage(m), pub); err != nil {
				t.Fatalf("untampered message does not verify: %v", err)
			}
			if tc.mut != nil {
				tc.mut(m)
			}
			p := pub
			if tc.pub != nil {
				p = tc.pub
			}
			_, err := parseVerify(s, m, p)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("want success, got %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("want %v, got %v", tc.want, err)
			}
		})
	}
}

func flipByte(b []byte, i int) []byte {
	c := append([]byte(nil), b...)
	if len(c) > 0 {
		c[i%len(c)] ^= 0x01
	}
	return c
}
