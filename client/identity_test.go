package client

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/signing"

	"github.com/gmgate/gmgate/internal/testenv"
)

func writeIdentity(t *testing.T, dir, name string, id *Identity, password []byte) (certFile, keyFile string) {
	t.Helper()
	certFile = filepath.Join(dir, name+"_cert.pem")
	keyFile = filepath.Join(dir, name+"_key.pem")
	if err := os.WriteFile(certFile, pki.EncodeCertificatesPEM(append([]*smx509.Certificate{id.Certificate}, id.Chain...)...), 0o600); err != nil {
		t.Fatal(err)
	}
	kp, err := pki.MarshalPrivateKeyPEM(id.Key.(*sm2.PrivateKey), password)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, kp, 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func TestLoadIdentity(t *testing.T) {
	p := getPKI(t)
	dir := t.TempDir()
	pw := []byte("terminal pass")
	src := &Identity{Certificate: p.termSign.Certificate, Chain: []*smx509.Certificate{p.ca.Cert}, Key: p.termSign.Key}
	sc, sk := writeIdentity(t, dir, "sign", src, pw)
	ec, ek := writeIdentity(t, dir, "enc", p.termEnc, pw)
	_, otherKey := writeIdentity(t, dir, "other", p.otherSign, nil)

	sign, enc, err := LoadTerminal(sc, sk, ec, ek, pw)
	if err != nil {
		t.Fatal(err)
	}
	if !sign.Certificate.Equal(p.termSign.Certificate) || len(sign.Chain) != 1 || !sign.Chain[0].Equal(p.ca.Cert) {
		t.Error("sign certificate or chain differs")
	}
	if !enc.Certificate.Equal(p.termEnc.Certificate) {
		t.Error("enc certificate differs")
	}
	tc := sign.TLCPCertificate()
	if len(tc.Certificate) != 2 || tc.Leaf != sign.Certificate || tc.PrivateKey == nil {
		t.Errorf("TLCPCertificate %+v", tc)
	}
	k, err := sign.SigningKey("", "m1")
	if err != nil || k.Signer == nil || k.Cert != sign.Certificate || k.MerchantID != "m1" {
		t.Fatalf("SigningKey: %+v %v", k, err)
	}
	// The loaded key signs what the certificate verifies.
	sig, err := signing.SignSM2(k.Signer, []byte("payment"), nil, signing.DER)
	if err != nil {
		t.Fatal(err)
	}
	if err := signing.VerifySM2(p.termSign.Certificate.PublicKey.(*ecdsaPub), []byte("payment"), sig, nil, signing.DER); err != nil {
		t.Fatal(err)
	}
	if s, e, err := LoadTerminal(sc, sk, "", "", pw); err != nil || s == nil || e != nil {
		t.Fatalf("sign-only terminal: %v", err)
	}

	bad := []struct {
		name            string
		cert, key       string
		password        []byte
		wantBadPassword bool
	}{
		{"wrong password", sc, sk, []byte("nope"), true},
		{"no password", sc, sk, nil, true},
		{"key of another certificate", sc, otherKey, nil, false},
		{"missing certificate file", filepath.Join(dir, "none.pem"), sk, pw, false},
		{"key file as certificate", sk, sk, pw, false},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadIdentity(tc.cert, tc.key, tc.password)
			if err == nil {
				t.Fatal("accepted")
			}
			if tc.wantBadPassword != errors.Is(err, pki.ErrBadPassword) {
				t.Errorf("error %v", err)
			}
		})
	}
	if _, err := LoadCertificates(sc); err != nil {
		t.Error(err)
	}
	if _, err := LoadCertificates(sk); err == nil {
		t.Error("key file loaded as certificates")
	}
	if _, err := (&Identity{Certificate: p.termEnc.Certificate, Key: struct{}{}}).SigningKey("", ""); err == nil {
		t.Error("non-signer key accepted")
	}
}

// TestTongsuoPKI runs the whole client over TLCP with the PKI that Tongsuo (an independent
// implementation) generated: the terminal identity, the gateway pair and the platform keys
// are loaded from its PEM files with LoadTerminal / LoadCertificates.
func TestTongsuoPKI(t *testing.T) {
	dir := testenv.InteropDir(t, "tongsuo", "pki")
	f := func(n string) string { return filepath.Join(dir, n) }
	termSign, termEnc, err := LoadTerminal(f("client_sign_cert.pem"), f("client_sign_key.pem"), f("client_enc_cert.pem"), f("client_enc_key.pem"), nil)
	if err != nil {
		t.Fatal(err)
	}
	srvSign, srvEnc, err := LoadTerminal(f("server_sign_cert.pem"), f("server_sign_key.pem"), f("server_enc_cert.pem"), f("server_enc_key.pem"), nil)
	if err != nil {
		t.Fatal(err)
	}
	cas, err := LoadCertificates(f("ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	ours := getPKI(t)
	p := &testPKI{
		ca:   &pki.CA{Cert: cas[0]},
		pool: smx509.NewCertPool(),
		server: &pki.Pair{
			Sign: &pki.Issued{Cert: srvSign.Certificate, Key: srvSign.Key.(*sm2.PrivateKey)},
			Enc:  &pki.Issued{Cert: srvEnc.Certificate, Key: srvEnc.Key.(*sm2.PrivateKey)},
		},
		platformSign: srvSign, platformEnc: srvEnc,
		termSign: termSign, termEnc: termEnc,
		otherSign: ours.otherSign,
	}
	p.pool.AddCert(cas[0])
	for _, scheme := range allSchemes {
		st := newStub(t, p, scheme)
		url := tlcpServer(t, st)
		cfg := tlcpConfig(t, p, scheme, url)
		cfg.TLCP.ServerName = srvSign.Certificate.Subject.CommonName
		if len(srvSign.Certificate.DNSNames) > 0 {
			cfg.TLCP.ServerName = srvSign.Certificate.DNSNames[0]
		}
		cfg = withEnvelope(cfg, p)
		c := newTestClient(t, cfg)
		ct, body := requestBody(scheme)
		resp, err := c.Post(context.Background(), "/pay", ct, body)
		if err != nil {
			t.Fatalf("%s with Tongsuo PKI: %v", scheme, err)
		}
		if resp.Reply.Serial != signing.SerialHex(srvSign.Certificate.SerialNumber) || !resp.Reply.Enveloped {
			t.Errorf("%s: reply %+v", scheme, resp.Reply)
		}
	}
}
