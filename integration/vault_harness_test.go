package integration

import (
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/tlcp"
)

// vaultPINEnv is the environment variable that carries the user PIN of every test token.
const vaultPINEnv = "GMGATE_IT_HSM_PIN"

// keySpec is one SM2 key of a test token and the certificate the test CA issues for it.
type keySpec struct {
	Name string               // vault key name and PKCS#11 object label
	Role pki.Role             // pki.RoleSign or pki.RoleEnc: the key usage of its certificate
	CN   string               // subject common name (default: Name)
	SANs []string             // DNS names and IP addresses of the certificate
	EKU  []smx509.ExtKeyUsage // extended key usages (e.g. server/client auth for TLCP pairs)
}

// vaultToken is a fresh SoftHSM2 token (own token directory and softhsm2.conf under
// t.TempDir()) whose SM2 keys were made with the real `gmgate vault` commands.
type vaultToken struct {
	Dir   string   // scratch directory: softhsm2.conf, tokens/, certificates (<key>.pem), ca.pem
	Conf  string   // path of its softhsm2.conf (SOFTHSM2_CONF for processes that use it)
	Env   []string // environment for gmgate processes: SOFTHSM2_CONF=..., the PIN variable
	Block string   // the `vault { token ... key ... }` block to paste inside the global `gmgate { }` option
	CA    *pki.CA  // the test CA that issued the keys' certificates (its certificate is CAFile)
	// CAFile is the PEM of CA's certificate.
	CAFile string
	// Label is the token label.
	Label string
	// List is the output of `gmgate vault list --json` on the finished configuration.
	List []vaultKeyInfo
}

// vaultKeyInfo is the part of `gmgate vault list --json` the tests read.
type vaultKeyInfo struct {
	Name        string   `json:"name"`
	Backend     string   `json:"backend"`
	Versions    []int    `json:"versions"`
	Current     int      `json:"current"`
	Tokens      []string `json:"tokens"`
	Fingerprint string   `json:"fingerprint"`
	Certificate bool     `json:"certificate"`
	Loaded      bool     `json:"loaded"`
}

// CertFile is the certificate (PEM) of the named key.
func (v *vaultToken) CertFile(name string) string { return filepath.Join(v.Dir, name+".pem") }

// Cert is the certificate of the named key.
func (v *vaultToken) Cert(t testing.TB, name string) *smx509.Certificate {
	t.Helper()
	certs, err := pki.LoadCertificatesFile(v.CertFile(name))
	if err != nil {
		t.Fatal(err)
	}
	return certs[0]
}

// pkcs11Module is the PKCS#11 library the test tokens use.
func pkcs11Module() string {
	if m := os.Getenv("GMGATE_PKCS11_MODULE"); m != "" {
		return m
	}
	return "/usr/lib/softhsm/libsofthsm2.so"
}

// needSoftHSM skips when SoftHSM2 is absent, or fails when GMGATE_REQUIRE_SERVICES is set.
func needSoftHSM(t testing.TB) string {
	t.Helper()
	var why string
	util, err := exec.LookPath("softhsm2-util")
	if err != nil {
		why = "softhsm2-util not on PATH"
	} else if _, err := os.Stat(pkcs11Module()); err != nil {
		why = "PKCS#11 module " + pkcs11Module() + " not installed"
	}
	if why == "" {
		return util
	}
	if os.Getenv("GMGATE_REQUIRE_SERVICES") != "" {
		t.Fatalf("SoftHSM2 required (GMGATE_REQUIRE_SERVICES is set) but unavailable: %s", why)
	}
	t.Skipf("SoftHSM2 unavailable: %s (apt-get install softhsm2)", why)
	return ""
}

// newVaultToken makes a token with the given keys, its certificates issued by a new test CA.
func newVaultToken(t *testing.T, keys ...keySpec) *vaultToken {
	t.Helper()
	ca, _, err := pki.NewRootCA(pki.IssueOptions{CommonName: "gmgate integration vault CA"})
	if err != nil {
		t.Fatal(err)
	}
	return newVaultTokenCA(t, ca, keys...)
}

