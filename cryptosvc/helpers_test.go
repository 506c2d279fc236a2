package cryptosvc

import (
	"context"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm4"

	"github.com/gmgate/gmgate/audit"
	"github.com/gmgate/gmgate/internal/testenv"
	"github.com/gmgate/gmgate/keyvault"
	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/refusal"
)

// One SoftHSM2 token directory for the package (C_Initialize reads SOFTHSM2_CONF once).
const (
	softhsmModule = "/usr/lib/softhsm/libsofthsm2.so"
	hsmLabel      = "cryptosvc"
	hsmPINEnv     = "GMGATE_TEST_CRYPTOSVC_PIN"
	hsmPairLabel  = "cryptosvc-pair"
)

var hsm struct {
	skip        string
	dir         string
	pairSerials []string // the two tokens labelled hsmPairLabel
}

func TestMain(m *testing.M) {
	code := func() int {
		if err := setupSoftHSM(); err != nil {
			hsm.skip = err.Error()
		}
		if hsm.dir != "" {
			defer os.RemoveAll(hsm.dir)
		}
		return m.Run()
	}()
	os.Exit(code)
}

func setupSoftHSM() error {
	if _, err := os.Stat(softhsmModule); err != nil {
		return fmt.Errorf("SoftHSM2 module %s not installed", softhsmModule)
	}
	util, err := exec.LookPath("softhsm2-util")
	if err != nil {
		return errors.New("softhsm2-util not on PATH")
	}
	dir, err := os.MkdirTemp("", "cryptosvc-softhsm-")
	if err != nil {
		return err
	}
	hsm.dir = dir
	tokdir := filepath.Join(dir, "tokens")
	if err := os.Mkdir(tokdir, 0o700); err != nil {
		return err
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	body := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", tokdir)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		return err
	}
	os.Setenv("SOFTHSM2_CONF", conf)
	os.Setenv(hsmPINEnv, "123456")
	out, err := exec.Command(util, "--init-token", "--free", "--label", hsmLabel, "--so-pin", "12345678", "--pin", "123456").CombinedOutput()
	if err != nil {
		return fmt.Errorf("softhsm2-util --init-token: %v: %s", err, out)
	}
	// Two more tokens of one label: the replicas of the failover test.
	for i := 0; i < 2; i++ {
		out, err := exec.Command(util, "--init-token", "--free", "--label", hsmPairLabel, "--so-pin", "12345678", "--pin", "123456").CombinedOutput()
		if err != nil {
			return fmt.Errorf("softhsm2-util --init-token: %v: %s", err, out)
		}
	}
	out, err = exec.Command(util, "--show-slots").CombinedOutput()
	if err != nil {
		return fmt.Errorf("softhsm2-util --show-slots: %v: %s", err, out)
	}
	var serial string
	for _, line := range strings.Split(string(out), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		switch v = strings.TrimSpace(v); k {
		case "Serial number":
			serial = v
		case "Label":
			if v == hsmPairLabel && serial != "" {
				hsm.pairSerials = append(hsm.pairSerials, serial)
			}
		}
	}
	if len(hsm.pairSerials) != 2 {
		return fmt.Errorf("softhsm2-util --show-slots: want 2 tokens labelled %s: %s", hsmPairLabel, out)
	}
	return nil
}

func needHSM(t testing.TB) {
	t.Helper()
	if hsm.skip == "" {
		return
	}
	if testenv.Required() {
		t.Fatalf("SoftHSM2 required (GMGATE_REQUIRE_SERVICES=1) but unavailable: %s", hsm.skip)
	}
	t.Skipf("SoftHSM2 unavailable: %s", hsm.skip)
}

var (
	hsmOnce  sync.Once
	hsmVault *keyvault.Vault
	hsmErr   error
	// hsmOld[n] is a ciphertext of "old record" under pii version n, made by the service when
	// n was the newest version.
	hsmOld = map[int]string{}
)

// wrappedVault is a SoftHSM2 vault in wrapped mode: pii (SM4, versions 1..3), pii-other (SM4,
// version 1), platform-sign (SM2, version 1, user ID "settlement@gmgate").
func wrappedVault(t testing.TB) *keyvault.Vault {
	t.Helper()
	needHSM(t)
	hsmOnce.Do(func() {
		tc := keyvault.TokenConfig{Name: "main", Module: softhsmModule, TokenLabel: hsmLabel, PINEnv: hsmPINEnv,
			PoolSize: 4, BorrowTimeout: keyvault.Duration(2 * time.Second)}
		ref := func(o string) string { return "pkcs11:token=" + hsmLabel + ";object=" + o }
		cfg := keyvault.Config{Tokens: []keyvault.TokenConfig{tc}, Keys: []keyvault.KeyConfig{
			{Name: "pii", Type: keyvault.KeyTypeSM4, Ref: ref("pii")},
			{Name: "pii-other", Type: keyvault.KeyTypeSM4, Ref: ref("pii-other")},
			{Name: "platform-sign", Type: keyvault.KeyTypeSM2, Ref: ref("platform-sign"), UserID: "settlement@gmgate"},
		}}
		v, err := keyvault.Open(cfg, keyvault.WithAdmin())
		if err != nil {
			hsmErr = err
			return
		}
		if _, err := v.Init(""); err != nil {
			hsmErr = err
			return
		}
		for _, k := range []string{"pii", "pii-other", "platform-sign"} {
			if _, err := v.Generate(k); err != nil {
				hsmErr = err
				return
			}
		}
		for i := 1; i <= 2; i++ {
			s, err := New(Options{Keys: VaultKeys(v), Policy: testPolicy(nil)})
			if err == nil {
				var resp *Response
				resp, err = s.Do(context.Background(), settlement, OpEncrypt,
					[]byte(`{"key":"pii","plaintext":"b2xkIHJlY29yZA=="}`), "")
				if err == nil {
					hsmOld[i] = resp.Results[0].Ciphertext
				}
			}
			if err == nil {
				_, err = v.Rotate("pii")
			}
			if err != nil {
				hsmErr = err
				return
			}
		}
		hsmVault = v
	})
	if hsmErr != nil {
		t.Fatal(hsmErr)
	}
	return hsmVault
}

