package cosign

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/hex"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/internal/testenv"
)

// Live interop with Tongsuo's sm2_threshold (an independent C implementation of the same
// scheme), both directions, for derivation, signing and decryption. Wire forms Tongsuo uses:
// partial and joint public keys and Q_1 as PEM SubjectPublicKeyInfo (we move them as 65-byte
// points), the digest as hex, the partial signature (r, s_1) as a DER SEQUENCE of two INTEGERs
// (or that DER as colon-separated hex with -hex), T_1 and T_2 as hex of the uncompressed point.

type tongsuo struct {
	t   *testing.T
	bin string
	dir string
}

func newTongsuo(t *testing.T) *tongsuo {
	return &tongsuo{t: t, bin: testenv.TongsuoBin(t), dir: t.TempDir()}
}

func (ts *tongsuo) path(name string) string { return filepath.Join(ts.dir, name) }

func (ts *tongsuo) run(args ...string) string {
	ts.t.Helper()
	cmd := exec.Command(ts.bin, args...)
	cmd.Dir = ts.dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		ts.t.Fatalf("tongsuo %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (ts *tongsuo) write(name string, b []byte) {
	ts.t.Helper()
	if err := os.WriteFile(ts.path(name), b, 0o600); err != nil {
		ts.t.Fatal(err)
	}
}

func (ts *tongsuo) read(name string) []byte {
	ts.t.Helper()
	b, err := os.ReadFile(ts.path(name))
	if err != nil {
		ts.t.Fatal(err)
	}
	return b
}

// writePub writes a 65-byte point as a PEM PUBKEY (SM2).
func (ts *tongsuo) writePub(name string, p []byte) {
	ts.t.Helper()
	pub, err := ParsePublicKey(p)
	if err != nil {
		ts.t.Fatal(err)
	}
	der, err := smx509.MarshalPKIXPublicKey(pub)
	if err != nil {
		ts.t.Fatal(err)
	}
	ts.write(name, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// readPub reads a PEM PUBKEY as a 65-byte point.
func (ts *tongsuo) readPub(name string) []byte {
	ts.t.Helper()
	blk, _ := pem.Decode(ts.read(name))
	if blk == nil {
		ts.t.Fatalf("%s: no PEM", name)
	}
	k, err := smx509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		ts.t.Fatal(err)
	}
	pub, ok := k.(*ecdsa.PublicKey)
	if !ok || !sm2.IsSM2PublicKey(pub) {
		ts.t.Fatalf("%s: not an SM2 key: %T", name, k)
	}
	return MarshalPublicKey(pub)
}

// genShare has Tongsuo generate an SM2 key and returns it as our Share.
func (ts *tongsuo) genShare(name string) *Share {
	ts.t.Helper()
	ts.run("genpkey", "-algorithm", "ec", "-pkeyopt", "ec_paramgen_curve:sm2", "-out", name)
	blk, _ := pem.Decode(ts.read(name))
	k, err := smx509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		ts.t.Fatal(err)
	}
	priv, ok := k.(*sm2.PrivateKey)
	if !ok {
		ts.t.Fatalf("%T", k)
	}
	s, err := ParseShare(priv.D.FillBytes(make([]byte, 32)))
	if err != nil {
		ts.t.Fatal(err)
	}
	return s
}

// hexFile decodes Tongsuo's hex output (upper case, optionally colon separated).
func hexFile(t *testing.T, b []byte) []byte {
	t.Helper()
	s := strings.NewReplacer(":", "", "\n", "", " ", "").Replace(string(b))
	out, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("hex %q: %v", b, err)
	}
	return out
}

