package keyvault

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"fmt"
	"sync"
	"testing"

	"github.com/emmansun/gmsm/sm2"
)

// TestConcurrentUse hammers one vault from many goroutines (run with -race): signing, verifying,
// decrypting, SM4 sealing and opening, health probes, reloads and a rotation, on a token-backed
// vault. Every result is checked, so a data race that corrupts state shows as a wrong result.
func TestConcurrentUse(t *testing.T) {
	needHSM(t)
	obs := newRecObserver()
	tc := tokenCfg("race", tokRace)
	tc.PoolSize = 2 // smaller than the number of goroutines touching the token: exercises waits
	o2, o4 := uniqueObject("r2"), uniqueObject("r4")
	cfg := Config{Tokens: []TokenConfig{tc}, Keys: []KeyConfig{
		{Name: "sign", Type: KeyTypeSM2, Ref: "pkcs11:token=" + tokRace + ";object=" + o2},
		{Name: "sym", Type: KeyTypeSM4, Ref: "pkcs11:token=" + tokRace + ";object=" + o4},
	}}
	admin, err := Open(cfg, WithAdmin())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	admin.Init("")
	admin.Generate("sign")
	admin.Generate("sym")
	v, err := Open(cfg, WithObserver(obs))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()

	const goroutines, iters = 32, 25
	var wg sync.WaitGroup
	errc := make(chan error, goroutines*iters)
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < iters; i++ {
				msg := []byte(fmt.Sprintf("g%d-i%d", g, i))
				switch (g + i) % 5 {
				case 0, 1:
					s, err := v.Signer("sign")
					if err != nil {
						errc <- err
						continue
					}
					sig, err := s.Sign(rand.Reader, msg, nil)
					if err != nil || !sm2.VerifyASN1WithSM2(s.Public().(*ecdsa.PublicKey), nil, msg, sig) {
						errc <- fmt.Errorf("sign/verify g%d i%d: %v", g, i, err)
					}
				case 2:
					d, _ := v.Decrypter("sign")
					ct, _ := sm2.Encrypt(rand.Reader, d.Public().(*ecdsa.PublicKey), msg, nil)
					pt, err := d.Decrypt(nil, ct, nil)
					if err != nil || !bytes.Equal(pt, msg) {
						errc <- fmt.Errorf("decrypt g%d i%d: %v", g, i, err)
					}
				case 3:
					k, _ := v.SM4("sym")
					sealed, err := k.SealGCM(msg, nil)
					if err != nil {
						errc <- err
						continue
					}
					pt, err := k.OpenGCM(sealed, nil)
					if err != nil || !bytes.Equal(pt, msg) {
						errc <- fmt.Errorf("sm4 g%d i%d: %v", g, i, err)
					}
				case 4:
					if i%5 == 0 {
						if err := v.Reload(); err != nil {
							errc <- err
						}
					}
					for _, h := range v.Health() {
						if !h.Healthy {
							errc <- fmt.Errorf("unhealthy: %s", h.Error)
						}
					}
				}
			}
		}(g)
	}
	// A rotation in the middle, seen through Reload by the workers.
	if _, err := admin.Rotate("sign"); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if obs.ops["sign"] == 0 || obs.ops["decrypt"] == 0 || obs.ops["seal"] == 0 {
		t.Fatalf("observer missed operations: %v", obs.ops)
	}
	t.Logf("ops=%v pool waits=%d", obs.ops, obs.waits)
}
