package gateway

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"errors"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gmgate/gmgate/audit"
	"github.com/gmgate/gmgate/envelope"
	"github.com/gmgate/gmgate/internal/wechatsdk"

	"github.com/emmansun/gmsm/smx509"
	"github.com/redis/go-redis/v9"
	"github.com/wechatpay-apiv3/wechatpay-go/core"
	"github.com/wechatpay-apiv3/wechatpay-go/core/option"

	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/signing"
)

// testPKI is a root CA with client certificates in every state the verifier must tell apart.
type testPKI struct {
	root                   *pki.CA
	good, other            *pki.Pair // trusted client pairs
	expired, notYet        *pki.Issued
	revoked                *pki.Pair
	untrusted              *pki.Pair // issued by another root
	platform               *pki.Issued
	crlPath                string
	verifier               *pki.Verifier
	identities             *IdentityStore
	identityDir            string
	identityCertsForLookup []*smx509.Certificate
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	root, _, err := pki.NewRootCA(pki.IssueOptions{CommonName: "gmgate test root"})
	if err != nil {
		t.Fatal(err)
	}
	other, _, err := pki.NewRootCA(pki.IssueOptions{CommonName: "someone else's root"})
	if err != nil {
		t.Fatal(err)
	}
	p := &testPKI{root: root}
	pair := func(ca *pki.CA, cn string) *pki.Pair {
		pp, err := ca.IssueClientPair(pki.IssueOptions{CommonName: cn, Organization: []string{"Merchant"}})
		if err != nil {
			t.Fatal(err)
		}
		return pp
	}
	p.good, p.other, p.revoked, p.untrusted = pair(root, "merchant-1"), pair(root, "merchant-2"), pair(root, "revoked"), pair(other, "stranger")
	now := time.Now()
	if p.expired, err = root.IssuePlatform(pki.IssueOptions{CommonName: "expired", NotBefore: now.Add(-48 * time.Hour), Validity: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if p.notYet, err = root.IssuePlatform(pki.IssueOptions{CommonName: "not yet", NotBefore: now.Add(24 * time.Hour), Validity: 24 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	if p.platform, err = root.IssuePlatform(pki.IssueOptions{CommonName: "gmgate platform"}); err != nil {
		t.Fatal(err)
	}
	crl, err := root.CreateCRL([]smx509.RevocationListEntry{{SerialNumber: p.revoked.Sign.Cert.SerialNumber}}, big.NewInt(1), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p.crlPath = filepath.Join(dir, "root.crl")
	if err := os.WriteFile(p.crlPath, pki.EncodeCRLPEM(crl), 0o600); err != nil {
		t.Fatal(err)
	}
	crls, err := pki.NewCRLStore([]string{p.crlPath}, pki.CRLOptions{Issuers: []*smx509.Certificate{root.Cert}})
	if err != nil {
		t.Fatal(err)
	}
	if p.verifier, err = pki.NewVerifier(pki.VerifierOptions{Roots: []*smx509.Certificate{root.Cert}, CRLs: crls}); err != nil {
		t.Fatal(err)
	}
	p.identityCertsForLookup = []*smx509.Certificate{p.good.Sign.Cert, p.other.Sign.Cert, p.expired.Cert, p.notYet.Cert,
		p.revoked.Sign.Cert, p.untrusted.Sign.Cert, p.good.Enc.Cert}
	if p.identities, err = NewIdentityStore(IdentityOptions{Verifier: p.verifier, Certificates: p.identityCertsForLookup}); err != nil {
		t.Fatal(err)
	}
	return p
}

const testMchID = "1900000001"

// signWechat returns a request signed with the wechatpay-v3-sm2 scheme by key/cert.
func signWechat(t testing.TB, is *pki.Issued, method, target string, body []byte, now time.Time, nonce string) *http.Request {
	t.Helper()
	m := &signing.Message{Kind: signing.Request, Method: method, Target: target, Authority: "gw.example", Scheme: "https",
		Header: http.Header{"Content-Type": {"application/json"}}, Body: body}
	if err := signing.NewWechatPay().Sign(m, signing.Key{Signer: is.Key, Cert: is.Cert, MerchantID: testMchID}, now, nonce); err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest(method, target, bytes.NewReader(body))
	r.Host = "gw.example"
	r.Header = m.Header
	return r
}

func newTestVerifier(t testing.TB, p *testPKI, mut func(*VerifierOptions)) *Verifier {
	t.Helper()
	store := NewMemoryReplayStore(MemoryReplayOptions{SweepInterval: -1})
	t.Cleanup(func() { _ = store.Close() })
	o := VerifierOptions{Scheme: signing.NewWechatPay(), Identities: p.identities, Replay: &ReplayGuard{Store: store}}
	if mut != nil {
		mut(&o)
	}
	v, err := NewVerifier(o)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestVerifierAccepts(t *testing.T) {
	p := newTestPKI(t)
	v := newTestVerifier(t, p, nil)
	body := []byte(`{"mchid":"1900000001","out_trade_no":"GM1","amount":{"total":100}}`)
	r := signWechat(t, p.good.Sign, http.MethodPost, "/v3/pay/transactions/native?x=1", body, time.Now(), "")
	r.Header.Set("X-Gm-Client-Subject", "CN=forged")
	r.Header.Set("x-gm-client-serial", "00")
	r.Header.Set("X-Gm-Anything", "forged")
	res, err := v.Verify(context.Background(), r, nil)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if res.Serial != signing.SerialHex(p.good.Sign.Cert.SerialNumber) || res.Subject != p.good.Sign.Cert.Subject.String() ||
		res.Scheme != signing.WechatPayName || res.KeyID != res.Serial || res.Identity.Cert != p.good.Sign.Cert {
		t.Fatalf("result %+v", res)
	}
	got, _ := io.ReadAll(r.Body)
	if !bytes.Equal(got, body) || r.ContentLength != int64(len(body)) {
		t.Fatalf("forwarded body %q", got)
	}
	if r.Header.Get("X-Gm-Client-Subject") != res.Subject || r.Header.Get("X-Gm-Client-Serial") != res.Serial ||
		r.Header.Get("X-Gm-Verify-Scheme") != signing.WechatPayName || r.Header.Get("X-Gm-Anything") != "" {
		t.Fatalf("identity headers %v", r.Header)
	}
	// The decimal spelling of the same serial is the same identity, and shares the nonce.
	sd := res.Signed
	r2 := signWechat(t, p.good.Sign, http.MethodPost, "/v3/pay/transactions/native?x=1", body, time.Now(), sd.Nonce)
	if _, err := v.Verify(context.Background(), r2, nil); CodeOf(err) != CodeReplay {
		t.Fatalf("same nonce again: %v", err)
	}
}

func TestVerifierBadInputs(t *testing.T) {
	p := newTestPKI(t)
	body := []byte(`{"amount":1}`)
	now := time.Now()
	good := func() *http.Request { return signWechat(t, p.good.Sign, "POST", "/v3/pay", body, now, "") }
	stranger, err := p.root.IssuePlatform(pki.IssueOptions{CommonName: "not registered"})
	if err != nil {
		t.Fatal(err)
	}
	failStore, err := NewRedisReplayStore(RedisReplayOptions{Client: redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1}),
		Timeout: 200 * time.Millisecond, CloseClient: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = failStore.Close() })
	failOpener := BodyOpenerFunc(func(b []byte) ([]byte, error) { return nil, ErrEnvelope })
	replayV := newTestVerifier(t, p, nil)
	replayed := good()
	replayBody, _ := io.ReadAll(replayed.Body)
	replayed.Body = io.NopCloser(bytes.NewReader(replayBody))
	first := replayed.Clone(context.Background())
	first.Body = io.NopCloser(bytes.NewReader(replayBody))
	if _, err := replayV.Verify(context.Background(), first, nil); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name   string
		req    func() *http.Request
		mut    func(*VerifierOptions)
		v      *Verifier
		peer   *smx509.Certificate
		want   Code
		status int
	}{
		{name: "missing signature", req: func() *http.Request {
			r := good()
			r.Header.Del("Authorization")
			return r
		}, want: CodeMissingSignature, status: 401},
		{name: "malformed header", req: func() *http.Request {
			r := good()
			r.Header.Set("Authorization", `WECHATPAY2-SM2-WITH-SM3 mchid="1",nonce_str=`)
			return r
		}, want: CodeMalformedHeader, status: 400},
		{name: "unsupported algorithm", req: func() *http.Request {
			r := good()
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), "SM2-WITH-SM3", "SHA256-RSA2048", 1))
			return r
		}, want: CodeMalformedHeader, status: 400},
		{name: "unknown key", req: func() *http.Request { return signWechat(t, stranger, "POST", "/v3/pay", body, now, "") }, want: CodeUnknownKey, status: 401},
		{name: "expired", req: func() *http.Request { return signWechat(t, p.expired, "POST", "/v3/pay", body, now, "") }, want: CodeCertExpired, status: 401},
		{name: "not yet valid", req: func() *http.Request { return signWechat(t, p.notYet, "POST", "/v3/pay", body, now, "") }, want: CodeCertNotYetValid, status: 401},
		{name: "revoked", req: func() *http.Request { return signWechat(t, p.revoked.Sign, "POST", "/v3/pay", body, now, "") }, want: CodeCertRevoked, status: 401},
		{name: "wrong usage (encryption certificate)", req: func() *http.Request { return signWechat(t, p.good.Enc, "POST", "/v3/pay", body, now, "") }, want: CodeCertWrongUsage, status: 401},
		{name: "untrusted", req: func() *http.Request { return signWechat(t, p.untrusted.Sign, "POST", "/v3/pay", body, now, "") }, want: CodeCertUntrusted, status: 401},
		{name: "bad signature (body changed)", req: func() *http.Request {
			r := good()
			r.Body = io.NopCloser(strings.NewReader(`{"amount":9}`))
			r.ContentLength = 12
			return r
		}, want: CodeBadSignature, status: 401},
		{name: "bad signature (other key, same serial)", req: func() *http.Request {
			forged := &pki.Issued{Cert: p.good.Sign.Cert, Key: p.other.Sign.Key}
			return signWechat(t, forged, "POST", "/v3/pay", body, now, "")
		}, want: CodeBadSignature, status: 401},
		{name: "bad signature (path changed)", req: func() *http.Request {
			r := good()
			r.RequestURI = "/v3/refund"
			return r
		}, want: CodeBadSignature, status: 401},
		{name: "too old", req: func() *http.Request {
			return signWechat(t, p.good.Sign, "POST", "/v3/pay", body, now.Add(-6*time.Minute), "")
		}, want: CodeTimestampOutOfWindow, status: 401},
		{name: "in the future", req: func() *http.Request {
			return signWechat(t, p.good.Sign, "POST", "/v3/pay", body, now.Add(6*time.Minute), "")
		}, want: CodeTimestampOutOfWindow, status: 401},
		{name: "replay", v: replayV, req: func() *http.Request { return replayed }, want: CodeReplay, status: 401},
		{name: "replay store unavailable fails closed", req: good, mut: func(o *VerifierOptions) { o.Replay = &ReplayGuard{Store: failStore} },
			want: CodeReplayStoreUnavailable, status: 503},
		{name: "envelope cannot be opened", req: good, mut: func(o *VerifierOptions) { o.Opener = failOpener }, want: CodeEnvelopeInvalid, status: 400},
		{name: "body too large", req: good, mut: func(o *VerifierOptions) { o.MaxBodySize = 4 }, want: CodeBodyTooLarge, status: 413},
		{name: "body too large without length", req: func() *http.Request {
			r := good()
			r.ContentLength = -1
			return r
		}, mut: func(o *VerifierOptions) { o.MaxBodySize = 4 }, want: CodeBodyTooLarge, status: 413},
		{name: "TLCP binding: no client certificate", req: good, mut: func(o *VerifierOptions) { o.Binding = BindCertificate }, want: CodeCertUntrusted, status: 401},
		{name: "TLCP binding: other client", req: good, mut: func(o *VerifierOptions) { o.Binding = BindSubject }, peer: p.other.Sign.Cert,
			want: CodeCertUntrusted, status: 401},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := tc.v
			if v == nil {
				v = newTestVerifier(t, p, tc.mut)
			}
			r := tc.req()
			r.Header.Set("X-Gm-Client-Subject", "CN=forged")
			res, err := v.Verify(context.Background(), r, tc.peer)
			if res != nil || err == nil {
				t.Fatalf("accepted: %+v", res)
			}
			if c := CodeOf(err); c != tc.want || c.Status() != tc.status {
				t.Fatalf("code %s (%d), want %s (%d): %v", c, c.Status(), tc.want, tc.status, err)
			}
			if r.Header.Get("X-Gm-Client-Subject") != "CN=forged" {
				t.Fatal("headers of a rejected request were changed")
			}
		})
	}
}

