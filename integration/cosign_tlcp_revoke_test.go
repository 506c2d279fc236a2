package integration

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/client"
	"github.com/gmgate/gmgate/cosign/platform"
	"github.com/gmgate/gmgate/internal/attack"
	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/signing"
	"github.com/gmgate/gmgate/tlcp"
)

const cosignTLCPRevokeCaddyfile = `{
	admin {ADMIN}
	skip_install_trust
	auto_https disable_redirects
	gmgate {
		dev_pki {DIR}/pki
		audit {DIR}/audit/audit.log
		vault {
			key cosign-seal file:{DIR}/seal.sm4 {
				type sm4
			}
			key cosign-token file:{DIR}/token.sm4 {
				type sm4
			}
			key escrow file:{DIR}/escrow.sm4 {
				type sm4
			}
		}
	}
	servers :{TLCP} {
		listener_wrappers {
			tlcp {
				client_auth verify_if_given
			}
		}
	}
}

# Enrolment, and gm_cosign by token (keygen, the enrolment's co-operations, the co-signatures
# a TLCP handshake itself needs).
http://:{PLAIN} {
	route /.well-known/est/* {
		gm_enroll {
			store {DIR}/enroll
			escrow_key escrow
			profile terminal {
				common_name "POS-[0-9]{4}"
				validity 720h
			}
		}
	}
	route /cosign/* {
		gm_cosign {
			share_dir {DIR}/shares
			seal_key cosign-seal
			token_key cosign-token
			enroll_store {DIR}/enroll
		}
	}
}

# Co-operations for terminals whose TLCP client signing certificate holds the joint key.
http://:{TLCP} {
	gm_cosign {
		share_dir {DIR}/shares
		seal_key cosign-seal
		auth cert
		enroll_store {DIR}/enroll
	}
}
`

// TestCosignTLCPSessionRevoked: a joint key enrolled through gm_enroll opens a TLCP session with
// its enrolled pair (signing certificate of the joint key, the co-decrypted encryption key) and
// gm_cosign (auth cert, enroll_store) co-signs over it; once the certificate is revoked, the next
// request on the SAME keep-alive session is refused (cosign_cert_revoked: the session's
// certificate is checked at every request, not only at the handshake), and a new session
// cannot even be opened (its handshake's co-signature is refused too).
func TestCosignTLCPSessionRevoked(t *testing.T) {
	dir := t.TempDir()
	tokenKey := randBytes(16)
	for name, k := range map[string][]byte{"seal.sm4": randBytes(16), "token.sm4": tokenKey, "escrow.sm4": randBytes(16)} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(hex.EncodeToString(k)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	dev, err := pki.EnsureDevPKI(filepath.Join(dir, "pki"), nil)
	if err != nil {
		t.Fatal(err)
	}
	plainPort, tlcpPort := freePort(t), freePort(t)
	inst := startGmgate(t, strings.NewReplacer("{DIR}", dir, "{PLAIN}", fmt.Sprint(plainPort), "{TLCP}", fmt.Sprint(tlcpPort)).Replace(cosignTLCPRevokeCaddyfile))
	mac := attack.HMACSM3Key(tokenKey)
	plain := fmt.Sprintf("http://127.0.0.1:%d", plainPort)
	tokens := func(op string) (string, error) {
		return platform.IssueToken(mac, "pos-tlcp", []string{op}, time.Now().Add(time.Minute))
	}
	cs, err := client.EnrollCoSigner(client.CoSignConfig{URL: plain + "/cosign", Token: tokens, SendInstruction: true}, "pos-tlcp")
	if err != nil {
		t.Fatalf("keygen: %v\n%s", err, inst.out)
	}
	ctx := context.Background()
	e := &client.Enroller{BaseURL: plain + "/.well-known/est", Roots: []*smx509.Certificate{dev.Root.Cert}}
	tok := enrolTokenCLI(t, filepath.Join(inst.dir, "Caddyfile"), "POS-0077")
	pair, err := e.EnrollKey(ctx, tok, "POS-0077", nil, cs)
	if err != nil {
		t.Fatalf("enrol: %v\n%s", err, inst.out)
	}

	pool := smx509.NewCertPool()
	pool.AddCert(dev.Root.Cert)
	var dials atomic.Int32
	overTLCP := func() *http.Client {
		cfg := &tlcp.Config{RootCAs: pool, ServerName: "localhost", CipherSuites: []uint16{tlcp.ECC_SM4_GCM_SM3},
			SignCertificate: pair.Sign.TLCPCertificate(), EncCertificate: pair.Enc.TLCPCertificate()}
		return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
			DialContext: func(_ context.Context, network, addr string) (net.Conn, error) {
				dials.Add(1)
				return tlcp.Dial(network, addr, cfg)
			}}}
	}
	sealed, err := cs.SealWithIterations([]byte("7531"), client.MinPINIterations)
	if err != nil {
		t.Fatal(err)
	}
	tlcpURL := fmt.Sprintf("http://127.0.0.1:%d/cosign", tlcpPort)
	session, err := client.OpenCoSigner(client.CoSignConfig{URL: tlcpURL, HTTPClient: overTLCP()}, sealed, []byte("7531"))
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("pay 12.00 CNY over the enrolled TLCP session")
	if _, err := signing.SignSM2(session, msg, nil, signing.DER); err != nil {
		t.Fatalf("co-signature over the TLCP session of the enrolled pair: %v\n%s", err, inst.out)
	}
	if dials.Load() != 1 {
		t.Fatalf("%d TLCP sessions opened, want 1", dials.Load())
	}

	if err := e.Revoke(ctx, pair); err != nil {
		t.Fatal(err)
	}
	var ce *client.CoSignError
	if _, err := signing.SignSM2(session, msg, nil, signing.DER); !errors.As(err, &ce) || ce.Code != string(platform.CodeCertRevoked) {
		t.Fatalf("revoked certificate's live session: %v", err)
	}
	if dials.Load() != 1 {
		t.Fatal("the refusal came on a new session, not on the live one")
	}
	fresh, err := client.OpenCoSigner(client.CoSignConfig{URL: tlcpURL, HTTPClient: overTLCP()}, sealed, []byte("7531"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := signing.SignSM2(fresh, msg, nil, signing.DER); err == nil {
		t.Fatal("a new TLCP session of the revoked terminal co-signed")
	}
}

// enrolTokenCLI issues a one-time enrolment token with `gmgate enroll token` on the server's config.
func enrolTokenCLI(t *testing.T, config, cn string) string {
	t.Helper()
	out, err := exec.Command(gmgateBin(t), "enroll", "token", "--config", config, "--profile", "terminal", "--cn", cn, "--ttl", "1h", "--json").Output()
	var tok struct{ Token string }
	if err != nil || json.Unmarshal(out, &tok) != nil || tok.Token == "" {
		t.Fatalf("gmgate enroll token: %v\n%s", err, out)
	}
	return tok.Token
}
