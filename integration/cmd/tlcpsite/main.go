// Command tlcpsite measures TLCP through Caddy (a site behind gmgate's `tlcp` listener wrapper)
// against the bare `tlcp` package serving net/http and against a peer, Tongsuo 8.5's `s_server`
// in TLCP mode, side by side in one run (issue 14, targets 2 and 3):
//
//   - server CPU per connection (full handshake + one small HTTP request, then close) for full
//     ECC, full ECDHE (client certificates), ECC with client authentication and session-ID
//     resumption, alternating the servers in rounds so that all see the same background load;
//     the Caddy layer's share is the difference to the bare server, and target 2 is the ratio
//     of the Caddy site to the best peer, which any machine can judge;
//   - resident memory per idle connection (one request done, kept alive) of the Caddy TLCP site
//     against Caddy's own TLS 1.3 site (the same binary, `tls internal`), extrapolated to 10,000.
//
// Usage (the gmgate binary from -bin, else $GMGATE_BIN, else built from ./cmd/gmgate):
//
//	go run ./integration/cmd/tlcpsite -bin /tmp/gmgate -duration 3s -rounds 3 -out docs/perf/tlcp.md
//
// Each server is its own process (CPU from /proc/<pid>/stat, RSS from /proc/<pid>/status); the
// clients run in this process. With two or more logical CPUs the servers are pinned to CPU 0 and
// this process (the clients) to the others (-pin=false: no pinning). Numbers are for comparison
// within one run.
package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/integration/gmproc"
	"github.com/gmgate/gmgate/internal/testenv"
	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/tlcp"
)

type config struct {
	bin              string
	duration, warmup time.Duration
	rounds, clients  int
	idle             int
	out              string
	pprof            string
	tongsuo          string // Tongsuo binary ("": no peer)
	pin              bool
}

func main() {
	var cfg config
	bare := flag.String("serve-bare", "", "internal: serve the bare tlcp server on this address")
	pkiDir := flag.String("pki", "", "internal: development PKI directory of -serve-bare")
	flag.StringVar(&cfg.bin, "bin", os.Getenv("GMGATE_BIN"), "gmgate binary (default $GMGATE_BIN, else built)")
	flag.DurationVar(&cfg.duration, "duration", 3*time.Second, "measured time per server, row and round")
	flag.DurationVar(&cfg.warmup, "warmup", 500*time.Millisecond, "unmeasured time before each measurement")
	flag.IntVar(&cfg.rounds, "rounds", 3, "rounds; the two servers alternate within each")
	flag.IntVar(&cfg.clients, "n", 2, "concurrent clients")
	flag.IntVar(&cfg.idle, "idle", 1000, "idle connections opened for the memory measurement")
	flag.StringVar(&cfg.out, "out", "", "markdown report file (default: standard output)")
	flag.StringVar(&cfg.pprof, "pprof", "", "directory for CPU profiles of the Caddy TLCP site under the full ECC, ECDHE and resumed rows (empty: none)")
	flag.StringVar(&cfg.tongsuo, "tongsuo", defaultTongsuo(), "Tongsuo binary for the peer s_server (empty: no peer)")
	flag.BoolVar(&cfg.pin, "pin", true, "with 2 or more logical CPUs, pin the servers to CPU 0 and the clients to the others")
	flag.Parse()
	if *bare != "" {
		if err := serveBare(*bare, *pkiDir); err != nil {
			log.Fatal(err)
		}
		return
	}
	if err := run(cfg); err != nil {
		log.Fatal(err)
	}
}

// siteCaddyfile is the Caddy TLCP site: the tlcp listener wrapper (development PKI keys, client
// certificates verified when given, session cache) in front of a static reply.
const siteCaddyfile = `{
	admin {ADMIN}
	skip_install_trust
	auto_https off
	gmgate {
		dev_pki {PKI}
	}
	servers :{PORT} {
		listener_wrappers {
			tlcp {
				client_auth verify_if_given
				session_cache 10000 1h
			}
		}
	}
}

http://:{PORT} {
	respond "ok"
}
`

