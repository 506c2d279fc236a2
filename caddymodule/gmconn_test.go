package caddymodule

import (
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/gateway"
	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/tlcp"
	"github.com/gmgate/gmgate/tls13sm"
)

// TestUnverifiedClientCertificateIsNoIdentity: a client certificate whose chain was not
// verified (client_auth request or require: whatever the client sent, a rogue self-issued one
// included) is no identity on either protocol: no {gm.tls.client.*}, nothing for
// bind_tls_client to match. A verified one is the identity, the same fields on both.
func TestUnverifiedClientCertificateIsNoIdentity(t *testing.T) {
	ca, _, err := pki.NewRootCA(pki.IssueOptions{CommonName: "terminal root"})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := ca.IssueClientPair(pki.IssueOptions{CommonName: "terminal-0042"})
	if err != nil {
		t.Fatal(err)
	}
	leaf := pair.Sign.Cert
	chain := [][]*smx509.Certificate{{leaf, ca.Cert}}
	for _, c := range []struct {
		name     string
		view     *connView
		verified bool
	}{
		{"tls13sm/verified", tls13smView(tls13sm.ConnectionState{Version: 0x0304, CipherSuite: tls13sm.TLS_SM4_GCM_SM3,
			PeerCertificates: []*smx509.Certificate{leaf}, VerifiedChains: chain}), true},
		{"tls13sm/unverified", tls13smView(tls13sm.ConnectionState{Version: 0x0304, CipherSuite: tls13sm.TLS_SM4_GCM_SM3,
			PeerCertificates: []*smx509.Certificate{leaf}}), false},
		{"tls13sm/none", tls13smView(tls13sm.ConnectionState{Version: 0x0304, CipherSuite: tls13sm.TLS_SM4_GCM_SM3}), false},
		{"tlcp/verified", tlcpView(tlcp.ConnectionState{Version: 0x0101, CipherSuite: tlcp.ECC_SM4_GCM_SM3,
			PeerCertificates: []*smx509.Certificate{leaf, pair.Enc.Cert}, PeerSignCertificate: leaf,
			PeerEncCertificate: pair.Enc.Cert, VerifiedChains: chain}), true},
		{"tlcp/unverified", tlcpView(tlcp.ConnectionState{Version: 0x0101, CipherSuite: tlcp.ECC_SM4_GCM_SM3,
			PeerCertificates: []*smx509.Certificate{leaf, pair.Enc.Cert}}), false},
	} {
		v := c.view
		if !c.verified {
			if v.client != nil || v.clientSubject != "" || v.clientSerial != "" || v.clientSM3 != "" {
				t.Fatalf("%s: an unverified certificate is an identity: %+v", c.name, v)
			}
			continue
		}
		if v.client != leaf || v.clientSubject != leaf.Subject.String() || v.clientSM3 != pki.FingerprintSM3(leaf) || v.clientSerial == "" {
			t.Fatalf("%s: identity %+v", c.name, v)
		}
	}
}

// TestBindTLSClientNames: bind_tls_client and its older name bind_tlcp_client are one option:
// either sets the binding, both must agree, and a bad value is refused at parse and validation.
func TestBindTLSClientNames(t *testing.T) {
	for _, c := range []struct {
		caddyfile string
		want      gateway.Binding
		ok        bool
	}{
		{"gm_verify {\n bind_tls_client cert\n}", gateway.BindCertificate, true},
		{"gm_verify {\n bind_tlcp_client subject\n}", gateway.BindSubject, true},
		{"gm_verify {\n bind_tls_client cert\n bind_tlcp_client certificate\n}", gateway.BindCertificate, true},
		{"gm_verify {\n}", gateway.BindNone, true},
		{"gm_verify {\n bind_tls_client cert\n bind_tlcp_client subject\n}", 0, false},
		{"gm_verify {\n bind_tls_client none\n bind_tlcp_client subject\n}", 0, false},
	} {
		var v Verify
		if err := v.UnmarshalCaddyfile(caddyfile.NewTestDispenser(c.caddyfile)); err != nil {
			t.Fatalf("%q: %v", c.caddyfile, err)
		}
		b, err := v.binding()
		if verr := v.Validate(); (verr == nil) != c.ok || (err == nil) != c.ok || (c.ok && b != c.want) {
			t.Fatalf("%q: binding %v %v, validate %v", c.caddyfile, b, err, verr)
		}
	}
	var v Verify
	if err := v.UnmarshalCaddyfile(caddyfile.NewTestDispenser("gm_verify {\n bind_tls_client sometimes\n}")); err == nil {
		t.Fatal("bind_tls_client sometimes accepted")
	}
	if err := (&Verify{BindTLSClient: "sometimes"}).Validate(); err == nil {
		t.Fatal("bind_tls_client sometimes validated")
	}
}
