package cryptosvc

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gmgate/gmgate/envelope"
	"github.com/gmgate/gmgate/internal/testenv"
	"github.com/gmgate/gmgate/keyvault"
	"github.com/gmgate/gmgate/pki"
)

// failoverObserver counts the vault's failovers (what gmgate_vault_failovers_total counts) and
// the token-side operations per token.
type failoverObserver struct {
	mu        sync.Mutex
	failovers map[[2]string]int
	ops       map[string]int
}

func (o *failoverObserver) ObserveOperation(token, key, op string, _ time.Duration, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err == nil && op == "decrypt" {
		o.ops[token]++
	}
}
func (o *failoverObserver) ObservePoolWait(string, time.Duration) {}
func (o *failoverObserver) ObserveFailover(key, from, to string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.failovers[[2]string{from, to}]++
}
func (o *failoverObserver) ObserveTokenHealth(string, bool) {}

func (o *failoverObserver) served(token string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.ops[token]
}

func (o *failoverObserver) count(from, to string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.failovers[[2]string{from, to}]
}

// TestReplicaFailoverKeepsServing: an SM2 encryption key kept inside two SoftHSM2 tokens
// configured as replicas (token_decrypt: every decryption is a C_DeriveKey on a token). The
// service opens envelopes; token "a" then loses its key objects mid-run; every following
// request still succeeds, served by "b", and the vault counts the failovers a -> b.
func TestReplicaFailoverKeepsServing(t *testing.T) {
	needHSM(t)
	serials := hsm.pairSerials
	tok := func(name, serial string) keyvault.TokenConfig {
		return keyvault.TokenConfig{Name: name, Module: softhsmModule, TokenLabel: hsmPairLabel, TokenSerial: serial,
			PINEnv: hsmPINEnv, PoolSize: 2, BorrowTimeout: keyvault.Duration(2 * time.Second)}
	}
	kc := keyvault.KeyConfig{Name: "platform-enc", Type: keyvault.KeyTypeSM2, TokenDecrypt: true,
		Ref: "pkcs11:token=" + hsmPairLabel + ";object=platform-enc"}
	cfg := keyvault.Config{Tokens: []keyvault.TokenConfig{tok("a", serials[0]), tok("b", serials[1])}, Keys: []keyvault.KeyConfig{kc}}
	admin, err := keyvault.Open(cfg, keyvault.WithAdmin())
	if err != nil {
		t.Fatal(err)
	}
	if res, err := admin.Init(""); err != nil || len(res) != 2 {
		t.Fatalf("init both replicas: %v %v", res, err)
	}
	info, err := admin.Generate("platform-enc")
	if err != nil || len(info.Tokens) != 2 {
		t.Fatalf("generate on both replicas: %+v %v", info, err)
	}
	pub, err := admin.PublicKey("platform-enc")
	admin.Close()
	if err != nil {
		t.Fatal(err)
	}
	ca, _, err := pki.NewRootCA(pki.IssueOptions{CommonName: "failover test CA"})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.IssueFor(pub, pki.RoleEnc, pki.IssueOptions{CommonName: "gmgate platform (replicated)"})
	if err != nil {
		t.Fatal(err)
	}
	certFile := filepath.Join(t.TempDir(), "platform-enc.pem")
	if err := os.WriteFile(certFile, pki.EncodeCertificatesPEM(cert), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.Keys[0].Certificate = certFile
	obs := &failoverObserver{failovers: map[[2]string]int{}, ops: map[string]int{}}
	v, err := keyvault.Open(cfg, keyvault.WithObserver(obs))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	p, err := NewPolicy(PolicyConfig{Callers: []CallerConfig{{Name: "settlement", SubjectCN: "settlement"}},
		Rules: []Rule{{Caller: "settlement", Ops: []Op{OpOpen}, Key: "platform-enc"}}})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Keys: VaultKeys(v), Policy: p})
	if err != nil {
		t.Fatal(err)
	}
	open := func(what string, n int) {
		t.Helper()
		for i := 0; i < n; i++ {
			secret := make([]byte, 24)
			rand.Read(secret)
			env, err := envelope.Seal(secret, cert, envelope.SealOptions{GCM: true})
			if err != nil {
				t.Fatal(err)
			}
			r := mustOK(t, s, settlement, OpOpen, item{"key": "platform-enc", "envelope": env})
			if !bytes.Equal(r.Plaintext, secret) {
				t.Fatalf("%s: request %d: wrong plaintext", what, i)
			}
		}
	}
	open("both replicas", 4)
	if obs.served("a") == 0 || obs.served("b") == 0 || obs.count("a", "b")+obs.count("b", "a") != 0 {
		t.Fatalf("both replicas should serve (round robin) without failover: a %d, b %d, failovers a->b %d",
			obs.served("a"), obs.served("b"), obs.count("a", "b"))
	}

	testenv.MoveSoftHSMObjects(t, testenv.SoftHSMTokenDir(t, filepath.Join(hsm.dir, "tokens"), serials[0]), t.TempDir(), true)
	servedByB := obs.served("b")
	open("replica a broken", 6)
	if n := obs.count("a", "b"); n < 2 {
		t.Fatalf("failovers a -> b: %d, want one per request that tried a first", n)
	}
	if n := obs.served("b") - servedByB; n != 6 {
		t.Fatalf("b served %d of the 6 requests", n)
	}
}
