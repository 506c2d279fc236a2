package tlcp

import (
	"errors"
	"testing"

	"github.com/emmansun/gmsm/smx509"
	"github.com/gmgate/gmgate/internal/testpki"
	"github.com/gmgate/gmgate/pki"
)

// TestKeyUsagePolicy checks that both places that look at key usage (our own
// pair in preparePair, the peer's list in verifyPeer) apply pki.CheckUsage:
// GM dual certificates pass; a leaf without the keyUsage extension, a leaf
// mixing signature and encipherment bits, and a leaf in the wrong position
// fail with ErrWrongKeyUsage (= pki.ErrWrongUsage), and a peer's failure is
// reported with the unsupported_certificate alert.
func TestKeyUsagePolicy(t *testing.T) {
	p := getPKI(t)
	const (
		ds  = smx509.KeyUsageDigitalSignature
		nr  = smx509.KeyUsageContentCommitment
		ke  = smx509.KeyUsageKeyEncipherment
		de  = smx509.KeyUsageDataEncipherment
		ka  = smx509.KeyUsageKeyAgreement
		crt = smx509.KeyUsageCertSign
	)
	cases := []struct {
		name       string
		sign, enc  smx509.KeyUsage
		signCA     bool
		wantReject bool
	}{
		{"GM dual pair", ds, ke | de | ka, false, false},
		{"sign with nonRepudiation", ds | nr, ke, false, false},
		{"enc with keyAgreement only", ds, ka, false, false},
		{"sign without keyUsage", 0, ke | de | ka, false, true},
		{"enc without keyUsage", ds, 0, false, true},
		{"sign mixing keyEncipherment", ds | ke, ke | de | ka, false, true},
		{"enc mixing digitalSignature", ds, ke | ds, false, true},
		{"enc certificate as sign", ke, ke, false, true},
		{"sign certificate as enc", ds, ds, false, true},
		{"keyCertSign on a leaf", ds | crt, ke, false, true},
		{"CA certificate as sign", ds | crt, ke, true, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sk, ek := testpki.Key(t), testpki.Key(t)
			sc := testpki.Issue(t, testpki.Spec{CN: "usage.test", Usage: tc.sign, IsCA: tc.signCA}, sk, p.caCert, p.caKey)
			ec := testpki.Issue(t, testpki.Spec{CN: "usage.test", Usage: tc.enc}, ek, p.caCert, p.caKey)

			_, err := preparePair(&Certificate{Certificate: [][]byte{sc.Raw}, PrivateKey: sk},
				&Certificate{Certificate: [][]byte{ec.Raw}, PrivateKey: ek})
			if tc.wantReject {
				if !errors.Is(err, ErrWrongKeyUsage) || !errors.Is(err, pki.ErrWrongUsage) {
					t.Fatalf("preparePair: got %v, want ErrWrongKeyUsage", err)
				}
			} else if err != nil {
				t.Fatalf("preparePair: %v", err)
			}

			for _, isServer := range []bool{true, false} {
				c := &Conn{config: &Config{}}
				_, err := c.verifyPeer([][]byte{sc.Raw, ec.Raw}, isServer, false)
				if !tc.wantReject {
					if err != nil {
						t.Fatalf("verifyPeer(server=%v): %v", isServer, err)
					}
					if len(c.peerCertificates) != 2 || !c.peerCertificates[1].Equal(ec) {
						t.Fatalf("verifyPeer(server=%v): peer certificates not recorded", isServer)
					}
					continue
				}
				if !errors.Is(err, ErrWrongKeyUsage) {
					t.Fatalf("verifyPeer(server=%v): got %v, want ErrWrongKeyUsage", isServer, err)
				}
				if a, ok := alertOf(err); !ok || a != AlertUnsupportedCertificate {
					t.Fatalf("verifyPeer(server=%v): alert %v (%v), want unsupported_certificate", isServer, a, ok)
				}
				if c.peerCertificates != nil {
					t.Fatalf("verifyPeer(server=%v): rejected certificates recorded", isServer)
				}
			}
		})
	}
}
