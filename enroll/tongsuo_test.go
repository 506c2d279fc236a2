package enroll

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/internal/testenv"
	"github.com/gmgate/gmgate/pki"
)

// TestTongsuoChecksIssuedPairAndCRL: Tongsuo's CLI (an independent implementation) parses the
// issued certificates, shows the key-usage split, verifies both against the CA, verifies the
// CA's CRL signature, and, with -crl_check, refuses the revoked pair and accepts the other.
func TestTongsuoChecksIssuedPairAndCRL(t *testing.T) {
	bin := testenv.TongsuoBin(t)
	f := newFixture(t)
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	run := func(args ...string) (string, error) {
		out, err := exec.Command(bin, args...).CombinedOutput()
		return string(out), err
	}
	pemOf := func(der []byte) []byte {
		c, err := smx509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return pki.EncodeCertificatesPEM(c)
	}
	ca := write("ca.pem", pki.EncodeCertificatesPEM(f.root.Cert))
	kept := f.enrol(newKey(t), "T0500")
	key := newKey(t)
	gone := f.enrol(key, "T0501")
	keptSign, keptEnc := write("kept_sign.pem", pemOf(kept.SignCert)), write("kept_enc.pem", pemOf(kept.EncCert))
	goneSign := write("gone_sign.pem", pemOf(gone.SignCert))

	for _, c := range []struct{ file, want, not string }{
		{keptSign, "Digital Signature, Non Repudiation", "Key Encipherment"},
		{keptEnc, "Key Encipherment, Data Encipherment, Key Agreement", "Digital Signature"},
	} {
		out, err := run("x509", "-in", c.file, "-noout", "-text")
		if err != nil {
			t.Fatalf("tongsuo x509: %v\n%s", err, out)
		}
		if !strings.Contains(out, c.want) || strings.Contains(out, c.not) || !strings.Contains(out, "SM2") || !strings.Contains(out, "TLS Web Client Authentication") {
			t.Fatalf("tongsuo x509 of %s does not show the key-usage split:\n%s", filepath.Base(c.file), out)
		}
		if out, err := run("verify", "-CAfile", ca, c.file); err != nil || !strings.Contains(out, "OK") {
			t.Fatalf("tongsuo verify %s: %v\n%s", filepath.Base(c.file), err, out)
		}
	}

	// The holder revokes one pair; the CA's CRL from /crl.
	rb := []byte(`{}`)
	if resp, body := f.post(OpRevoke, f.signedHeaders(OpRevoke, "application/json", rb, key, gone.Serial, ""), rb); resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke: %s", body)
	}
	f.clock.add(time.Second)
	resp, err := http.Get(f.http.URL + "/crl")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var der []byte
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		der = append(der, buf[:n]...)
		if err != nil {
			break
		}
	}
	crl := write("crl.pem", pki.EncodeCRLPEM(der))
	out, err := run("crl", "-in", crl, "-CAfile", ca, "-noout", "-text")
	if err != nil || !strings.Contains(out, "verify OK") || !strings.Contains(strings.ToUpper(out), strings.ToUpper(gone.Serial)) {
		t.Fatalf("tongsuo crl -verify: %v\n%s", err, out)
	}
	if out, err := run("verify", "-crl_check", "-CAfile", ca, "-CRLfile", crl, goneSign); err == nil || !strings.Contains(out, "revoked") {
		t.Fatalf("tongsuo verify -crl_check accepted the revoked certificate: %v\n%s", err, out)
	}
	if out, err := run("verify", "-crl_check", "-CAfile", ca, "-CRLfile", crl, keptSign); err != nil || !strings.Contains(out, "OK") {
		t.Fatalf("tongsuo verify -crl_check refused the valid certificate: %v\n%s", err, out)
	}
}
