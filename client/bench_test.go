package client

import (
	"context"
	"testing"

	"github.com/gmgate/gmgate/signing"
	"github.com/gmgate/gmgate/tlcp"
)

// BenchmarkExchange measures one signed request and verified reply (client signs and verifies,
// the test gateway verifies and signs: four SM2 operations per exchange). Over TLCP the test
// server closes each connection, so every exchange includes a resumed TLCP handshake.
func BenchmarkExchange(b *testing.B) {
	p := getPKI(b)
	for _, tr := range []string{"http", "tlcp"} {
		b.Run(tr, func(b *testing.B) {
			st := newStub(b, p, signing.HTTPSigName)
			var cfg Config
			if tr == "tlcp" {
				cfg = tlcpConfig(b, p, signing.HTTPSigName, tlcpServer(b, st))
				cfg.TLCP.SessionCache = tlcp.NewLRUSessionCache(4, 0) // one resumed handshake per exchange
			} else {
				cfg = baseConfig(b, p, signing.HTTPSigName)
				cfg.BaseURL = plainServer(b, st).URL
			}
			c, err := New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer c.CloseIdleConnections()
			ct, body := requestBody(signing.HTTPSigName)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := c.Post(context.Background(), "/pay", ct, body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
