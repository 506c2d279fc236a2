// Command cryptoload measures the crypto service (gm_crypto) against the vault it fronts, side
// by side: SM2 signatures per second and CPU time per signature through the real gmgate binary
// (TLCP with a client certificate, JSON, batch_input, policy, audit log) and through the vault's
// own Signer in this process (the same kind of key: a file key of the development PKI, or
// SoftHSM2 in wrapped mode, where signing is in memory too). The two are measured in
// alternating slices so that other load on the machine hits both alike.
//
//	go run ./integration/cmd/cryptoload -batch 64 -conc 4 -rounds 4 -slice 5s
//
// It prints a markdown table (docs/crypto-service.md, "Throughput").
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/client"
	"github.com/gmgate/gmgate/integration/gmproc"
	"github.com/gmgate/gmgate/keyvault"
	"github.com/gmgate/gmgate/pki"
)

const caddyfile = `{
	admin {ADMIN}
	skip_install_trust
	auto_https off
	gmgate {
		dev_pki {DIR}/pki
		audit {DIR}/audit/audit.log {
			signing_key dev-platform-sign
			fsync {FSYNC}
		}
	}
	servers :{PORT} {
		listener_wrappers {
			tlcp {
				client_auth require_and_verify
				session_cache 10000 1h
			}
		}
	}
}

http://:{PORT} {
	handle /shf/v1/* {
		gm_crypto {
			caller demo subject_cn "gmgate demo client"
			allow demo sign dev-platform-sign
			max_items 1024
			max_body_size 4MB
		}
	}
}
`

func main() {
	log.SetFlags(log.Ltime)
	bin := flag.String("bin", os.Getenv("GMGATE_BIN"), "gmgate binary (default $GMGATE_BIN, else built from ./cmd/gmgate)")
	batch := flag.Int("batch", 64, "signatures per request (batch_input items); 1: single requests")
	conc := flag.Int("conc", runtime.NumCPU(), "concurrent requests (service) and signing goroutines (vault)")
	slice := flag.Duration("slice", 5*time.Second, "measured time of each slice")
	rounds := flag.Int("rounds", 4, "service/vault slice pairs")
	fsync := flag.String("fsync", "interval", "audit log fsync policy: always, interval, never")
	flag.Parse()
	if *bin == "" {
		*bin = filepath.Join(os.TempDir(), "cryptoload-gmgate")
		if out, err := exec.Command("go", "build", "-o", *bin, "./cmd/gmgate").CombinedOutput(); err != nil {
			log.Fatalf("go build: %v\n%s", err, out)
		}
	}
	dir, err := os.MkdirTemp("", "cryptoload-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	port, err := gmproc.FreePort()
	if err != nil {
		log.Fatal(err)
	}
	cf := strings.NewReplacer("{PORT}", strconv.Itoa(port), "{FSYNC}", *fsync).Replace(caddyfile)
	proc, err := gmproc.Start(*bin, dir, cf)
	if err != nil {
		log.Fatal(err)
	}
	defer proc.Stop()
	pkiDir := filepath.Join(dir, "pki")

	// The vault's own signer: the same development platform key, opened in this process.
	v, err := keyvault.Open(keyvault.Config{Keys: []keyvault.KeyConfig{{Name: "dev-platform-sign", Type: keyvault.KeyTypeSM2,
		Ref: "file:" + filepath.Join(pkiDir, pki.DevPlatformBase+".key")}}})
	if err != nil {
		log.Fatal(err)
	}
	defer v.Close()
	signer, err := v.Signer("dev-platform-sign")
	if err != nil {
		log.Fatal(err)
	}

	svc := newClient(pkiDir, port)
	msg := []byte("settlement batch 2026-12-04 line 000001 amount 1234.56 CNY merchant 1900000001")
	items := make([]client.CryptoItem, *batch)
	for i := range items {
		items[i] = client.CryptoItem{Data: msg}
	}
	ctx := context.Background()
	if _, err := svc.Batch(ctx, "Sign", "dev-platform-sign", items); err != nil {
		log.Fatalf("warm-up request: %v", err)
	}
	pid := strconv.Itoa(proc.Cmd.Process.Pid)

	var svcSigns, vaultSigns int64
	var svcWall, vaultWall, svcCPU, vaultCPU, clientCPU time.Duration
	for r := 0; r < *rounds; r++ {
		// Service slice.
		cpu0, _ := procCPU(pid)
		self0 := selfCPU()
		n, wall := run(*conc, *slice, func() (int, error) {
			if *batch == 1 {
				_, _, err := svc.Sign(ctx, "dev-platform-sign", msg, "")
				return 1, err
			}
			res, err := svc.Batch(ctx, "Sign", "dev-platform-sign", items)
			if err == nil {
				for i := range res {
					if e := res[i].Err(); e != nil {
						return 0, e
					}
				}
			}
			return len(items), err
		})
		cpu1, _ := procCPU(pid)
		svcSigns, svcWall, svcCPU, clientCPU = svcSigns+n, svcWall+wall, svcCPU+cpu1-cpu0, clientCPU+selfCPU()-self0
		// Vault slice.
		self0 = selfCPU()
		n, wall = run(*conc, *slice, func() (int, error) {
			_, err := signer.Sign(rand.Reader, msg, nil)
			return 1, err
		})
		vaultSigns, vaultWall, vaultCPU = vaultSigns+n, vaultWall+wall, vaultCPU+selfCPU()-self0
		log.Printf("round %d: service %d signs, vault %d signs", r+1, svcSigns, vaultSigns)
	}
	svcRate := float64(svcSigns) / svcWall.Seconds() * float64(*conc)
	vaultRate := float64(vaultSigns) / vaultWall.Seconds() * float64(*conc)
	svcPer := svcCPU / time.Duration(max(svcSigns, 1))
	vaultPer := vaultCPU / time.Duration(max(vaultSigns, 1))
	clientPer := clientCPU / time.Duration(max(svcSigns, 1))
	fmt.Printf("| measure | vault in-process | through gm_crypto (batch %d, conc %d) | ratio |\n|---|---|---|---|\n", *batch, *conc)
	fmt.Printf("| signatures/s (wall) | %.0f | %.0f | %.2fx |\n", vaultRate, svcRate, vaultRate/svcRate)
	fmt.Printf("| CPU per signature | %v | %v (gmgate) + %v (client) | %.2fx (gmgate only) |\n",
		vaultPer.Round(time.Microsecond/10), svcPer.Round(time.Microsecond/10), clientPer.Round(time.Microsecond/10), float64(svcPer)/float64(vaultPer))
	fmt.Printf("| gmgate CPU per request over its signatures | | %v | |\n", (time.Duration(*batch) * (svcPer - vaultPer)).Round(time.Microsecond))
	fmt.Printf("\n%d CPUs, GOMAXPROCS %d, %d rounds of %v per side, audit fsync %s, signatures checked: %s\n",
		runtime.NumCPU(), runtime.GOMAXPROCS(0), *rounds, *slice, *fsync, checkOne(svc, pkiDir, msg))
}

// run calls op from conc goroutines for d and returns the operations done and the wall time
// summed over the goroutines (rate = n / wall * conc).
func run(conc int, d time.Duration, op func() (int, error)) (int64, time.Duration) {
	var n atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	var firstErr atomic.Value
	for i := 0; i < conc; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				k, err := op()
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				n.Add(int64(k))
			}
		}()
	}
	wg.Wait()
	if e := firstErr.Load(); e != nil {
		log.Fatalf("operation failed: %v", e)
	}
	return n.Load(), time.Since(start) * time.Duration(conc)
}

