package caddymodule

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/cosign/platform"
	"github.com/gmgate/gmgate/enroll"
	"github.com/gmgate/gmgate/internal/testpki"
	"github.com/gmgate/gmgate/pki"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// The gm_cosign block adapts to exactly this JSON (golden), and unknown options are refused.
func TestCosignCaddyfileGolden(t *testing.T) {
	src := `:8443 {
	handle /cosign/* {
		gm_cosign {
			share_dir /var/lib/gmgate/cosign
			seal_key cosign-seal
			auth cert_or_token
			token_key cosign-token
			max_token_lifetime 5m
			rate_per_minute 30
			burst 5
			max_failures 3
			lockout 30m
			point_window 15m
			max_points 50000
			bind_instruction
			user_id 1234567812345678
			rotation_timeout 5m
			enroll_store /var/lib/gmgate/enroll
			enroll_store_key enroll-store
		}
	}
}`
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(src), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"auth":"cert_or_token","bind_instruction":true,"burst":5,"enroll_store":"/var/lib/gmgate/enroll","enroll_store_key":"enroll-store","handler":"gm_cosign","lockout":1800000000000,` +
		`"max_failures":3,"max_points":50000,"max_token_lifetime":300000000000,"point_window":900000000000,` +
		`"rate_per_minute":30,"rotation_timeout":300000000000,"seal_key":"cosign-seal","share_dir":"/var/lib/gmgate/cosign","token_key":"cosign-token","user_id":"1234567812345678"}`
	i := strings.Index(string(out), `{"auth"`)
	if i < 0 {
		t.Fatalf("no gm_cosign handler in %s", out)
	}
	var h json.RawMessage
	if err := json.NewDecoder(strings.NewReader(string(out[i:]))).Decode(&h); err != nil {
		t.Fatal(err)
	}
	if string(h) != want {
		t.Fatalf("got  %s\nwant %s", h, want)
	}
	for _, bad := range []string{"gm_cosign {\n share_dir\n}", "gm_cosign {\n frobnicate 1\n}", "gm_cosign {\n bind_instruction yes\n}", "gm_cosign {\n rotation_timeout\n}", "gm_cosign {\n enroll_store\n}", "gm_cosign extra"} {
		var c Cosign
		if err := c.UnmarshalCaddyfile(caddyfile.NewTestDispenser(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if err := (&Cosign{Auth: "password"}).Validate(); err == nil {
		t.Error("unknown auth mode validated")
	}
}

// keyStatus (gm_cosign's enroll_store): nothing is created before the first co-operation; a key
// without a certificate is served; its revoked or expired newest pair, or an expired session
// certificate, refuses; the session certificate's own revocation record refuses.
func TestCosignKeyStatus(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "enroll")
	k := &keyStatus{dir: dir, keys: testpki.NewSealKeys(t, "enroll-store")}
	root, _, err := pki.NewRootCA(pki.IssueOptions{CommonName: "cosign status CA"})
	if err != nil {
		t.Fatal(err)
	}
	key, _ := sm2.GenerateKey(rand.Reader)
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatal("enroll_store touched before the first co-operation")
	}
	if err := k.check(&key.PublicKey, nil); err != nil {
		t.Fatalf("no certificate yet: %v", err)
	}
	cert, err := root.IssueFor(&key.PublicKey, pki.RoleSign, pki.IssueOptions{CommonName: "POS-1"})
	if err != nil {
		t.Fatal(err)
	}
	ski, _ := enroll.KeySKI(&key.PublicKey)
	serial := strings.ToLower(cert.SerialNumber.Text(16))
	if err := k.store.PutCert(enroll.CertRecord{Serial: serial, SKI: ski, SignCert: cert.Raw, IssuedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := k.check(&key.PublicKey, cert); err != nil {
		t.Fatalf("valid: %v", err)
	}
	expired := *cert
	expired.NotAfter = time.Now().Add(-time.Second)
	if err := k.check(&key.PublicKey, &expired); !errors.Is(err, platform.ErrCertExpired) {
		t.Fatalf("expired session certificate: %v", err)
	}
	if _, err := k.store.Revoke(serial, "holder", time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, peer := range []*smx509.Certificate{nil, cert} {
		if err := k.check(&key.PublicKey, peer); !errors.Is(err, platform.ErrCertRevoked) {
			t.Fatalf("revoked (peer %v): %v", peer != nil, err)
		}
	}
}
