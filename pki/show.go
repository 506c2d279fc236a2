package pki

import (
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/smx509"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// FingerprintSM3 returns the lower-case hex SM3 digest of c's DER.
func FingerprintSM3(c *smx509.Certificate) string {
	if c == nil {
		return ""
	}
	sum := sm3.Sum(c.Raw)
	return hex.EncodeToString(sum[:])
}

var extKeyUsageNames = map[smx509.ExtKeyUsage]string{
	smx509.ExtKeyUsageAny:                            "any",
	smx509.ExtKeyUsageServerAuth:                     "serverAuth",
	smx509.ExtKeyUsageClientAuth:                     "clientAuth",
	smx509.ExtKeyUsageCodeSigning:                    "codeSigning",
	smx509.ExtKeyUsageEmailProtection:                "emailProtection",
	smx509.ExtKeyUsageIPSECEndSystem:                 "ipsecEndSystem",
	smx509.ExtKeyUsageIPSECTunnel:                    "ipsecTunnel",
	smx509.ExtKeyUsageIPSECUser:                      "ipsecUser",
	smx509.ExtKeyUsageTimeStamping:                   "timeStamping",
	smx509.ExtKeyUsageOCSPSigning:                    "OCSPSigning",
	smx509.ExtKeyUsageMicrosoftServerGatedCrypto:     "msSGC",
	smx509.ExtKeyUsageNetscapeServerGatedCrypto:      "nsSGC",
	smx509.ExtKeyUsageMicrosoftCommercialCodeSigning: "msCodeCom",
	smx509.ExtKeyUsageMicrosoftKernelCodeSigning:     "msKernelCode",
}

// extKeyUsageString lists c's extended key usages ("none" when absent).
func extKeyUsageString(c *smx509.Certificate) string {
	var names []string
	for _, u := range c.ExtKeyUsage {
		if n, ok := extKeyUsageNames[u]; ok {
			names = append(names, n)
		} else {
			names = append(names, fmt.Sprintf("ExtKeyUsage(%d)", int(u)))
		}
	}
	for _, oid := range c.UnknownExtKeyUsage {
		names = append(names, oid.String())
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// publicKeyBits returns the subjectPublicKey BIT STRING content of c (for
// SM2: the uncompressed point 04||X||Y).
func publicKeyBits(c *smx509.Certificate) []byte {
	in := cryptobyte.String(c.RawSubjectPublicKeyInfo)
	var spki cryptobyte.String
	var bits []byte
	if !in.ReadASN1(&spki, cbasn1.SEQUENCE) || !spki.SkipASN1(cbasn1.SEQUENCE) || !spki.ReadASN1BitStringAsBytes(&bits) {
		return nil
	}
	return bits
}

// Describe returns a human-readable dump of c for `gmgate pki show`: subject,
// issuer, serial (hex and decimal), validity, key usage, EKU, role, SANs, SM3
// fingerprint of the DER, public key (hex) and signature algorithm. It never
// fails; problems (e.g. a non-SM2 key) are shown inline.
func Describe(c *smx509.Certificate) string {
	if c == nil {
		return "<nil certificate>\n"
	}
	var b strings.Builder
	line := func(k, format string, args ...any) {
		fmt.Fprintf(&b, "%-22s %s\n", k+":", fmt.Sprintf(format, args...))
	}
	line("Subject", "%s", c.Subject.String())
	line("Issuer", "%s", c.Issuer.String())
	if c.SerialNumber != nil {
		line("Serial (hex)", "%x", c.SerialNumber)
		line("Serial (decimal)", "%s", c.SerialNumber.String())
	}
	line("Not before", "%s", c.NotBefore.UTC().Format(time.RFC3339))
	line("Not after", "%s", c.NotAfter.UTC().Format(time.RFC3339))
	line("Key usage", "%s", keyUsageString(c.KeyUsage))
	line("Extended key usage", "%s", extKeyUsageString(c))
	if r, err := ClassifyRole(c); err == nil {
		line("Role", "%s", r)
	} else {
		var detail string
		if ve, ok := err.(*VerifyError); ok {
			detail = ve.Detail
		} else {
			detail = err.Error()
		}
		line("Role", "none (%s)", detail)
	}
	if c.BasicConstraintsValid {
		switch {
		case !c.IsCA:
			line("Basic constraints", "CA:FALSE")
		case c.MaxPathLen > 0 || c.MaxPathLenZero:
			line("Basic constraints", "CA:TRUE, pathlen:%d", c.MaxPathLen)
		default:
			line("Basic constraints", "CA:TRUE")
		}
	}
	var sans []string
	for _, n := range c.DNSNames {
		sans = append(sans, "DNS:"+n)
	}
	for _, ip := range c.IPAddresses {
		sans = append(sans, "IP:"+ip.String())
	}
	for _, e := range c.EmailAddresses {
		sans = append(sans, "email:"+e)
	}
	for _, u := range c.URIs {
		sans = append(sans, "URI:"+u.String())
	}
	if len(sans) == 0 {
		sans = []string{"none"}
	}
	line("Subject alt names", "%s", strings.Join(sans, ", "))
	line("SM3 fingerprint", "%s", FingerprintSM3(c))
	alg := c.PublicKeyAlgorithm.String()
	if isSM2PublicKey(c.PublicKey) {
		alg = "SM2"
	} else {
		alg += " (not SM2)"
	}
	line("Public key algorithm", "%s", alg)
	line("Public key", "%s", hex.EncodeToString(publicKeyBits(c)))
	if len(c.SubjectKeyId) > 0 {
		line("Subject key id", "%s", hex.EncodeToString(c.SubjectKeyId))
	}
	if len(c.AuthorityKeyId) > 0 {
		line("Authority key id", "%s", hex.EncodeToString(c.AuthorityKeyId))
	}
	line("Signature algorithm", "%s", c.SignatureAlgorithm.String())
	return b.String()
}
