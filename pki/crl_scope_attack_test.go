package pki

import (
	"crypto/rand"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
	"golang.org/x/crypto/cryptobyte"
	cryptobyte_asn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// idpExtension builds a critical IssuingDistributionPoint (RFC 5280 §5.2.5): a full name URI
// when uri is set, then the [n] BOOLEAN TRUE fields in flags.
func idpExtension(t *testing.T, uri string, flags ...int) pkix.Extension {
	t.Helper()
	var b cryptobyte.Builder
	b.AddASN1(cryptobyte_asn1.SEQUENCE, func(b *cryptobyte.Builder) {
		if uri != "" {
			b.AddASN1(cryptobyte_asn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
				b.AddASN1(cryptobyte_asn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
					b.AddASN1(cryptobyte_asn1.Tag(6).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte(uri)) })
				})
			})
		}
		for _, f := range flags {
			b.AddASN1(cryptobyte_asn1.Tag(f).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddUint8(0xff) })
		}
	})
	v, err := b.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 28}, Critical: true, Value: v}
}

// TestAttackCRLOutOfScope: the CA also signs CRLs that are not its complete CRL: a delta CRL,
// a partition of its certificates (another distribution point), one of some reasons only, one
// with entries of another issuer (indirect). Each is genuine, newer than the full CRL and
// lists none of the revoked terminals. Served in place of the full CRL (a man in the middle on
// the CRL URL, usually plain http, or a CRL file swapped), it was taken as the complete list:
// every revoked terminal valid again. A CRL whose scope gmgate does not check is now refused
// (the CRL held is kept), and a partition CRL fetched from a URL must name that URL.
func TestAttackCRLOutOfScope(t *testing.T) {
	ca, _, err := NewRootCA(IssueOptions{CommonName: "scope CA"})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	mk := func(number int64, ext []pkix.Extension, entryExt []pkix.Extension) []byte {
		t.Helper()
		der, err := smx509.CreateRevocationList(rand.Reader, &smx509.RevocationList{
			Number: big.NewInt(number), ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(time.Hour), ExtraExtensions: ext,
			RevokedCertificateEntries: []smx509.RevocationListEntry{{SerialNumber: big.NewInt(99), RevocationTime: now.Add(-time.Hour), ExtraExtensions: entryExt}},
		}, ca.Cert, ca.Key)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	var served atomic.Pointer[[]byte]
	serve := func(der []byte) { served.Store(&der) }
	serve(nil)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(*served.Load()) }))
	defer srv.Close()
	url := srv.URL + "/crl1"
	k, _ := sm2.GenerateKey(rand.Reader)
	victim, err := ca.IssueFor(&k.PublicKey, RoleSign, IssueOptions{CommonName: "revoked terminal"})
	if err != nil {
		t.Fatal(err)
	}
	full, err := smx509.CreateRevocationList(rand.Reader, &smx509.RevocationList{
		Number: big.NewInt(1), ThisUpdate: now.Add(-time.Hour), NextUpdate: now.Add(time.Hour),
		RevokedCertificateEntries: []smx509.RevocationListEntry{{SerialNumber: victim.SerialNumber, RevocationTime: now.Add(-time.Hour)}},
	}, ca.Cert, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	certIssuer := pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 29}, Critical: true, Value: []byte{0x30, 0x00}}
	for _, c := range []struct {
		name string
		der  []byte
	}{
		{"delta CRL", mk(2, []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 27}, Critical: true, Value: []byte{2, 1, 1}}}, nil)},
		{"another partition", mk(2, []pkix.Extension{idpExtension(t, srv.URL+"/crl2")}, nil)},
		{"some reasons only", mk(2, []pkix.Extension{idpExtension(t, "", 3)}, nil)},
		{"indirect CRL", mk(2, []pkix.Extension{idpExtension(t, "", 4)}, nil)},
		{"entry of another issuer", mk(2, nil, []pkix.Extension{certIssuer})},
		{"unknown critical extension", mk(2, []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 2, 3, 4}, Critical: true, Value: []byte{5, 0}}}, nil)},
	} {
		t.Run(c.name, func(t *testing.T) {
			serve(full)
			st, err := NewCRLStore([]string{url}, CRLOptions{CheckInterval: -1, Issuers: []*smx509.Certificate{ca.Cert}})
			if err != nil {
				t.Fatal(err)
			}
			serve(c.der)
			if err := st.Reload(); !errors.Is(err, ErrMalformedCRL) {
				t.Errorf("URL: reload: %v", err)
			}
			if revoked, err := st.IsRevoked(victim, ca.Cert); err != nil || !revoked {
				t.Errorf("URL: a CRL out of scope replaced the complete CRL: revoked terminal valid again (%v, %v)", revoked, err)
			}
			if c.name == "another partition" {
				return // a file has no URL to compare: a partition CRL file is the operator's choice
			}
			p := filepath.Join(t.TempDir(), "crl.der")
			if err := os.WriteFile(p, c.der, 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := NewCRLStore([]string{p}, CRLOptions{Issuers: []*smx509.Certificate{ca.Cert}}); !errors.Is(err, ErrMalformedCRL) {
				t.Errorf("file: a CRL out of scope was taken as the complete CRL: %v", err)
			}
		})
	}
	// The partition named by the URL it is fetched from is that URL's complete CRL.
	serve(mk(3, []pkix.Extension{idpExtension(t, url)}, nil))
	st, err := NewCRLStore([]string{url}, CRLOptions{CheckInterval: -1, Issuers: []*smx509.Certificate{ca.Cert}})
	if err != nil {
		t.Fatalf("the partition of its own URL: %v", err)
	}
	leaf, err := ca.IssueFor(&k.PublicKey, RoleSign, IssueOptions{CommonName: "x"})
	if err != nil {
		t.Fatal(err)
	}
	leaf.SerialNumber = big.NewInt(99)
	if revoked, err := st.IsRevoked(leaf, ca.Cert); err != nil || !revoked {
		t.Fatalf("serial 99 in its own partition: %v %v", revoked, err)
	}
}
