package integration

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/client"
	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/signing"
	"github.com/gmgate/gmgate/tlcp"
	"github.com/gmgate/gmgate/tls13sm"
)

// One port serving TLCP, RFC 8998 and TLS, with client certificates verified when given; two
// gm_verify sites bind the instruction's signing certificate to the connection's client
// certificate, one under the protocol-neutral name, one under the older TLCP name.
const tlsClientCaddyfile = `{
	admin {ADMIN}
	skip_install_trust
	auto_https disable_redirects
	gmgate {
		dev_pki {PKI}
	}
	servers :{PORT} {
		listener_wrappers {
			tlcp {
				dual_stack
				client_auth verify_if_given
			}
			tls13sm {
				client_auth verify_if_given
			}
			tls
			tlcp_join
		}
	}
}

https://localhost:{PORT} {
	tls internal
	route /vars {
		tlcp_vars
		respond "{gm.tls.protocol}|{gm.tls.version}|{gm.tls.cipher_suite}|{gm.tls.resumed}|{gm.tls.client.subject}|{gm.tls.client.serial}|{gm.tls.client.fingerprint}|{tlcp.client.subject}|{tlcp.version}"
	}
	route /bound/* {
		gm_verify {
			scheme wechatpay-v3-sm2
			trusted_roots {PKI}/root.pem
			identities {
				file {PKI}/client_sign.pem {PKI}/terminal_b_sign.pem
			}
			bind_tls_client cert
		}
		respond "{gm.tls.protocol} {gm.tls.client.serial} {gm.client.serial}"
	}
	route /bound-old/* {
		gm_verify {
			scheme wechatpay-v3-sm2
			trusted_roots {PKI}/root.pem
			identities {
				file {PKI}/client_sign.pem {PKI}/terminal_b_sign.pem
			}
			bind_tlcp_client cert
		}
		respond "{gm.tls.protocol} {gm.tls.client.serial} {gm.client.serial}"
	}
}
`