func TestVerifierBindingAccepts(t *testing.T) {
	p := newTestPKI(t)
	for _, b := range []Binding{BindCertificate, BindSubject} {
		v := newTestVerifier(t, p, func(o *VerifierOptions) { o.Binding = b })
		r := signWechat(t, p.good.Sign, "POST", "/v3/pay", []byte(`{}`), time.Now(), "")
		if _, err := v.Verify(context.Background(), r, p.good.Sign.Cert); err != nil {
			t.Fatalf("binding %d: %v", b, err)
		}
	}
	// Subject binding accepts the TLCP encryption-pair sibling (same subject), certificate binding does not.
	if err := CheckBinding(BindSubject, p.good.Sign.Cert, p.good.Enc.Cert); err != nil {
		t.Fatal(err)
	}
	if err := CheckBinding(BindCertificate, p.good.Sign.Cert, p.good.Enc.Cert); CodeOf(err) != CodeCertUntrusted {
		t.Fatalf("certificate binding with another certificate: %v", err)
	}
}

func TestVerifierOpensEnvelopeAfterSignature(t *testing.T) {
	p := newTestPKI(t)
	var calls atomic.Int32
	opener := BodyOpenerFunc(func(b []byte) ([]byte, error) {
		calls.Add(1)
		if !bytes.HasPrefix(b, []byte("sealed:")) {
			return nil, ErrEnvelope
		}
		return bytes.TrimPrefix(b, []byte("sealed:")), nil
	})
	v := newTestVerifier(t, p, func(o *VerifierOptions) { o.Opener = opener })
	r := signWechat(t, p.good.Sign, "POST", "/v3/pay", []byte(`sealed:{"card":"6222"}`), time.Now(), "")
	r.Header.Set("Content-Encoding", "x-gm-envelope")
	res, err := v.Verify(context.Background(), r, nil)
	if err != nil || !res.Opened {
		t.Fatalf("%v %+v", err, res)
	}
	got, _ := io.ReadAll(r.Body)
	if string(got) != `{"card":"6222"}` || r.Header.Get("Content-Encoding") != "" {
		t.Fatalf("forwarded %q %v", got, r.Header)
	}
	// A forged request never reaches the opener (no decryption oracle).
	bad := signWechat(t, p.good.Sign, "POST", "/v3/pay", []byte(`sealed:x`), time.Now(), "")
	bad.Body = io.NopCloser(strings.NewReader(`sealed:y`))
	if _, err := v.Verify(context.Background(), bad, nil); CodeOf(err) != CodeBadSignature || calls.Load() != 1 {
		t.Fatalf("forged: %v, opener calls %d", err, calls.Load())
	}
}

