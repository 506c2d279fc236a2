package signing

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/dunglas/httpsfv"
)

// RFC 9421 §2.5 example: the signature base built from the Signature-Input must match the RFC's
// text byte for byte.
func TestRFC9421SignatureBase(t *testing.T) {
	m := &Message{Kind: Request, Method: "POST", Target: "/foo?param=Value&Pet=dog", Authority: "example.com",
		Header: http.Header{
			"Date":           {"Tue, 20 Apr 2021 02:07:55 GMT"},
			"Content-Type":   {"application/json"},
			"Content-Digest": {"sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:"},
			"Content-Length": {"18"},
		}, Body: []byte(`{"hello": "world"}`)}
	in := `sig1=("@method" "@authority" "@path" "content-digest" "content-length" "content-type");created=1618884473;keyid="test-key-rsa-pss"`
	d, err := httpsfv.UnmarshalDictionary([]string{in})
	if err != nil {
		t.Fatal(err)
	}
	mem, _ := d.Get("sig1")
	base, _, err := signatureBase(m, mem.(httpsfv.InnerList))
	if err != nil {
		t.Fatal(err)
	}
	want := `"@method": POST
"@authority": example.com
"@path": /foo
"content-digest": sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:
"content-length": 18
"content-type": application/json
"@signature-params": ("@method" "@authority" "@path" "content-digest" "content-length" "content-type");created=1618884473;keyid="test-key-rsa-pss"`
	if string(base) != want {
		t.Fatalf("signature base:\n%s\nwant:\n%s", base, want)
	}
}

