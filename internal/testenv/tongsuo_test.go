package testenv

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestTongsuoServerAndClient: the helpers run a real Tongsuo s_server and s_client against
// each other (plain TLS 1.3 with a throw-away P-256 certificate made by Tongsuo itself).
func TestTongsuoServerAndClient(t *testing.T) {
	bin := TongsuoBin(t)
	dir := t.TempDir()
	key, cert := filepath.Join(dir, "key.pem"), filepath.Join(dir, "cert.pem")
	for _, args := range [][]string{
		{"genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key},
		{"req", "-new", "-x509", "-sha256", "-key", key, "-subj", "/CN=localhost", "-days", "1", "-out", cert},
	} {
		if out, err := runTongsuo(bin, args...); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	addr := TongsuoServer(t, bin, "-tls1_3", "-cert", cert, "-key", key, "-www", "-quiet")
	out, err := TongsuoClient(t, bin, addr, "-tls1_3")
	if err != nil || !strings.Contains(out, "TLSv1.3") {
		t.Fatalf("s_client: %v\n%s", err, out)
	}
	// A second server gets its own port.
	if other := TongsuoServer(t, bin, "-tls1_3", "-cert", cert, "-key", key, "-www", "-quiet"); other == addr {
		t.Fatal("two servers on one address")
	}
}