// TestTLSClientIdentity: the verified client certificate of an RFC 8998 connection is the
// connection's client identity exactly as a TLCP one is: {gm.tls.client.*} (and, over TLCP
// only, the older {tlcp.client.*}) name it, and gm_verify's bind_tls_client (and its older name
// bind_tlcp_client) binds the payment instruction to it whichever protocol the terminal used.
// The attack: terminal B authenticates the connection and sends an instruction signed by
// terminal A (a stolen signed request, or A's key without A's transport identity): refused
// with cert_untrusted over RFC 8998 and TLCP alike, as is an instruction over a connection
// without a client certificate.
func TestTLSClientIdentity(t *testing.T) {
	pkiDir := filepath.Join(t.TempDir(), "pki")
	dev, err := pki.EnsureDevPKI(pkiDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Terminal A is the development client; terminal B another client of the same root.
	termA := dev.Client
	termB, err := dev.Root.IssueClientPair(pki.IssueOptions{CommonName: "terminal-b", Organization: []string{"GM Test Merchant"}})
	if err != nil {
		t.Fatal(err)
	}
	writeIssuedFiles(t, pkiDir, "terminal_b_sign", termB.Sign)
	port := freePort(t)
	startGmgate(t, strings.NewReplacer("{PORT}", fmt.Sprint(port), "{PKI}", pkiDir).Replace(tlsClientCaddyfile))
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	roots := smx509.NewCertPool()
	roots.AddCert(dev.Root.Cert)

	serial := func(p *pki.Pair) string { return signing.SerialHex(p.Sign.Cert.SerialNumber) }
	tls13Config := func(p *pki.Pair) *tls13sm.Config {
		cfg := &tls13sm.Config{RootCAs: roots, ServerName: "localhost", CipherSuites: []uint16{tls13sm.TLS_SM4_GCM_SM3}}
		if p != nil {
			cfg.Certificate = &tls13sm.Certificate{Certificate: [][]byte{p.Sign.Cert.Raw}, PrivateKey: p.Sign.Key, Leaf: p.Sign.Cert}
		}
		return cfg
	}
	tlcpConfig := func(p *pki.Pair) *tlcp.Config {
		cfg := &tlcp.Config{RootCAs: roots, ServerName: "localhost", CipherSuites: []uint16{tlcp.ECC_SM4_GCM_SM3}}
		if p != nil {
			cfg.SignCertificate = tlcp.Certificate{Certificate: [][]byte{p.Sign.Cert.Raw}, PrivateKey: p.Sign.Key, Leaf: p.Sign.Cert}
			cfg.EncCertificate = tlcp.Certificate{Certificate: [][]byte{p.Enc.Cert.Raw}, PrivateKey: p.Enc.Key, Leaf: p.Enc.Cert}
		}
		return cfg
	}
	type dialer func(ctx context.Context, network, a string) (net.Conn, error)
	overTLS13 := func(p *pki.Pair) dialer {
		return func(ctx context.Context, network, _ string) (net.Conn, error) {
			return tls13sm.Dial(network, addr, tls13Config(p))
		}
	}
	overTLCP := func(p *pki.Pair) dialer {
		return func(ctx context.Context, network, _ string) (net.Conn, error) {
			return tlcp.Dial(network, addr, tlcpConfig(p))
		}
	}

	// A placeholder that is not set stays as written in `respond`: the {tlcp.*} names are
	// TLCP's only, and no {gm.tls.client.*} is set without a verified client certificate.
	t.Run("placeholders", func(t *testing.T) {
		for _, c := range []struct {
			name string
			dial dialer
			want string
		}{
			{"rfc8998/terminal-a", overTLS13(termA), "tls13sm|0x0304|TLS_SM4_GCM_SM3|false|" + termA.Sign.Cert.Subject.String() + "|" +
				serial(termA) + "|" + pki.FingerprintSM3(termA.Sign.Cert) + "|{tlcp.client.subject}|{tlcp.version}"},
			{"rfc8998/no-certificate", overTLS13(nil), "tls13sm|0x0304|TLS_SM4_GCM_SM3|false|{gm.tls.client.subject}|" +
				"{gm.tls.client.serial}|{gm.tls.client.fingerprint}|{tlcp.client.subject}|{tlcp.version}"},
			{"tlcp/terminal-b", overTLCP(termB), "tlcp|0x0101|ECC_SM4_GCM_SM3|false|" + termB.Sign.Cert.Subject.String() + "|" +
				serial(termB) + "|" + pki.FingerprintSM3(termB.Sign.Cert) + "|" + termB.Sign.Cert.Subject.String() + "|0x0101"},
		} {
			t.Run(c.name, func(t *testing.T) {
				conn, err := c.dial(context.Background(), "tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(10 * time.Second))
				fmt.Fprintf(conn, "GET /vars HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
				resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || string(body) != c.want {
					t.Fatalf("status %d\n got %q\nwant %q", resp.StatusCode, body, c.want)
				}
			})
		}
	})

	const mchID = "1900000001"
	pay := func(t *testing.T, path string, signer *pki.Pair, dial dialer) (*client.Response, error) {
		t.Helper()
		key, err := (&client.Identity{Certificate: signer.Sign.Cert, Key: signer.Sign.Key}).SigningKey("", mchID)
		if err != nil {
			t.Fatal(err)
		}
		tr := &http.Transport{DialTLSContext: dial, DisableKeepAlives: true}
		t.Cleanup(tr.CloseIdleConnections)
		c, err := client.New(client.Config{BaseURL: "https://localhost:" + fmt.Sprint(port), Transport: tr,
			Scheme: signing.WechatPayName, Key: key, PlatformCerts: []*smx509.Certificate{dev.Platform.Cert}, Timeout: 20 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return c.Post(context.Background(), path, "application/json", []byte(`{"mchid":"`+mchID+`","out_trade_no":"`+randomDigits(t, 12)+`","amount":{"total":100}}`))
	}
	for _, path := range []string{"/bound/pay", "/bound-old/pay"} {
		for _, c := range []struct {
			name   string
			signer *pki.Pair
			dial   dialer
			want   string // accepted body, or the refusal code
		}{
			{"rfc8998/signer-is-client", termA, overTLS13(termA), "tls13sm " + serial(termA) + " " + serial(termA)},
			{"rfc8998/other-terminal-signed", termA, overTLS13(termB), "cert_untrusted"},
			{"rfc8998/no-client-certificate", termA, overTLS13(nil), "cert_untrusted"},
			{"tlcp/signer-is-client", termB, overTLCP(termB), "tlcp " + serial(termB) + " " + serial(termB)},
			{"tlcp/other-terminal-signed", termA, overTLCP(termB), "cert_untrusted"},
		} {
			t.Run(strings.Trim(path, "/")+"/"+c.name, func(t *testing.T) {
				resp, err := pay(t, path, c.signer, c.dial)
				if !strings.Contains(c.want, " ") { // a refusal
					var re *client.ReplyError
					if !errors.As(err, &re) || re.StatusCode != http.StatusUnauthorized || re.GatewayCode != c.want {
						t.Fatalf("want refusal %s, got %+v %v", c.want, resp, err)
					}
					return
				}
				if err != nil || resp.StatusCode != http.StatusOK || string(resp.Body) != c.want {
					t.Fatalf("want %q, got %+v %v", c.want, resp, err)
				}
			})
		}
	}
}
