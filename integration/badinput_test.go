package integration

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/envelope"
	"github.com/gmgate/gmgate/gateway"
	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/refusal"
	"github.com/gmgate/gmgate/signing"
)

// badInputCaddyfile puts gm_verify (wechatpay-v3-sm2, 4 KiB body limit) in front of a plain back
// end on {PORT}, and a second gm_verify that opens SM2 envelopes on {ENVPORT}.
const badInputCaddyfile = `{
	admin {ADMIN}
	skip_install_trust
	auto_https off
	gmgate {
		dev_pki {DIR}/pki
	}
}

http://:{PORT} {
	gm_verify {
		scheme wechatpay-v3-sm2
		max_body_size 4KiB
		replay {
			window 5m
		}
	}
	reverse_proxy {BACKEND}
}

http://:{ENVPORT} {
	gm_verify {
		scheme wechatpay-v3-sm2
		envelope {
			decrypt_key dev-server-enc
		}
	}
	reverse_proxy {BACKEND}
}
`

// biSeen is one request as the back end received it.
type biSeen struct {
	row    string
	header http.Header
	body   []byte
}

// biGateway is the shared gmgate process of the bad-input table and the signing material.
type biGateway struct {
	addr, envAddr string
	key           *sm2.PrivateKey
	cert          *smx509.Certificate
	clientEnc     *smx509.Certificate
	serverEnc     *smx509.Certificate
	mu            sync.Mutex
	seen          []biSeen
}

const biMerchant = "1900000001"

// sign returns the Authorization value of wechatpay-v3-sm2 for method, target and body.
func (g *biGateway) sign(t *testing.T, method, target string, body []byte, now time.Time, nonce, serial string) string {
	t.Helper()
	m := &signing.Message{Kind: signing.Request, Method: method, Target: target, Header: http.Header{}, Body: body}
	k := signing.Key{Signer: g.key, Cert: g.cert, MerchantID: biMerchant, KeyID: serial}
	if err := signing.NewWechatPay().Sign(m, k, now, nonce); err != nil {
		t.Fatal(err)
	}
	return m.Header.Get("Authorization")
}

// biRaw is an HTTP/1.1 request written byte for byte.
type biRaw struct {
	method, target string
	header         [][2]string // in order, duplicates allowed, values unvalidated
	body           []byte
	rawBody        bool // body is already framed (chunked) or deliberately short: no Content-Length added
	halfClose      bool // close the write side after sending
}

func (r biRaw) bytes() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n", r.method, r.target)
	hasLen := false
	for _, h := range r.header {
		if strings.EqualFold(h[0], "Content-Length") || strings.EqualFold(h[0], "Transfer-Encoding") {
			hasLen = true
		}
		fmt.Fprintf(&b, "%s: %s\r\n", h[0], h[1])
	}
	if !hasLen && !r.rawBody && (r.body != nil || r.method == http.MethodPost) {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(r.body))
	}
	b.WriteString("\r\n")
	b.Write(r.body)
	return b.Bytes()
}

// biResult is what the gateway answered.
type biResult struct {
	status int
	header http.Header
	body   []byte
}

