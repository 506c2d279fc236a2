package cryptosvc

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/internal/testenv"
	"github.com/gmgate/gmgate/pki"
)

// tongsuo runs the Tongsuo CLI (an independent C implementation) in dir.
func tongsuo(t *testing.T, dir string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(testenv.TongsuoBin(t), args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("tongsuo %v: %v\n%s", args, err, out)
	}
	return out
}

func writeT(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestTongsuoVerifiesOurSignedData: Tongsuo's `cms -verify` accepts the service's SignedData,
// attached (and gives back the content) and detached (with -content), against our root.
func TestTongsuoVerifiesOurSignedData(t *testing.T) {
	p := loadTestPKI(t)
	s := certService(t, p, nil)
	dir := t.TempDir()
	data := []byte("settlement file for Tongsuo\n")
	writeT(t, dir, "data", data)
	writeT(t, dir, "root.pem", pki.EncodeCertificatesPEM(p.root.Cert))
	for _, detached := range []bool{false, true} {
		r := mustOK(t, s, settlement, OpSignMessage, item{"key": "platform-sign", "data": b64(data), "detached": detached})
		writeT(t, dir, "s.p7", r.CMS)
		args := []string{"cms", "-verify", "-inform", "DER", "-in", "s.p7", "-CAfile", "root.pem", "-binary", "-purpose", "any", "-out", "out"}
		if detached {
			args = append(args, "-content", "data")
		}
		tongsuo(t, dir, args...)
		if got, _ := os.ReadFile(filepath.Join(dir, "out")); !bytes.Equal(got, data) {
			t.Fatalf("detached=%v: Tongsuo's verified content %q", detached, got)
		}
		// Control: Tongsuo refuses the detached signature over other content.
		if detached {
			writeT(t, dir, "other", []byte("another file\n"))
			cmd := exec.Command(testenv.TongsuoBin(t), "cms", "-verify", "-inform", "DER", "-in", "s.p7", "-content", "other",
				"-CAfile", "root.pem", "-binary", "-purpose", "any")
			cmd.Dir = dir
			if out, err := cmd.CombinedOutput(); err == nil {
				t.Fatalf("Tongsuo verified a detached signature over other content: %s", out)
			}
		}
	}
}

// TestWeVerifyTongsuoSignedData: Tongsuo's `cms -sign` output (SM2/SM3, attached and detached)
// verifies through the service, which names Tongsuo's signer.
func TestWeVerifyTongsuoSignedData(t *testing.T) {
	p := loadTestPKI(t)
	s := certService(t, p, nil)
	dir := t.TempDir()
	data := []byte("refund batch signed by Tongsuo\n")
	writeT(t, dir, "data", data)
	writeT(t, dir, "signer.pem", pki.EncodeCertificatesPEM(p.signer.Cert))
	writeT(t, dir, "signer.key", must(pki.MarshalPrivateKeyPEM(p.signer.Key, nil)))
	writeT(t, dir, "inter.pem", pki.EncodeCertificatesPEM(p.inter.Cert))
	for _, detached := range []bool{false, true} {
		args := []string{"cms", "-sign", "-signer", "signer.pem", "-inkey", "signer.key", "-certfile", "inter.pem",
			"-in", "data", "-outform", "DER", "-out", "t.p7", "-md", "sm3", "-binary"}
		if !detached {
			args = append(args, "-nodetach")
		}
		tongsuo(t, dir, args...)
		der, err := os.ReadFile(filepath.Join(dir, "t.p7"))
		if err != nil {
			t.Fatal(err)
		}
		in := item{"cms": b64(der)}
		if detached {
			in["data"] = b64(data)
		}
		r := mustOK(t, s, risk, OpVerifyMessage, in)
		if !r.Valid || r.Signer.Subject != p.signer.Cert.Subject.String() || (!detached && !bytes.Equal(r.Content, data)) {
			t.Fatalf("detached=%v: %+v", detached, r)
		}
		if detached {
			_, err := call(t, s, risk, OpVerifyMessage, item{"cms": b64(der), "data": b64([]byte("other"))})
			mustCode(t, err, CodeBadSignature)
		}
	}
}

// TestTongsuoRawSM2WithUserID: raw SM2 signatures with a user ID (distid) cross-verify both
// ways: the service's Sign verifies with `pkeyutl -verify -pkeyopt distid:`, and Tongsuo's
// `pkeyutl -sign` verifies through the service (by key, and by certificate).
func TestTongsuoRawSM2WithUserID(t *testing.T) {
	p := loadTestPKI(t)
	s := certService(t, p, nil)
	dir := t.TempDir()
	data := []byte("pay 88.00 to merchant 1024")
	writeT(t, dir, "data", data)
	pub, err := smx509.MarshalPKIXPublicKey(p.platform.Cert.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	writeT(t, dir, "pub.pem", pemBlock("PUBLIC KEY", pub))
	writeT(t, dir, "platform.key", must(pki.MarshalPrivateKeyPEM(p.platform.Key, nil)))
	for _, uid := range []string{"settlement@gmgate", "1234567812345678", "risk-system-07"} {
		// Ours, checked by Tongsuo. Without user_id the key's configured one (settlement@gmgate) is used.
		in := item{"key": "platform-sign", "data": b64(data)}
		if uid != "settlement@gmgate" {
			in["user_id"] = uid
		}
		r := mustOK(t, s, settlement, OpSign, in)
		writeT(t, dir, "sig.der", r.Signature)
		tongsuo(t, dir, "pkeyutl", "-verify", "-pubin", "-inkey", "pub.pem", "-rawin", "-digest", "sm3",
			"-pkeyopt", "distid:"+uid, "-in", "data", "-sigfile", "sig.der")
		// Tongsuo's, checked by the service with the vault key and with the certificate.
		tongsuo(t, dir, "pkeyutl", "-sign", "-inkey", "platform.key", "-rawin", "-digest", "sm3",
			"-pkeyopt", "distid:"+uid, "-in", "data", "-out", "tsig.der")
		tsig, err := os.ReadFile(filepath.Join(dir, "tsig.der"))
		if err != nil {
			t.Fatal(err)
		}
		if v := mustOK(t, s, settlement, OpVerify, item{"key": "platform-sign", "data": b64(data), "user_id": uid, "signature": b64(tsig)}); !v.Valid {
			t.Fatal("Tongsuo's signature does not verify by key")
		}
		if v := mustOK(t, s, settlement, OpVerifyData, item{"data": b64(data), "user_id": uid, "signature": b64(tsig),
			"certificate": pemOf(p.platform.Cert)}); !v.Valid {
			t.Fatal("Tongsuo's signature does not verify by certificate")
		}
		// Control: another user ID gives another Z_A.
		_, err = call(t, s, settlement, OpVerify, item{"key": "platform-sign", "data": b64(data), "user_id": uid + "x", "signature": b64(tsig)})
		mustCode(t, err, CodeBadSignature)
	}
}

// TestWeVerifyTongsuoDetachedByDigest: a detached signature made by Tongsuo's `cms -sign`
// (SM2/SM3, authenticated attributes) verifies through the service given only SM3 of the
// content, naming Tongsuo's signer; the digest of other content is refused, and Tongsuo's
// `-noattr` signature (no signed attributes) is crypto_content_required by digest. (Tongsuo
// signs e = SM3(M) there, without Z_A, where gmsm's -noattr form signs SM3(Z_A||M): a digest
// path for such messages would depend on who signed, so there is none.)
func TestWeVerifyTongsuoDetachedByDigest(t *testing.T) {
	p := loadTestPKI(t)
	s := certService(t, p, nil)
	dir := t.TempDir()
	data := []byte("settlement file signed by Tongsuo, verified by digest\n")
	writeT(t, dir, "data", data)
	writeT(t, dir, "signer.pem", pki.EncodeCertificatesPEM(p.signer.Cert))
	writeT(t, dir, "signer.key", must(pki.MarshalPrivateKeyPEM(p.signer.Key, nil)))
	writeT(t, dir, "inter.pem", pki.EncodeCertificatesPEM(p.inter.Cert))
	sign := func(out string, extra ...string) []byte {
		args := append([]string{"cms", "-sign", "-signer", "signer.pem", "-inkey", "signer.key", "-certfile", "inter.pem",
			"-in", "data", "-outform", "DER", "-out", out, "-md", "sm3", "-binary"}, extra...)
		tongsuo(t, dir, args...)
		der, err := os.ReadFile(filepath.Join(dir, out))
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	der := sign("t.p7")
	r := mustOK(t, s, risk, OpVerifyMessage, item{"cms": b64(der), "digest": b64(sm3sum(data))})
	if !r.Valid || r.Signer.Subject != p.signer.Cert.Subject.String() || r.Content != nil {
		t.Fatalf("Tongsuo's detached signature by digest: %+v", r)
	}
	_, err := call(t, s, risk, OpVerifyMessage, item{"cms": b64(der), "digest": b64(sm3sum([]byte("other")))})
	mustCode(t, err, CodeBadSignature)

	noattr := sign("n.p7", "-noattr")
	_, err = call(t, s, risk, OpVerifyMessage, item{"cms": b64(noattr), "digest": b64(sm3sum(data))})
	mustCode(t, err, CodeContentRequired)
}
