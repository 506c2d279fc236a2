package channel

import (
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gmgate/gmgate/audit"
	"github.com/gmgate/gmgate/signing"

	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/integration/banksim"
)

// misbehaveProfiles: one profile per reply shape (param scheme with encrypted fields, HTTP
// signature over an encrypted body, WeChat Pay over an envelope).
func misbehaveProfiles() []profile {
	return []profile{
		{name: "unionpay-fields-gcm", scheme: signing.Settings{Name: "unionpay-sm2"},
			sim: banksim.Profile{Scheme: banksim.UnionPay, Target: "fields", Cipher: "sm4-gcm", Fields: sensitive(), SM4Key: testSM4Key},
			enc: func(*banksim.TestPKI) Encryption {
				return Encryption{Target: TargetFields, Cipher: CipherSM4GCM, Fields: sensitive(), Key: mustKey()}
			}},
		{name: "http-sig-body-gcm", scheme: signing.Settings{Name: "http-sig-sm2"},
			sim: banksim.Profile{Scheme: banksim.HTTPSig, Target: "body", Cipher: "sm4-gcm", SM4Key: testSM4Key},
			enc: func(*banksim.TestPKI) Encryption {
				return Encryption{Target: TargetBody, Cipher: CipherSM4GCM, Key: mustKey()}
			}},
		{name: "wechatpay-body-envelope", scheme: signing.Settings{Name: "wechatpay-v3-sm2"},
			sim: banksim.Profile{Scheme: banksim.WechatPay, Target: "body", Cipher: "sm2-envelope"},
			enc: envelopeRule(TargetBody)},
	}
}

// TestMisbehavingBank: every misbehaviour gives its 502 code, a reject audit entry, a metric, and
// never the bank's body.
func TestMisbehavingBank(t *testing.T) {
	p := getPKI(t)
	schemes := misbehaveProfiles()
	cases := []struct {
		mb   banksim.Misbehaviour
		want Code
	}{
		{banksim.BadSignature, CodeBankSignatureInvalid},
		{banksim.WrongCert, CodeBankCertificateUnknown},
		{banksim.WrongKey, CodeBankSignatureInvalid},
		{banksim.TamperCiphertext, CodeBankDecryptFailed},
		{banksim.TamperAfterSign, CodeBankSignatureInvalid},
		{banksim.Unsigned, CodeBankSignatureMissing},
		{banksim.Slow, CodeBankTimeout},
		{banksim.Drop, CodeBankUnreachable},
	}
	for _, pr := range schemes {
		sim := startSim(t, p, pr, nil)
		for _, c := range cases {
			t.Run(pr.name+"/"+string(c.mb), func(t *testing.T) {
				tr, aud, metrics := newTransport(t, channelConfig(t, p, pr), http.DefaultTransport, func(o *TransportOptions) {
					// Only the slow bank must outlast the bound; for every other case a loaded
					// machine must not turn its answer (or its dropped connection) into a timeout.
					o.ResponseTimeout = 30 * time.Second
					if c.mb == banksim.Slow {
						o.ResponseTimeout = 300 * time.Millisecond
					}
				})
				before := len(sim.Received())
				resp, body := do(t, tr, http.MethodPost, sim.URL+"/pay", "application/json", payJSON,
					map[string]string{banksim.HeaderMisbehave: string(c.mb), banksim.HeaderDelay: "2s"})
				if resp.StatusCode != http.StatusBadGateway {
					t.Fatalf("status %d: %s", resp.StatusCode, body)
				}
				m := jsonMap(t, body)
				if m["code"] != string(c.want) || len(m) != 2 || m["message"] == "" {
					t.Fatalf("body %s, want code %s", body, c.want)
				}
				if resp.Header.Get(HeaderChannelError) != string(c.want) || resp.Header.Get(banksim.HeaderVerified) != "" {
					t.Fatalf("headers %v", resp.Header)
				}
				for _, leak := range []string{"respCode", fieldOf(payJSON, "accNo"), "encData"} {
					if strings.Contains(string(body), leak) {
						t.Fatalf("bank data forwarded: %s", body)
					}
				}
				if got := len(sim.Received()) - before; got != 1 {
					t.Fatalf("bank saw %d requests (non-idempotent POST must not be retried)", got)
				}
				recs := aud.all()
				if len(recs) != 1 || recs[0].Verdict != audit.VerdictReject || recs[0].Reason != string(c.want) ||
					recs[0].Direction != audit.DirectionOutbound || recs[0].RequestID == "" {
					t.Fatalf("audit %+v", recs)
				}
				// When the bank did sign something, the evidence is kept.
				signed := c.mb != banksim.Unsigned && c.mb != banksim.Slow && c.mb != banksim.Drop
				if signed != (len(recs[0].Signature) > 0) {
					t.Fatalf("audit evidence %+v", recs[0])
				}
				if got := metrics.all(); len(got) != 1 || got[0] != "bank-"+pr.name+":"+string(c.want) {
					t.Fatalf("metrics %v", got)
				}
			})
		}
	}
}

