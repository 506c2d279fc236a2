package platform

import (
	"crypto/ecdsa"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/audit"
	"github.com/gmgate/gmgate/cosign"
	"github.com/gmgate/gmgate/refusal"
)

// TestServiceCertStatus: a key whose certificate is revoked or expired gets no co-operation
// (sign, decrypt, rotate), by token and by certificate session alike; the check sees the
// session certificate only in a certificate session, is not consulted for keygen, fails closed
// on an unknown error, does not count toward the lockout (a revoked key is not a guesser), and
// leaves other keys alone.
func TestServiceCertStatus(t *testing.T) {
	status := map[string]error{}
	var calls int
	var lastPeer *smx509.Certificate
	f := newFixture(t, func(c *Config) {
		c.Auth = AuthCertOrToken
		c.MaxFailures = 2
		c.Burst = 1000
		c.CertStatus = func(pub *ecdsa.PublicKey, peer *smx509.Certificate) error {
			calls++
			lastPeer = peer
			return status[string(cosign.MarshalPublicKey(pub))]
		}
	})
	tm := f.enroll("term-rev")
	other := f.enroll("term-ok")
	if calls != 0 {
		t.Fatalf("keygen consulted the certificate status %d times", calls)
	}
	decrypt := func(tm *terminal, token string) refusal.Code {
		ct, _ := sm2.EncryptASN1(rand.Reader, tm.pub, []byte("x"))
		dc, _ := cosign.StartDecrypt(rand.Reader, ct)
		_, c := f.call(OpDecrypt, token, Request{KeyID: tm.id, T1: dc.T1()})
		return c
	}
	if _, c := f.sign(tm, f.token(tm.id, OpSign), []byte("m"), nil); c != refusal.OK || lastPeer != nil {
		t.Fatalf("valid key, token session: %s (peer %v)", c, lastPeer)
	}
	key := string(cosign.MarshalPublicKey(tm.pub))
	for _, tc := range []struct {
		err  error
		want refusal.Code
	}{
		{ErrCertRevoked, CodeCertRevoked},
		{ErrCertExpired, CodeCertExpired},
		{errors.New("store unreadable"), CodeUnavailable},
	} {
		status[key] = tc.err
		for range 3 { // more than MaxFailures: must not lock
			if _, c := f.sign(tm, f.token(tm.id, OpSign), []byte("m"), nil); c != tc.want {
				t.Fatalf("%v: sign by token: %s, want %s", tc.err, c, tc.want)
			}
		}
		if r := f.aud.last(); r.Verdict != audit.VerdictReject || r.Reason != string(tc.want) {
			t.Fatalf("%v: audit entry %+v", tc.err, r)
		}
		if c := decrypt(tm, f.token(tm.id, OpDecrypt)); c != tc.want {
			t.Fatalf("%v: decrypt: %s", tc.err, c)
		}
		if _, c := f.call(OpRotate, f.token(tm.id, OpRotate), Request{KeyID: tm.id}); c != tc.want {
			t.Fatalf("%v: rotate: %s", tc.err, c)
		}
		f.cert = &smx509.Certificate{PublicKey: tm.pub}
		if _, c := f.sign(tm, "", []byte("m"), nil); c != tc.want || lastPeer != f.cert {
			t.Fatalf("%v: certificate session: %s (peer passed: %v)", tc.err, c, lastPeer == f.cert)
		}
		f.cert = nil
		if _, c := f.sign(other, f.token(other.id, OpSign), []byte("m"), nil); c != refusal.OK {
			t.Fatalf("%v: another key: %s", tc.err, c)
		}
	}
	delete(status, key)
	if _, c := f.sign(tm, f.token(tm.id, OpSign), []byte("m"), nil); c != refusal.OK {
		t.Fatalf("after the status clears (not locked out): %s", c)
	}
}