func (ts *tongsuo) verifyEverywhere(pubName string, pub *ecdsa.PublicKey, msg, sig []byte) {
	ts.t.Helper()
	if !sm2.VerifyASN1WithSM2(pub, nil, msg, sig) {
		ts.t.Fatal("gmsm rejects the signature")
	}
	ts.write("data", msg)
	ts.write("sig.der", sig)
	if out := ts.run("dgst", "-sm3", "-verify", pubName, "-signature", "sig.der", "data"); !strings.Contains(out, "Verified OK") {
		ts.t.Fatalf("dgst -verify: %s", out)
	}
	if out := ts.run("pkeyutl", "-verify", "-pubin", "-inkey", pubName, "-rawin", "-digest", "sm3",
		"-pkeyopt", "distid:1234567812345678", "-in", "data", "-sigfile", "sig.der"); !strings.Contains(out, "Successfully") {
		ts.t.Fatalf("pkeyutl -verify: %s", out)
	}
	// And a verifier that must fail: another message.
	ts.write("data2", append(append([]byte(nil), msg...), '!'))
	cmd := exec.Command(ts.bin, "dgst", "-sm3", "-verify", pubName, "-signature", "sig.der", "data2")
	cmd.Dir = ts.dir
	if out, err := cmd.CombinedOutput(); err == nil || strings.Contains(string(out), "Verified OK") {
		ts.t.Fatalf("Tongsuo verified a signature over another message: %s", out)
	}
}

var digestLine = regexp.MustCompile(`digest=([0-9A-Fa-f]{64})`)

// Tongsuo is the terminal (A, d_1), gmgate is the platform (B, d_2).
func TestTongsuoTerminalGmgatePlatform(t *testing.T) {
	ts := newTongsuo(t)
	ts.genShare("A.key") // Tongsuo's d_1; we only read its partial key from Tongsuo
	ts.run("sm2_threshold", "-derive", "-inkey", "A.key", "-pubout", "A-pub.key")
	d2, err := GenerateShare(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ts.writePub("B-pub.key", d2.PartialPublicKey())

	// Derivation: Tongsuo's joint key from our P_2 equals ours from its P_1.
	ts.run("sm2_threshold", "-derive", "-inkey", "A.key", "-peerkey", "B-pub.key", "-pubout", "AB-pub.key")
	pub, err := d2.JointPublicKey(ts.readPub("A-pub.key"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ts.readPub("AB-pub.key"), MarshalPublicKey(pub)) {
		t.Fatal("joint keys differ")
	}

	for i, msg := range [][]byte{[]byte("pay 100.00 CNY"), bytes.Repeat([]byte{0xA5}, 5000)} {
		ts.write("data", msg)
		out := ts.run("sm2_threshold", "-sign1", "-newkey", "t.key", "-pubout", "t-pub.key", "-pubin", "-inkey", "AB-pub.key", "-in", "data")
		m := digestLine.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("sign1 printed no digest: %s", out)
		}
		e, _ := hex.DecodeString(m[1])
		if want, _ := Digest(pub, nil, msg); !bytes.Equal(e, want) {
			t.Fatal("Tongsuo's sign1 digest differs from Digest (Z_A with the default user ID)")
		}
		r, s1, err := d2.CoSign(rand.Reader, e, ts.readPub("t-pub.key"))
		if err != nil {
			t.Fatal(err)
		}
		partial, err := MarshalPartialSignature(r, s1)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			ts.write("partial.bin", partial)
			ts.run("sm2_threshold", "-sign3", "-inkey", "A.key", "-sigfile", "partial.bin", "-tempkey", "t.key", "-out", "sig.der")
		} else { // the hex form, as Tongsuo's own sign2 -hex writes it
			ts.write("partial.hex", []byte(colonHex(partial)))
			ts.run("sm2_threshold", "-sign3", "-inkey", "A.key", "-sigfile", "partial.hex", "-sigform", "hex", "-tempkey", "t.key", "-out", "sig.der")
		}
		ts.verifyEverywhere("AB-pub.key", pub, msg, ts.read("sig.der"))
	}

	// Decryption: Tongsuo encrypts to the joint key and runs decrypt1/3, we run decrypt2.
	msg := []byte("encrypted card data 6222020200001234567")
	ts.write("data", msg)
	ts.run("pkeyutl", "-encrypt", "-pubin", "-inkey", "AB-pub.key", "-in", "data", "-out", "c.bin")
	ts.run("sm2_threshold", "-decrypt1", "-in", "c.bin", "-newrand", "w.bin", "-newpoint", "T1.bin")
	t2, err := d2.CoDecrypt(hexFile(t, ts.read("T1.bin")))
	if err != nil {
		t.Fatal(err)
	}
	ts.write("T2.bin", []byte(strings.ToUpper(hex.EncodeToString(t2))))
	ts.run("sm2_threshold", "-decrypt3", "-inkey", "A.key", "-randin", "w.bin", "-pointin", "T2.bin", "-in", "c.bin", "-out", "plain")
	if got := ts.read("plain"); !bytes.Equal(got, msg) {
		t.Fatalf("Tongsuo decrypted %q", got)
	}
}