// tls13Caddyfile is plain Caddy: TLS 1.3 with its internal CA and the same static reply.
const tls13Caddyfile = `{
	admin {ADMIN}
	skip_install_trust
	auto_https disable_redirects
}

https://localhost:{PORT} {
	tls internal
	respond "ok"
}
`

// server is one measured process.
type server struct {
	name  string
	addr  string
	pid   int
	admin string // admin endpoint of a gmgate process ("" for the bare server and the peer)
	stop  func()
}

// defaultTongsuo is ../shared/tools/tongsuo/tongsuo beside the repository when it is there.
func defaultTongsuo() string {
	bin := filepath.Join(testenv.SharedDir(), "tools", "tongsuo", "tongsuo")
	if st, err := os.Stat(bin); err != nil || st.Mode()&0o111 == 0 {
		return ""
	}
	return bin
}

func run(cfg config) error {
	dir, err := os.MkdirTemp("", "tlcpsite-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if cfg.bin == "" {
		cfg.bin = filepath.Join(dir, "gmgate")
		log.Printf("building ./cmd/gmgate")
		if out, err := exec.Command("go", "build", "-o", cfg.bin, "./cmd/gmgate").CombinedOutput(); err != nil {
			return fmt.Errorf("build: %v\n%s", err, out)
		}
	}
	pkiDir := filepath.Join(dir, "pki")
	dev, err := pki.EnsureDevPKI(pkiDir, nil)
	if err != nil {
		return err
	}
	site, err := startCaddy(cfg.bin, filepath.Join(dir, "site"), siteCaddyfile, pkiDir, "caddy tlcp")
	if err != nil {
		return err
	}
	defer site.stop()
	bare, err := startBare(filepath.Join(dir, "bare"), pkiDir)
	if err != nil {
		return err
	}
	defer bare.stop()
	tls13, err := startCaddy(cfg.bin, filepath.Join(dir, "tls13"), tls13Caddyfile, pkiDir, "caddy tls13")
	if err != nil {
		return err
	}
	defer tls13.stop()

	measured := []*server{site, bare}
	var peer *server
	if cfg.tongsuo != "" {
		if peer, err = startTongsuo(cfg.tongsuo, filepath.Join(dir, "tongsuo"), pkiDir); err != nil {
			return err
		}
		defer peer.stop()
		measured = append(measured, peer)
	}

	rep := &report{Started: time.Now(), Clients: cfg.clients, Rounds: cfg.rounds, Window: cfg.duration,
		CPUs: runtime.NumCPU(), Cmd: strings.Join(append([]string{"go run ./integration/cmd/tlcpsite"}, os.Args[1:]...), " "), Peer: peer != nil, Load: loadAvg()}
	if cfg.pin {
		if rep.Pinning, err = pinAll(site, bare, tls13, peer); err != nil {
			return err
		}
	}
	root := smx509Pool(dev)
	for _, row := range rows {
		res := rowResult{Row: row}
		for i := 0; i < cfg.rounds; i++ {
			for _, s := range measured {
				m, err := measureConns(s, clientConfig(dev, root, row), row, cfg.clients, cfg.warmup, cfg.duration)
				if err != nil {
					return fmt.Errorf("%s, %s: %w", row.Name, s.name, err)
				}
				switch s {
				case site:
					res.Site = res.Site.add(m)
				case bare:
					res.Bare = res.Bare.add(m)
				default:
					res.Peer = res.Peer.add(m)
				}
			}
		}
		log.Printf("%s: caddy tlcp %.0f µs/conn, bare tlcp %.0f µs/conn, tongsuo %.0f µs/conn", row.Name,
			res.Site.PerConnUS(), res.Bare.PerConnUS(), res.Peer.PerConnUS())
		rep.Rows = append(rep.Rows, res)
	}
	if rep.IdleTLCP, err = measureIdle(site, cfg.idle, func(c net.Conn) (net.Conn, error) {
		return tlcpClient(c, clientConfig(dev, root, rows[0]))
	}); err != nil {
		return fmt.Errorf("idle tlcp: %w", err)
	}
	if rep.IdleTLS13, err = measureIdle(tls13, cfg.idle, func(c net.Conn) (net.Conn, error) {
		tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13, ServerName: "localhost"})
		return tc, tc.Handshake()
	}); err != nil {
		return fmt.Errorf("idle tls 1.3: %w", err)
	}
	if cfg.pprof != "" {
		if err := profileSite(site, dev, root, cfg); err != nil {
			return err
		}
	}
	log.Printf("idle: tlcp %.1f KiB/conn, tls 1.3 %.1f KiB/conn", rep.IdleTLCP.PerConnKiB(), rep.IdleTLS13.PerConnKiB())
	rep.Finished = time.Now()
	rep.LoadEnd = loadAvg()
	var w io.Writer = os.Stdout
	if cfg.out != "" {
		f, err := os.Create(cfg.out)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	rep.render(w)
	return nil
}

