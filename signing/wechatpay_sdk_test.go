package signing

import (
	"context"
	"errors"
	"github.com/gmgate/gmgate/internal/wechatsdk"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wechatpay-apiv3/wechatpay-go/core"
	"github.com/wechatpay-apiv3/wechatpay-go/core/option"
)

// Independent client: the official WeChat Pay Go SDK github.com/wechatpay-apiv3/wechatpay-go
// v0.2.21. It has no SM2 of its own; these two adapters plug gmsm into its auth.Signer and
// auth.Verifier interfaces, and the SDK does everything else (signed string, Authorization
// header, reply validation).

func TestWechatPaySDKInterop(t *testing.T) {
	merchant, platform, rogue := newKey(t), newKey(t), newKey(t)
	const mchID, mchSerial, platSerial = "1900000001", "3775B6A45ACD588826D15E583A95F5DD********", "PUB_KEY_ID_0114232134912410000000"
	scheme := NewWechatPay()

	var mu sync.Mutex
	var seenAuth []string
	replyKey := platform
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		m := &Message{Kind: Request, Method: r.Method, Target: r.RequestURI, Authority: r.Host, Scheme: "http",
			Header: r.Header, Body: body}
		sd, err := scheme.Parse(m)
		if err == nil {
			if sd.KeyID != mchSerial || sd.MerchantID != mchID {
				err = errors.New("wrong identity")
			} else {
				err = scheme.Verify(sd, &merchant.PublicKey)
			}
		}
		mu.Lock()
		seenAuth = append(seenAuth, r.Header.Get("Authorization"))
		k := replyKey
		mu.Unlock()
		if err != nil {
			http.Error(w, `{"code":"SIGN_ERROR","message":"`+err.Error()+`"}`, http.StatusUnauthorized)
			return
		}
		if time.Since(sd.Timestamp).Abs() > 5*time.Minute {
			http.Error(w, "stale", http.StatusUnauthorized)
			return
		}
		reply := &Message{Kind: Response, Status: 200, Header: http.Header{}, Body: []byte(`{"code_url":"weixin://wxpay/bizpayurl?pr=abc","echo_nonce":"` + sd.Nonce + `"}`)}
		if err := scheme.Sign(reply, Key{Signer: k, KeyID: platSerial}, time.Now(), ""); err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		for name, vs := range reply.Header {
			w.Header()[name] = vs
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(200)
		_, _ = w.Write(reply.Body)
	})
	srv := httptest.NewServer(handler)
	defer srv.Close()

	ctx := context.Background()
	client, err := core.NewClient(ctx,
		option.WithSigner(&wechatsdk.Signer{MchID: mchID, Serial: mchSerial, Key: merchant}),
		option.WithVerifier(&wechatsdk.Verifier{Serial: platSerial, Pub: &platform.PublicKey}),
		option.WithHTTPClient(srv.Client()),
	)
	if err != nil {
		t.Fatal(err)
	}

	// POST with a JSON body and a query string.
	res, err := client.Post(ctx, srv.URL+"/v3/pay/transactions/native?sub=1",
		map[string]any{"mchid": mchID, "out_trade_no": "GM20251125000001", "amount": map[string]any{"total": 100, "currency": "CNY"}})
	if err != nil {
		t.Fatalf("SDK POST: %v", err)
	}
	body, _ := io.ReadAll(res.Response.Body)
	if !strings.Contains(string(body), "weixin://wxpay") {
		t.Fatalf("reply %s", body)
	}
	// GET without a body.
	if _, err := client.Get(ctx, srv.URL+"/v3/certificates"); err != nil {
		t.Fatalf("SDK GET: %v", err)
	}

	mu.Lock()
	auths := append([]string(nil), seenAuth...)
	mu.Unlock()
	if len(auths) != 2 {
		t.Fatalf("server saw %d requests", len(auths))
	}
	for _, a := range auths {
		// Exactly what the SDK sends: "WECHATPAY2-" + Algorithm(), fixed parameter order.
		prefix := `WECHATPAY2-SM2-WITH-SM3 mchid="` + mchID + `",nonce_str="`
		if !strings.HasPrefix(a, prefix) || !strings.Contains(a, `",serial_no="`+mchSerial+`",signature="`) {
			t.Fatalf("SDK Authorization %q", a)
		}
	}

	// The SDK must reject a reply our Sign made with a key it does not trust.
	mu.Lock()
	replyKey = rogue
	mu.Unlock()
	if _, err := client.Get(ctx, srv.URL+"/v3/certificates"); err == nil {
		t.Fatal("SDK accepted a reply signed by an untrusted key")
	}

	// Our verifier must reject a request the SDK signed with a key it does not trust.
	mu.Lock()
	replyKey = platform
	mu.Unlock()
	bad, err := core.NewClient(ctx,
		option.WithSigner(&wechatsdk.Signer{MchID: mchID, Serial: mchSerial, Key: rogue}),
		option.WithVerifier(&wechatsdk.Verifier{Serial: platSerial, Pub: &platform.PublicKey}),
		option.WithHTTPClient(srv.Client()),
	)
	if err != nil {
		t.Fatal(err)
	}
	_, err = bad.Get(ctx, srv.URL+"/v3/certificates")
	var apiErr *core.APIError
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusUnauthorized {
		t.Fatalf("rogue-signed request: want 401 APIError, got %v", err)
	}
}