// fileVault is a software vault of file keys: pii (SM4), pii-other (SM4), platform-sign (SM2).
func fileVault(t testing.TB) *keyvault.Vault {
	t.Helper()
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	sm4key := func() []byte {
		b := make([]byte, 16)
		rand.Read(b)
		return []byte(hex.EncodeToString(b) + "\n")
	}
	priv, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pemKey, err := pki.MarshalPrivateKeyPEM(priv, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := keyvault.Config{Keys: []keyvault.KeyConfig{
		{Name: "pii", Type: keyvault.KeyTypeSM4, Ref: "file:" + write("pii.key", sm4key())},
		{Name: "pii-other", Type: keyvault.KeyTypeSM4, Ref: "file:" + write("pii-other.key", sm4key())},
		{Name: "platform-sign", Type: keyvault.KeyTypeSM2, Ref: "file:" + write("sign.key", pemKey), UserID: "settlement@gmgate"},
	}}
	v, err := keyvault.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

// recSink records audit entries; fail makes Append fail.
type recSink struct {
	mu   sync.Mutex
	recs []audit.Record
	fail bool
}

func (s *recSink) Append(r audit.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail {
		return errors.New("disk full")
	}
	s.recs = append(s.recs, r)
	return nil
}

func (s *recSink) last(t testing.TB) audit.Record {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.recs) == 0 {
		t.Fatal("no audit entry")
	}
	return s.recs[len(s.recs)-1]
}

// testPolicy: settlement signs/verifies with platform-sign and uses pii and pii-other fully;
// risk may only decrypt pii from version 3 on.
func testPolicy(testing.TB) *Policy {
	all := []Op{OpEncrypt, OpDecrypt, OpRewrap, OpDataKey, OpHMAC, OpVerifyHMAC, OpKeyInfo}
	p, err := NewPolicy(PolicyConfig{
		Callers: []CallerConfig{{Name: "settlement", SubjectCN: "settlement"}, {Name: "risk", SubjectCN: "risk"}},
		Rules: []Rule{
			{Caller: "settlement", Ops: []Op{OpSign, OpVerify, OpKeyInfo}, Key: "platform-sign"},
			{Caller: "settlement", Ops: all, Key: "pii"},
			{Caller: "settlement", Ops: all, Key: "pii-other"},
			{Caller: "settlement", Ops: []Op{OpSign, OpEncrypt}, Key: "missing"},
			{Caller: "settlement", Ops: []Op{OpSign}, Key: "pii"},
			{Caller: "settlement", Ops: []Op{OpRandom}},
			{Caller: "risk", Ops: []Op{OpDecrypt}, Key: "pii", MinVersion: 3},
		},
	})
	if err != nil {
		panic(err)
	}
	return p
}

func newService(t testing.TB, v *keyvault.Vault, sink audit.Sink) *Service {
	t.Helper()
	s, err := New(Options{Keys: VaultKeys(v), Policy: testPolicy(t), Audit: sink})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var (
	settlement = Caller{Name: "settlement", Serial: "0a"}
	risk       = Caller{Name: "risk", Serial: "0b"}
)

// call runs op with body given as a Go value (marshalled) or a string (raw JSON).
func call(t testing.TB, s *Service, c Caller, op Op, body any) (*Response, error) {
	t.Helper()
	var raw []byte
	switch b := body.(type) {
	case string:
		raw = []byte(b)
	default:
		var err error
		if raw, err = json.Marshal(b); err != nil {
			t.Fatal(err)
		}
	}
	return s.Do(context.Background(), c, op, raw, "req-1")
}

func mustOK(t testing.TB, s *Service, c Caller, op Op, body any) Result {
	t.Helper()
	resp, err := call(t, s, c, op, body)
	if err != nil {
		t.Fatalf("%s: %v", op, err)
	}
	if len(resp.Results) != 1 {
		t.Fatalf("%s: %d results", op, len(resp.Results))
	}
	return resp.Results[0]
}

func mustCode(t testing.TB, err error, want refusal.Code) {
	t.Helper()
	if got := CodeOf(err); got != want {
		t.Fatalf("code %s, want %s (err %v)", got, want, err)
	}
}

func hexs(b []byte) string { return hex.EncodeToString(b) }

func sm4CBCDecrypt(t testing.TB, key, iv, ct []byte) []byte {
	t.Helper()
	b, err := sm4.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, len(ct))
	cipher.NewCBCDecrypter(b, iv).CryptBlocks(out, ct)
	n := int(out[len(out)-1])
	if n < 1 || n > 16 {
		t.Fatal("bad padding")
	}
	return out[:len(out)-n]
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}
