package gateway

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/envelope"
	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/signing"
)

func TestResolveEnvelopeOrder(t *testing.T) {
	for _, tc := range []struct {
		in     envelope.Order
		scheme string
		want   envelope.Order
		ok     bool
	}{
		{envelope.OrderAuto, signing.WechatPayName, envelope.SealThenSign, true},
		{envelope.OrderAuto, signing.HTTPSigName, envelope.SealThenSign, true},
		{envelope.OrderAuto, signing.FormName, envelope.SignThenSeal, true},
		{envelope.OrderAuto, signing.UnionPayName, envelope.SignThenSeal, true},
		{envelope.SignThenSeal, signing.WechatPayName, envelope.SignThenSeal, true},
		{envelope.SealThenSign, signing.FormName, 0, false},
		{envelope.SealThenSign, signing.UnionPayName, 0, false},
		{envelope.Order(9), signing.WechatPayName, 0, false},
	} {
		got, err := envelope.Resolve(tc.in, signing.SignsInHeader(tc.scheme))
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("%v %s: %v %v", tc.in, tc.scheme, got, err)
		}
	}
	for s, want := range map[string]envelope.Order{"": envelope.OrderAuto, "auto": envelope.OrderAuto, "seal_then_sign": envelope.SealThenSign,
		"Sign-Then-Seal": envelope.SignThenSeal} {
		if got, err := envelope.ParseOrder(s); err != nil || got != want || (s != "" && want.String() != s && s != "Sign-Then-Seal") {
			t.Errorf("envelope.ParseOrder(%q) = %v %v", s, got, err)
		}
	}
	if _, err := envelope.ParseOrder("sometimes"); err == nil {
		t.Error("envelope.ParseOrder accepted an unknown order")
	}
}

// orderScheme returns a request body and content type typical of scheme.
func orderBody(scheme string) (string, []byte) {
	switch scheme {
	case signing.FormName:
		return "application/x-www-form-urlencoded", []byte("out_trade_no=T1&total_amount=1.00&subject=coffee")
	case signing.UnionPayName:
		return "application/x-www-form-urlencoded", []byte("txnType=01&txnAmt=100&currencyCode=156&orderId=T1")
	}
	return "application/json", []byte(`{"out_trade_no":"T1","amount":{"total":100}}`)
}

// clientRequest builds a request the way the client SDK does: seal-then-sign (signature over
// the envelope, sent with the envelope Content-Type) or sign-then-seal (signature over the
// plaintext with its own Content-Type, then sealed).
func clientRequest(t *testing.T, p *testPKI, enc *smx509.Certificate, scheme string, order envelope.Order) (*http.Request, []byte) {
	t.Helper()
	sch, err := signing.Lookup(scheme)
	if err != nil {
		t.Fatal(err)
	}
	ct, body := orderBody(scheme)
	h := http.Header{"Content-Type": {ct}}
	m := &signing.Message{Kind: signing.Request, Method: "POST", Target: "/pay?x=1", Authority: "gw.example", Scheme: "http",
		Header: h, Body: body}
	seal := func() {
		sealed, err := envelope.Seal(m.Body, enc, envelope.SealOptions{GCM: order == envelope.SignThenSeal}) // as client.Transport
		if err != nil {
			t.Fatal(err)
		}
		h.Set(envelope.HeaderInnerContentType, h.Get("Content-Type"))
		h.Set("Content-Type", envelope.ContentType)
		m.Body = sealed
	}
	if order == envelope.SealThenSign {
		seal()
	}
	k := signing.Key{Signer: p.good.Sign.Key, Cert: p.good.Sign.Cert, MerchantID: testMchID}
	if scheme != signing.UnionPayName {
		k.KeyID = signing.SerialHex(p.good.Sign.Cert.SerialNumber)
	}
	if err := sch.Sign(m, k, time.Now(), ""); err != nil {
		t.Fatal(err)
	}
	plain := m.Body
	if order == envelope.SignThenSeal {
		seal()
	} else {
		plain = body
	}
	r := httptest.NewRequest("POST", "/pay?x=1", bytes.NewReader(m.Body))
	r.Host = "gw.example"
	r.Header = h
	return r, plain
}

