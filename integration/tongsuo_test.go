package integration

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gmgate/gmgate/internal/testenv"
)

// Tongsuo's s_client (an independent TLCP implementation) against the real binary's tlcp listener,
// with the command line docs/tlcp.md gives operators to check a deployment, and suite names
// written as Tongsuo and Tengine write them. ECDHE and client authentication use the
// development PKI's client pair.
func TestTongsuoSClientAgainstGmgate(t *testing.T) {
	bin := testenv.TongsuoBin(t)
	port := freePort(t)
	cf := strings.NewReplacer("{PORT}", fmt.Sprint(port)).Replace(`{
	admin {ADMIN}
	skip_install_trust
	auto_https off
	gmgate {
		dev_pki {DIR}/pki
	}
	servers :{PORT} {
		listener_wrappers {
			tlcp {
				cipher_suites ECC-SM2-SM4-GCM-SM3 ECC-SM2-SM4-CBC-SM3 ECDHE-SM2-SM4-GCM-SM3 ECDHE-SM2-SM4-CBC-SM3
				client_auth verify_if_given
			}
		}
	}
}

http://:{PORT} {
	tlcp_vars
	respond "served {tlcp.cipher_suite} client={tlcp.client.subject}"
}
`)
	inst := startGmgate(t, cf)
	pki := filepath.Join(inst.dir, "pki")
	for _, c := range []struct {
		suite, want string
		client      bool
	}{
		{"ECC-SM2-SM4-GCM-SM3", "served ECC_SM4_GCM_SM3 client=", false},
		{"ECC-SM2-SM4-CBC-SM3", "served ECC_SM4_CBC_SM3 client=", false},
		{"ECC-SM2-SM4-GCM-SM3", "served ECC_SM4_GCM_SM3 client=CN=", true},
		{"ECDHE-SM2-SM4-GCM-SM3", "served ECDHE_SM4_GCM_SM3 client=CN=", true},
		{"ECDHE-SM2-SM4-CBC-SM3", "served ECDHE_SM4_CBC_SM3 client=CN=", true},
	} {
		t.Run(fmt.Sprintf("%s/client=%v", c.suite, c.client), func(t *testing.T) {
			// The recipe of docs/tlcp.md ("Check a deployment with Tongsuo").
			args := []string{"s_client", "-connect", fmt.Sprintf("127.0.0.1:%d", port), "-enable_ntls", "-ntls",
				"-cipher", c.suite, "-CAfile", filepath.Join(pki, "root.pem"), "-verify_return_error", "-quiet"}
			if c.client {
				args = append(args, "-sign_cert", filepath.Join(pki, "client_sign.pem"), "-sign_key", filepath.Join(pki, "client_sign.key"),
					"-enc_cert", filepath.Join(pki, "client_enc.pem"), "-enc_key", filepath.Join(pki, "client_enc.key"))
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, args...)
			cmd.Stdin = strings.NewReader("GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "HTTP/1.1 200") || !strings.Contains(string(out), c.want) {
				t.Fatalf("tongsuo s_client: %v\n%s", err, out)
			}
		})
	}
}
