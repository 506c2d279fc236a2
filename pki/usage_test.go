package pki

import (
	"errors"
	"strings"
	"testing"

	"github.com/emmansun/gmsm/smx509"
)

func TestClassifyRole(t *testing.T) {
	root, rootKey := rawCert(t, caTmpl("Root", okRange), nil, nil)
	caNoSign := caTmpl("CA without certSign", okRange)
	caNoSign.KeyUsage = smx509.KeyUsageCRLSign
	tests := []struct {
		name string
		tmpl *smx509.Certificate
		want Role
		err  string // substring of the ErrWrongUsage detail; "" = success
	}{
		{"sign", leafTmpl("s", smx509.KeyUsageDigitalSignature, okRange), RoleSign, ""},
		{"sign+nonRepudiation", leafTmpl("s", kuSign, okRange), RoleSign, ""},
		{"enc keyEncipherment", leafTmpl("e", smx509.KeyUsageKeyEncipherment, okRange), RoleEnc, ""},
		{"enc dataEncipherment", leafTmpl("e", smx509.KeyUsageDataEncipherment, okRange), RoleEnc, ""},
		{"enc keyAgreement", leafTmpl("e", smx509.KeyUsageKeyAgreement, okRange), RoleEnc, ""},
		{"enc all", leafTmpl("e", kuEnc, okRange), RoleEnc, ""},
		{"CA", caTmpl("CA", okRange), RoleCA, ""},
		{"no keyUsage", leafTmpl("n", 0, okRange), 0, "no keyUsage"},
		{"mixed", leafTmpl("m", smx509.KeyUsageDigitalSignature|smx509.KeyUsageKeyEncipherment, okRange), 0, "mixes"},
		{"nonRepudiation only", leafTmpl("m", smx509.KeyUsageContentCommitment, okRange), 0, "fits no role"},
		{"certSign on leaf", leafTmpl("m", smx509.KeyUsageCertSign|smx509.KeyUsageDigitalSignature, okRange), 0, "non-CA"},
		{"CA without certSign", caNoSign, 0, "without keyCertSign"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := rawCert(t, tc.tmpl, root, rootKey)
			got, err := ClassifyRole(c)
			if tc.err == "" {
				if err != nil || got != tc.want {
					t.Fatalf("got %v %v, want %v", got, err, tc.want)
				}
				for _, r := range []Role{RoleSign, RoleEnc, RoleCA} {
					if e := CheckUsage(c, r); (r == tc.want) != (e == nil) {
						t.Fatalf("CheckUsage(%v) = %v", r, e)
					}
				}
				return
			}
			if !errors.Is(err, ErrWrongUsage) || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("got %v, want ErrWrongUsage with %q", err, tc.err)
			}
			if CheckUsage(c, RoleSign) == nil || CheckUsage(c, RoleEnc) == nil {
				t.Fatal("CheckUsage accepted an unclassifiable certificate")
			}
		})
	}
	if _, err := ClassifyRole(nil); !errors.Is(err, ErrWrongUsage) {
		t.Fatal("nil")
	}
	if err := CheckUsage(root, Role(0)); !errors.Is(err, ErrWrongUsage) {
		t.Fatal("unknown role accepted")
	}
}

func TestRoleString(t *testing.T) {
	for r, want := range map[Role]string{RoleSign: "sign", RoleEnc: "enc", RoleCA: "ca", Role(7): "Role(7)"} {
		if r.String() != want {
			t.Fatalf("%d: %q", int(r), r.String())
		}
	}
}

func TestVerifyErrorFormat(t *testing.T) {
	c, _ := rawCert(t, leafTmpl("Shop Terminal", kuEnc, okRange), nil, nil)
	err := CheckUsage(c, RoleSign)
	var ve *VerifyError
	if !errors.As(err, &ve) || ve.Unwrap() != ErrWrongUsage {
		t.Fatalf("%#v", err)
	}
	msg := err.Error()
	for _, want := range []string{ErrWrongUsage.Error(), `subject="CN=Shop Terminal"`, "serial=" + ve.Serial, "used as sign"} {
		if !strings.Contains(msg, want) {
			t.Fatalf("%q lacks %q", msg, want)
		}
	}
	if ve.Serial != strings.ToLower(ve.Serial) || ve.Serial != c.SerialNumber.Text(16) {
		t.Fatalf("serial %q", ve.Serial)
	}
	if (&VerifyError{}).Error() == "" {
		t.Fatal("empty error text")
	}
	// Sentinels are distinct.
	all := []error{ErrMalformedPEM, ErrMalformedCertificate, ErrMalformedKey, ErrNotSM2, ErrExpired, ErrNotYetValid,
		ErrWrongUsage, ErrUnknownIssuer, ErrRevoked, ErrBadPassword, ErrCRLStale, ErrCRLBadSignature, ErrMalformedCRL,
		ErrInputTooLarge, ErrInvalidChain}
	for i := range all {
		for j := range all {
			if i != j && errors.Is(all[i], all[j]) {
				t.Fatalf("%v is %v", all[i], all[j])
			}
		}
	}
}
