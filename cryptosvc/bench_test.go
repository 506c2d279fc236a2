package cryptosvc

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"strconv"
	"testing"
)

// The service's own cost over the vault's signing, in process (no network, no TLCP): compare
// BenchmarkSignVault with BenchmarkSignService/batch-N per signature (ns/op is per signature in
// both). docs/crypto-service.md reports the ratios with the real binary (integration/cmd/cryptoload).

var benchMsg = []byte("settlement batch 2026-12-04 line 000001 amount 1234.56 CNY merchant 1900000001")

func BenchmarkSignVault(b *testing.B) {
	v := fileVault(b)
	signer, err := v.Signer("platform-sign")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := signer.Sign(rand.Reader, benchMsg, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSignService(b *testing.B) {
	for _, n := range []int{1, 16, 64} {
		b.Run("batch-"+strconv.Itoa(n), func(b *testing.B) {
			v := fileVault(b)
			s := newService(b, v, &recSink{})
			items := make([]map[string]any, n)
			for i := range items {
				items[i] = map[string]any{"data": benchMsg}
			}
			body, _ := json.Marshal(map[string]any{"key": "platform-sign", "batch_input": items})
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += n {
				resp, err := s.Do(context.Background(), settlement, OpSign, body, "")
				if err != nil {
					b.Fatal(err)
				}
				if _, err := json.Marshal(resp); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCheckMemberNames is the exact-member-name pass every request body takes before it is
// decoded (checkMemberNames), per batch item of BenchmarkSignService/batch-64's body: compare
// with BenchmarkSignVault (one signature) for its share of a batched signature.
func BenchmarkCheckMemberNames(b *testing.B) {
	const n = 64
	items := make([]map[string]any, n)
	for i := range items {
		items[i] = map[string]any{"data": benchMsg}
	}
	body, _ := json.Marshal(map[string]any{"key": "platform-sign", "batch_input": items})
	b.ReportAllocs()
	for i := 0; i < b.N; i += n {
		if err := checkMemberNames(body, requestNames); err != nil {
			b.Fatal(err)
		}
	}
}