// flaky fails the first n round trips with a connection error.
type flaky struct {
	inner http.RoundTripper
	n     atomic.Int32
	calls atomic.Int32
}

func (f *flaky) RoundTrip(r *http.Request) (*http.Response, error) {
	f.calls.Add(1)
	if f.n.Add(-1) >= 0 {
		return nil, errors.New("connection reset by peer")
	}
	return f.inner.RoundTrip(r)
}

// TestRetries: only idempotent requests (by method or Idempotency-Key) are retried, bounded.
func TestRetries(t *testing.T) {
	p := getPKI(t)
	pr := profile{name: "retry", scheme: signing.Settings{Name: "http-sig-sm2"}, sim: banksim.Profile{Scheme: banksim.HTTPSig}}
	sim := startSim(t, p, pr, nil)
	cases := []struct {
		name     string
		method   string
		key      string
		failures int32
		retries  int
		status   int
		calls    int32
	}{
		{"post-no-key", http.MethodPost, "", 1, 2, 502, 1},
		{"post-with-key", http.MethodPost, "order-1", 1, 2, 200, 2},
		{"put", http.MethodPut, "", 2, 2, 200, 3},
		{"get-exhausted", http.MethodGet, "", 5, 2, 502, 3},
		{"get-no-retries", http.MethodGet, "", 1, 0, 502, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := &flaky{inner: http.DefaultTransport}
			f.n.Store(c.failures)
			tr, _, _ := newTransport(t, channelConfig(t, p, pr), f, func(o *TransportOptions) {
				o.Retries, o.RetryBackoff = c.retries, time.Millisecond
			})
			hdr := map[string]string{}
			if c.key != "" {
				hdr[HeaderIdempotencyKey] = c.key
			}
			resp, body := do(t, tr, c.method, sim.URL+"/pay", "application/json", payJSON, hdr)
			if resp.StatusCode != c.status || f.calls.Load() != c.calls {
				t.Fatalf("status %d calls %d: %s", resp.StatusCode, f.calls.Load(), body)
			}
			if c.status == 502 && jsonMap(t, body)["code"] != string(CodeBankUnreachable) {
				t.Fatalf("body %s", body)
			}
		})
	}
}

