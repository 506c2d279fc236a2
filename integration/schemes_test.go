package integration

import (
	"bytes"
	"context"
	"crypto"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/client"
	"github.com/gmgate/gmgate/envelope"
	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/signing"
)

// schemesCaddyfile serves gm_verify for every scheme on one TLCP port (client certificates
// verified when given), one route per scheme and envelope order, in front of a plain back end.
const schemesCaddyfile = `{
	admin {ADMIN}
	skip_install_trust
	auto_https off
	gmgate {
		dev_pki {DIR}/pki
	}
	servers :{PORT} {
		listener_wrappers {
			tlcp {
				client_auth verify_if_given
			}
		}
	}
}

http://:{PORT} {
{ROUTES}
}
`

const schemesRoute = `	handle /{NAME}/* {
		gm_verify {
			scheme {SCHEME}
{ENVELOPE}		}
		reverse_proxy {BACKEND} {
			header_up X-Tlcp-Suite {tlcp.cipher_suite}
			header_up X-Tlcp-Client {tlcp.client.subject}
		}
	}
`

// schRoute is one gm_verify route: scheme, and the envelope order when enveloped.
type schRoute struct {
	name   string
	scheme string
	sealed bool
	order  client.EnvelopeOrder // client side; the route says the same in gateway terms
}

func (r schRoute) caddy() string {
	env := ""
	if r.sealed {
		env = "\t\t\tenvelope {\n\t\t\t\tdecrypt_key dev-server-enc\n\t\t\t\tseal_reply\n"
		switch r.order {
		case client.SealThenSign:
			env += "\t\t\t\torder seal_then_sign\n"
		case client.SignThenSeal:
			env += "\t\t\t\torder sign_then_seal\n"
		}
		env += "\t\t\t}\n"
	}
	return strings.NewReplacer("{NAME}", r.name, "{SCHEME}", r.scheme, "{ENVELOPE}", env).Replace(schemesRoute)
}

// schSeen is one request as the back end received it.
type schSeen struct {
	path   string
	header http.Header
	body   []byte
}

// schOrder is the payment instruction of scheme with a fresh order number.
func schOrder(scheme string, n int) (contentType string, body []byte, orderNo string) {
	orderNo = fmt.Sprintf("GM%d%04d", time.Now().Unix(), n)
	switch scheme {
	case signing.WechatPayName, signing.HTTPSigName:
		return "application/json", []byte(`{"mchid":"1900000001","out_trade_no":"` + orderNo + `","amount":{"total":100,"currency":"CNY"}}`), orderNo
	case signing.UnionPayName:
		return "application/x-www-form-urlencoded", []byte("txnType=01&txnSubType=01&txnAmt=100&currencyCode=156&orderId=" + orderNo), orderNo
	}
	return "application/x-www-form-urlencoded", []byte("out_trade_no=" + orderNo + "&total_amount=1.00&subject=coffee"), orderNo
}

