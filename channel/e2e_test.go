package channel

import (
	"net/http"
	"strings"
	"testing"

	"github.com/gmgate/gmgate/audit"
	"github.com/gmgate/gmgate/signing"

	"github.com/gmgate/gmgate/integration/banksim"
)

func boolp(b bool) *bool { return &b }

const payJSON = `{"orderId":"20240101000001","txnAmt":"100","accNo":"6216610000000000018","idNo":"110101199001011234","phone":"13800138000"}`
const payForm = `orderId=20240101000002&txnAmt=200&accNo=6216610000000000026&phone=13900139000`

func sensitive() []string { return []string{"accNo", "idNo", "phone"} }

// profiles lists every end-to-end case: each scheme, and each encryption rule.
func profiles() []profile {
	return []profile{
		{name: "unionpay-form", scheme: signing.Settings{Name: "unionpay-sm2"}, sim: banksim.Profile{Scheme: banksim.UnionPay},
			ctype: "application/x-www-form-urlencoded", body: payForm},
		{name: "unionpay-json", scheme: signing.Settings{Name: "unionpay-sm2"}, sim: banksim.Profile{Scheme: banksim.UnionPay},
			ctype: "application/json", body: payJSON},
		{name: "unionpay-variant-der-hex-uid", scheme: signing.Settings{Name: "unionpay-sm2", SignatureEncoding: "der", TextEncoding: "hex", UserID: "acquirer-uid"},
			sim:   banksim.Profile{Scheme: banksim.UnionPay, Raw: boolp(false), Hex: true, UserID: []byte("acquirer-uid")},
			ctype: "application/json", body: payJSON},
		{name: "form-sm2", scheme: signing.Settings{Name: "form-sm2"}, sim: banksim.Profile{Scheme: banksim.Form},
			ctype: "application/json", body: payJSON},
		{name: "http-sig-sm2", scheme: signing.Settings{Name: "http-sig-sm2"}, sim: banksim.Profile{Scheme: banksim.HTTPSig},
			ctype: "application/json", body: payJSON},
		{name: "http-sig-sm2-der-keyid-uid", scheme: signing.Settings{Name: "http-sig-sm2", SignatureEncoding: "der", UserIDFromKeyID: true},
			sim:   banksim.Profile{Scheme: banksim.HTTPSig, Raw: boolp(false), UserIDFromKeyID: true},
			ctype: "application/json", body: payJSON},
		{name: "wechatpay-v3-sm2", scheme: signing.Settings{Name: "wechatpay-v3-sm2"}, sim: banksim.Profile{Scheme: banksim.WechatPay},
			ctype: "application/json", body: payJSON},
		{name: "wechatpay-v3-sm2-get", scheme: signing.Settings{Name: "wechatpay-v3-sm2"}, sim: banksim.Profile{Scheme: banksim.WechatPay},
			method: http.MethodGet, body: ""},

		// Confidentiality: fields and body, SM4-GCM, SM4-CBC and the SM2 envelope.
		{name: "unionpay-fields-gcm", scheme: signing.Settings{Name: "unionpay-sm2"},
			sim: banksim.Profile{Scheme: banksim.UnionPay, Target: "fields", Cipher: "sm4-gcm", Fields: sensitive(), SM4Key: testSM4Key},
			enc: func(*banksim.TestPKI) Encryption {
				return Encryption{Target: TargetFields, Cipher: CipherSM4GCM, Fields: sensitive(), Key: mustKey()}
			}, ctype: "application/json", body: payJSON},
		{name: "unionpay-form-fields-cbc", scheme: signing.Settings{Name: "unionpay-sm2"},
			sim: banksim.Profile{Scheme: banksim.UnionPay, Target: "fields", Cipher: "sm4-cbc", Fields: sensitive(), SM4Key: testSM4Key},
			enc: func(*banksim.TestPKI) Encryption {
				return Encryption{Target: TargetFields, Cipher: CipherSM4CBC, Fields: sensitive(), Key: mustKey()}
			}, ctype: "application/x-www-form-urlencoded", body: payForm},
		{name: "unionpay-body-envelope", scheme: signing.Settings{Name: "unionpay-sm2"},
			sim: banksim.Profile{Scheme: banksim.UnionPay, Target: "body", Cipher: "sm2-envelope"},
			enc: envelopeRule(TargetBody), ctype: "application/json", body: payJSON},
		{name: "http-sig-body-gcm", scheme: signing.Settings{Name: "http-sig-sm2"},
			sim: banksim.Profile{Scheme: banksim.HTTPSig, Target: "body", Cipher: "sm4-gcm", SM4Key: testSM4Key},
			enc: func(*banksim.TestPKI) Encryption {
				return Encryption{Target: TargetBody, Cipher: CipherSM4GCM, Key: mustKey()}
			}, ctype: "application/json", body: payJSON},
		{name: "http-sig-fields-envelope", scheme: signing.Settings{Name: "http-sig-sm2"},
			sim: banksim.Profile{Scheme: banksim.HTTPSig, Target: "fields", Cipher: "sm2-envelope", Fields: sensitive()},
			enc: envelopeRule(TargetFields), ctype: "application/json", body: payJSON},
		{name: "wechatpay-body-cbc", scheme: signing.Settings{Name: "wechatpay-v3-sm2"},
			sim: banksim.Profile{Scheme: banksim.WechatPay, Target: "body", Cipher: "sm4-cbc", SM4Key: testSM4Key},
			enc: func(*banksim.TestPKI) Encryption {
				return Encryption{Target: TargetBody, Cipher: CipherSM4CBC, Key: mustKey()}
			}, ctype: "application/json", body: payJSON},
		{name: "form-body-gcm-from-form", scheme: signing.Settings{Name: "form-sm2"},
			sim: banksim.Profile{Scheme: banksim.Form, Target: "body", Cipher: "sm4-gcm", SM4Key: testSM4Key},
			enc: func(*banksim.TestPKI) Encryption {
				return Encryption{Target: TargetBody, Cipher: CipherSM4GCM, Key: mustKey()}
			}, ctype: "application/x-www-form-urlencoded", body: payForm},
	}
}