func TestVerifierAudit(t *testing.T) {
	p := newTestPKI(t)
	path := filepath.Join(t.TempDir(), "audit.log")
	log, err := audit.Open(audit.Options{Path: path, Signer: p.platform.Key, CheckpointEvery: 2, CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	v := newTestVerifier(t, p, func(o *VerifierOptions) { o.Audit = log; o.RequestIDHeader = "X-Request-Id" })
	ok := signWechat(t, p.good.Sign, "POST", "/v3/pay", []byte(`{"a":1}`), time.Now(), "")
	ok.Header.Set("X-Request-Id", "req-1")
	if _, err := v.Verify(context.Background(), ok, nil); err != nil {
		t.Fatal(err)
	}
	bad := signWechat(t, p.revoked.Sign, "POST", "/v3/pay", []byte(`{"a":1}`), time.Now(), "")
	if _, err := v.Verify(context.Background(), bad, nil); CodeOf(err) != CodeCertRevoked {
		t.Fatal(err)
	}
	if err := log.Close(); err != nil {
		t.Fatal(err)
	}
	segs, err := audit.Segments(path)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := audit.VerifyFile(segs, p.platform.Cert.PublicKey.(*ecdsa.PublicKey))
	if err != nil {
		t.Fatalf("audit verify: %v %+v", err, rep)
	}
	var all []byte
	for _, s := range segs {
		b, _ := os.ReadFile(s)
		all = append(all, b...)
	}
	text := string(all)
	for _, want := range []string{`"accept"`, `"reject"`, `"cert_revoked"`, `"req-1"`, signing.SerialHex(p.good.Sign.Cert.SerialNumber),
		signing.SerialHex(p.revoked.Sign.Cert.SerialNumber)} {
		if !strings.Contains(text, want) {
			t.Fatalf("audit log lacks %s:\n%s", want, text)
		}
	}
}

// TestVerifierSharedRedisExactlyOnce sends one signed request to two verifiers sharing a real
// Redis, many times concurrently: exactly one is accepted.
func TestVerifierSharedRedisExactlyOnce(t *testing.T) {
	addr := sharedRedisAddr(t)
	p := newTestPKI(t)
	prefix := "gmgate:test:" + t.Name() + ":" + signing.SerialHex(big.NewInt(time.Now().UnixNano())) + ":"
	mk := func() *Verifier {
		c := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 32})
		// A generous bound: 200 checks at once under the race detector on a busy machine; the
		// test is about exactly-once, not latency.
		st, err := NewRedisReplayStore(RedisReplayOptions{Client: c, Prefix: prefix, Timeout: 5 * time.Second, CloseClient: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		return newTestVerifier(t, p, func(o *VerifierOptions) { o.Replay = &ReplayGuard{Store: st} })
	}
	vs := []*Verifier{mk(), mk()}
	body := []byte(`{"out_trade_no":"GM-ONCE"}`)
	orig := signWechat(t, p.good.Sign, "POST", "/v3/pay", body, time.Now(), "")
	const n = 200
	var accepted, replays atomic.Int32
	var other sync.Map
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			r := orig.Clone(context.Background())
			r.Body = io.NopCloser(bytes.NewReader(body))
			<-start
			_, err := vs[i%2].Verify(context.Background(), r, nil)
			switch CodeOf(err) {
			case CodeOK:
				accepted.Add(1)
			case CodeReplay:
				replays.Add(1)
			default:
				other.Store(i, err)
			}
		}(i)
	}
	close(start)
	wg.Wait()
	other.Range(func(k, v any) bool { t.Errorf("request %v: %v", k, v); return true })
	if accepted.Load() != 1 || replays.Load() != n-1 {
		t.Fatalf("accepted %d, replays %d of %d", accepted.Load(), replays.Load(), n)
	}
}

