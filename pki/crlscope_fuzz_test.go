package pki

import (
	"bytes"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"testing"

	"github.com/emmansun/gmsm/smx509"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// idpDER encodes an IssuingDistributionPoint naming uris (fullName) and, with tag >= 1, one
// boolean field [tag] TRUE after it.
func idpDER(uris []string, tag int) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		if len(uris) > 0 {
			b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
					for _, u := range uris {
						b.AddASN1(cbasn1.Tag(6).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte(u)) })
					}
				})
			})
		}
		if tag >= 1 {
			b.AddASN1(cbasn1.Tag(tag).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddUint8(0xff) })
		}
	})
	return b.BytesOrPanic()
}

// FuzzCheckCRLScope feeds arbitrary issuing-distribution-point values and entry extensions (a
// CRL fetched over plain http is chosen by whoever sits on the path; its signature is checked
// separately) to CheckCRLScope: refusals wrap ErrMalformedCRL; a partition CRL is accepted for
// the URL it was fetched from only when it names that URL (or no URL at all); a critical
// extension gmgate does not process is never accepted.
func FuzzCheckCRLScope(f *testing.F) {
	const url = "http://crl.example/ca.crl"
	f.Add(idpDER([]string{url}, 0), url, false)
	f.Add(idpDER([]string{"http://crl.example/part2.crl"}, 0), url, false)
	f.Add(idpDER(nil, 1), url, false)
	f.Add(idpDER([]string{url}, 4), url, true)
	f.Add(idpDER(nil, 3), "", false)
	f.Add([]byte{0x30, 0x80}, url, true)
	f.Fuzz(func(t *testing.T, idp []byte, url string, entryCrit bool) {
		rl := &smx509.RevocationList{Extensions: []pkix.Extension{{Id: oidIssuingDistPoint, Critical: true, Value: idp}}}
		entry := smx509.RevocationListEntry{SerialNumber: big.NewInt(1)}
		if entryCrit {
			entry.Extensions = []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 2, 3, 4}, Critical: true, Value: idp}}
		}
		rl.RevokedCertificateEntries = []smx509.RevocationListEntry{entry}
		err := CheckCRLScope(rl, url)
		if err != nil {
			if !errors.Is(err, ErrMalformedCRL) {
				t.Fatalf("untyped refusal %v", err)
			}
			return
		}
		if entryCrit {
			t.Fatal("accepted an entry with an unhandled critical extension")
		}
		// Accepted for url without naming it: the IDP names no URL, so any URL is accepted.
		if url != "" && !bytes.Contains(idp, []byte(url)) {
			if err := CheckCRLScope(rl, url+"#other"); err != nil {
				t.Fatalf("a partition CRL naming other URLs accepted for %q", url)
			}
		}
		if err := CheckCRLScope(rl, ""); err != nil {
			t.Fatalf("accepted for a URL, refused without one: %v", err)
		}
	})
}
