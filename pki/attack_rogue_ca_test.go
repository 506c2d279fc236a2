package pki

import (
	"errors"
	"strings"
	"testing"

	"github.com/emmansun/gmsm/smx509"
)

// TestAttackRogueIssuer: the holder of a certificate the CA issued for another purpose uses its
// key to issue a leaf of its own choosing and sends it with its certificate as the intermediate.
// Neither a CA:false certificate nor one the CA marked CA:true but whose keyUsage extension
// leaves out keyCertSign (a time-stamping certificate issued with the wrong basic constraints)
// may issue: smx509's signature check refuses such a parent ("parent certificate cannot sign
// this kind of certificate"), so no chain is found. This test pins that behaviour of the
// library pki relies on (it already held when the review looked).
func TestAttackRogueIssuer(t *testing.T) {
	f := newFixture(t, okRange, okRange, okRange)
	v := f.verifier(t, nil, t0)
	for _, tc := range []struct {
		name string
		tmpl *smx509.Certificate
	}{
		{"CA:false signing certificate", leafTmpl("terminal sign", kuSign, okRange)},
		{"CA:true without keyCertSign", func() *smx509.Certificate {
			c := caTmpl("Test TSA", okRange)
			c.KeyUsage = smx509.KeyUsageDigitalSignature | smx509.KeyUsageContentCommitment
			return c
		}()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rogueIssuer, rogueKey := rawCert(t, tc.tmpl, f.inter, f.interKey)
			forged, _ := rawCert(t, leafTmpl("bank.example", kuSign, okRange), rogueIssuer, rogueKey)
			chains, err := v.Verify(forged, []*smx509.Certificate{rogueIssuer, f.inter}, RoleSign)
			if err == nil {
				t.Fatalf("a leaf issued by %s verified: chain of %d", tc.name, len(chains[0]))
			}
			if !errors.Is(err, ErrUnknownIssuer) || !strings.Contains(err.Error(), "parent certificate cannot sign") {
				t.Fatalf("error %v, want no chain (the rogue issuer refused)", err)
			}
		})
	}
	t.Run("control: an issuing CA with keyCertSign", func(t *testing.T) {
		sub, subKey := rawCert(t, caTmpl("Test Sub", okRange), f.inter, f.interKey)
		leaf, _ := rawCert(t, leafTmpl("bank.example", kuSign, okRange), sub, subKey)
		if _, err := v.Verify(leaf, []*smx509.Certificate{sub, f.inter}, RoleSign); err != nil {
			t.Fatal(err)
		}
	})
}