// TestSchemesRealBinaryClientSDK: for every scheme the client SDK signs a payment request over
// TLCP to the real binary's gm_verify; the back end receives the plain request with the
// verified identity headers; gm_verify signs the reply with the platform key and the SDK
// verifies it. Enveloped routes: the SDK seals the request to the platform encryption
// certificate, gm_verify opens it (the back end sees plaintext) and seals the reply for the
// client's TLCP encryption certificate, in both orders where the scheme allows them.
func TestSchemesRealBinaryClientSDK(t *testing.T) {
	if client.HeaderInnerContentType != envelope.HeaderInnerContentType || client.EnvelopeContentType != envelope.ContentType {
		t.Fatal("client and gateway disagree on the envelope header names")
	}
	var routes []schRoute
	for _, s := range signing.Names() {
		routes = append(routes, schRoute{name: s, scheme: s})
		routes = append(routes, schRoute{name: s + "-sealed-auto", scheme: s, sealed: true})
		routes = append(routes, schRoute{name: s + "-sealed-sign-then-seal", scheme: s, sealed: true, order: client.SignThenSeal})
		if signing.SignsInHeader(s) {
			routes = append(routes, schRoute{name: s + "-sealed-seal-then-sign", scheme: s, sealed: true, order: client.SealThenSign})
		}
	}

	var mu sync.Mutex
	var seen []schSeen
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, schSeen{path: r.URL.Path, header: r.Header.Clone(), body: b})
		mu.Unlock()
		echo := signing.SM3Hex(b)
		if strings.Contains(r.URL.Path, signing.WechatPayName) || strings.Contains(r.URL.Path, signing.HTTPSigName) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"result":"SUCCESS","echo_sm3":%q}`, echo)
			return
		}
		w.Header().Set("Content-Type", "application/x-www-form-urlencoded")
		fmt.Fprint(w, url.Values{"respCode": {"00"}, "echo_sm3": {echo}}.Encode())
	}))
	defer backend.Close()

	port := freePort(t)
	var rb strings.Builder
	for _, r := range routes {
		rb.WriteString(strings.ReplaceAll(r.caddy(), "{BACKEND}", backend.Listener.Addr().String()))
	}
	cf := strings.NewReplacer("{PORT}", strconv.Itoa(port), "{ROUTES}", rb.String()).Replace(schemesCaddyfile)
	inst := startGmgate(t, cf)
	pkiDir := filepath.Join(inst.dir, "pki")
	file := func(base, ext string) string { return filepath.Join(pkiDir, base+ext) }
	sign, enc, err := client.LoadTerminal(file(pki.DevClientSignBase, ".pem"), file(pki.DevClientSignBase, ".key"),
		file(pki.DevClientEncBase, ".pem"), file(pki.DevClientEncBase, ".key"), nil)
	if err != nil {
		t.Fatal(err)
	}
	load := func(base string) *smx509.Certificate {
		cs, err := pki.LoadCertificatesFile(file(base, ".pem"))
		if err != nil {
			t.Fatal(err)
		}
		return cs[0]
	}
	root, platform, platformEnc := load(pki.DevRootBase), load(pki.DevPlatformBase), load(pki.DevServerEncBase)
	pool := smx509.NewCertPool()
	pool.AddCert(root)
	clientSerial := signing.SerialHex(sign.Certificate.SerialNumber)
	subject := sign.Certificate.Subject.String()

	for i, rt := range routes {
		t.Run(rt.name, func(t *testing.T) {
			keyID := ""
			if rt.scheme == signing.FormName {
				keyID = clientSerial // form-sm2 names the certificate only when told (app_cert_sn)
			}
			key, err := sign.SigningKey(keyID, biMerchant)
			if err != nil {
				t.Fatal(err)
			}
			cfg := client.Config{
				BaseURL:       fmt.Sprintf("https://localhost:%d", port),
				TLCP:          &client.TLCPConfig{Sign: sign, Enc: enc, RootCAs: pool},
				Scheme:        rt.scheme,
				Key:           key,
				PlatformCerts: []*smx509.Certificate{platform},
				Timeout:       20 * time.Second,
			}
			if rt.sealed {
				cfg.Envelope = &client.EnvelopeConfig{PlatformEncCert: platformEnc, Cert: enc.Certificate,
					Key: enc.Key.(crypto.Decrypter), RequireSealedReply: true, Order: rt.order}
			}
			c, err := client.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer c.CloseIdleConnections()
			ct, body, orderNo := schOrder(rt.scheme, i)
			mu.Lock()
			before := len(seen)
			mu.Unlock()
			path := "/" + rt.name + "/pay/transactions?sub=1"
			resp, err := c.Post(context.Background(), path, ct, body)
			if err != nil {
				t.Fatalf("POST: %v\n%s", err, schTail(inst.out.String(), 3000))
			}
			// The reply: signed by the platform key, fresh, verified by the SDK (and opened).
			if resp.StatusCode != http.StatusOK || resp.Reply == nil || resp.Reply.Serial != signing.SerialHex(platform.SerialNumber) ||
				resp.Reply.Scheme != rt.scheme || len(resp.Reply.Signature) == 0 || resp.Reply.Enveloped != rt.sealed {
				t.Fatalf("reply %d %+v", resp.StatusCode, resp.Reply)
			}
			if !bytes.Contains(resp.Body, []byte("echo_sm3")) || bytes.Contains(resp.Body, []byte{0x30, 0x82}) {
				t.Fatalf("reply body %q", resp.Body)
			}
			if schIsEnvelope(resp.Header.Get("Content-Type")) {
				t.Fatalf("reply Content-Type %q", resp.Header.Get("Content-Type"))
			}
			// The back end: one plain request with the verified identity.
			mu.Lock()
			got := append([]schSeen(nil), seen[before:]...)
			mu.Unlock()
			if len(got) != 1 {
				t.Fatalf("back end saw %d requests", len(got))
			}
			s := got[0]
			if s.path != "/"+rt.name+"/pay/transactions" || !bytes.Contains(s.body, []byte(orderNo)) {
				t.Fatalf("back end got %s %q", s.path, s.body)
			}
			if rt.scheme == signing.WechatPayName || rt.scheme == signing.HTTPSigName {
				if !bytes.Equal(s.body, body) {
					t.Fatalf("back end body %q, want %q", s.body, body)
				}
			}
			if schIsEnvelope(s.header.Get("Content-Type")) || s.header.Get("Content-Type") != ct ||
				s.header.Get(envelope.HeaderInnerContentType) != "" {
				t.Fatalf("back end Content-Type %q (inner %q)", s.header.Get("Content-Type"), s.header.Get(envelope.HeaderInnerContentType))
			}
			if s.header.Get("X-Gm-Client-Serial") != clientSerial || s.header.Get("X-Gm-Client-Subject") != subject ||
				s.header.Get("X-Gm-Verify-Scheme") != rt.scheme {
				t.Fatalf("identity headers %v", s.header)
			}
			if s.header.Get("X-Tlcp-Suite") == "" || s.header.Get("X-Tlcp-Client") != subject {
				t.Fatalf("not over TLCP with the client certificate: %v", s.header)
			}
		})
	}
}

func schIsEnvelope(ct string) bool {
	return strings.HasPrefix(strings.ToLower(ct), "application/pkcs7-mime")
}

func schTail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
