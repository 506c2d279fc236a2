package enroll

import (
	"crypto/rand"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"

	"github.com/gmgate/gmgate/internal/testpki"
	"github.com/gmgate/gmgate/pki"
)

// TestKeyStatus: no pair → ErrNotFound; a valid pair → nil; renewed for the same key → the
// renewal counts; the newest revoked → ErrKeyRevoked; outside its validity → ErrKeyExpired; a
// record indexed under another key fails closed.
func TestKeyStatus(t *testing.T) {
	root, _, err := pki.NewRootCA(pki.IssueOptions{CommonName: "key status CA"})
	if err != nil {
		t.Fatal(err)
	}
	st, err := OpenFileStore(filepath.Join(t.TempDir(), "store"), testpki.NewSealKeys(t, "enroll-store"))
	if err != nil {
		t.Fatal(err)
	}
	key, _ := sm2.GenerateKey(rand.Reader)
	other, _ := sm2.GenerateKey(rand.Reader)
	now := time.Now()
	put := func(issued time.Time, pub *sm2.PrivateKey) CertRecord {
		c, err := root.IssueFor(&pub.PublicKey, pki.RoleSign, pki.IssueOptions{CommonName: "POS-1", NotBefore: now.Add(-time.Hour), Validity: 25 * time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		ski, _ := KeySKI(&pub.PublicKey)
		rec := CertRecord{Serial: serialHex(c.SerialNumber), SKI: ski, SignCert: c.Raw, NotAfter: c.NotAfter, IssuedAt: issued}
		if err := st.PutCert(rec); err != nil {
			t.Fatal(err)
		}
		return rec
	}
	if _, err := KeyStatus(st, &key.PublicKey, now); !errors.Is(err, ErrNotFound) {
		t.Fatalf("no pair: %v", err)
	}
	first := put(now.Add(-time.Minute), key)
	if _, err := KeyStatus(st, &key.PublicKey, now); err != nil {
		t.Fatalf("valid: %v", err)
	}
	if _, err := KeyStatus(st, &key.PublicKey, now.Add(48*time.Hour)); !errors.Is(err, ErrKeyExpired) {
		t.Fatalf("expired: %v", err)
	}
	if _, err := KeyStatus(st, &key.PublicKey, now.Add(-2*time.Hour)); !errors.Is(err, ErrKeyExpired) {
		t.Fatalf("not yet valid: %v", err)
	}
	renewal := put(now, key)
	if _, err := st.Revoke(first.Serial, "holder", now); err != nil {
		t.Fatal(err)
	}
	if rec, err := KeyStatus(st, &key.PublicKey, now); err != nil || rec.Serial != renewal.Serial {
		t.Fatalf("the renewal for the same key counts: %v %s", err, rec.Serial)
	}
	if _, err := st.Revoke(renewal.Serial, "admin:alice", now); err != nil {
		t.Fatal(err)
	}
	if _, err := KeyStatus(st, &key.PublicKey, now); !errors.Is(err, ErrKeyRevoked) {
		t.Fatalf("revoked: %v", err)
	}
	// A record of another key under this key's index (an altered store) is not "valid".
	o := put(now.Add(time.Minute), other)
	ski, _ := KeySKI(&key.PublicKey)
	o.SKI = ski
	o.Serial = o.Serial + "0"
	if err := st.PutCert(o); err != nil {
		t.Fatal(err)
	}
	if _, err := KeyStatus(st, &key.PublicKey, now); err == nil {
		t.Fatal("a record of another key was taken as this key's valid pair")
	}
}
