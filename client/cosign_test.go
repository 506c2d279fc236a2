package client

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm3"

	"github.com/gmgate/gmgate/audit"
	"github.com/gmgate/gmgate/cosign/platform"
	"github.com/gmgate/gmgate/sealstore"
	"github.com/gmgate/gmgate/signing"
)

// cosignShares is a versioned in-memory share store (sealstore's semantics without the disk).
type cosignShares struct {
	mu sync.Mutex
	m  map[string][]sealstore.Version
}

func (s *cosignShares) Get(kind string, id []byte) ([]byte, int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.m[kind+string(id)]
	if len(v) == 0 {
		return nil, 0, sealstore.ErrNotFound
	}
	return append([]byte(nil), v[len(v)-1].Secret...), v[len(v)-1].Version, nil
}

func (s *cosignShares) GetAll(kind string, id []byte) ([]sealstore.Version, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.m[kind+string(id)]
	if len(v) == 0 {
		return nil, sealstore.ErrNotFound
	}
	out := make([]sealstore.Version, len(v))
	for i, x := range v {
		out[i] = x
		out[i].Secret = append([]byte(nil), x.Secret...)
	}
	return out, nil
}

func (s *cosignShares) Put(kind string, id, secret []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := kind + string(id)
	n := 1
	if v := s.m[k]; len(v) > 0 {
		n = v[len(v)-1].Version + 1
	}
	s.m[k] = append(s.m[k], sealstore.Version{Info: sealstore.Info{Version: n}, Secret: append([]byte(nil), secret...)})
	return n, nil
}

func (s *cosignShares) DestroyVersion(kind string, id []byte, n int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := kind + string(id)
	v := s.m[k]
	for i := range v {
		if v[i].Version == n {
			if len(v) == 1 {
				return sealstore.ErrInvalidInput
			}
			s.m[k] = append(v[:i:i], v[i+1:]...)
			return nil
		}
	}
	return sealstore.ErrNotFound
}

// Create, PutIf and DestroyVersionIf are sealstore's conditional writes.
func (s *cosignShares) Create(kind string, id, secret []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := kind + string(id)
	if len(s.m[k]) > 0 {
		return sealstore.ErrExists
	}
	s.m[k] = []sealstore.Version{{Info: sealstore.Info{Version: 1}, Secret: append([]byte(nil), secret...)}}
	return nil
}

func (s *cosignShares) PutIf(kind string, id, secret []byte, match func([]sealstore.Version) bool) (int, error) {
	s.mu.Lock()
	k := kind + string(id)
	v := s.m[k]
	if len(v) == 0 {
		s.mu.Unlock()
		return 0, sealstore.ErrNotFound
	}
	if !match(v) {
		s.mu.Unlock()
		return 0, sealstore.ErrConflict
	}
	s.mu.Unlock()
	return s.Put(kind, id, secret)
}

func (s *cosignShares) DestroyVersionIf(kind string, id []byte, n int, match func([]sealstore.Version) bool) error {
	s.mu.Lock()
	v := s.m[kind+string(id)]
	if len(v) == 0 {
		s.mu.Unlock()
		return sealstore.ErrNotFound
	}
	if !match(v) {
		s.mu.Unlock()
		return sealstore.ErrConflict
	}
	s.mu.Unlock()
	return s.DestroyVersion(kind, id, n)
}

func (s *cosignShares) Destroy(kind string, id []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, kind+string(id))
	return nil
}

type cosignAudit struct{ n int }

func (a *cosignAudit) Append(audit.Record) error { a.n++; return nil }

type cosignMAC []byte

func (k cosignMAC) HMACSM3(d []byte) ([]byte, error) {
	m := hmac.New(sm3.New, k)
	m.Write(d)
	return m.Sum(nil), nil
}

func (k cosignMAC) VerifyHMACSM3(d, tag []byte) error {
	want, _ := k.HMACSM3(d)
	if !hmac.Equal(want, tag) {
		return errors.New("bad mac")
	}
	return nil
}

// cosignPlatform runs gm_cosign's core (package cosign/platform) on an httptest server.
func cosignPlatform(t *testing.T, bind bool) (CoSignConfig, *cosignAudit) {
	mac := cosignMAC("client test token key")
	aud := &cosignAudit{}
	svc, err := platform.New(platform.Config{Shares: &cosignShares{m: map[string][]sealstore.Version{}}, Audit: aud, TokenMAC: mac, BindInstruction: bind})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(svc)
	t.Cleanup(srv.Close)
	return CoSignConfig{
		URL:             srv.URL + "/cosign",
		SendInstruction: bind,
		Token: func(op string) (string, error) {
			return platform.IssueToken(mac, "terminal-7", []string{op}, time.Now().Add(time.Minute))
		},
	}, aud
}