func envelopeRule(target string) func(p *banksim.TestPKI) Encryption {
	return func(p *banksim.TestPKI) Encryption {
		e := Encryption{Target: target, Cipher: CipherEnvelope, BankEncCert: p.BankEnc.Cert,
			PlatformEncCert: p.PlatformEnc.Cert, PlatformDecrypter: p.PlatformEnc.Key}
		if target == TargetFields {
			e.Fields = sensitive()
		}
		return e
	}
}

func TestEndToEndProfiles(t *testing.T) {
	p := getPKI(t)
	for _, pr := range profiles() {
		t.Run(pr.name, func(t *testing.T) {
			sim := startSim(t, p, pr, nil)
			tr, aud, metrics := newTransport(t, channelConfig(t, p, pr), http.DefaultTransport, nil)
			method := pr.method
			if method == "" {
				method = http.MethodPost
			}
			resp, body := do(t, tr, method, sim.URL+"/gateway/api/pay?x=1", pr.ctype, pr.body, nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s (bank saw: %+v)", resp.StatusCode, body, sim.Received())
			}
			recv := sim.Received()
			if len(recv) != 1 || !recv[0].Verified || recv[0].Err != "" {
				t.Fatalf("bank side: %+v", recv)
			}
			// Sensitive values never travel in clear when a rule is set.
			if pr.enc != nil {
				for _, f := range sensitive() {
					if v := fieldOf(pr.body, f); v != "" && strings.Contains(string(recv[0].Wire), v) {
						t.Fatalf("%s travelled in clear: %s", f, recv[0].Wire)
					}
				}
			}
			// The bank decrypted exactly the business content.
			for _, f := range []string{"orderId", "accNo", "phone"} {
				want := fieldOf(pr.body, f)
				if recv[0].Params[f] != want {
					t.Fatalf("bank saw %s=%q, want %q", f, recv[0].Params[f], want)
				}
			}
			if resp.Header.Get(banksim.HeaderVerified) != "ok" {
				t.Fatalf("bank verdict %q", resp.Header.Get(banksim.HeaderVerified))
			}
			m := jsonMap(t, body)
			if m["respCode"] != "00" {
				t.Fatalf("reply %s", body)
			}
			for _, f := range []string{"orderId", "accNo", "phone"} {
				if got, _ := m[f].(string); got != fieldOf(pr.body, f) {
					t.Fatalf("reply %s=%v, want %q (body %s)", f, m[f], fieldOf(pr.body, f), body)
				}
			}
			recs := aud.all()
			if len(recs) != 1 || recs[0].Verdict != audit.VerdictAccept || recs[0].Direction != audit.DirectionOutbound ||
				len(recs[0].Signature) == 0 || len(recs[0].SignedSM3) != 32 ||
				recs[0].CertSerial != signing.SerialHex(p.BankSign.Cert.SerialNumber) {
				t.Fatalf("audit %+v", recs)
			}
			if got := metrics.all(); len(got) != 1 || !strings.HasSuffix(got[0], ":ok") {
				t.Fatalf("metrics %v", got)
			}
		})
	}
}