func TestNewVerifierValidates(t *testing.T) {
	p := newTestPKI(t)
	g := &ReplayGuard{Store: NewMemoryReplayStore(MemoryReplayOptions{SweepInterval: -1})}
	for _, o := range []VerifierOptions{
		{Identities: p.identities, Replay: g},
		{Scheme: signing.NewWechatPay(), Replay: g},
		{Scheme: signing.NewWechatPay(), Identities: p.identities},
	} {
		if _, err := NewVerifier(o); err == nil {
			t.Fatalf("accepted %+v", o)
		}
	}
}

func TestHeaderSafe(t *testing.T) {
	for in, want := range map[string]string{
		"CN=商户,O=x":    "CN=商户,O=x",
		"CN=a\r\nX: y": "CN=a%0D%0AX: y",
		"100%":         "100%25",
	} {
		if got := HeaderSafe(in); got != want {
			t.Errorf("HeaderSafe(%q) = %q, want %q", in, got, want)
		}
	}
	if !errors.Is(WithCode(CodeCertUntrusted, ErrBindingMismatch), ErrBindingMismatch) {
		t.Fatal("binding error not wrapped")
	}
}

// sdkSigner and sdkVerifier plug gmsm into the independent WeChat Pay Go SDK
// (github.com/wechatpay-apiv3/wechatpay-go v0.2.21), which builds the signed string, the
// Authorization header and validates replies itself.

