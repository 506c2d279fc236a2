package tlcp

import (
	"encoding/hex"
	mrand "math/rand"
	"testing"
	"time"
)

func TestTmpMutationsServer(t *testing.T) {
	p := getPKI(t)
	newServer := func() *Config {
		sc := serverConfig(p)
		sc.ClientAuth = RequireAndVerifyClientCert
		sc.Rand = detRand()
		return sc
	}
	for _, suite := range []uint16{ECC_SM4_GCM_SM3, ECC_SM4_CBC_SM3, ECDHE_SM4_GCM_SM3} {
		cc := clientConfig(p, true)
		cc.CipherSuites = []uint16{suite}
		data := recordFlight(t, newServer(), cc, true)
		r := mrand.New(mrand.NewSource(1))
		for i := 0; i < 3000; i++ {
			d := append([]byte(nil), data...)
			for j := 0; j < 1+r.Intn(4); j++ {
				d[r.Intn(len(d))] = byte(r.Intn(256))
			}
			if r.Intn(3) == 0 {
				d = d[:r.Intn(len(d))]
			}
			done := make(chan struct{})
			go func() {
				fc := &feedConn{}
				fc.buf.Write(d)
				c := Server(fc, newServer())
				_ = c.Handshake()
				c.Close()
				close(done)
			}()
			select {
			case <-done:
			case <-time.After(3 * time.Second):
				t.Fatalf("suite %x iteration %d hangs: %s", suite, i, hex.EncodeToString(d))
			}
		}
	}
}
