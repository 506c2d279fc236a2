package caddymodule

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/cosign"
	"github.com/gmgate/gmgate/cosign/platform"
	"github.com/gmgate/gmgate/enroll"
	"github.com/gmgate/gmgate/gateway"
	"github.com/gmgate/gmgate/internal/testenv"
	"github.com/gmgate/gmgate/internal/testpki"
	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/sealstore"
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
			crls /etc/gmgate/ca.crl http://ca.example/ca.crl
			trusted_roots /etc/gmgate/root.pem
			intermediates /etc/gmgate/sub.pem
			replay {
				store redis
				redis_address 127.0.0.1:6379
				redis_prefix gmgate:cosign:site1:
				redis_timeout 500ms
			}
		}
	}
}`
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(src), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"auth":"cert_or_token","bind_instruction":true,"burst":5,"crls":["/etc/gmgate/ca.crl","http://ca.example/ca.crl"],"enroll_store":"/var/lib/gmgate/enroll","enroll_store_key":"enroll-store","handler":"gm_cosign","intermediates":["/etc/gmgate/sub.pem"],"lockout":1800000000000,` +
		`"max_failures":3,"max_points":50000,"max_token_lifetime":300000000000,"point_window":900000000000,` +
		`"rate_per_minute":30,"replay":{"redis_address":"127.0.0.1:6379","redis_prefix":"gmgate:cosign:site1:","redis_timeout":500000000,"store":"redis"},"rotation_timeout":300000000000,"seal_key":"cosign-seal","share_dir":"/var/lib/gmgate/cosign","token_key":"cosign-token","trusted_roots":["/etc/gmgate/root.pem"],"user_id":"1234567812345678"}`
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
	for _, bad := range []string{"gm_cosign {\n share_dir\n}", "gm_cosign {\n frobnicate 1\n}", "gm_cosign {\n bind_instruction yes\n}", "gm_cosign {\n rotation_timeout\n}", "gm_cosign {\n enroll_store\n}", "gm_cosign {\n crls\n}", "gm_cosign extra"} {
		var c Cosign
		if err := c.UnmarshalCaddyfile(caddyfile.NewTestDispenser(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if err := (&Cosign{Auth: "password"}).Validate(); err == nil {
		t.Error("unknown auth mode validated")
	}
	// the replay block: gm_verify's store options; its window, max_entries and fail_open have
	// gm_cosign names of their own or do not apply (it always fails closed)
	for _, rc := range []ReplayConfig{
		{Window: 1}, {MaxEntries: 5}, {FailOpen: true}, {Store: "etcd"}, {Store: "redis"},
		{Store: "redis", RedisAddress: RedisAddresses{"a:1", "b:2"}},
	} {
		if err := (&Cosign{Replay: &rc}).Validate(); err == nil {
			t.Errorf("replay %+v validated", rc)
		}
	}
	if err := (&Cosign{Replay: &ReplayConfig{Store: "redis", RedisAddress: RedisAddresses{"127.0.0.1:6379"}}}).Validate(); err != nil {
		t.Errorf("redis store refused: %v", err)
	}
}

// TestCosignSharedStateWiring: gm_cosign's replay block builds one Redis client for the
// rate/lockout scripts and gm_verify's replay store; a point stored through it is reported as
// cosign.ErrReused the second time (the code cosign_reused_point, not cosign_unavailable).
func TestCosignSharedStateWiring(t *testing.T) {
	addr := os.Getenv("GMGATE_REDIS_ADDR")
	if addr == "" {
		testenv.Missing(t, "GMGATE_REDIS_ADDR unset (scripts/test.sh starts a Redis)")
	}
	_, client, err := cosignSharedState(&ReplayConfig{Store: "redis", RedisAddress: RedisAddresses{addr},
		RedisPrefix: fmt.Sprintf("gmgate:cosign:wiring%d:", time.Now().UnixNano())})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	st, err := gateway.NewRedisReplayStore(gateway.RedisReplayOptions{Client: client, Prefix: "gmgate:cosign:wiring:pt:"})
	if err != nil {
		t.Fatal(err)
	}
	p := cosignPoints{st}
	nonce := fmt.Sprint("04ab", time.Now().UnixNano())
	if err := p.CheckAndStore(context.Background(), "term-1", nonce, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := p.CheckAndStore(context.Background(), "term-1", nonce, time.Minute); !errors.Is(err, cosign.ErrReused) {
		t.Fatalf("second use: %v, want cosign.ErrReused", err)
	}
	if _, _, err := cosignSharedState(&ReplayConfig{Store: "redis", RedisMode: "cluster", RedisAddress: RedisAddresses{addr}, RedisPrefix: "a{b}"}); err == nil {
		t.Fatal("a hash tag in the prefix accepted with a Cluster")
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

// Attack: someone who can write gm_enroll's store deletes a revoked joint key's records, or
// puts back a validly tagged record from before its revocation. With crls, gm_cosign still
// refuses the key (the CA's CRL lists its certificate), for token sessions (the store record)
// and certificate sessions (the session certificate) alike; a CRL that is missing, of another
// CA or stale refuses too (fail closed).
func TestCosignKeyStatusCRLAttack(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "enroll")
	root, _, err := pki.NewRootCA(pki.IssueOptions{CommonName: "cosign CRL CA"})
	if err != nil {
		t.Fatal(err)
	}
	key, _ := sm2.GenerateKey(rand.Reader)
	cert, err := root.IssueFor(&key.PublicKey, pki.RoleSign, pki.IssueOptions{CommonName: "POS-1"})
	if err != nil {
		t.Fatal(err)
	}
	rootFile := filepath.Join(t.TempDir(), "root.pem")
	if err := os.WriteFile(rootFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	crlFile := filepath.Join(t.TempDir(), "ca.crl")
	writeCRL := func(revoked []smx509.RevocationListEntry, n int64, next time.Duration) {
		t.Helper()
		der, err := root.CreateCRL(revoked, big.NewInt(n), next)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(crlFile, pki.EncodeCRLPEM(der), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeCRL(nil, 1, time.Hour)
	pins, err := sealstore.Open(t.TempDir(), testpki.NewSealKeys(t, "shares"))
	if err != nil {
		t.Fatal(err)
	}
	k := &keyStatus{dir: dir, keys: testpki.NewSealKeys(t, "enroll-store"), pins: pins}
	if err := k.loadCRLs(nil, []string{crlFile}, []string{rootFile}, nil); err != nil {
		t.Fatal(err)
	}
	if err := k.check(&key.PublicKey, nil); err != nil { // opens the store; no certificate yet
		t.Fatalf("no certificate yet: %v", err)
	}
	ski, _ := enroll.KeySKI(&key.PublicKey)
	serial := strings.ToLower(cert.SerialNumber.Text(16))
	before := enroll.CertRecord{Serial: serial, SKI: ski, SignCert: cert.Raw, IssuedAt: time.Now()}
	if err := k.store.PutCert(before); err != nil {
		t.Fatal(err)
	}
	for _, peer := range []*smx509.Certificate{nil, cert} {
		if err := k.check(&key.PublicKey, peer); err != nil {
			t.Fatalf("valid, not on the CRL (peer %v): %v", peer != nil, err)
		}
	}
	// The CA revokes it; the store's record is put back from before the revocation (the
	// attacker's rollback: a validly tagged record that says "not revoked").
	writeCRL([]smx509.RevocationListEntry{{SerialNumber: cert.SerialNumber, RevocationTime: time.Now()}}, 2, time.Hour)
	if err := k.crls.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := k.store.Revoke(serial, "holder", time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := k.store.PutCert(before); err != nil {
		t.Fatal(err)
	}
	for _, peer := range []*smx509.Certificate{nil, cert} {
		if err := k.check(&key.PublicKey, peer); !errors.Is(err, platform.ErrCertRevoked) {
			t.Fatalf("rolled-back record (peer %v): %v, want ErrCertRevoked", peer != nil, err)
		}
	}
	// The records deleted: a certificate session still presents the revoked certificate; a
	// token session is refused through the certificate gm_cosign remembered (pins).
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	k.store = nil
	for _, peer := range []*smx509.Certificate{nil, cert} {
		if err := k.check(&key.PublicKey, peer); !errors.Is(err, platform.ErrCertRevoked) {
			t.Fatalf("deleted records (peer %v): %v, want ErrCertRevoked", peer != nil, err)
		}
	}
	// A certified key not revoked whose records are deleted fails closed too.
	writeCRL(nil, 3, time.Hour)
	if err := k.crls.Reload(); err != nil {
		t.Fatal(err)
	}
	if err := k.check(&key.PublicKey, nil); !errors.Is(err, errCertRecordMissing) {
		t.Fatalf("deleted records of a certified key: %v, want errCertRecordMissing", err)
	}
	// Fail closed: a stale CRL, a certificate of another CA.
	der, err := root.CreateCRLAt(nil, big.NewInt(1), time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	staleFile := filepath.Join(t.TempDir(), "stale.crl")
	if err := os.WriteFile(staleFile, pki.EncodeCRLPEM(der), 0o600); err != nil {
		t.Fatal(err)
	}
	stale := &keyStatus{}
	if err := stale.loadCRLs(nil, []string{staleFile}, []string{rootFile}, nil); err != nil {
		t.Fatal(err)
	}
	if err := stale.check(&key.PublicKey, cert); err == nil || errors.Is(err, platform.ErrCertRevoked) {
		t.Fatalf("stale CRL: %v, want a fail-closed error", err)
	}
	other, _, _ := pki.NewRootCA(pki.IssueOptions{CommonName: "other CA"})
	otherCert, _ := other.IssueFor(&key.PublicKey, pki.RoleSign, pki.IssueOptions{CommonName: "POS-1"})
	if err := k.check(&key.PublicKey, otherCert); err == nil || errors.Is(err, platform.ErrCertRevoked) {
		t.Fatalf("other CA: %v, want a fail-closed error", err)
	}
}

// Attack through gm_cosign's wiring: with replay { store redis } the share store's ledger lives
// under <redis_prefix>ledger: (shareLedger, what Provision and `gmgate cosign destroy
// --redis-address` use); a share file copied back to before a rotation is refused
// (sealstore.ErrRolledBack: cosign_unavailable), by a second store as after a restart.
func TestCosignShareLedgerRedis(t *testing.T) {
	addr := testenv.RedisAddr(t)
	rc := &ReplayConfig{Store: "redis", RedisAddress: RedisAddresses{addr},
		RedisPrefix: fmt.Sprintf("gmgate:cosign:ledger%d:", time.Now().UnixNano())}
	client, err := rc.redisConfig().NewClient()
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ledger, err := shareLedger(client, rc)
	if err != nil {
		t.Fatal(err)
	}
	dir, keys := t.TempDir(), testpki.NewSealKeys(t, "shares")
	open := func() *sealstore.Store {
		st, err := sealstore.Open(dir, keys)
		if err != nil {
			t.Fatal(err)
		}
		st.SetLedger(ledger)
		return st
	}
	st := open()
	id := []byte("term-1")
	if err := st.Create(platform.ShareKind, id, []byte("d2 v1")); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, platform.ShareKind, "*.json"))
	old, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Put(platform.ShareKind, id, []byte("d2 v2")); err != nil {
		t.Fatal(err)
	}
	if err := st.DestroyVersion(platform.ShareKind, id, 1); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(files[0], old, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := open().GetAll(platform.ShareKind, id); !errors.Is(err, sealstore.ErrRolledBack) {
		t.Fatalf("rolled-back share: %v, want sealstore.ErrRolledBack", err)
	}
	if n, _ := client.Exists(context.Background(), rc.RedisPrefix+"ledger:"+strings.TrimSuffix(filepath.Base(files[0]), ".json")).Result(); n != 1 {
		t.Fatal("no ledger entry under <redis_prefix>ledger:")
	}
}
