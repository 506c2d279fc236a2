package tls13sm

import (
	"bytes"
	"crypto/hkdf"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/gmgate/gmgate/internal/testenv"
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkAEADVector runs one RFC 8998 appendix A vector through the record protection: the
// nonce for sequence number 0 is the static IV itself, sealing gives ciphertext||tag, and
// opening in place (as the record layer does) gives the plaintext back.
func checkAEADVector(t *testing.T, suite uint16, key, iv, aad, plain, cipherText, tag []byte) {
	t.Helper()
	p, err := newRecordProtection(suite, key, iv)
	if err != nil {
		t.Fatal(err)
	}
	nonce := p.nonce(0)
	if !bytes.Equal(nonce[:], iv) {
		t.Fatalf("nonce(0) = %x, want the IV %x", nonce, iv)
	}
	want := append(append([]byte(nil), cipherText...), tag...)
	got := p.aead.Seal(nil, nonce[:], plain, aad)
	if !bytes.Equal(got, want) {
		t.Fatalf("%s seal:\n got %x\nwant %x", CipherSuiteName(suite), got, want)
	}
	buf := append([]byte(nil), want...)
	out, err := p.aead.Open(buf[:0], nonce[:], buf, aad)
	if err != nil || !bytes.Equal(out, plain) {
		t.Fatalf("%s open: %v", CipherSuiteName(suite), err)
	}
	bad := append([]byte(nil), want...)
	bad[len(bad)-1] ^= 1
	if _, err := p.aead.Open(nil, nonce[:], bad, aad); err == nil {
		t.Fatalf("%s: tampered tag accepted", CipherSuiteName(suite))
	}
	// The nonce of sequence number s is the IV XOR s in its last 8 bytes (RFC 8446 5.3).
	n := p.nonce(0x0102030405060708)
	for i := range iv {
		x := iv[i]
		if i >= 4 {
			x ^= byte(i - 3)
		}
		if n[i] != x {
			t.Fatalf("nonce(0x0102030405060708) = %x", n)
		}
	}
}

// TestRFC8998GCMVector: RFC 8998 A.1 (SM4-GCM), from the independent vector file.
func TestRFC8998GCMVector(t *testing.T) {
	path := filepath.Join(testenv.InteropDir(t), "standard-vectors.json")
	data, err := os.ReadFile(path)
	if err != nil {
		testenv.Missing(t, "%v", err)
	}
	var v struct {
		GCM struct{ Key, IV, AAD, Plaintext, Ciphertext, Tag string } `json:"sm4_gcm_rfc8998_a1"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	g := v.GCM
	if g.Key == "" {
		t.Fatal("sm4_gcm_rfc8998_a1 missing from the vector file")
	}
	checkAEADVector(t, TLS_SM4_GCM_SM3, unhex(t, g.Key), unhex(t, g.IV), unhex(t, g.AAD), unhex(t, g.Plaintext),
		unhex(t, g.Ciphertext), unhex(t, g.Tag))
}

// TestRFC8998CCMVector: RFC 8998 A.2 (SM4-CCM), as printed in the RFC.
func TestRFC8998CCMVector(t *testing.T) {
	checkAEADVector(t, TLS_SM4_CCM_SM3,
		unhex(t, "0123456789ABCDEFFEDCBA9876543210"),
		unhex(t, "00001234567800000000ABCD"),
		unhex(t, "FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2"),
		unhex(t, "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBCCCCCCCCCCCCCCCCDDDDDDDDDDDDDDDD"+
			"EEEEEEEEEEEEEEEEFFFFFFFFFFFFFFFFEEEEEEEEEEEEEEEEAAAAAAAAAAAAAAAA"),
		unhex(t, "48AF93501FA62ADBCD414CCE6034D895DDA1BF8F132F042098661572E7483094"+
			"FD12E518CE062C98ACEE28D95DF4416BED31A2F04476C18BB40C84A74B97DC5B"),
		unhex(t, "16842D4FA186F56AB33256971FA110F4"))
}

// TestExpandLabelEncoding pins the HkdfLabel structure of RFC 8446 7.1: the info string for
// ("key", "", 16) is 00 10 || 09 "tls13 key" || 00, checked by expanding with the raw HKDF.
func TestExpandLabelEncoding(t *testing.T) {
	secret := bytes.Repeat([]byte{7}, hashLen)
	info := append([]byte{0, 16, 9}, "tls13 key"...)
	info = append(info, 0)
	want := hkdfExpandRaw(t, secret, info, 16)
	if got := expandLabel(secret, "key", nil, 16); !bytes.Equal(got, want) {
		t.Fatalf("expandLabel = %x, want %x", got, want)
	}
}

// keyLogRecorder collects our secrets keyed by label and client random.
type keyLogRecorder struct {
	mu sync.Mutex
	m  map[string]string
}

func (r *keyLogRecorder) log(label string, random, secret []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = make(map[string]string)
	}
	r.m[label+" "+hex.EncodeToString(random)] = hex.EncodeToString(secret)
}

// TestKeyScheduleMatchesTongsuoKeyLog: for each suite, with and without a HelloRetryRequest,
// with and without a resumed PSK, the four traffic secrets our server derives (HKDF-Extract and
// Expand-Label over SM3, the transcript hash) are byte for byte the ones Tongsuo's s_client
// writes to its NSS key log for the same connection.
func TestKeyScheduleMatchesTongsuoKeyLog(t *testing.T) {
	bin := testenv.TongsuoBin(t)
	p := tongsuoPKI(t)
	for _, s := range liveSuites {
		for _, groups := range []string{"curveSM2", "P-256:curveSM2"} {
			t.Run(s.name+"/"+groups, func(t *testing.T) {
				rec := &keyLogRecorder{}
				cfg := &Config{Certificate: p.server, keyLog: rec.log}
				es := startEchoServer(t, cfg)
				dir := t.TempDir()
				sess := filepath.Join(dir, "sess.pem")
				for i, resume := range []bool{false, true} {
					keylog := filepath.Join(dir, fmt.Sprintf("keylog%d.txt", i))
					args := []string{"-ciphersuites", s.name, "-groups", groups, "-sigalgs", "sm2sig_sm3", "-CAfile", p.caFile, "-keylogfile", keylog}
					if resume {
						args = append(args, "-sess_in", sess)
					} else {
						args = append(args, "-sess_out", sess)
					}
					out, err := runSClient(t, bin, es.addr, args...)
					if err != nil || !strings.Contains(out, "echo:ping") {
						t.Fatalf("s_client: %v\n%s", err, out)
					}
					if r := es.next(t); r.err != nil || r.st.DidResume != resume {
						t.Fatalf("server: %+v", r)
					}
					data, err := os.ReadFile(keylog)
					if err != nil {
						t.Fatal(err)
					}
					matched := 0
					for _, line := range strings.Split(string(data), "\n") {
						f := strings.Fields(line)
						if len(f) != 3 || !strings.Contains(f[0], "TRAFFIC_SECRET") {
							continue
						}
						rec.mu.Lock()
						ours, ok := rec.m[f[0]+" "+strings.ToLower(f[1])]
						rec.mu.Unlock()
						if !ok || ours != strings.ToLower(f[2]) {
							t.Fatalf("%s: Tongsuo %s, ours %q", f[0], f[2], ours)
						}
						matched++
					}
					if matched != 4 {
						t.Fatalf("matched %d traffic secrets, want 4:\n%s", matched, data)
					}
				}
			})
		}
	}
}

func hkdfExpandRaw(t *testing.T, secret, info []byte, n int) []byte {
	t.Helper()
	out, err := hkdf.Expand(newHash, secret, string(info), n)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