// RFC 9421 §2.2 derived component examples.
func TestDerivedComponents(t *testing.T) {
	m := &Message{Method: "POST", Target: "/path?param=value&foo=bar&baz=bat%2Dman", Authority: "www.Example.com:443", Scheme: "https"}
	for name, want := range map[string]string{
		"@method":         "POST",
		"@target-uri":     "https://www.example.com/path?param=value&foo=bar&baz=bat%2Dman",
		"@authority":      "www.example.com",
		"@scheme":         "https",
		"@request-target": "/path?param=value&foo=bar&baz=bat%2Dman",
		"@path":           "/path",
		"@query":          "?param=value&foo=bar&baz=bat%2Dman",
	} {
		got, err := componentValue(m, name)
		if err != nil || got != want {
			t.Errorf("%s = %q (%v), want %q", name, got, err, want)
		}
	}
	if got, _ := componentValue(&Message{Target: "/path"}, "@query"); got != "?" {
		t.Errorf("empty @query = %q", got)
	}
	if got, _ := componentValue(&Message{Kind: Response, Status: 200}, "@status"); got != "200" {
		t.Errorf("@status = %q", got)
	}
	// Multiple field lines are trimmed and joined with ", " (RFC 9421 §2.1).
	h := &Message{Header: http.Header{"X-Multi": {" a ", "b\t"}}}
	if got, _ := componentValue(h, "x-multi"); got != "a, b" {
		t.Errorf("combined field = %q", got)
	}
	for _, bad := range []string{"@unknown", "X-Upper", "@status"} {
		if _, err := componentValue(m, bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func replaceHeader(m *Message, name, old, new string) {
	m.Header.Set(name, strings.Replace(m.Header.Get(name), old, new, 1))
}

func TestHTTPSigRequest(t *testing.T) {
	priv, other := newKey(t), newKey(t)
	s := NewHTTPSig()
	key := Key{Signer: priv, KeyID: "merchant-key-1"}
	mk := func() *Message {
		return &Message{Kind: Request, Method: "POST", Target: "/v3/pay?x=1", Authority: "pay.example.com", Scheme: "https",
			Header: http.Header{"Content-Type": {"application/json"}}, Body: []byte(`{"amount":100}`)}
	}
	m := mk()
	if err := s.Sign(m, key, testNow, "n-1"); err != nil {
		t.Fatal(err)
	}
	wantIn := `sig1=("@method" "@target-uri" "content-digest");created=1764000000;nonce="n-1";keyid="merchant-key-1"`
	if got := m.Header.Get("Signature-Input"); got != wantIn {
		t.Fatalf("Signature-Input %q", got)
	}
	if m.Header.Get("Content-Digest") != ContentDigest(m.Body) {
		t.Fatal("content digest not set")
	}
	sd, err := parseVerify(s, m, &priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	wantBase := "\"@method\": POST\n\"@target-uri\": https://pay.example.com/v3/pay?x=1\n\"content-digest\": " +
		ContentDigest(m.Body) + "\n\"@signature-params\": " + strings.TrimPrefix(wantIn, "sig1=")
	if string(sd.SignedBytes) != wantBase {
		t.Fatalf("base %q", sd.SignedBytes)
	}
	if len(sd.Signature) != 64 || sd.Encoding != Raw || sd.KeyID != "merchant-key-1" || sd.Nonce != "n-1" ||
		!sd.Timestamp.Equal(testNow) || sd.Params["label"] != "sig1" {
		t.Fatalf("%+v", sd)
	}
	noDigest := NewHTTPSig(WithRequiredComponents(Request, "@method", "@target-uri"))
	runTampers(t, s, mk, key, &priv.PublicKey, []tamper{
		{"method", func(m *Message) { m.Method = "PUT" }, nil, ErrBadSignature},
		{"target", func(m *Message) { m.Target = "/v3/pay?x=2" }, nil, ErrBadSignature},
		{"authority", func(m *Message) { m.Authority = "evil.example.com" }, nil, ErrBadSignature},
		{"scheme", func(m *Message) { m.Scheme = "http" }, nil, ErrBadSignature},
		{"body", func(m *Message) { m.Body = []byte(`{"amount":999}`) }, nil, ErrDigestMismatch},
		{"body and digest", func(m *Message) {
			m.Body = []byte(`{"amount":999}`)
			m.Header.Set("Content-Digest", ContentDigest(m.Body))
		}, nil, ErrBadSignature},
		{"created", func(m *Message) { replaceHeader(m, "Signature-Input", "created=1764000000", "created=1764000001") }, nil, ErrBadSignature},
		{"nonce", func(m *Message) {
			replaceHeader(m, "Signature-Input", `nonce="NONCE0123456789"`, `nonce="NONCE0123456788"`)
		}, nil, ErrBadSignature},
		{"keyid", func(m *Message) {
			replaceHeader(m, "Signature-Input", `keyid="merchant-key-1"`, `keyid="merchant-key-2"`)
		}, nil, ErrBadSignature},
		{"alg sm2-sm3 added", func(m *Message) { m.Header.Set("Signature-Input", m.Header.Get("Signature-Input")+`;alg="sm2-sm3"`) }, nil, ErrBadSignature},
		{"alg rsa", func(m *Message) {
			m.Header.Set("Signature-Input", m.Header.Get("Signature-Input")+`;alg="rsa-pss-sha512"`)
		}, nil, ErrUnsupportedAlgorithm},
		{"signature bit", func(m *Message) {
			d, _ := httpsfv.UnmarshalDictionary(m.Header.Values("Signature"))
			mem, _ := d.Get("sig1")
			sig := mem.(httpsfv.Item).Value.([]byte)
			d.Add("sig1", httpsfv.NewItem(flipByte(sig, 3)))
			v, _ := httpsfv.Marshal(d)
			m.Header.Set("Signature", v)
		}, nil, ErrBadSignature},
		{"signature short", func(m *Message) { m.Header.Set("Signature", "sig1=:AAAA:") }, nil, ErrBadSignature},
		{"other key", nil, &other.PublicKey, ErrBadSignature},
		{"unsigned header added", func(m *Message) { m.Header.Set("X-Extra", "1") }, nil, nil},
		{"no signature headers", func(m *Message) { m.Header.Del("Signature"); m.Header.Del("Signature-Input") }, nil, ErrMissingSignature},
		{"no Signature", func(m *Message) { m.Header.Del("Signature") }, nil, ErrMalformedHeader},
		{"garbage input", func(m *Message) { m.Header.Set("Signature-Input", "sig1=((") }, nil, ErrMalformedHeader},
		{"item not list", func(m *Message) { m.Header.Set("Signature-Input", "sig1=1") }, nil, ErrMalformedHeader},
		{"digest removed", func(m *Message) { m.Header.Del("Content-Digest") }, nil, ErrMissingComponent},
		{"digest sha-256 only", func(m *Message) { m.Header.Set("Content-Digest", "sha-256=:AAAA:") }, nil, ErrUnsupportedAlgorithm},
		{"digest not covered", func(m *Message) {
			if err := noDigest.Sign(m, key, testNow, "n"); err != nil {
				panic(err)
			}
		}, nil, ErrMissingComponent},
		{"component params", func(m *Message) { replaceHeader(m, "Signature-Input", `"content-digest"`, `"content-digest";sf`) }, nil, ErrMalformedHeader},
		{"duplicate component", func(m *Message) { replaceHeader(m, "Signature-Input", `"@method"`, `"@method" "@method"`) }, nil, ErrMalformedHeader},
		{"no created", func(m *Message) { replaceHeader(m, "Signature-Input", `;created=1764000000`, ``) }, nil, ErrMissingComponent},
		{"no keyid", func(m *Message) { replaceHeader(m, "Signature-Input", `;keyid="merchant-key-1"`, ``) }, nil, ErrMissingComponent},
		{"other label only", func(m *Message) {
			replaceHeader(m, "Signature-Input", "sig1=", "pay=")
			replaceHeader(m, "Signature", "sig1=", "pay=")
		}, nil, nil},
		{"two labels, none sig1", func(m *Message) {
			replaceHeader(m, "Signature-Input", "sig1=", "a=")
			m.Header.Set("Signature-Input", m.Header.Get("Signature-Input")+", b=()")
		}, nil, ErrMissingSignature},
	})
}

func TestHTTPSigResponse(t *testing.T) {
	priv := newKey(t)
	s := NewHTTPSig()
	key := Key{Signer: priv, KeyID: "platform-1"}
	mk := func() *Message {
		return &Message{Kind: Response, Status: 200, Header: http.Header{}, Body: []byte(`{"ok":true}`)}
	}
	m := mk()
	if err := s.Sign(m, key, testNow, "r"); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(m.Header.Get("Signature-Input"), `sig1=("@status" "content-digest")`) {
		t.Fatal(m.Header.Get("Signature-Input"))
	}
	runTampers(t, s, mk, key, &priv.PublicKey, []tamper{
		{"status", func(m *Message) { m.Status = 500 }, nil, ErrBadSignature},
		{"body", func(m *Message) { m.Body = []byte(`{"ok":false}`) }, nil, ErrDigestMismatch},
		{"empty body", func(m *Message) { m.Body = nil }, nil, ErrDigestMismatch},
	})
}

func TestHTTPSigVariants(t *testing.T) {
	priv := newKey(t)
	for i, opts := range [][]Option{
		{WithSignatureEncoding(DER)},
		{WithUserID([]byte("merchant-42"))},
		{WithUserIDMode(UserIDFromKeyID)},
		{WithLabel("gm"), WithRequiredComponents(Request, "@method", "@authority", "@path", "@query", "content-type", "content-digest")},
	} {
		s := NewHTTPSig(opts...)
		m := &Message{Method: "POST", Target: "/a?b=c", Authority: "h", Header: http.Header{"Content-Type": {"text/plain"}}, Body: []byte("x")}
		if err := s.Sign(m, Key{Signer: priv, KeyID: "k"}, testNow, ""); err != nil {
			t.Fatal(err)
		}
		if _, err := parseVerify(s, m, &priv.PublicKey); err != nil {
			t.Fatalf("variant %d: %v", i, err)
		}
		if _, err := parseVerify(NewHTTPSig(), m, &priv.PublicKey); err == nil {
			t.Fatalf("default scheme accepted variant %d", i)
		}
	}
	// A hand-built Signed claiming content-digest coverage without digests never verifies.
	s := &Signed{Params: map[string]string{"components": "@method content-digest"}}
	if err := NewHTTPSig().Verify(s, &priv.PublicKey); !errors.Is(err, ErrDigestMismatch) {
		t.Fatal(err)
	}
}
