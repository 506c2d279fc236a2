package keyvault

import (
	"crypto/ecdsa"
	"crypto/rand"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
)

// Benchmarks: the same SM2 key used raw through gmsm and through a wrapped-mode vault on
// SoftHSM2 (no token call on the per-request path). Compare ns/op of the pairs:
//
//	go test -run '^$' -bench 'SM2' -benchtime 2s ./keyvault/
func benchKeys(b *testing.B) (*sm2.PrivateKey, *SM2Key) {
	b.Helper()
	needHSM(b)
	priv := newSM2(b)
	v := openWith(b, "wrapped", priv, make([]byte, 16), "", WithObserver(newRecObserver()))
	k, err := v.SM2Key("sign")
	if err != nil {
		b.Fatal(err)
	}
	return priv, k
}

func BenchmarkSM2Sign(b *testing.B) {
	priv, k := benchKeys(b)
	msg := []byte("POST /v3/pay/transactions/native 1700000000 nonce {\"amount\":100}")
	b.Run("raw-gmsm", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := priv.Sign(rand.Reader, msg, sm2.DefaultSM2SignerOpts); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("vault-wrapped", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := k.Sign(rand.Reader, msg, sm2.DefaultSM2SignerOpts); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("vault-wrapped-parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := k.Sign(rand.Reader, msg, sm2.DefaultSM2SignerOpts); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

func BenchmarkSM2Decrypt(b *testing.B) {
	priv, k := benchKeys(b)
	ct, _ := sm2.Encrypt(rand.Reader, &priv.PublicKey, make([]byte, 48), nil) // a TLCP pre-master-sized secret
	b.Run("raw-gmsm", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := priv.Decrypt(nil, ct, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("vault-wrapped", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := k.Decrypt(nil, ct, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkSM4GCMSeal1K(b *testing.B) {
	needHSM(b)
	v := openWith(b, "wrapped", newSM2(b), make([]byte, 16), "")
	k, _ := v.SM4("sym")
	msg := make([]byte, 1024)
	b.SetBytes(1024)
	for i := 0; i < b.N; i++ {
		if _, err := k.SealGCM(msg, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOverhead alternates raw gmsm and vault calls on the same key within one loop, so
// machine-load drift hits both equally, and reports the vault/raw time ratio (target < 1.10).
func BenchmarkOverhead(b *testing.B) {
	priv, k := benchKeys(b)
	msg := []byte("POST /v3/pay/transactions/native 1700000000 nonce {\"amount\":100}")
	ct, _ := sm2.Encrypt(rand.Reader, &priv.PublicKey, make([]byte, 48), nil)
	run := func(b *testing.B, raw, vault func() error) {
		var tRaw, tVault int64
		for i := 0; i < b.N; i++ {
			t0 := nanotime()
			if err := raw(); err != nil {
				b.Fatal(err)
			}
			t1 := nanotime()
			if err := vault(); err != nil {
				b.Fatal(err)
			}
			t2 := nanotime()
			tRaw += t1 - t0
			tVault += t2 - t1
		}
		b.ReportMetric(float64(tRaw)/float64(b.N), "raw-ns/op")
		b.ReportMetric(float64(tVault)/float64(b.N), "vault-ns/op")
		b.ReportMetric(float64(tVault)/float64(tRaw), "vault/raw")
	}
	b.Run("sign", func(b *testing.B) {
		run(b, func() error { _, err := priv.Sign(rand.Reader, msg, sm2.DefaultSM2SignerOpts); return err },
			func() error { _, err := k.Sign(rand.Reader, msg, sm2.DefaultSM2SignerOpts); return err })
	})
	b.Run("decrypt", func(b *testing.B) {
		run(b, func() error { _, err := priv.Decrypt(nil, ct, nil); return err },
			func() error { _, err := k.Decrypt(nil, ct, nil); return err })
	})
}

func nanotime() int64 { return time.Now().UnixNano() }

// BenchmarkTokenDecrypt measures SM2 decryption inside SoftHSM2 (CKM_ECDH1_DERIVE, one derive +
// one attribute read + one destroy per call) for comparison with the in-memory path.
func BenchmarkTokenDecrypt(b *testing.B) {
	needHSM(b)
	obj := uniqueObject("tdb")
	cfg := Config{Tokens: []TokenConfig{tokenCfg("main", tokMain)}, Keys: []KeyConfig{
		{Name: "enc", Type: KeyTypeSM2, TokenDecrypt: true, Ref: "pkcs11:token=" + tokMain + ";object=" + obj}}}
	admin, err := Open(cfg, WithAdmin())
	if err != nil {
		b.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.Generate("enc"); err != nil {
		b.Fatal(err)
	}
	d, _ := admin.Decrypter("enc")
	ct, _ := sm2.Encrypt(rand.Reader, d.Public().(*ecdsa.PublicKey), make([]byte, 48), nil)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := d.Decrypt(nil, ct, nil); err != nil {
			b.Fatal(err)
		}
	}
}
