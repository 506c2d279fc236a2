package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gmgate/gmgate/integration/banksim"
	"github.com/gmgate/gmgate/pki"
)

const channelCaddyfile = `{
	admin {ADMIN}
	gmgate {
		audit {DIR}/audit/audit.log {
			signing_key platform-sign
			checkpoint_every 1
		}
		vault {
			key platform-sign file:{DIR}/platform_sign.key {
				certificate {DIR}/platform_sign.pem
			}
			key platform-tlcp-sign file:{DIR}/platform_tlcp_sign.key {
				certificate {DIR}/platform_tlcp_sign.pem
			}
			key platform-tlcp-enc file:{DIR}/platform_tlcp_enc.key {
				certificate {DIR}/platform_tlcp_enc.pem
			}
		}
	}
}

http://127.0.0.1:{EGRESS} {
	reverse_proxy {BANK} {
		transport gm_channel {
			bank banksim
			scheme unionpay-sm2
			platform_key platform-sign
			bank_cert {DIR}/bank_sign.pem
			bank_root {DIR}/bank_root.pem
			tlcp {
				sign_key platform-tlcp-sign
				enc_key platform-tlcp-enc
				server_name localhost
				cipher_suites ECC_SM4_GCM_SM3
			}
			response_timeout 5s
		}
	}
}
`

// writeIssuedFiles writes <dir>/<base>.pem and .key.
func writeIssuedFiles(t *testing.T, dir, base string, iss *pki.Issued) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, base+".pem"), pki.EncodeCertificatesPEM(iss.Cert), 0o644); err != nil {
		t.Fatal(err)
	}
	if iss.Key == nil {
		return
	}
	k, err := pki.MarshalPrivateKeyPEM(iss.Key, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, base+".key"), k, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestChannelEgressOverTLCP: a plain request of the legacy back end leaves through gm_channel,
// is signed (UnionPay SM2) and sent over TLCP with mutual authentication to the bank simulator,
// which verifies it independently; the bank's signed reply is verified before it is passed on.
// A misbehaving bank gives a 502 with a code, never its body; every exchange is audited.
func TestChannelEgressOverTLCP(t *testing.T) {
	tp, err := banksim.NewTestPKI("localhost")
	if err != nil {
		t.Fatal(err)
	}
	bank, err := banksim.New(banksim.FromTestPKI(tp, banksim.Profile{Scheme: banksim.UnionPay}))
	if err != nil {
		t.Fatal(err)
	}
	if err := bank.StartTLCP(tp.ServerTLCPConfig()); err != nil {
		t.Fatal(err)
	}
	defer bank.Close()

	dir := t.TempDir()
	writeIssuedFiles(t, dir, "platform_sign", tp.PlatformSign)
	writeIssuedFiles(t, dir, "platform_tlcp_sign", tp.PlatformTLCP.Sign)
	writeIssuedFiles(t, dir, "platform_tlcp_enc", tp.PlatformTLCP.Enc)
	writeIssuedFiles(t, dir, "bank_sign", &pki.Issued{Cert: tp.BankSign.Cert})
	writeIssuedFiles(t, dir, "bank_root", &pki.Issued{Cert: tp.BankRoot.Cert})

	egress := freePort(t)
	bankAddr := strings.TrimPrefix(bank.URL, "https://")
	cf := strings.NewReplacer("{EGRESS}", fmt.Sprint(egress), "{BANK}", bankAddr, "{DIR}", dir).Replace(channelCaddyfile)
	inst := startGmgate(t, cf)

	post := func(misbehave banksim.Misbehaviour) (*http.Response, []byte) {
		form := url.Values{"orderId": {"GM202611250001"}, "txnAmt": {"100"}, "merId": {"898000000000001"},
			"txnTime": {"20261125180000"}, "accNo": {"6216610000000000001"}}
		req, _ := http.NewRequest("POST", fmt.Sprintf("http://127.0.0.1:%d/gateway/api/appTransReq.do", egress), strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if misbehave != "" {
			req.Header.Set(banksim.HeaderMisbehave, string(misbehave))
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, body
	}

	resp, body := post("")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s\n%s", resp.StatusCode, body, inst.out)
	}
	got := bank.Received()
	if len(got) != 1 || !got[0].Verified {
		t.Fatalf("bank did not verify the request: %+v", got)
	}
	if got[0].Params["accNo"] != "6216610000000000001" || got[0].Params["signMethod"] != "21" {
		t.Fatalf("bank saw params %v", got[0].Params)
	}
	if !strings.Contains(string(body), "GM202611250001") {
		t.Fatalf("reply does not carry the bank's answer: %s", body)
	}

	for _, tc := range []struct {
		m    banksim.Misbehaviour
		code string
	}{
		{banksim.BadSignature, "bank_signature_invalid"},
		{banksim.WrongCert, "bank_certificate_unknown"},
		{banksim.TamperAfterSign, "bank_signature_invalid"},
		{banksim.Unsigned, "bank_signature_missing"},
		{banksim.Drop, "bank_unreachable"},
	} {
		t.Run(string(tc.m), func(t *testing.T) {
			resp, body := post(tc.m)
			if resp.StatusCode != http.StatusBadGateway {
				t.Fatalf("status %d, want 502: %s", resp.StatusCode, body)
			}
			var e struct{ Code, Message string }
			if err := json.Unmarshal(body, &e); err != nil || e.Code == "" {
				t.Fatalf("body is not a JSON error: %s", body)
			}
			if e.Code != tc.code {
				t.Fatalf("code %q, want %q", e.Code, tc.code)
			}
			if strings.Contains(string(body), "GM202611250001") {
				t.Fatalf("an unverified bank body was forwarded: %s", body)
			}
		})
	}

	// Every exchange is in the audit log, whose chain and checkpoints verify with the platform
	// certificate through the real binary's `gmgate audit verify`.
	inst.stop()
	out, err := exec.Command(gmgateBin(t), "audit", "verify", "--cert", filepath.Join(dir, "platform_sign.pem"),
		filepath.Join(dir, "audit", "audit.log")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "audit log intact") {
		t.Fatalf("audit verify: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "6 decisions") {
		t.Fatalf("want 6 audited decisions: %s", out)
	}
}