// send writes raw to addr on a fresh connection and reads one response. The write runs
// concurrently: the server may answer (and close) before an oversized request is fully sent.
func biSend(t *testing.T, addr string, r biRaw) biResult {
	t.Helper()
	res, err := biTrySend(addr, r)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// biTrySend is biSend returning connection-level failures.
func biTrySend(addr string, r biRaw) (biResult, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return biResult{}, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	raw := r.bytes()
	go func() {
		_, _ = c.Write(raw)
		if r.halfClose {
			_ = c.(*net.TCPConn).CloseWrite()
		}
	}()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return biResult{}, fmt.Errorf("reading the response: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return biResult{}, fmt.Errorf("reading the response body: %w", err)
	}
	return biResult{status: resp.StatusCode, header: resp.Header, body: body}, nil
}

// biLeaks are fragments of internal detail that must never reach a client.
var biLeaks = []string{"x509:", "sm2:", "sm3", "pkcs7", "asn1", "gateway:", "signing:", "runtime error",
	"goroutine", "panic", ".go:", "/tmp/", "/root/", "pki/", ".pem", ".key", "dev-server-enc", "unexpected EOF"}

func TestVerifyBadInputRealBinary(t *testing.T) {
	g := &biGateway{}
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		g.mu.Lock()
		g.seen = append(g.seen, biSeen{row: r.Header.Get("X-Row"), header: r.Header.Clone(), body: b})
		g.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"ok":true,"len":%d}`, len(b))
	}))
	defer backend.Close()
	port, envPort := freePort(t), freePort(t)
	cf := strings.NewReplacer("{PORT}", strconv.Itoa(port), "{ENVPORT}", strconv.Itoa(envPort),
		"{BACKEND}", backend.Listener.Addr().String()).Replace(badInputCaddyfile)
	inst := startGmgate(t, cf)
	g.addr, g.envAddr = fmt.Sprintf("127.0.0.1:%d", port), fmt.Sprintf("127.0.0.1:%d", envPort)
	pkiDir := filepath.Join(inst.dir, "pki")
	loadCert := func(base string) *smx509.Certificate {
		cs, err := pki.LoadCertificatesFile(filepath.Join(pkiDir, base+".pem"))
		if err != nil {
			t.Fatal(err)
		}
		return cs[0]
	}
	g.cert, g.clientEnc, g.serverEnc = loadCert(pki.DevClientSignBase), loadCert(pki.DevClientEncBase), loadCert(pki.DevServerEncBase)
	var err error
	if g.key, err = pki.LoadPrivateKeyFile(filepath.Join(pkiDir, pki.DevClientSignBase+".key"), nil); err != nil {
		t.Fatal(err)
	}
	serial := signing.SerialHex(g.cert.SerialNumber)

	const target = "/v3/pay/transactions/native"
	order := []byte(`{"mchid":"1900000001","out_trade_no":"GM-BAD-1","amount":{"total":100,"currency":"CNY"}}`)
	nonceSeq := 0
	nonce := func() string { nonceSeq++; return fmt.Sprintf("bad-input-%d-%d", time.Now().UnixNano(), nonceSeq) }
	// auth builds an Authorization header from explicit parameters (any of them may be broken).
	auth := func(params ...string) string {
		return signing.WechatPaySchema + " " + strings.Join(params, ",")
	}
	valid := func(body []byte) string { return g.sign(t, "POST", target, body, time.Now(), nonce(), "") }
	// validParts are the parameters of one valid signature, to break one of them.
	validParts := func() map[string]string {
		a := valid(order)
		_, p, err := signing.ParseWechatAuthorization(a)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	with := func(p map[string]string, k, v string) string {
		p[k] = v
		var out []string
		for _, name := range []string{"mchid", "nonce_str", "timestamp", "serial_no", "signature"} {
			out = append(out, name+`="`+p[name]+`"`)
		}
		return auth(out...)
	}
	post := func(row string, authz string, body []byte, extra ...[2]string) biRaw {
		h := [][2]string{{"X-Row", row}, {"Content-Type", "application/json"}}
		if authz != "" {
			h = append(h, [2]string{"Authorization", authz})
		}
		return biRaw{method: "POST", target: target, header: append(h, extra...), body: body}
	}
	bigBody := bytes.Repeat([]byte("A"), 8<<10)
	oneByte := append([]byte(nil), order...)
	oneByte[len(oneByte)-3] ^= 0x01
	replayed := post("replay-original", valid(order), order)
	sealedForSomeoneElse, err := envelope.Seal(order, g.clientEnc, envelope.SealOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sealedOK, err := envelope.Seal(order, g.serverEnc, envelope.SealOptions{})
	if err != nil {
		t.Fatal(err)
	}
	corrupted := append([]byte(nil), sealedOK...)
	corrupted[len(corrupted)-1] ^= 0x01
	chunk := func(parts ...string) []byte { return []byte(strings.Join(parts, "")) }

	type row struct {
		name   string
		addr   string // default g.addr
		req    func() biRaw
		status int
		code   string // "" when the answer is not gm_verify's (Go's own 4xx) or an accepted request
		pass   bool   // the back end must see it
	}
	rows := []row{
		{name: "no Authorization", req: func() biRaw { return post("r", "", order) }, status: 401, code: "missing_signature"},
		{name: "blank Authorization", req: func() biRaw { return post("r", "   ", order) }, status: 401, code: "missing_signature"},
		{name: "Bearer token", req: func() biRaw { return post("r", "Bearer eyJhbGciOiJub25lIn0.e30.", order) }, status: 400, code: "malformed_header"},
		{name: "Basic credentials", req: func() biRaw { return post("r", "Basic dXNlcjpwYXNz", order) }, status: 400, code: "malformed_header"},
		{name: "RSA WeChat Pay type", req: func() biRaw {
			a := valid(order)
			return post("r", strings.Replace(a, signing.WechatPaySchema, "WECHATPAY2-SHA256-RSA2048", 1), order)
		}, status: 400, code: "malformed_header"},
		{name: "scheme token only", req: func() biRaw { return post("r", signing.WechatPaySchema, order) }, status: 400, code: "malformed_header"},
		{name: "garbage parameters", req: func() biRaw { return post("r", auth(`!!!`, `###`), order) }, status: 400, code: "malformed_header"},
		{name: "unterminated quote", req: func() biRaw { return post("r", auth(`mchid="1900000001`), order) }, status: 400, code: "malformed_header"},
		{name: "duplicate parameter", req: func() biRaw {
			return post("r", valid(order)+`,nonce_str="other"`, order)
		}, status: 400, code: "malformed_header"},
		{name: "missing signature parameter", req: func() biRaw {
			p := validParts()
			return post("r", auth(`mchid="`+p["mchid"]+`"`, `nonce_str="`+p["nonce_str"]+`"`, `timestamp="`+p["timestamp"]+`"`, `serial_no="`+p["serial_no"]+`"`), order)
		}, status: 400, code: "malformed_header"},
		{name: "two Authorization headers", req: func() biRaw {
			return post("r", valid(order), order, [2]string{"Authorization", valid(order)})
		}, status: 400, code: "malformed_header"},
		// signing.MaxHeaderLen (8 KiB) < this < Caddy's default header block limit (16 KiB).
		{name: "Authorization over the handler bound (10 KiB)", req: func() biRaw {
			return post("r", valid(order)+`,pad="`+strings.Repeat("p", 10<<10)+`"`, order)
		}, status: 400, code: "malformed_header"},
		// Caddy's own limit (max_header_size, 16 KiB by default) answers before gm_verify runs.
		{name: "Authorization over Caddy's header limit (20 KiB)", req: func() biRaw {
			return post("r", valid(order)+`,pad="`+strings.Repeat("p", 20<<10)+`"`, order)
		}, status: 431},
		{name: "17 parameters", req: func() biRaw {
			var ps []string
			for i := 0; i < 17; i++ {
				ps = append(ps, fmt.Sprintf(`p%d="x"`, i))
			}
			return post("r", auth(ps...), order)
		}, status: 400, code: "malformed_header"},
		{name: "header block of 1.1 MiB (Go's own limit is 1 MiB)", req: func() biRaw {
			return post("r", valid(order), order, [2]string{"X-Pad", strings.Repeat("p", 1100<<10)})
		}, status: 431},
		{name: "control character in a header value", req: func() biRaw {
			p := validParts()
			return post("r", with(p, "nonce_str", "a\x01b"), order)
		}, status: 400},
		{name: "non-base64 signature", req: func() biRaw { return post("r", with(validParts(), "signature", "@@not*base64@@"), order) }, status: 400, code: "malformed_header"},
		{name: "empty signature", req: func() biRaw { return post("r", with(validParts(), "signature", ""), order) }, status: 400, code: "malformed_header"},
		{name: "signature of wrong length", req: func() biRaw {
			return post("r", with(validParts(), "signature", base64.StdEncoding.EncodeToString([]byte("0123456789"))), order)
		}, status: 401, code: "bad_signature"},
		{name: "signature longer than any DER SM2 signature", req: func() biRaw {
			return post("r", with(validParts(), "signature", base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0x30}, 100))), order)
		}, status: 401, code: "bad_signature"},
		{name: "signature text over 1 KiB", req: func() biRaw {
			return post("r", with(validParts(), "signature", base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0x30}, 1500))), order)
		}, status: 400, code: "malformed_header"},
		{name: "timestamp not numeric", req: func() biRaw { return post("r", with(validParts(), "timestamp", "yesterday"), order) }, status: 400, code: "malformed_header"},
		{name: "timestamp overflowing int64", req: func() biRaw { return post("r", with(validParts(), "timestamp", "9999999999999999999"), order) }, status: 400, code: "malformed_header"},
		{name: "timestamp with 40 digits", req: func() biRaw { return post("r", with(validParts(), "timestamp", strings.Repeat("9", 40)), order) }, status: 400, code: "malformed_header"},
		{name: "timestamp negative", req: func() biRaw { return post("r", with(validParts(), "timestamp", "-1700000000"), order) }, status: 400, code: "malformed_header"},
		{name: "timestamp an hour old (validly signed)", req: func() biRaw {
			return post("r", g.sign(t, "POST", target, order, time.Now().Add(-time.Hour), nonce(), ""), order)
		}, status: 401, code: "timestamp_out_of_window"},
		{name: "timestamp an hour ahead (validly signed)", req: func() biRaw {
			return post("r", g.sign(t, "POST", target, order, time.Now().Add(time.Hour), nonce(), ""), order)
		}, status: 401, code: "timestamp_out_of_window"},
		{name: "timestamp zero (validly signed)", req: func() biRaw {
			return post("r", g.sign(t, "POST", target, order, time.Unix(0, 0), nonce(), ""), order)
		}, status: 401, code: "timestamp_out_of_window"},
		{name: "nonce empty", req: func() biRaw { return post("r", with(validParts(), "nonce_str", ""), order) }, status: 400, code: "malformed_header"},
		{name: "nonce too long (validly signed)", req: func() biRaw {
			return post("r", g.sign(t, "POST", target, order, time.Now(), strings.Repeat("n", 300), ""), order)
		}, status: 400, code: "malformed_header"},
		{name: "nonce with a tab", req: func() biRaw { return post("r", with(validParts(), "nonce_str", "a\tb"), order) }, status: 400, code: "malformed_header"},
		{name: "unknown serial (validly signed)", req: func() biRaw {
			return post("r", g.sign(t, "POST", target, order, time.Now(), nonce(), "ABCDEF0123456789"), order)
		}, status: 401, code: "unknown_key"},
		{name: "serial 1 KiB long", req: func() biRaw { return post("r", with(validParts(), "serial_no", strings.Repeat("F", 1024)), order) }, status: 401, code: "unknown_key"},
		{name: "body over max_body_size (Content-Length)", req: func() biRaw { return post("r", valid(bigBody), bigBody) }, status: 413, code: "body_too_large"},
		{name: "body over max_body_size (chunked)", req: func() biRaw {
			r := post("r", valid(bigBody), nil, [2]string{"Transfer-Encoding", "chunked"})
			r.body = chunk(fmt.Sprintf("%x\r\n", len(bigBody)), string(bigBody), "\r\n0\r\n\r\n")
			r.rawBody = true
			return r
		}, status: 413, code: "body_too_large"},
		{name: "Content-Length larger than the body (client closes)", req: func() biRaw {
			r := post("r", valid(order), order, [2]string{"Content-Length", strconv.Itoa(len(order) + 100)})
			r.halfClose = true
			return r
		}, status: 400, code: "malformed_header"},
		{name: "bad chunk size", req: func() biRaw {
			r := post("r", valid(order), nil, [2]string{"Transfer-Encoding", "chunked"})
			r.body = chunk("zz\r\n", string(order), "\r\n0\r\n\r\n")
			r.rawBody = true
			return r
		}, status: 400, code: "malformed_header"},
		{name: "chunk shorter than announced (client closes)", req: func() biRaw {
			r := post("r", valid(order), nil, [2]string{"Transfer-Encoding", "chunked"})
			r.body = chunk(fmt.Sprintf("%x\r\n", len(order)+50), string(order))
			r.rawBody, r.halfClose = true, true
			return r
		}, status: 400, code: "malformed_header"},
		// RFC 9112 6.3: Transfer-Encoding overrides Content-Length; Go's server does so and
		// removes Content-Length, and reverse_proxy frames the forwarded request itself, so the
		// back end sees one well-framed request (no smuggling). The signature covers the body.
		{name: "Content-Length and chunked together", req: func() biRaw {
			r := post("cl+chunked", valid(order), nil, [2]string{"Transfer-Encoding", "chunked"}, [2]string{"Content-Length", "5"})
			r.body = chunk(fmt.Sprintf("%x\r\n", len(order)), string(order), "\r\n0\r\n\r\n")
			r.rawBody = true
			return r
		}, status: 200, pass: true},
		{name: "body changed by one byte", req: func() biRaw { return post("r", valid(order), oneByte) }, status: 401, code: "bad_signature"},
		{name: "query changed", req: func() biRaw {
			r := post("r", valid(order), order)
			r.target += "?amount=1"
			return r
		}, status: 401, code: "bad_signature"},
		{name: "method changed", req: func() biRaw {
			r := post("r", valid(order), order)
			r.method = "PUT"
			return r
		}, status: 401, code: "bad_signature"},
		{name: "original of the replay", req: func() biRaw { return replayed }, status: 200, pass: true},
		{name: "replayed request", req: func() biRaw { return replayed }, status: 401, code: "replay"},
		{name: "forged identity headers are replaced", req: func() biRaw {
			return post("forged", valid(order), order,
				[2]string{"X-Gm-Client-Subject", "CN=forged"}, [2]string{"x-gm-client-serial", "0BADC0DE"},
				[2]string{"X-GM-VERIFY-SCHEME", "none"}, [2]string{"X-Gm-Client-Subject", "CN=second"},
				[2]string{"X-Gm-Anything", "forged"}, [2]string{"X-Gm_Client_Subject", "CN=underscore"},
				[2]string{"X_Gm_Client_Serial", "0BADC0DE"})
		}, status: 200, pass: true},
		{name: "envelope: body is not an envelope", addr: "env", req: func() biRaw { return post("r", valid(order), order) }, status: 400, code: "envelope_invalid"},
		{name: "envelope: addressed to someone else", addr: "env", req: func() biRaw {
			return post("r", valid(sealedForSomeoneElse), sealedForSomeoneElse)
		}, status: 400, code: "envelope_invalid"},
		{name: "envelope: last ciphertext byte flipped", addr: "env", req: func() biRaw { return post("r", valid(corrupted), corrupted) }, status: 400, code: "envelope_invalid"},
		{name: "envelope: Base64 garbage", addr: "env", req: func() biRaw {
			b := []byte("MIIB" + strings.Repeat("A", 64))
			return post("r", valid(b), b)
		}, status: 400, code: "envelope_invalid"},
		{name: "envelope: unsigned envelope", addr: "env", req: func() biRaw { return post("r", "", sealedOK) }, status: 401, code: "missing_signature"},
		{name: "envelope: valid", addr: "env", req: func() biRaw { return post("envelope", valid(sealedOK), sealedOK) }, status: 200, pass: true},
	}

	wantPassed := 0
	for _, tc := range rows {
		t.Run(tc.name, func(t *testing.T) {
			addr := g.addr
			if tc.addr == "env" {
				addr = g.envAddr
			}
			g.mu.Lock()
			before := len(g.seen)
			g.mu.Unlock()
			res := biSend(t, addr, tc.req())
			if res.status != tc.status {
				t.Fatalf("status %d, want %d: %.300s", res.status, tc.status, res.body)
			}
			for _, leak := range biLeaks {
				if bytes.Contains(bytes.ToLower(res.body), []byte(strings.ToLower(leak))) {
					t.Errorf("response body leaks %q: %.300s", leak, res.body)
				}
			}
			if tc.code != "" {
				var eb refusal.Body
				if err := json.Unmarshal(res.body, &eb); err != nil || string(eb.Code) != tc.code {
					t.Errorf("body %q (%v), want code %s", res.body, err, tc.code)
				}
				if eb.Message != gateway.Code(tc.code).Message() {
					t.Errorf("message %q, want the fixed %q", eb.Message, gateway.Code(tc.code).Message())
				}
				if ct := res.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
					t.Errorf("Content-Type %q", ct)
				}
			}
			g.mu.Lock()
			after := len(g.seen)
			g.mu.Unlock()
			if tc.pass {
				wantPassed++
				if after != before+1 {
					t.Fatalf("the back end saw %d requests, want 1", after-before)
				}
			} else if after != before {
				t.Fatalf("a rejected request reached the back end")
			}
		})
	}

	// The gateway still serves: a valid signed request is accepted.
	final := post("final", valid(order), order)
	res := biSend(t, g.addr, final)
	if res.status != http.StatusOK || res.header.Get(signing.HeaderWechatpaySignature) == "" {
		t.Fatalf("valid request after the table: %d %s", res.status, res.body)
	}
	wantPassed++

	// A configuration reload does not forget the nonces: the same request is still a replay.
	cfgText, err := os.ReadFile(filepath.Join(inst.dir, "Caddyfile"))
	if err != nil {
		t.Fatal(err)
	}
	load, _ := http.NewRequest(http.MethodPost, "http://"+inst.admin+"/load", bytes.NewReader(cfgText))
	load.Header.Set("Content-Type", "text/caddyfile")
	load.Header.Set("Cache-Control", "must-revalidate") // reload even though the config is unchanged
	lr, err := http.DefaultClient.Do(load)
	if err != nil {
		t.Fatal(err)
	}
	lb, _ := io.ReadAll(lr.Body)
	lr.Body.Close()
	if lr.StatusCode != http.StatusOK {
		t.Fatalf("reload: %d %s", lr.StatusCode, lb)
	}
	// The old server may close a connection it accepted while shutting down (Caddy's listener is
	// shared during the switch): try again then. Had such a request reached the back end, the
	// request count below would show it.
	var after biResult
	for attempt := 0; ; attempt++ {
		if after, err = biTrySend(g.addr, final); err == nil || attempt == 4 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	if after.status != http.StatusUnauthorized || !bytes.Contains(after.body, []byte(`"replay"`)) {
		t.Fatalf("replay after a reload: %d %s", after.status, after.body)
	}

	g.mu.Lock()
	seen := append([]biSeen(nil), g.seen...)
	g.mu.Unlock()
	if len(seen) != wantPassed {
		t.Fatalf("the back end saw %d requests, want exactly the %d accepted ones", len(seen), wantPassed)
	}
	subject := g.cert.Subject.String()
	for _, s := range seen {
		switch s.row {
		case "r":
			t.Fatalf("a rejected row reached the back end: %v", s.header)
		case "envelope":
			if !bytes.Equal(s.body, order) {
				t.Errorf("envelope row: back end got %q, want the plaintext", s.body)
			}
		default:
			if !bytes.Equal(s.body, order) {
				t.Errorf("row %s: back end got %q", s.row, s.body)
			}
		}
		if s.header.Get("Authorization") == "" {
			t.Errorf("row %s: Authorization not forwarded", s.row)
		}
		for name, vs := range s.header {
			norm := http.CanonicalHeaderKey(strings.ReplaceAll(name, "_", "-"))
			if !strings.HasPrefix(norm, "X-Gm-") {
				continue
			}
			want := map[string]string{"X-Gm-Client-Subject": subject, "X-Gm-Client-Serial": serial,
				"X-Gm-Verify-Scheme": signing.WechatPayName}[name]
			if want == "" || len(vs) != 1 || vs[0] != want {
				t.Errorf("row %s: back end saw %s: %q", s.row, name, vs)
			}
		}
		if s.header.Get("X-Gm-Client-Subject") != subject || s.header.Get("X-Gm-Client-Serial") != serial {
			t.Errorf("row %s: identity headers %v", s.row, s.header)
		}
	}
}