func startCaddy(bin, dir, caddyfile, pkiDir, name string) (*server, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	port, err := gmproc.FreePort()
	if err != nil {
		return nil, err
	}
	cf := strings.NewReplacer("{PORT}", strconv.Itoa(port), "{PKI}", pkiDir).Replace(caddyfile)
	p, err := gmproc.Start(bin, dir, cf)
	if err != nil {
		return nil, err
	}
	return &server{name: name, addr: fmt.Sprintf("127.0.0.1:%d", port), pid: p.Cmd.Process.Pid, admin: p.Admin, stop: p.Stop}, nil
}

// startBare runs this program with -serve-bare as the bare tlcp server.
func startBare(dir, pkiDir string) (*server, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	port, err := gmproc.FreePort()
	if err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(self, "-serve-bare", addr, "-pki", pkiDir)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	stop := func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			stop()
			return nil, errors.New("bare tlcp server did not start")
		}
	}
	return &server{name: "bare tlcp", addr: addr, pid: cmd.Process.Pid, stop: stop}, nil
}

// startTongsuo runs the peer: Tongsuo's s_server in TLCP mode with the development PKI's server
// pair, client certificates asked for and verified when given (-verify 1), its default session
// cache, serving the file "ok" of its directory (-WWW: HTTP/1.0 reply, then close).
func startTongsuo(bin, dir, pkiDir string) (*server, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "ok"), []byte("ok"), 0o644); err != nil {
		return nil, err
	}
	port, err := gmproc.FreePort()
	if err != nil {
		return nil, err
	}
	f := func(base, ext string) string { return filepath.Join(pkiDir, base+ext) }
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(bin, "s_server", "-accept", strconv.Itoa(port), "-enable_ntls", "-WWW", "-quiet", "-verify", "1",
		"-CAfile", f(pki.DevRootBase, ".pem"),
		"-sign_cert", f(pki.DevServerSignBase, ".pem"), "-sign_key", f(pki.DevServerSignBase, ".key"),
		"-enc_cert", f(pki.DevServerEncBase, ".pem"), "-enc_key", f(pki.DevServerEncBase, ".key"))
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "OPENSSL_CONF="+filepath.Join(filepath.Dir(bin), "openssl.cnf"))
	out := new(gmproc.Buffer)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	stop := func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("tongsuo s_server did not start:\n%s", out.String())
		}
	}
	return &server{name: "tongsuo s_server", addr: addr, pid: cmd.Process.Pid, stop: stop}, nil
}

// serveBare is the bare server: package tlcp with the settings of the Caddy site (development
// PKI server pair, client certificates verified when given, session cache of 10000 for 1h,
// 10s handshake timeout) under net/http, answering "ok".
func serveBare(addr, pkiDir string) error {
	dev, err := pki.EnsureDevPKI(pkiDir, nil)
	if err != nil {
		return err
	}
	cert := func(i *pki.Issued) tlcp.Certificate {
		return tlcp.Certificate{Certificate: [][]byte{i.Cert.Raw}, PrivateKey: i.Key, Leaf: i.Cert}
	}
	cfg := &tlcp.Config{SignCertificate: cert(dev.Server.Sign), EncCertificate: cert(dev.Server.Enc),
		ClientAuth: tlcp.VerifyClientCertIfGiven, ClientCAs: smx509Pool(dev),
		SessionCache: tlcp.NewLRUSessionCache(10000, time.Hour), HandshakeTimeout: 10 * time.Second}
	ln, err := tlcp.Listen("tcp", addr, cfg)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}), IdleTimeout: 5 * time.Minute, ReadHeaderTimeout: 10 * time.Second}
	return srv.Serve(ln)
}