// fieldOf extracts a field of the JSON or form test bodies.
func fieldOf(body, f string) string {
	if strings.HasPrefix(body, "{") {
		i := strings.Index(body, `"`+f+`":"`)
		if i < 0 {
			return ""
		}
		rest := body[i+len(f)+4:]
		return rest[:strings.IndexByte(rest, '"')]
	}
	for _, kv := range strings.Split(body, "&") {
		if k, v, _ := strings.Cut(kv, "="); k == f {
			return v
		}
	}
	return ""
}

// TestProfileMismatchIsCaught: when the two sides disagree on a setting, the simulator's own
// verification refuses the request and the gateway refuses the reply: the checks are real.
func TestProfileMismatchIsCaught(t *testing.T) {
	p := getPKI(t)
	cases := []struct {
		name string
		gw   signing.Settings
		sim  banksim.Profile
		want Code
	}{
		{"user-id", signing.Settings{Name: "unionpay-sm2", UserID: "1234567812345678"}, banksim.Profile{Scheme: banksim.UnionPay}, CodeBankSignatureInvalid},
		{"encoding", signing.Settings{Name: "http-sig-sm2", SignatureEncoding: "der"}, banksim.Profile{Scheme: banksim.HTTPSig}, CodeBankSignatureInvalid},
		{"text", signing.Settings{Name: "wechatpay-v3-sm2", TextEncoding: "hex"}, banksim.Profile{Scheme: banksim.WechatPay}, CodeBankReplyMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pr := profile{name: c.name, scheme: c.gw, sim: c.sim}
			sim := startSim(t, p, pr, nil)
			tr, aud, _ := newTransport(t, channelConfig(t, p, pr), http.DefaultTransport, nil)
			resp, body := do(t, tr, http.MethodPost, sim.URL+"/pay", "application/json", payJSON, nil)
			recv := sim.Received()
			if len(recv) != 1 || recv[0].Verified {
				t.Fatalf("bank accepted a request signed under another profile: %+v", recv)
			}
			if resp.StatusCode != http.StatusBadGateway || jsonMap(t, body)["code"] != string(c.want) {
				t.Fatalf("status %d body %s", resp.StatusCode, body)
			}
			if recs := aud.all(); len(recs) != 1 || recs[0].Verdict != audit.VerdictReject {
				t.Fatalf("audit %+v", recs)
			}
		})
	}
}