// TestVerifierWechatPaySDK: the SDK's signed requests pass the Verifier, and the replies signed by
// ReplySigner pass the SDK's own validation; a reply signed by another key is refused by the SDK.
func TestVerifierWechatPaySDK(t *testing.T) {
	p := newTestPKI(t)
	v := newTestVerifier(t, p, nil)
	rs := &ReplySigner{Signer: p.platform.Key, Cert: p.platform.Cert}
	var backendBody atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		res, err := v.Verify(r.Context(), r, nil)
		if err != nil {
			WriteError(w, CodeOf(err))
			return
		}
		b, _ := io.ReadAll(r.Body)
		backendBody.Store(string(b))
		reply := []byte(`{"code_url":"weixin://wxpay/bizpayurl?pr=gm","serial":"` + r.Header.Get("X-Gm-Client-Serial") + `"}`)
		h := w.Header()
		h.Set("Content-Type", "application/json")
		body, err := rs.Sign(v.Scheme(), 200, h, reply, nil)
		if err != nil || res.Scheme != signing.WechatPayName {
			http.Error(w, "sign", 500)
			return
		}
		w.WriteHeader(200)
		_, _ = w.Write(body)
	}))
	defer srv.Close()
	ctx := context.Background()
	serial := signing.SerialHex(p.good.Sign.Cert.SerialNumber)
	platSerial := signing.SerialHex(p.platform.Cert.SerialNumber)
	client, err := core.NewClient(ctx,
		option.WithSigner(&wechatsdk.Signer{MchID: testMchID, Serial: serial, Key: p.good.Sign.Key}),
		option.WithVerifier(&wechatsdk.Verifier{Serial: platSerial, Pub: &p.platform.Key.PublicKey}),
		option.WithHTTPClient(srv.Client()))
	if err != nil {
		t.Fatal(err)
	}
	res, err := client.Post(ctx, srv.URL+"/v3/pay/transactions/native", map[string]any{"out_trade_no": "GM-SDK-1", "amount": map[string]any{"total": 1}})
	if err != nil {
		t.Fatalf("SDK: %v", err)
	}
	b, _ := io.ReadAll(res.Response.Body)
	if !strings.Contains(string(b), serial) || !strings.Contains(backendBody.Load().(string), "GM-SDK-1") {
		t.Fatalf("reply %s, back end saw %v", b, backendBody.Load())
	}
	if _, err := client.Get(ctx, srv.URL+"/v3/certificates?offset=0"); err != nil {
		t.Fatalf("SDK GET: %v", err)
	}
	// A reply signed with another key is rejected by the SDK.
	rs.Signer = p.other.Sign.Key
	if _, err := client.Get(ctx, srv.URL+"/v3/certificates"); err == nil {
		t.Fatal("SDK accepted a reply signed by the wrong key")
	}
	// A request from an SDK with an unregistered key is refused with unknown_key.
	rogue, err := core.NewClient(ctx,
		option.WithSigner(&wechatsdk.Signer{MchID: testMchID, Serial: "ABCDEF", Key: p.good.Sign.Key}),
		option.WithVerifier(&wechatsdk.Verifier{Serial: platSerial, Pub: &p.platform.Key.PublicKey}),
		option.WithHTTPClient(srv.Client()))
	if err != nil {
		t.Fatal(err)
	}
	_, err = rogue.Get(ctx, srv.URL+"/v3/certificates")
	var apiErr *core.APIError
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 401 || apiErr.Code != string(CodeUnknownKey) {
		t.Fatalf("rogue SDK: %v", err)
	}
}