// row is one line of issue 14's target 2.
type row struct {
	Name       string
	Suite      uint16
	ClientCert bool
	Resume     bool
	Target     float64 // µs of server CPU per connection, at most
}

var rows = []row{
	{Name: "full ECC_SM4_GCM_SM3", Suite: tlcp.ECC_SM4_GCM_SM3, Target: 260},
	{Name: "full ECC_SM4_CBC_SM3", Suite: tlcp.ECC_SM4_CBC_SM3, Target: 260},
	{Name: "full ECDHE_SM4_GCM_SM3 (client certs)", Suite: tlcp.ECDHE_SM4_GCM_SM3, ClientCert: true, Target: 480},
	{Name: "ECC GCM with client auth", Suite: tlcp.ECC_SM4_GCM_SM3, ClientCert: true, Target: 420},
	{Name: "resumed (session ID)", Suite: tlcp.ECC_SM4_GCM_SM3, Resume: true, Target: 110},
}

func smx509Pool(dev *pki.DevPKI) *smx509.CertPool {
	p := smx509.NewCertPool()
	p.AddCert(dev.Root.Cert)
	return p
}

func clientConfig(dev *pki.DevPKI, root *smx509.CertPool, r row) *tlcp.Config {
	c := &tlcp.Config{RootCAs: root, ServerName: "localhost", CipherSuites: []uint16{r.Suite}}
	if r.ClientCert {
		c.SignCertificate = tlcp.Certificate{Certificate: [][]byte{dev.Client.Sign.Cert.Raw}, PrivateKey: dev.Client.Sign.Key, Leaf: dev.Client.Sign.Cert}
		c.EncCertificate = tlcp.Certificate{Certificate: [][]byte{dev.Client.Enc.Cert.Raw}, PrivateKey: dev.Client.Enc.Key, Leaf: dev.Client.Enc.Cert}
	}
	if r.Resume {
		c.SessionCache = tlcp.NewLRUSessionCache(64, time.Hour)
	}
	return c
}

func tlcpClient(c net.Conn, cfg *tlcp.Config) (net.Conn, error) {
	tc := tlcp.Client(c, cfg)
	return tc, tc.Handshake()
}

// measurement is the server CPU over a number of connections.
type measurement struct {
	Conns  int64
	CPU    time.Duration
	Errors int64
}

func (m measurement) add(o measurement) measurement {
	return measurement{m.Conns + o.Conns, m.CPU + o.CPU, m.Errors + o.Errors}
}

// PerConnUS is the server CPU per connection in µs.
func (m measurement) PerConnUS() float64 {
	if m.Conns == 0 {
		return 0
	}
	return float64(m.CPU) / float64(time.Microsecond) / float64(m.Conns)
}

// request asks for /ok: the Caddy sites and the bare server answer "ok" on every path, the peer
// serves its file "ok".
var request = []byte("GET /ok HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")

// oneRequest runs a connection: handshake, one request, the whole reply, close.
func oneRequest(addr string, cfg *tlcp.Config) error {
	raw, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return err
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(30 * time.Second))
	c, err := tlcpClient(raw, cfg)
	if err != nil {
		return err
	}
	if _, err := c.Write(request); err != nil {
		return err
	}
	reply, err := io.ReadAll(c)
	if err != nil && len(reply) == 0 {
		return err
	}
	if !okReply(reply) {
		return fmt.Errorf("unexpected reply %.60q", reply)
	}
	return nil
}

// okReply reports whether reply is a 200 (HTTP/1.1, or HTTP/1.0 from the peer) ending in "ok".
func okReply(reply []byte) bool {
	return (bytes.HasPrefix(reply, []byte("HTTP/1.1 200 ")) || bytes.HasPrefix(reply, []byte("HTTP/1.0 200 "))) &&
		bytes.HasSuffix(reply, []byte("\r\n\r\nok"))
}

// minConns is the fewest connections a measured window ends with (when at most 10 windows
// allow it).
const minConns = 50

