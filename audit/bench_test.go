package audit

import (
	"crypto/rand"
	"path/filepath"
	"testing"

	"github.com/emmansun/gmsm/sm2"
)

func BenchmarkAuditAppend(b *testing.B) {
	key, _ := sm2.GenerateKey(rand.Reader)
	for _, pol := range []struct {
		name string
		p    FsyncPolicy
	}{{"fsync=always", FsyncAlways}, {"fsync=interval", FsyncInterval}} {
		b.Run(pol.name, func(b *testing.B) {
			l, err := Open(Options{Path: filepath.Join(b.TempDir(), "b.log"), Signer: key, Fsync: pol.p, CheckpointInterval: -1})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			r := testRecord(1)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := l.Append(r); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