// newVaultTokenCA is newVaultToken with a given CA (e.g. one a peer already trusts).
//
// Steps, all through the real binary except the token initialisation (the vendor tool) and the CA:
// softhsm2-util --init-token; a Caddyfile declaring the token and keys (without certificates);
// `gmgate vault init`, `gmgate vault generate` and `gmgate vault csr` per key; the CSRs signed by
// the CA (pki.CA.SignCSR) into <Dir>/<key>.pem; the final block names them as `certificate`, and
// `gmgate vault list` on it must show every key loaded from the token with its certificate
// (the vault checks that each certificate matches its key).
func newVaultTokenCA(t *testing.T, ca *pki.CA, keys ...keySpec) *vaultToken {
	t.Helper()
	util := needSoftHSM(t)
	if len(keys) == 0 {
		t.Fatal("newVaultToken: no keys")
	}
	dir := t.TempDir()
	v := &vaultToken{Dir: dir, Conf: filepath.Join(dir, "softhsm2.conf"), CA: ca, CAFile: filepath.Join(dir, "ca.pem"), Label: "gmgate-it"}
	tokdir := filepath.Join(dir, "tokens")
	if err := os.Mkdir(tokdir, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", tokdir)
	if err := os.WriteFile(v.Conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(v.CAFile, pki.EncodeCertificatesPEM(ca.Cert), 0o644); err != nil {
		t.Fatal(err)
	}
	pin := randomDigits(t, 8)
	v.Env = []string{"SOFTHSM2_CONF=" + v.Conf, vaultPINEnv + "=" + pin}

	initTok := exec.Command(util, "--init-token", "--free", "--label", v.Label, "--so-pin", randomDigits(t, 10), "--pin", pin)
	initTok.Env = append(os.Environ(), v.Env...)
	if out, err := initTok.CombinedOutput(); err != nil {
		t.Fatalf("softhsm2-util --init-token: %v\n%s", err, out)
	}

	block := func(withCerts bool) string {
		var b strings.Builder
		fmt.Fprintf(&b, "vault {\n\ttoken hsm {\n\t\tmodule %s\n\t\tlabel %s\n\t\tpin_env %s\n\t\tmode wrapped\n\t}\n", pkcs11Module(), v.Label, vaultPINEnv)
		for _, k := range keys {
			fmt.Fprintf(&b, "\tkey %s \"pkcs11:token=%s;object=%s\"", k.Name, v.Label, k.Name)
			if withCerts {
				fmt.Fprintf(&b, " {\n\t\tcertificate %s\n\t}", v.CertFile(k.Name))
			}
			b.WriteString("\n")
		}
		b.WriteString("}\n")
		return b.String()
	}
	writeCfg := func(name, vaultBlock string) string {
		p := filepath.Join(dir, name)
		cf := "{\n\tadmin off\n\tgmgate {\n" + vaultBlock + "\t}\n}\n"
		if err := os.WriteFile(p, []byte(cf), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	vault := func(cfg string, args ...string) []byte {
		t.Helper()
		full := append([]string{"vault"}, args...)
		full = append(full, "--config", cfg, "--adapter", "caddyfile")
		cmd := exec.Command(gmgateBin(t), full...)
		cmd.Env = append(append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+filepath.Join(dir, "data"), "XDG_CONFIG_HOME="+filepath.Join(dir, "config")), v.Env...)
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("gmgate %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(full, " "), err, stdout.String(), stderr.String())
		}
		return []byte(stdout.String())
	}

	admin := writeCfg("Caddyfile.admin", block(false))
	vault(admin, "init")
	for _, k := range keys {
		vault(admin, "generate", k.Name)
		cn := k.CN
		if cn == "" {
			cn = k.Name
		}
		args := []string{"csr", k.Name, "--cn", cn, "--json"}
		if len(k.SANs) > 0 {
			args = append(args, "--san", strings.Join(k.SANs, ","))
		}
		var res struct {
			Name string `json:"name"`
			PEM  string `json:"pem"`
		}
		if err := json.Unmarshal(vault(admin, args...), &res); err != nil {
			t.Fatalf("gmgate vault csr %s: %v", k.Name, err)
		}
		blk, _ := pem.Decode([]byte(res.PEM))
		if blk == nil || blk.Type != "CERTIFICATE REQUEST" {
			t.Fatalf("gmgate vault csr %s printed no CSR: %q", k.Name, res.PEM)
		}
		csr, err := smx509.ParseCertificateRequest(blk.Bytes)
		if err != nil {
			t.Fatalf("CSR of %s: %v", k.Name, err)
		}
		opts := pki.IssueOptions{ExtKeyUsage: k.EKU}
		for _, s := range k.SANs {
			if ip := net.ParseIP(s); ip != nil {
				opts.IPAddresses = append(opts.IPAddresses, ip)
			} else {
				opts.DNSNames = append(opts.DNSNames, s)
			}
		}
		cert, err := ca.SignCSR(csr, k.Role, opts)
		if err != nil {
			t.Fatalf("signing the CSR of %s: %v", k.Name, err)
		}
		if err := os.WriteFile(v.CertFile(k.Name), pki.EncodeCertificatesPEM(cert), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	v.Block = block(true)
	final := writeCfg("Caddyfile.final", v.Block)
	if err := json.Unmarshal(vault(final, "list", "--json"), &v.List); err != nil {
		t.Fatalf("gmgate vault list --json: %v", err)
	}
	byName := map[string]vaultKeyInfo{}
	for _, ki := range v.List {
		byName[ki.Name] = ki
	}
	for _, k := range keys {
		ki, ok := byName[k.Name]
		switch {
		case !ok:
			t.Fatalf("gmgate vault list lacks %s: %+v", k.Name, v.List)
		case !ki.Loaded || ki.Current != 1 || !ki.Certificate || ki.Backend != "pkcs11-wrapped" || len(ki.Tokens) != 1 || ki.Tokens[0] != "hsm":
			t.Fatalf("gmgate vault list: key %s is %+v, want loaded version 1 with its certificate on token hsm (pkcs11-wrapped)", k.Name, ki)
		}
	}
	return v
}

// randomDigits returns n random decimal digits (PINs).
func randomDigits(t testing.TB, n int) string {
	t.Helper()
	var b strings.Builder
	for i := 0; i < n; i++ {
		d, err := rand.Int(rand.Reader, big.NewInt(10))
		if err != nil {
			t.Fatal(err)
		}
		b.WriteByte(byte('0' + d.Int64()))
	}
	return b.String()
}

// TestVaultTokenMadeByGmgateVault: a token built with `gmgate vault` serves a TLCP listener
// whose sign and enc keys are token keys: the handshake signs with the sign key and decrypts
// the pre-master secret with the enc key inside a started gmgate, and the client checks the
// server chain against the test CA. A second key set's fingerprints differ (fresh keys each time).
func TestVaultTokenMadeByGmgateVault(t *testing.T) {
	v := newVaultToken(t,
		keySpec{Name: "srv-sign", Role: pki.RoleSign, CN: "localhost", SANs: []string{"localhost", "127.0.0.1"},
			EKU: []smx509.ExtKeyUsage{smx509.ExtKeyUsageServerAuth}},
		keySpec{Name: "srv-enc", Role: pki.RoleEnc, CN: "localhost", SANs: []string{"localhost", "127.0.0.1"},
			EKU: []smx509.ExtKeyUsage{smx509.ExtKeyUsageServerAuth}},
	)
	if len(v.List) != 2 || v.List[0].Fingerprint == "" || v.List[0].Fingerprint == v.List[1].Fingerprint {
		t.Fatalf("vault list: %+v", v.List)
	}
	t.Logf("gmgate vault list: %+v", v.List)

	port := freePort(t)
	cf := fmt.Sprintf(`{
	admin {ADMIN}
	skip_install_trust
	gmgate {
%s	}
	servers :%d {
		listener_wrappers {
			tlcp {
				sign_key srv-sign
				enc_key srv-enc
			}
		}
	}
}

http://:%d {
	tlcp_vars
	respond "tlcp {tlcp.cipher_suite}"
}
`, v.Block, port, port)
	startGmgate(t, cf, v.Env...)

	pool := smx509.NewCertPool()
	pool.AddCert(v.CA.Cert)
	for _, suite := range []uint16{tlcp.ECC_SM4_GCM_SM3, tlcp.ECC_SM4_CBC_SM3} {
		t.Run(tlcp.CipherSuiteName(suite), func(t *testing.T) {
			conn, err := tlcp.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port), &tlcp.Config{RootCAs: pool, ServerName: "localhost", CipherSuites: []uint16{suite}})
			if err != nil {
				t.Fatalf("TLCP handshake with token keys: %v", err)
			}
			defer conn.Close()
			st := conn.ConnectionState()
			if st.PeerSignCertificate == nil || !st.PeerSignCertificate.Equal(v.Cert(t, "srv-sign")) ||
				st.PeerEncCertificate == nil || !st.PeerEncCertificate.Equal(v.Cert(t, "srv-enc")) {
				t.Fatalf("server did not present the token keys' certificates")
			}
			fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
			resp, err := io.ReadAll(conn)
			if err != nil && len(resp) == 0 {
				t.Fatal(err)
			}
			if !strings.Contains(string(resp), "tlcp "+tlcp.CipherSuiteName(suite)) {
				t.Fatalf("response %q", resp)
			}
		})
	}
}
