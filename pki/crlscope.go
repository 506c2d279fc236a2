package pki

import (
	"encoding/asn1"
	"errors"
	"fmt"

	"github.com/emmansun/gmsm/smx509"
	"golang.org/x/crypto/cryptobyte"
	cryptobyte_asn1 "golang.org/x/crypto/cryptobyte/asn1"
)

var (
	oidCRLNumber          = asn1.ObjectIdentifier{2, 5, 29, 20}
	oidAuthorityKeyID     = asn1.ObjectIdentifier{2, 5, 29, 35}
	oidIssuingDistPoint   = asn1.ObjectIdentifier{2, 5, 29, 28}
	oidDeltaCRLIndicator  = asn1.ObjectIdentifier{2, 5, 29, 27}
	oidReasonCode         = asn1.ObjectIdentifier{2, 5, 29, 21}
	oidInvalidityDate     = asn1.ObjectIdentifier{2, 5, 29, 24}
	errCRLScope           = errors.New("not a complete CRL of its issuer")
	errCRLOtherPartition  = errors.New("a partition CRL of another distribution point")
	errCRLUnhandledCrit   = errors.New("unhandled critical extension")
	errCRLMalformedIDP    = errors.New("malformed issuing distribution point")
	errCRLEntryOtherIssur = errors.New("an entry of another issuer (indirect CRL)")
)

// CheckCRLScope refuses a CRL that gmgate would misread as the complete list of its issuer's
// revoked certificates (RFC 5280 §5.2, §5.3): a delta CRL, an indirect CRL (entries of other
// issuers), one limited to some revocation reasons or to attribute certificates, one with any
// other critical extension gmgate does not process (at the CRL or at an entry); and, when url
// is the URL the CRL was fetched from, a partition CRL (an issuing distribution point naming
// URIs) that does not name url. A CA signs such CRLs too: served in place of its complete CRL
// (a man in the middle on a plain-http CRL URL), each would make every revocation it does not
// list disappear. A CRL limited to end-entity or to CA certificates is accepted. The error
// wraps ErrMalformedCRL.
func CheckCRLScope(rl *smx509.RevocationList, url string) error {
	bad := func(err error, format string, args ...any) error {
		return fmt.Errorf("%w: %w: "+format, append([]any{ErrMalformedCRL, err}, args...)...)
	}
	for _, e := range rl.Extensions {
		switch {
		case e.Id.Equal(oidDeltaCRLIndicator):
			return bad(errCRLScope, "delta CRL")
		case e.Id.Equal(oidIssuingDistPoint):
			if err := checkIDP(e.Value, url); err != nil {
				return bad(err, "issuing distribution point")
			}
		case e.Id.Equal(oidCRLNumber), e.Id.Equal(oidAuthorityKeyID):
		case e.Critical:
			return bad(errCRLUnhandledCrit, "%v", e.Id)
		}
	}
	for _, en := range rl.RevokedCertificateEntries {
		for _, e := range en.Extensions {
			switch {
			case e.Id.Equal(oidReasonCode), e.Id.Equal(oidInvalidityDate):
			case e.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 29}):
				return bad(errCRLEntryOtherIssur, "entry %v", en.SerialNumber)
			case e.Critical:
				return bad(errCRLUnhandledCrit, "entry %v: %v", en.SerialNumber, e.Id)
			}
		}
	}
	return nil
}

// checkIDP reads an IssuingDistributionPoint: distributionPoint [0], onlyContainsUserCerts
// [1], onlyContainsCACerts [2], onlySomeReasons [3], indirectCRL [4],
// onlyContainsAttributeCerts [5].
func checkIDP(v []byte, url string) error {
	var seq cryptobyte.String
	in := cryptobyte.String(v)
	if !in.ReadASN1(&seq, cryptobyte_asn1.SEQUENCE) || !in.Empty() {
		return errCRLMalformedIDP
	}
	var uris []string
	for !seq.Empty() {
		var field cryptobyte.String
		var tag cryptobyte_asn1.Tag
		if !seq.ReadAnyASN1(&field, &tag) {
			return errCRLMalformedIDP
		}
		switch tag {
		case cryptobyte_asn1.Tag(0).Constructed().ContextSpecific(): // distributionPoint
			var names cryptobyte.String
			var ntag cryptobyte_asn1.Tag
			if !field.ReadAnyASN1(&names, &ntag) || !field.Empty() {
				return errCRLMalformedIDP
			}
			if ntag != cryptobyte_asn1.Tag(0).Constructed().ContextSpecific() { // nameRelativeToCRLIssuer
				continue
			}
			for !names.Empty() { // fullName: GeneralNames
				var name cryptobyte.String
				var gtag cryptobyte_asn1.Tag
				if !names.ReadAnyASN1(&name, &gtag) {
					return errCRLMalformedIDP
				}
				if gtag == cryptobyte_asn1.Tag(6).ContextSpecific() { // uniformResourceIdentifier
					uris = append(uris, string(name))
				}
			}
		case cryptobyte_asn1.Tag(1).ContextSpecific(), cryptobyte_asn1.Tag(2).ContextSpecific():
			// only end-entity or only CA certificates: complete for those
		case cryptobyte_asn1.Tag(3).ContextSpecific():
			return fmt.Errorf("%w: only some reasons", errCRLScope)
		case cryptobyte_asn1.Tag(4).ContextSpecific():
			return fmt.Errorf("%w: indirect CRL", errCRLScope)
		case cryptobyte_asn1.Tag(5).ContextSpecific():
			return fmt.Errorf("%w: attribute certificates only", errCRLScope)
		default:
			return errCRLMalformedIDP
		}
	}
	if url != "" && len(uris) > 0 {
		for _, u := range uris {
			if u == url {
				return nil
			}
		}
		return fmt.Errorf("%w: fetched from %s", errCRLOtherPartition, url)
	}
	return nil
}
