package enroll

import (
	"encoding/json"
	"errors"
	"net/http"
	"testing"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/pki"
)

// TestAdminRevokeAndRecover: an administrator (certificate from the Admin authoriser) revokes
// any pair and recovers an escrowed key, enveloped to its own signing key; a terminal cannot
// recover, and an unknown administrator is refused. Both operations are audited.
func TestAdminRevokeAndRecover(t *testing.T) {
	adminCA, _, _ := pki.NewRootCA(pki.IssueOptions{CommonName: "Ops CA"})
	admin, err := adminCA.IssuePlatform(pki.IssueOptions{CommonName: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, func(c *Config) {
		c.Admin = func(name string) (*smx509.Certificate, error) {
			if name == "alice" {
				return admin.Cert, nil
			}
			return nil, errors.New("unknown")
		}
	})
	key := newKey(t)
	r := f.enrol(key, "T0400")

	// A terminal cannot recover (even its own key).
	body := []byte(`{"serial":"` + r.Serial + `"}`)
	if _, b := f.post(OpRecover, f.signedHeaders(OpRecover, "application/json", body, key, r.Serial, ""), body); codeOf(b) != CodeAuthInvalid {
		t.Fatalf("terminal recover: %s", b)
	}
	// Unknown administrator.
	if _, b := f.post(OpRecover, f.signedHeaders(OpRecover, "application/json", body, admin.Key, "admin:mallory", ""), body); codeOf(b) != CodeAuthInvalid {
		t.Fatalf("unknown admin: %s", b)
	}
	// alice's name, another key.
	if _, b := f.post(OpRecover, f.signedHeaders(OpRecover, "application/json", body, newKey(t), "admin:alice", ""), body); codeOf(b) != CodeAuthInvalid {
		t.Fatalf("forged admin: %s", b)
	}
	resp, b := f.post(OpRecover, f.signedHeaders(OpRecover, "application/json", body, admin.Key, "admin:alice", ""), body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("recover: %d %s", resp.StatusCode, b)
	}
	var rk Recovered
	_ = json.Unmarshal(b, &rk)
	got, err := sm2.ParseEnvelopedPrivateKey(admin.Key, rk.EnvelopedKey)
	if err != nil {
		t.Fatal(err)
	}
	enc, _ := smx509.ParseCertificate(r.EncCert)
	if !got.PublicKey.Equal(enc.PublicKey) {
		t.Fatal("recovered key does not match the encryption certificate")
	}
	if a := f.audit.last(); a.Scheme != "enroll/recover" || a.KeyID != "admin:alice" || a.CertSerial != r.EncSerial || a.Verdict != "accept" {
		t.Fatalf("recovery audit: %+v", a)
	}

	rb := []byte(`{"serial":"` + r.Serial + `"}`)
	if resp, b := f.post(OpRevoke, f.signedHeaders(OpRevoke, "application/json", rb, admin.Key, "admin:alice", ""), rb); resp.StatusCode != 200 {
		t.Fatalf("admin revoke: %s", b)
	}
	if rec, _ := f.store.Cert(r.Serial); !rec.Revoked || rec.RevokedBy != "admin:alice" {
		t.Fatalf("record: %+v", rec)
	}
}