// TestNewRejectsBadConfig: certificates are checked at load.
func TestNewRejectsBadConfig(t *testing.T) {
	p := getPKI(t)
	base := func() Config {
		return channelConfig(t, p, profile{scheme: signing.Settings{Name: "unionpay-sm2"}, name: "cfg"})
	}
	cases := map[string]func(c *Config){
		"untrusted-bank-cert": func(c *Config) { c.BankCerts = []*smx509.Certificate{p.RogueSign.Cert} },
		"bank-cert-enc-usage": func(c *Config) { c.BankCerts = []*smx509.Certificate{p.BankEnc.Cert} },
		"no-roots":            func(c *Config) { c.BankRoots = nil },
		"signer-mismatch":     func(c *Config) { c.PlatformSigner = p.RogueSign.Key },
		"platform-enc-cert":   func(c *Config) { c.PlatformCert = p.PlatformEnc.Cert; c.PlatformSigner = p.PlatformEnc.Key },
		"unknown-scheme":      func(c *Config) { c.Scheme.Name = "rsa-sha256" },
		"bad-encoding":        func(c *Config) { c.Scheme.SignatureEncoding = "pem" },
		"envelope-to-sign-cert": func(c *Config) {
			c.Encryption = Encryption{Target: TargetBody, Cipher: CipherEnvelope, BankEncCert: p.BankSign.Cert}
		},
		"envelope-untrusted": func(c *Config) {
			c.Encryption = Encryption{Target: TargetBody, Cipher: CipherEnvelope, BankEncCert: p.PlatformEnc.Cert}
		},
		"sm4-no-key":     func(c *Config) { c.Encryption = Encryption{Target: TargetBody} },
		"fields-no-list": func(c *Config) { c.Encryption = Encryption{Target: TargetFields, Key: mustKey()} },
		"bad-target":     func(c *Config) { c.Encryption = Encryption{Target: "headers", Key: mustKey()} },
		"bad-name":       func(c *Config) { c.Name = "bank name\n" },
	}
	if _, err := New(base()); err != nil {
		t.Fatalf("base config: %v", err)
	}
	for name, mut := range cases {
		t.Run(name, func(t *testing.T) {
			c := base()
			mut(&c)
			if _, err := New(c); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// TestExpiredBankCertAtReply: a bank certificate valid at load but expired when the reply comes
// is refused.
func TestExpiredBankCertAtReply(t *testing.T) {
	p := getPKI(t)
	pr := profile{name: "clock", scheme: signing.Settings{Name: "unionpay-sm2"}, sim: banksim.Profile{Scheme: banksim.UnionPay}}
	sim := startSim(t, p, pr, nil)
	cfg := channelConfig(t, p, pr)
	var later atomic.Bool
	cfg.Now = func() time.Time {
		if later.Load() {
			return p.BankSign.Cert.NotAfter.Add(time.Hour)
		}
		return time.Now()
	}
	tr, _, _ := newTransport(t, cfg, http.DefaultTransport, nil)
	later.Store(true)
	resp, body := do(t, tr, http.MethodPost, sim.URL+"/pay", "application/json", payJSON, nil)
	if resp.StatusCode != 502 || jsonMap(t, body)["code"] != string(CodeBankCertificateInvalid) {
		t.Fatalf("status %d %s", resp.StatusCode, body)
	}
}

// TestTamperAfterSignClasses: a reply changed on the link after the bank signed it is refused
// with the code of the first check it fails, and that check never trusts the changed bytes:
// what cannot be parsed as a signed reply (broken JSON, a signature that is not Base64, a sign
// method or a signed time that is not one) is bank_reply_malformed; a key ID no configured
// certificate has is bank_certificate_unknown; every other change, well-formed, is
// bank_signature_invalid, before the time window (a time an hour old is not "stale"), the echo
// of the request's orderId (not "unbound") and decryption (a changed ciphertext is not
// "decrypt failed") are looked at. Each tamper is a fixed change (banksim.HeaderTamper), so the
// answer does not depend on the clock: the default tamper used to turn txnTime "...59" into
// "...69", malformed once a minute.
func TestTamperAfterSignClasses(t *testing.T) {
	p := getPKI(t)
	hourAgo := time.Now().Add(-time.Hour).In(time.FixedZone("CST", 8*3600)).Format("20060102150405")
	otherB64 := strings.Repeat("QUJD", 16) // valid Base64 of 48 bytes
	type tamper struct {
		name string
		how  string
		want Code
	}
	unionpay := []tamper{
		{"default", "", CodeBankSignatureInvalid},
		{"business-value", "respMsg=succesS", CodeBankSignatureInvalid},
		{"result-code", "respCode=01", CodeBankSignatureInvalid},
		{"amount", "txnAmt=1", CodeBankSignatureInvalid},
		{"signed-time-valid-old", "txnTime=" + hourAgo, CodeBankSignatureInvalid},
		{"echoed-order-id", "orderId=20240101999999", CodeBankSignatureInvalid},
		{"encrypted-field", "accNo=" + otherB64, CodeBankSignatureInvalid},
		{"signature-other-value", "signature=" + strings.Repeat("QUJD", 21) + "QQ==", CodeBankSignatureInvalid},
		{"signed-time-not-a-time", "txnTime=20261204166959", CodeBankReplyMalformed},
		{"signature-not-base64", "signature=not*base64", CodeBankReplyMalformed},
		{"sign-method", "signMethod=01", CodeBankReplyMalformed},
		{"json-delimiter", "truncate", CodeBankReplyMalformed},
		{"key-id", "certId=1", CodeBankCertificateUnknown},
	}
	// The HTTP-signature and WeChat Pay replies sign the body's bytes: any change, broken JSON
	// included, is a bad signature.
	bodySigned := []tamper{
		{"default", "", CodeBankSignatureInvalid},
		{"ciphertext", "encData=" + otherB64, CodeBankSignatureInvalid},
		{"json-delimiter", "truncate", CodeBankSignatureInvalid},
	}
	for _, pr := range misbehaveProfiles() {
		sim := startSim(t, p, pr, nil)
		cases := bodySigned
		if pr.name == "unionpay-fields-gcm" {
			cases = unionpay
		}
		for _, c := range cases {
			t.Run(pr.name+"/"+c.name, func(t *testing.T) {
				tr, aud, _ := newTransport(t, channelConfig(t, p, pr), http.DefaultTransport, func(o *TransportOptions) {
					o.ResponseTimeout = 30 * time.Second
				})
				resp, body := do(t, tr, http.MethodPost, sim.URL+"/pay", "application/json", payJSON,
					map[string]string{banksim.HeaderMisbehave: string(banksim.TamperAfterSign), banksim.HeaderTamper: c.how})
				if resp.StatusCode != http.StatusBadGateway || jsonMap(t, body)["code"] != string(c.want) {
					t.Fatalf("tamper %q: status %d %s, want %s", c.how, resp.StatusCode, body, c.want)
				}
				if recs := aud.all(); len(recs) != 1 || recs[0].Reason != string(c.want) {
					t.Fatalf("audit %+v", recs)
				}
			})
		}
	}
}
