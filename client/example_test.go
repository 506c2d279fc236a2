package client_test

import (
	"context"
	"crypto/ecdsa"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/client"
	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/signing"
)

// A payment terminal sends a signed payment instruction (wechatpay-v3-sm2) and gets back a
// reply that is accepted only because the platform signed it. In production the terminal
// loads its identity with client.LoadTerminal, the platform certificate with
// client.LoadCertificates, and sets Config.TLCP to dial the gateway over TLCP.
func Example_signedPayment() {
	// Test PKI: a terminal signing certificate and a platform signing certificate.
	ca, _, err := pki.NewRootCA(pki.IssueOptions{CommonName: "example root"})
	if err != nil {
		log.Fatal(err)
	}
	terminal, err := ca.IssueClientPair(pki.IssueOptions{CommonName: "terminal 0001"})
	if err != nil {
		log.Fatal(err)
	}
	platform, err := ca.IssuePlatform(pki.IssueOptions{CommonName: "payment platform"})
	if err != nil {
		log.Fatal(err)
	}

	// A stand-in for the gateway: verify the terminal's signature, sign the reply.
	scheme := signing.NewWechatPay()
	gateway := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		s, err := scheme.Parse(&signing.Message{Kind: signing.Request, Method: r.Method,
			Target: r.RequestURI, Header: r.Header, Body: body})
		if err == nil {
			err = scheme.Verify(s, terminal.Sign.Cert.PublicKey.(*ecdsa.PublicKey))
		}
		if err != nil {
			http.Error(w, `{"code":"bad_signature"}`, http.StatusUnauthorized)
			return
		}
		reply := &signing.Message{Kind: signing.Response, Status: 200, Header: w.Header(),
			Body: []byte(`{"trade_state":"SUCCESS"}`)}
		_ = scheme.Sign(reply, signing.Key{Signer: platform.Key, Cert: platform.Cert}, time.Now(), "")
		w.Write(reply.Body)
	}))
	defer gateway.Close()

	// The terminal.
	c, err := client.New(client.Config{
		BaseURL:       gateway.URL,
		Scheme:        signing.WechatPayName,
		Key:           signing.Key{Signer: terminal.Sign.Key, Cert: terminal.Sign.Cert, MerchantID: "1900000001"},
		PlatformCerts: []*smx509.Certificate{platform.Cert},
	})
	if err != nil {
		log.Fatal(err)
	}
	resp, err := c.Post(context.Background(), "/v3/pay/transactions/native", "application/json",
		[]byte(`{"out_trade_no":"T0001","amount":{"total":100}}`))
	if err != nil {
		log.Fatal(err) // errors.Is(err, client.ErrReplySignatureInvalid), ErrReplyStale...
	}
	fmt.Println(resp.StatusCode, string(resp.Body))
	fmt.Println("signed by:", resp.Reply.Subject)
	fmt.Println("evidence:", len(resp.Reply.SignedSM3), "byte SM3 digest and a signature of the platform")
	// Output:
	// 200 {"trade_state":"SUCCESS"}
	// signed by: CN=payment platform
	// evidence: 32 byte SM3 digest and a signature of the platform
}