func newClient(pkiDir string, port int) *client.CryptoService {
	roots, err := pki.LoadCertificatesFile(filepath.Join(pkiDir, "root.pem"))
	if err != nil {
		log.Fatal(err)
	}
	pool := smx509.NewCertPool()
	pool.AddCert(roots[0])
	sign, err := client.LoadIdentity(filepath.Join(pkiDir, pki.DevClientSignBase+".pem"), filepath.Join(pkiDir, pki.DevClientSignBase+".key"), nil)
	if err != nil {
		log.Fatal(err)
	}
	enc, err := client.LoadIdentity(filepath.Join(pkiDir, pki.DevClientEncBase+".pem"), filepath.Join(pkiDir, pki.DevClientEncBase+".key"), nil)
	if err != nil {
		log.Fatal(err)
	}
	svc, err := client.NewCryptoService(fmt.Sprintf("https://127.0.0.1:%d", port), client.Config{
		MaxIdleConnsPerHost: 64,
		TLCP:                &client.TLCPConfig{RootCAs: pool, ServerName: "localhost", Sign: sign, Enc: enc}})
	if err != nil {
		log.Fatal(err)
	}
	return svc
}

// checkOne verifies one signature of the service with the platform certificate (gmsm).
func checkOne(svc *client.CryptoService, pkiDir string, msg []byte) string {
	certs, err := pki.LoadCertificatesFile(filepath.Join(pkiDir, pki.DevPlatformBase+".pem"))
	if err != nil {
		return err.Error()
	}
	sig, _, err := svc.Sign(context.Background(), "dev-platform-sign", msg, "")
	if err != nil {
		return err.Error()
	}
	pub, ok := certs[0].PublicKey.(*ecdsa.PublicKey)
	if !ok || !sm2.VerifyASN1WithSM2(pub, nil, msg, sig) {
		return "NO"
	}
	return "yes"
}

// selfCPU is this process's user+system CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU is utime+stime of another process from /proc/<pid>/stat (USER_HZ 100).
func procCPU(pid string) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("bad stat")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("bad stat")
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * (time.Second / 100), nil
}
