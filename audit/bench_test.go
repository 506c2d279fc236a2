package audit

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/emmansun/gmsm/sm2"
)

// BenchmarkAuditAppend appends decisions from par×GOMAXPROCS goroutines (concurrent requests of
// a gateway) under each fsync policy. Compare revisions side by side (docs/perf/audit.md).
func BenchmarkAuditAppend(b *testing.B) {
	key, _ := sm2.GenerateKey(rand.Reader)
	for _, pol := range []struct {
		name string
		p    FsyncPolicy
	}{{"fsync=always", FsyncAlways}, {"fsync=interval", FsyncInterval}} {
		for _, par := range []int{1, 8} {
			b.Run(fmt.Sprintf("%s/par=%d", pol.name, par), func(b *testing.B) {
				l, err := Open(Options{Path: filepath.Join(b.TempDir(), "b.log"), Signer: key, Fsync: pol.p, CheckpointInterval: -1})
				if err != nil {
					b.Fatal(err)
				}
				defer l.Close()
				r := testRecord(1)
				b.ReportAllocs()
				b.SetParallelism(par)
				w0, cpu0 := procCounters(b)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := l.Append(r); err != nil {
							b.Fatal(err)
						}
					}
				})
				w1, cpu1 := procCounters(b)
				// Robust on a shared machine (wall time is not): write system calls and process
				// CPU time per appended entry.
				b.ReportMetric(float64(w1-w0)/float64(b.N), "writes/op")
				b.ReportMetric(float64(cpu1-cpu0)/float64(b.N), "cpu-ns/op")
			})
		}
	}
}

// procCounters returns the write system calls of the process so far (syscw of /proc/self/io)
// and its CPU time in nanoseconds.
func procCounters(b *testing.B) (writes, cpuNS int64) {
	data, err := os.ReadFile("/proc/self/io")
	if err != nil {
		b.Skip("no /proc/self/io:", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if v, ok := bytes.CutPrefix(sc.Bytes(), []byte("syscw: ")); ok {
			writes, _ = strconv.ParseInt(string(v), 10, 64)
		}
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return writes, ru.Utime.Nano() + ru.Stime.Nano()
}