// The collaborative signer is used by the existing request-signing code unchanged.
func TestCoSignerSignsThroughSigning(t *testing.T) {
	for _, bind := range []bool{false, true} {
		cfg, aud := cosignPlatform(t, bind)
		cs, err := EnrollCoSigner(cfg, "terminal-7")
		if err != nil {
			t.Fatal(err)
		}
		pub := cs.Public().(*ecdsa.PublicKey)
		msg := []byte(`{"mchid":"1900000001","amount":{"total":100}}`)
		for _, uid := range [][]byte{nil, []byte("terminal-7@example")} {
			sig, err := signing.SignSM2(cs, msg, uid, signing.DER)
			if bind && uid != nil {
				// bound co-signatures use the user ID gm_verify uses (bind_user_id)
				var ce *CoSignError
				if !errors.As(err, &ce) || ce.Code != string(platform.CodeBindingMismatch) {
					t.Fatalf("bound co-signature with another user ID: %v", err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("bind=%v uid=%q: %v", bind, uid, err)
			}
			if !sm2.VerifyASN1WithSM2(pub, uid, msg, sig) {
				t.Fatalf("bind=%v uid=%q: signature does not verify", bind, uid)
			}
		}
		// A prehashed digest (gmsm option without forceGMSign) works without binding, and is
		// refused locally with it (the platform could not check the instruction).
		e, _ := sm2.CalculateSM2Hash(pub, msg, nil)
		sig, err := cs.Sign(rand.Reader, e, sm2.NewSM2SignerOption(false, nil))
		if bind != (err != nil) {
			t.Fatalf("bind=%v prehashed: %v", bind, err)
		}
		if !bind && !sm2.VerifyASN1WithSM2(pub, nil, msg, sig) {
			t.Fatal("prehashed co-signature does not verify")
		}
		if aud.n == 0 {
			t.Fatal("platform audited nothing")
		}
	}
}

func TestCoSignerDecrypt(t *testing.T) {
	cfg, _ := cosignPlatform(t, false)
	cs, err := EnrollCoSigner(cfg, "terminal-7")
	if err != nil {
		t.Fatal(err)
	}
	ct, _ := sm2.EncryptASN1(rand.Reader, cs.Public().(*ecdsa.PublicKey), []byte("session key"))
	pt, err := cs.Decrypt(rand.Reader, ct, nil)
	if err != nil || string(pt) != "session key" {
		t.Fatalf("%q %v", pt, err)
	}
}

func TestCoSignerPINSeal(t *testing.T) {
	cfg, _ := cosignPlatform(t, false)
	cs, err := EnrollCoSigner(cfg, "terminal-7")
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := cs.SealWithIterations([]byte("314159"), MinPINIterations)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, cs.share.Bytes()) {
		t.Fatal("share in clear in the sealed file")
	}
	if _, err := OpenCoSigner(cfg, sealed, []byte("314158")); !errors.Is(err, ErrWrongPIN) {
		t.Fatalf("wrong PIN: %v", err)
	}
	// Altering the key ID, the joint key or the count (all additional data) fails like a wrong PIN.
	for _, i := range []int{len(sealMagic) + 3, len(sealMagic) + 22, len(sealMagic) + 4 + 16 + 1 + 11 + 40} {
		bad := append([]byte(nil), sealed...)
		bad[i] ^= 1
		if _, err := OpenCoSigner(cfg, bad, []byte("314159")); err == nil {
			t.Fatalf("altered byte %d accepted", i)
		}
	}
	if _, err := cs.SealWithIterations([]byte("1"), 1000); err == nil {
		t.Fatal("low PBKDF2 count accepted")
	}
	cs2, err := OpenCoSigner(cfg, sealed, []byte("314159"))
	if err != nil {
		t.Fatal(err)
	}
	if cs2.KeyID() != "terminal-7" || !cs2.pub.Equal(cs.pub) {
		t.Fatal("reopened key differs")
	}
	msg := []byte("after reopening")
	sig, err := signing.SignSM2(cs2, msg, nil, signing.DER)
	if err != nil || !sm2.VerifyASN1WithSM2(cs.pub, nil, msg, sig) {
		t.Fatalf("reopened key does not sign: %v", err)
	}
	cs2.Destroy()
	if _, err := cs2.Sign(nil, msg, nil); err == nil {
		t.Fatal("destroyed key signed")
	}
}

func TestCoSignerRefusalsAndLyingPlatform(t *testing.T) {
	cfg, _ := cosignPlatform(t, false)
	cs, err := EnrollCoSigner(cfg, "terminal-7")
	if err != nil {
		t.Fatal(err)
	}
	// A session token for another terminal: the platform's refusal code reaches the caller.
	cfg.Token = func(op string) (string, error) { return "cs1.bogus.token", nil }
	cs.cfg = cfg
	var ce *CoSignError
	if _, err := cs.Sign(nil, []byte("m"), nil); !errors.As(err, &ce) || ce.Code != string(platform.CodeUnauthenticated) {
		t.Fatalf("refusal: %v", err)
	}
	// A platform announcing a joint key its P_2 does not give is refused at enrolment.
	liar := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		other, _ := sm2.GenerateKey(rand.Reader)
		w.Write([]byte(`{"p2":"` + b64(other.PublicKey) + `","public_key":"` + b64(other.PublicKey) + `"}`))
	}))
	defer liar.Close()
	if _, err := EnrollCoSigner(CoSignConfig{URL: liar.URL}, "x"); err == nil {
		t.Fatal("lying platform accepted at enrolment")
	}
}

func b64(pub ecdsa.PublicKey) string {
	return base64.StdEncoding.EncodeToString(elliptic.Marshal(pub.Curve, pub.X, pub.Y)) //nolint:staticcheck // test encoding only
}

// FuzzOpenCoSigner: a hostile key file never panics and never opens without the PIN's key.
func FuzzOpenCoSigner(f *testing.F) {
	d := make([]byte, 0, 200)
	d = append(d, sealMagic...)
	d = append(d, 0, 1, 0x86, 0xa0) // 100000
	d = append(d, make([]byte, 16)...)
	d = append(d, 1, 'k')
	d = append(d, make([]byte, 65+12+48)...)
	f.Add(d)
	f.Add([]byte(sealMagic))
	cfg := CoSignConfig{URL: "http://127.0.0.1:1"}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > len(sealMagic)+4 && binary.BigEndian.Uint32(b[len(sealMagic):]) > MinPINIterations {
			return // a valid header costs a full PBKDF2 per run: the checks before it are what is fuzzed
		}
		if cs, err := OpenCoSigner(cfg, b, []byte("0000")); err == nil {
			t.Fatalf("opened a forged key file: %s", cs.KeyID())
		}
	})
}