// measureConns runs n closed-loop clients against s: warmup, then a window in which completed
// connections and the server's CPU are counted.
func measureConns(s *server, cfg *tlcp.Config, r row, n int, warmup, window time.Duration) (measurement, error) {
	var conns, errs atomic.Int64
	var measuring atomic.Bool
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := oneRequest(s.addr, cfg); err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					time.Sleep(10 * time.Millisecond)
					continue
				}
				if measuring.Load() {
					conns.Add(1)
				}
			}
		}()
	}
	time.Sleep(warmup)
	c0, err := procCPU(s.pid)
	if err != nil {
		close(stop)
		wg.Wait()
		return measurement{}, err
	}
	e0 := errs.Load()
	measuring.Store(true)
	time.Sleep(window)
	// On a machine starved by other work a window can end with too few connections to divide
	// the CPU by: it stays open until minConns completed, at most 10 windows.
	for deadline := time.Now().Add(9 * window); conns.Load() < minConns && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	measuring.Store(false)
	c1, err := procCPU(s.pid)
	e1 := errs.Load()
	close(stop)
	wg.Wait()
	if err != nil {
		return measurement{}, err
	}
	m := measurement{Conns: conns.Load(), CPU: c1 - c0, Errors: e1 - e0}
	if m.Conns == 0 {
		return m, fmt.Errorf("no connection completed in 10 windows (first error: %v)", firstErr.Load())
	}
	return m, nil
}

// idleResult is the resident memory of a server before and after opening idle connections.
type idleResult struct {
	Conns        int
	Before, With int64 // VmRSS in bytes
}

// PerConnKiB is the resident memory per idle connection in KiB.
func (r idleResult) PerConnKiB() float64 {
	if r.Conns == 0 {
		return 0
	}
	return float64(r.With-r.Before) / 1024 / float64(r.Conns)
}

// measureIdle opens k connections to s, each with one request done and kept alive, and reads
// the server's RSS before and with them.
func measureIdle(s *server, k int, secure func(net.Conn) (net.Conn, error)) (idleResult, error) {
	time.Sleep(2 * time.Second) // let the previous load's garbage be collected
	before, err := procRSS(s.pid)
	if err != nil {
		return idleResult{}, err
	}
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < k; i++ {
		raw, err := net.DialTimeout("tcp", s.addr, 10*time.Second)
		if err != nil {
			return idleResult{}, err
		}
		conns = append(conns, raw)
		_ = raw.SetDeadline(time.Now().Add(30 * time.Second))
		c, err := secure(raw)
		if err != nil {
			return idleResult{}, err
		}
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"); err != nil {
			return idleResult{}, err
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return idleResult{}, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return idleResult{}, fmt.Errorf("status %d", resp.StatusCode)
		}
		_ = raw.SetDeadline(time.Time{})
	}
	time.Sleep(2 * time.Second)
	with, err := procRSS(s.pid)
	if err != nil {
		return idleResult{}, err
	}
	return idleResult{Conns: k, Before: before, With: with}, nil
}

// profileSite writes CPU profiles of the Caddy TLCP site while the clients load it with full ECC
// and ECDHE handshakes and with resumptions (go tool pprof -top <gmgate binary> FILE).
func profileSite(site *server, dev *pki.DevPKI, root *smx509.CertPool, cfg config) error {
	if err := os.MkdirAll(cfg.pprof, 0o755); err != nil {
		return err
	}
	for _, r := range []row{rows[0], rows[2], rows[len(rows)-1]} {
		secs := max(int(cfg.duration.Seconds()), 2)
		done := make(chan error, 1)
		go func() {
			_, err := measureConns(site, clientConfig(dev, root, r), r, cfg.clients, 0, time.Duration(secs+1)*time.Second)
			done <- err
		}()
		time.Sleep(300 * time.Millisecond)
		resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", site.admin, secs))
		if err != nil {
			return err
		}
		data, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		slug := strings.Map(func(c rune) rune {
			if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' {
				return c
			}
			return '-'
		}, r.Name)
		name := filepath.Join(cfg.pprof, "tlcpsite-"+slug+".pprof")
		if err := os.WriteFile(name, data, 0o644); err != nil {
			return err
		}
		if err := <-done; err != nil {
			return err
		}
		log.Printf("profile of %s: %s", r.Name, name)
	}
	return nil
}