// gmgate is the terminal (A, d_1), Tongsuo is the platform (B, d_2).
func TestGmgateTerminalTongsuoPlatform(t *testing.T) {
	ts := newTongsuo(t)
	ts.genShare("B.key")
	ts.run("sm2_threshold", "-derive", "-inkey", "B.key", "-pubout", "B-pub.key")
	d1, err := GenerateShare(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ts.writePub("A-pub.key", d1.PartialPublicKey())
	ts.run("sm2_threshold", "-derive", "-inkey", "B.key", "-peerkey", "A-pub.key", "-pubout", "BA-pub.key")
	pub, err := d1.JointPublicKey(ts.readPub("B-pub.key"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ts.readPub("BA-pub.key"), MarshalPublicKey(pub)) {
		t.Fatal("joint keys differ")
	}

	for i, msg := range [][]byte{[]byte("refund 5.00 CNY"), []byte("x")} {
		e, err := Digest(pub, nil, msg)
		if err != nil {
			t.Fatal(err)
		}
		sg, err := StartSign(rand.Reader, pub, e)
		if err != nil {
			t.Fatal(err)
		}
		ts.writePub("t-pub.key", sg.Q1())
		args := []string{"sm2_threshold", "-sign2", "-inkey", "B.key", "-digest", strings.ToUpper(hex.EncodeToString(e)), "-temppeerkey", "t-pub.key", "-out", "partial.bin"}
		var partial []byte
		if i == 0 {
			ts.run(args...)
			partial = ts.read("partial.bin")
		} else {
			ts.run(append(args, "-hex")...)
			partial = hexFile(t, ts.read("partial.bin"))
		}
		r, s1, err := ParsePartialSignature(partial)
		if err != nil {
			t.Fatalf("Tongsuo's partial signature: %v (%x)", err, partial)
		}
		sig, err := sg.Finish(d1, r, s1)
		if err != nil {
			t.Fatal(err)
		}
		ts.verifyEverywhere("BA-pub.key", pub, msg, sig)
	}

	// Decryption: gmsm encrypts (and Tongsuo, in a second round), we run decrypt1/3, Tongsuo decrypt2.
	msg := []byte("PIN block for terminal 00042")
	gmCT, err := sm2.EncryptASN1(rand.Reader, pub, msg)
	if err != nil {
		t.Fatal(err)
	}
	ts.write("data", msg)
	ts.run("pkeyutl", "-encrypt", "-pubin", "-inkey", "BA-pub.key", "-in", "data", "-out", "c.bin")
	for name, ct := range map[string][]byte{"gmsm": gmCT, "tongsuo": ts.read("c.bin")} {
		dc, err := StartDecrypt(rand.Reader, ct)
		if err != nil {
			t.Fatal(name, err)
		}
		ts.write("T1.bin", []byte(strings.ToUpper(hex.EncodeToString(dc.T1()))))
		ts.run("sm2_threshold", "-decrypt2", "-inkey", "B.key", "-pointin", "T1.bin", "-pointout", "T2.bin")
		got, err := dc.Finish(d1, hexFile(t, ts.read("T2.bin")))
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("%s: %q %v", name, got, err)
		}
	}
}

// colonHex is the form of Tongsuo's -hex output: upper-case byte pairs separated by colons.
func colonHex(b []byte) string {
	parts := make([]string, len(b))
	for i, c := range b {
		parts[i] = strings.ToUpper(hex.EncodeToString([]byte{c}))
	}
	return strings.Join(parts, ":")
}
