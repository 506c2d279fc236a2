package tlcp

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emmansun/gmsm/sm2"
	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
)

// TestTongsuoServerRole plays the server for the recorded ClientHello and
// ClientKeyExchange: our server (with the recorded server random injected)
// must decrypt the pre-master, derive the recorded keys and decrypt the
// client's Finished record; the Finished then fails only because our own
// ServerKeyExchange signature makes the transcript differ.
func TestTongsuoServerRole(t *testing.T) {
	dir, files := recordingFiles(t)
	tp := loadTongsuoPKI(t, dir)
	n := 0
	for _, f := range files {
		rec := loadRecording(t, f)
		suite := suiteByID(uint16(mustHexUint(t, rec.SuiteID)))
		if suite.ecdhe || rec.ClientCertSent {
			continue // ECDHE needs the ephemeral keys; client auth needs the transcript.
		}
		ci := rec.Connections[0]
		for _, inject := range []bool{true, false} {
			n++
			sr := mustHex(t, ci.ServerRandom)
			if !inject {
				sr = make([]byte, 32) // wrong random: keys differ, record MAC fails
			}
			cfg := &Config{
				Rand:            io.MultiReader(bytes.NewReader(sr), rand.Reader),
				SignCertificate: Certificate{Certificate: [][]byte{tp.serverSign.Raw}, PrivateKey: tp.serverSignKey},
				EncCertificate:  Certificate{Certificate: [][]byte{tp.serverEnc.Raw}, PrivateKey: tp.serverEncKey},
				CipherSuites:    []uint16{suite.id},
			}
			cside, sside := net.Pipe()
			srv := Server(sside, cfg)
			errc := make(chan error, 1)
			go func() { errc <- srv.Handshake(); sside.Close() }()
			go io.Copy(io.Discard, cside)
			for _, r := range rec.Records {
				if r.Conn != 0 || r.Dir != "c2s" {
					continue
				}
				raw := mustHex(t, r.Hex)
				if raw[0] == recordTypeApplicationData {
					break
				}
				if _, err := cside.Write(raw); err != nil {
					break
				}
			}
			err := <-errc
			cside.Close()
			a, _ := alertOf(err)
			if inject {
				if a != AlertDecryptError || !strings.Contains(err.Error(), "Finished") {
					t.Fatalf("%s: got %v, want a Finished mismatch after successful key derivation", filepath.Base(f), err)
				}
			} else if a != AlertBadRecordMAC {
				t.Fatalf("%s: wrong random: got %v, want bad_record_mac", filepath.Base(f), err)
			}
		}
	}
	if n == 0 {
		t.Fatal("no recording usable for the server role")
	}
}

type stdVectors struct {
	SM2Sign struct {
		D, X, Y, UID, Msg, R, S string
	} `json:"-"`
	SM3 []struct {
		Msg    string `json:"message_ascii"`
		Digest string `json:"digest"`
	} `json:"sm3"`
	SM4CBC struct {
		Key, IV, Plaintext, Ciphertext string
	} `json:"sm4_cbc"`
	SM4GCM struct {
		Key, IV, AAD, Plaintext, Ciphertext, Tag string
	} `json:"sm4_gcm_rfc8998_a1"`
}

func TestStandardVectors(t *testing.T) {
	dir := interopDir(t)
	data, err := os.ReadFile(filepath.Join(dir, "standard-vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v stdVectors
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	var raw map[string]map[string]any
	json.Unmarshal(data, &raw) //nolint:errcheck // sm3 is a list; only objects matter here
	sign := raw["sm2_sign"]
	hx := func(k string) []byte { return mustHex(t, sign[k].(string)) }

	t.Run("SM3 transcript hash", func(t *testing.T) {
		if len(v.SM3) == 0 {
			t.Fatal("no SM3 vectors")
		}
		for _, c := range v.SM3 {
			fh := newFinishedHash()
			// Feed in two pieces, as the transcript does.
			fh.Write([]byte(c.Msg[:1]))
			fh.Write([]byte(c.Msg[1:]))
			if got := hex.EncodeToString(fh.Sum()); got != strings.ToLower(c.Digest) {
				t.Fatalf("SM3(%q) = %s", c.Msg, got)
			}
		}
	})
	t.Run("SM2 signature verify path", func(t *testing.T) {
		pub, err := sm2.NewPublicKey(append([]byte{4}, append(hx("public_x"), hx("public_y")...)...))
		if err != nil {
			t.Fatal(err)
		}
		var b cryptobyte.Builder
		b.AddASN1(asn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1BigInt(new(big.Int).SetBytes(hx("r")))
			b.AddASN1BigInt(new(big.Int).SetBytes(hx("s")))
		})
		sig := b.BytesOrPanic()
		msg := []byte(sign["message_ascii"].(string))
		if !verifySignature(pub, msg, sig) {
			t.Fatal("standard SM2 signature does not verify with the default ID")
		}
		if verifySignature(pub, append(msg, 'x'), sig) {
			t.Fatal("signature verifies over a different message")
		}
	})
	t.Run("SM4-CBC record path", func(t *testing.T) {
		s := suiteByID(ECC_SM4_CBC_SM3)
		rc, err := newRecordCipher(s, make([]byte, 32), mustHex(t, v.SM4CBC.Key), make([]byte, 16))
		if err != nil {
			t.Fatal(err)
		}
		pt := mustHex(t, v.SM4CBC.Plaintext)
		iv := mustHex(t, v.SM4CBC.IV)
		var seq [8]byte
		hdr := []byte{recordTypeApplicationData, 1, 1}
		out, err := rc.seal(nil, &seq, hdr, pt, bytes.NewReader(iv))
		if err != nil {
			t.Fatal(err)
		}
		want := mustHex(t, v.SM4CBC.Ciphertext)
		if !bytes.Equal(out[:16], iv) || !bytes.Equal(out[16:16+len(want)], want) {
			t.Fatalf("CBC record body %x, want prefix %x", out[16:16+len(want)], want)
		}
		got, err := rc.open(&seq, recordTypeApplicationData, out)
		if err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("open: %v", err)
		}
	})
	t.Run("SM4-GCM record path", func(t *testing.T) {
		s := suiteByID(ECC_SM4_GCM_SM3)
		iv := mustHex(t, v.SM4GCM.IV)
		rc, err := newRecordCipher(s, nil, mustHex(t, v.SM4GCM.Key), iv[:4])
		if err != nil {
			t.Fatal(err)
		}
		g := rc.(*gcmCipher)
		pt := mustHex(t, v.SM4GCM.Plaintext)
		copy(g.nonce[4:], iv[4:])
		sealed := g.aead.Seal(nil, g.nonce[:], pt, mustHex(t, v.SM4GCM.AAD))
		want := append(mustHex(t, v.SM4GCM.Ciphertext), mustHex(t, v.SM4GCM.Tag)...)
		if !bytes.Equal(sealed, want) {
			t.Fatalf("GCM %x, want %x", sealed, want)
		}
		// And a full record round trip with the explicit nonce.
		var seq [8]byte
		seq[7] = 5
		rec, err := rc.seal(nil, &seq, []byte{recordTypeApplicationData, 1, 1}, pt, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(rec[:8], seq[:]) {
			t.Fatal("explicit nonce is not the sequence number")
		}
		got, err := rc.open(&seq, recordTypeApplicationData, rec)
		if err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("open: %v", err)
		}
	})
}