// TestVerifierRealEnvelope: a signed SM2 envelope (gmsm pkcs7) is opened with the platform
// encryption key; a signed envelope for someone else is envelope_invalid; a sealed reply opens
// with the client's key.
func TestVerifierRealEnvelope(t *testing.T) {
	p := newTestPKI(t)
	platEnc, err := p.root.IssueServerPair(pki.IssueOptions{CommonName: "platform enc"})
	if err != nil {
		t.Fatal(err)
	}
	opener := &envelope.Opener{Cert: platEnc.Enc.Cert, Key: platEnc.Enc.Key}
	v := newTestVerifier(t, p, func(o *VerifierOptions) { o.Opener = opener })
	plain := []byte(`{"card_no":"6222020200000000000"}`)
	sealed, err := envelope.Seal(plain, platEnc.Enc.Cert, envelope.SealOptions{Base64: true})
	if err != nil {
		t.Fatal(err)
	}
	r := signWechat(t, p.good.Sign, "POST", "/v3/pay", sealed, time.Now(), "")
	if _, err := v.Verify(context.Background(), r, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := io.ReadAll(r.Body); !bytes.Equal(got, plain) {
		t.Fatalf("opened %q", got)
	}
	wrong, err := envelope.Seal(plain, p.good.Enc.Cert, envelope.SealOptions{Base64: true})
	if err != nil {
		t.Fatal(err)
	}
	r = signWechat(t, p.good.Sign, "POST", "/v3/pay", wrong, time.Now(), "")
	if _, err := v.Verify(context.Background(), r, nil); CodeOf(err) != CodeEnvelopeInvalid {
		t.Fatalf("envelope for another recipient: %v", err)
	}
	// Sealed, signed reply.
	rs := &ReplySigner{Signer: p.platform.Key, Cert: p.platform.Cert,
		Seal: func(b []byte, c *smx509.Certificate) ([]byte, error) {
			return envelope.Seal(b, c, envelope.SealOptions{})
		}}
	h := http.Header{}
	body, err := rs.Sign(signing.NewWechatPay(), 200, h, []byte(`{"ok":true}`), p.good.Enc.Cert)
	if err != nil {
		t.Fatal(err)
	}
	sd, err := signing.NewWechatPay().Parse(&signing.Message{Kind: signing.Response, Status: 200, Header: h, Body: body})
	if err != nil || signing.NewWechatPay().Verify(sd, &p.platform.Key.PublicKey) != nil {
		t.Fatalf("reply signature: %v", err)
	}
	back, err := (&envelope.Opener{Cert: p.good.Enc.Cert, Key: p.good.Enc.Key}).Open(body)
	if err != nil || string(back) != `{"ok":true}` {
		t.Fatalf("client opening the reply: %q %v", back, err)
	}
}