// TestEnvelopeOrderAgreement: for every scheme and each order it allows, a request sealed as
// the client SDK seals it is verified and opened, and the back end gets the plaintext with its
// own Content-Type; the other order is refused. Replies are sealed in the same order and
// verify in the mirror order.
func TestEnvelopeOrderAgreement(t *testing.T) {
	p := newTestPKI(t)
	platEnc, err := p.root.IssueServerPair(pki.IssueOptions{CommonName: "platform enc"})
	if err != nil {
		t.Fatal(err)
	}
	opener := &envelope.Opener{Cert: platEnc.Enc.Cert, Key: platEnc.Enc.Key}
	for _, scheme := range signing.Names() {
		orders := []envelope.Order{envelope.SignThenSeal}
		if signing.SignsInHeader(scheme) {
			orders = append(orders, envelope.SealThenSign)
		}
		for _, order := range orders {
			for _, configured := range []envelope.Order{envelope.OrderAuto, order} {
				if configured == envelope.OrderAuto && ((signing.SignsInHeader(scheme) && order != envelope.SealThenSign) || (!signing.SignsInHeader(scheme) && order != envelope.SignThenSeal)) {
					continue // auto picks the other order; covered by the mismatch check
				}
				t.Run(scheme+"/"+order.String()+"/configured-"+configured.String(), func(t *testing.T) {
					sch, _ := signing.Lookup(scheme)
					v := newTestVerifier(t, p, func(o *VerifierOptions) {
						o.Scheme, o.Opener, o.EnvelopeOrder = sch, opener, configured
					})
					if v.EnvelopeOrder() != order {
						t.Fatalf("resolved order %v", v.EnvelopeOrder())
					}
					r, plain := clientRequest(t, p, platEnc.Enc.Cert, scheme, order)
					wantCT := r.Header.Get(envelope.HeaderInnerContentType)
					res, err := v.Verify(context.Background(), r, nil)
					if err != nil || !res.Opened {
						t.Fatalf("Verify: %v", err)
					}
					got, _ := io.ReadAll(r.Body)
					if !bytes.Equal(got, plain) || r.Header.Get("Content-Type") != wantCT || r.Header.Get(envelope.HeaderInnerContentType) != "" {
						t.Fatalf("forwarded %q with %v", got, r.Header)
					}
					// The other order is refused.
					if signing.SignsInHeader(scheme) {
						other := envelope.SealThenSign + envelope.SignThenSeal - order
						r, _ := clientRequest(t, p, platEnc.Enc.Cert, scheme, other)
						if _, err := v.Verify(context.Background(), r, nil); err == nil {
							t.Fatalf("a %v request accepted by a %v verifier", other, order)
						}
					}
					// The reply, sealed for the client in the same order.
					rs := &ReplySigner{Signer: p.platform.Key, Cert: p.platform.Cert, Order: configured,
						Seal: func(b []byte, c *smx509.Certificate) ([]byte, error) {
							return envelope.Seal(b, c, envelope.SealOptions{})
						}}
					rct, rbody := orderBody(scheme)
					rh := http.Header{"Content-Type": {rct}}
					out, err := rs.Sign(sch, 200, rh, rbody, p.good.Enc.Cert)
					if err != nil {
						t.Fatal(err)
					}
					if rh.Get("Content-Type") != envelope.ContentType || rh.Get(envelope.HeaderInnerContentType) != rct {
						t.Fatalf("reply headers %v", rh)
					}
					clientOpen := &envelope.Opener{Cert: p.good.Enc.Cert, Key: p.good.Enc.Key}
					signed, vh := out, rh
					if order == envelope.SignThenSeal { // open first, verify the plaintext with its own type
						if signed, err = clientOpen.Open(out); err != nil {
							t.Fatal(err)
						}
						vh = rh.Clone()
						envelope.RestoreContentType(vh)
					}
					sd, err := sch.Parse(&signing.Message{Kind: signing.Response, Status: 200, Header: vh, Body: signed})
					if err != nil {
						t.Fatalf("reply parse: %v", err)
					}
					if err := sch.Verify(sd, &p.platform.Key.PublicKey); err != nil {
						t.Fatalf("reply verify: %v", err)
					}
					if order == envelope.SealThenSign {
						if signed, err = clientOpen.Open(out); err != nil {
							t.Fatal(err)
						}
						if !bytes.Equal(signed, rbody) {
							t.Fatalf("reply opened to %q", signed)
						}
					}
				})
			}
		}
	}
	// A body scheme cannot be configured seal-then-sign.
	_, err = NewVerifier(VerifierOptions{Scheme: signing.NewForm(), Identities: p.identities,
		Replay: &ReplayGuard{Store: NewMemoryReplayStore(MemoryReplayOptions{})}, Opener: opener, EnvelopeOrder: envelope.SealThenSign})
	if err == nil {
		t.Fatal("form-sm2 with seal_then_sign accepted")
	}
}
