package integration

import (
	"context"
	"crypto/ecdsa"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/client"
	"github.com/gmgate/gmgate/cosign/platform"
	"github.com/gmgate/gmgate/internal/attack"
	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/tlcp"
)

const cosignTLCPCaddyfile = `{
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

# Enrolment (and the co-signatures a TLCP handshake itself needs) with session tokens.
http://:{PLAIN} {
	gm_cosign {
		share_dir {DIR}/shares
		seal_key cosign-seal
		token_key cosign-token
	}
}

# Co-operations for terminals whose TLCP client signing certificate holds the joint key.
http://:{TLCP} {
	gm_cosign {
		share_dir {DIR}/shares
		seal_key cosign-seal
		auth cert
	}
}
`

// TestCosignTLCPSession: the terminal's TLCP client signing certificate is the certificate of
// its collaborative key, the TLCP stack signs the handshake with the CoSigner unchanged, and
// gm_cosign (auth cert) co-signs over that session without a token; a session with another
// key's certificate, or none, is refused.
func TestCosignTLCPSession(t *testing.T) {
	dir := t.TempDir()
	tokenKey := randBytes(16)
	for name, k := range map[string][]byte{"seal.sm4": randBytes(16), "token.sm4": tokenKey} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(hex.EncodeToString(k)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	dev, err := pki.EnsureDevPKI(filepath.Join(dir, "pki"), nil)
	if err != nil {
		t.Fatal(err)
	}
	plainPort, tlcpPort := freePort(t), freePort(t)
	startGmgate(t, strings.NewReplacer("{DIR}", dir, "{PLAIN}", fmt.Sprint(plainPort), "{TLCP}", fmt.Sprint(tlcpPort)).Replace(cosignTLCPCaddyfile))
	mac := attack.HMACSM3Key(tokenKey)
	plainURL := fmt.Sprintf("http://127.0.0.1:%d/cosign", plainPort)
	tokens := func(op string) (string, error) {
		return platform.IssueToken(mac, "terminal-tlcp", []string{op}, time.Now().Add(time.Minute))
	}
	cs, err := client.EnrollCoSigner(client.CoSignConfig{URL: plainURL, Token: tokens}, "terminal-tlcp")
	if err != nil {
		t.Fatal(err)
	}
	signCert, err := dev.Root.IssueFor(cs.Public(), pki.RoleSign, pki.IssueOptions{CommonName: "terminal-tlcp",
		ExtKeyUsage: []smx509.ExtKeyUsage{smx509.ExtKeyUsageClientAuth}})
	if err != nil {
		t.Fatal(err)
	}
	pool := smx509.NewCertPool()
	pool.AddCert(dev.Root.Cert)
	devEnc := client.Identity{Certificate: dev.Client.Enc.Cert, Key: dev.Client.Enc.Key}
	overTLCP := func(sign *client.Identity) *http.Client {
		cfg := &tlcp.Config{RootCAs: pool, ServerName: "localhost", CipherSuites: []uint16{tlcp.ECC_SM4_GCM_SM3}}
		if sign != nil {
			cfg.SignCertificate, cfg.EncCertificate = sign.TLCPCertificate(), devEnc.TLCPCertificate()
		}
		return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
			DialContext: func(_ context.Context, network, addr string) (net.Conn, error) {
				return tlcp.Dial(network, addr, cfg)
			}}}
	}
	sealed, err := cs.SealWithIterations([]byte("8642"), client.MinPINIterations)
	if err != nil {
		t.Fatal(err)
	}
	tlcpURL := fmt.Sprintf("http://127.0.0.1:%d/cosign", tlcpPort)
	open := func(hc *http.Client) *client.CoSigner {
		c, err := client.OpenCoSigner(client.CoSignConfig{URL: tlcpURL, HTTPClient: hc}, sealed, []byte("8642"))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	// The handshake's CertificateVerify is itself a co-signature (through the token port).
	session := open(overTLCP(&client.Identity{Certificate: signCert, Key: cs}))
	msg := []byte("pay 66.00 CNY over a TLCP session of the joint key")
	sig, err := session.Sign(nil, msg, nil)
	if err != nil {
		t.Fatalf("co-signature over the TLCP session: %v", err)
	}
	if !sm2.VerifyASN1WithSM2(cs.Public().(*ecdsa.PublicKey), nil, msg, sig) {
		t.Fatal("signature does not verify")
	}
	// Another terminal's certificate, and no certificate at all.
	devSign := &client.Identity{Certificate: dev.Client.Sign.Cert, Key: dev.Client.Sign.Key}
	for name, tc := range map[string]struct {
		hc   *http.Client
		want string
	}{
		"another key's certificate": {overTLCP(devSign), string(platform.CodeWrongTerminal)},
		"no client certificate":     {overTLCP(nil), string(platform.CodeUnauthenticated)},
	} {
		var ce *client.CoSignError
		if _, err := open(tc.hc).Sign(nil, msg, nil); !errors.As(err, &ce) || ce.Code != tc.want {
			t.Errorf("%s: %v", name, err)
		}
	}
}
