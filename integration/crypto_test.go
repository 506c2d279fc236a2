package integration

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/pkcs7"
	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/client"
	"github.com/gmgate/gmgate/internal/attack"
	"github.com/gmgate/gmgate/pki"
)

// cryptoCaddyfile serves gm_crypto over TLCP with client certificates verified by the listener.
// Keys: SoftHSM2 (wrapped) srv-sign/srv-enc (TLCP), platform-sign, platform-enc, pii (SM4,
// versions 1..3 after rotation), pii-other (SM4); a file SM4 key file-pii.
const cryptoCaddyfile = `{
	admin {ADMIN}
	skip_install_trust
	auto_https off
	metrics
	gmgate {
		audit {DIR}/audit/audit.log {
			signing_key platform-sign
			checkpoint_every 1
		}
{VAULT}	}
	servers :{PORT} {
		listener_wrappers {
			tlcp {
				sign_key srv-sign
				enc_key srv-enc
				client_auth require_and_verify
				client_ca {CA}
			}
		}
	}
}

http://:{PORT} {
	handle /shf/v1/* {
		gm_crypto {
			caller settlement subject_cn settlement
			caller risk fingerprint {RISKFP} subject_cn risk
			allow settlement sign,verify,sign_message,key_info platform-sign
			allow settlement encrypt,decrypt,rewrap,datakey,hmac,verify_hmac,key_info,rotate pii
			allow settlement encrypt,decrypt pii-other
			allow settlement encrypt,decrypt,rotate file-pii
			allow settlement encrypt missing
			allow settlement verify_message,validate_certificate,seal_envelope,random
			allow settlement open_envelope platform-enc
			allow risk decrypt pii min_version 3
			trusted_roots {CA}
			crls {CRL}
			max_body_size 64KiB
			max_item_size 8KiB
		}
	}
	respond 404
}
`

// cryptoVault is a SoftHSM2 token made with the real `gmgate vault` commands, with SM4 keys
// added (generate, rotate) and a file SM4 key; vaultBlock(sm4Extra) is its vault block.
type cryptoVault struct {
	*vaultToken
	sm4Lines string
}

func (v *cryptoVault) block() string {
	i := strings.LastIndex(v.Block, "}")
	return v.Block[:i] + v.sm4Lines + v.Block[i:]
}

func (v *cryptoVault) vaultCmd(t *testing.T, args ...string) {
	t.Helper()
	cfg := filepath.Join(v.Dir, "Caddyfile.sm4")
	if err := os.WriteFile(cfg, []byte("{\n\tadmin off\n\tgmgate {\n"+v.block()+"\t}\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	full := append(append([]string{"vault"}, args...), "--config", cfg, "--adapter", "caddyfile")
	cmd := exec.Command(gmgateBin(t), full...)
	cmd.Env = append(append(os.Environ(), "HOME="+v.Dir, "XDG_DATA_HOME="+filepath.Join(v.Dir, "data")), v.Env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gmgate %s: %v\n%s", strings.Join(full, " "), err, out)
	}
}

// cryptoClient is an HTTP client over TLCP presenting pair (the caller's certificates).
func cryptoClient(t *testing.T, caFile string, pair *pki.Pair, port int) (*client.CryptoService, *http.Client) {
	t.Helper()
	roots, err := pki.LoadCertificatesFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := smx509.NewCertPool()
	pool.AddCert(roots[0])
	cfg := client.Config{TLCP: &client.TLCPConfig{RootCAs: pool, ServerName: "localhost",
		Sign: &client.Identity{Certificate: pair.Sign.Cert, Key: pair.Sign.Key},
		Enc:  &client.Identity{Certificate: pair.Enc.Cert, Key: pair.Enc.Key}}}
	svc, err := client.NewCryptoService(fmt.Sprintf("https://127.0.0.1:%d", port), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return svc, svc.HTTPClient()
}

// TestCryptoServiceRealBinary runs gm_crypto in the real binary with keys in SoftHSM2 (wrapped)
// and in a file, callers identified by their TLCP client certificates, and the bad-input table:
// each row a mistake or an attack and the status and code that stop it.
func TestCryptoServiceRealBinary(t *testing.T) {
	v := &cryptoVault{vaultToken: newVaultToken(t,
		keySpec{Name: "srv-sign", Role: pki.RoleSign, CN: "localhost", SANs: []string{"localhost", "127.0.0.1"},
			EKU: []smx509.ExtKeyUsage{smx509.ExtKeyUsageServerAuth}},
		keySpec{Name: "srv-enc", Role: pki.RoleEnc, CN: "localhost", SANs: []string{"localhost", "127.0.0.1"},
			EKU: []smx509.ExtKeyUsage{smx509.ExtKeyUsageServerAuth}},
		keySpec{Name: "platform-sign", Role: pki.RoleSign, CN: "gmgate platform"},
		keySpec{Name: "platform-enc", Role: pki.RoleEnc, CN: "gmgate platform"},
	)}
	fileKey := filepath.Join(v.Dir, "file-pii.key")
	if err := os.WriteFile(fileKey, []byte("00112233445566778899aabbccddeeff\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ref := func(o string) string { return fmt.Sprintf("\"pkcs11:token=%s;object=%s\"", v.Label, o) }
	v.sm4Lines = "\tkey pii " + ref("pii") + " {\n\t\ttype sm4\n\t}\n\tkey pii-other " + ref("pii-other") + " {\n\t\ttype sm4\n\t}\n"
	v.vaultCmd(t, "generate", "pii")
	v.vaultCmd(t, "generate", "pii-other")
	v.sm4Lines += "\tkey file-pii file:" + fileKey + " {\n\t\ttype sm4\n\t}\n"

	// Callers, signers and a CRL, all from the token's CA.
	issue := func(cn string) *pki.Pair {
		p, err := v.CA.IssueClientPair(pki.IssueOptions{CommonName: cn, Organization: []string{"gmgate platform"}})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	settlementPair, riskPair, intruderPair := issue("settlement"), issue("risk"), issue("intruder")
	expired, err := v.CA.IssuePlatform(pki.IssueOptions{CommonName: "expired signer", NotBefore: time.Now().Add(-72 * time.Hour), Validity: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	revoked, err := v.CA.IssuePlatform(pki.IssueOptions{CommonName: "revoked signer", SerialNumber: big.NewInt(0x7e7)})
	if err != nil {
		t.Fatal(err)
	}
	crl, err := v.CA.CreateCRL([]smx509.RevocationListEntry{{SerialNumber: revoked.Cert.SerialNumber, RevocationTime: time.Now().Add(-time.Hour)}}, big.NewInt(1), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	crlFile := filepath.Join(v.Dir, "ca.crl")
	if err := os.WriteFile(crlFile, pki.EncodeCRLPEM(crl), 0o644); err != nil {
		t.Fatal(err)
	}

	port := freePort(t)
	start := func() *instance {
		cf := strings.NewReplacer("{VAULT}", v.block(), "{PORT}", fmt.Sprint(port), "{CA}", v.CAFile, "{CRL}", crlFile,
			"{RISKFP}", pki.FingerprintSM3(riskPair.Sign.Cert)).Replace(cryptoCaddyfile)
		return startGmgate(t, cf, v.Env...)
	}
	ctx := context.Background()

	// A version-1 ciphertext, made before two rotations.
	inst := start()
	settlement, _ := cryptoClient(t, v.CAFile, settlementPair, port)
	ctV1, err := settlement.Encrypt(ctx, "pii", []byte("old card 6222000011112222"), nil)
	if err != nil || !strings.HasPrefix(ctV1, "gm:v1:") {
		t.Fatalf("encrypt before rotation: %q %v", ctV1, err)
	}
	inst.stop()
	v.vaultCmd(t, "rotate", "pii")
	v.vaultCmd(t, "rotate", "pii")
	inst = start()

	settlement, settlementHTTP := cryptoClient(t, v.CAFile, settlementPair, port)
	risk, riskHTTP := cryptoClient(t, v.CAFile, riskPair, port)
	_, intruderHTTP := cryptoClient(t, v.CAFile, intruderPair, port)
	base := fmt.Sprintf("https://127.0.0.1:%d/shf/v1/", port)

	// Good paths through the Go client.
	secret := []byte("card 6222021234567890")
	ct, err := settlement.Encrypt(ctx, "pii", secret, []byte("order-7"))
	if err != nil || !strings.HasPrefix(ct, "gm:v3:") {
		t.Fatalf("encrypt: %q %v", ct, err)
	}
	if pt, err := risk.Decrypt(ctx, "pii", ct, []byte("order-7")); err != nil || !bytes.Equal(pt, secret) {
		t.Fatalf("risk decrypt v3: %v", err)
	}
	if pt, err := settlement.Decrypt(ctx, "pii", ctV1, nil); err != nil || string(pt) != "old card 6222000011112222" {
		t.Fatalf("settlement decrypt v1: %v", err)
	}
	rw, err := settlement.Rewrap(ctx, "pii", ctV1, nil)
	if err != nil || !strings.HasPrefix(rw, "gm:v3:") {
		t.Fatalf("rewrap: %q %v", rw, err)
	}
	if _, err := risk.Decrypt(ctx, "pii", rw, nil); err != nil {
		t.Fatalf("risk decrypts the rewrapped ciphertext: %v", err)
	}
	fct, err := settlement.Encrypt(ctx, "file-pii", secret, nil)
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := settlement.Decrypt(ctx, "file-pii", fct, nil); err != nil || !bytes.Equal(pt, secret) {
		t.Fatalf("file key round trip: %v", err)
	}
	msg := []byte("settlement batch 2026-12-04")
	sig, ver, err := settlement.Sign(ctx, "platform-sign", msg, "")
	platformCert := v.Cert(t, "platform-sign")
	if err != nil || ver != 1 || !sm2.VerifyASN1WithSM2(platformCert.PublicKey.(*ecdsa.PublicKey), nil, msg, sig) {
		t.Fatalf("sign: version %d %v", ver, err)
	}
	sigs, err := settlement.Batch(ctx, "Sign", "platform-sign", []client.CryptoItem{{Data: []byte("a")}, {Data: []byte("b")}})
	if err != nil || sigs[1].Err() != nil || !sm2.VerifyASN1WithSM2(platformCert.PublicKey.(*ecdsa.PublicKey), nil, []byte("b"), sigs[1].Signature) {
		t.Fatalf("batch sign: %v", err)
	}
	cms, err := settlement.SignMessage(ctx, "platform-sign", msg, true)
	if err != nil {
		t.Fatal(err)
	}
	signer, _, err := settlement.VerifyMessage(ctx, cms, msg)
	if err != nil || signer.Subject != platformCert.Subject.String() {
		t.Fatalf("verify_message: %+v %v", signer, err)
	}
	vmh := settlement.NewVerifyMessageHasher(cms) // the same SignedData by the content's SM3
	vmh.Write(msg)
	if signer, err := vmh.Verify(ctx); err != nil || signer.Subject != platformCert.Subject.String() {
		t.Fatalf("verify_message by digest: %+v %v", signer, err)
	}
	encCert := pemString(v.Cert(t, "platform-enc"))
	env, err := settlement.One(ctx, "SealEnvelope", "", client.CryptoItem{Plaintext: secret, Certificate: encCert, GCM: true})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := settlement.One(ctx, "OpenEnvelope", "platform-enc", client.CryptoItem{Envelope: env.Envelope}); err != nil || !bytes.Equal(r.Plaintext, secret) {
		t.Fatalf("open envelope: %v", err)
	}
	otherCT, err := settlement.Encrypt(ctx, "pii-other", secret, nil)
	if err != nil {
		t.Fatal(err)
	}

	signedBy := func(iss *pki.Issued) string {
		sd, err := pkcs7.NewSignedData(msg)
		if err != nil {
			t.Fatal(err)
		}
		sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSM3)
		if err := sd.AddSigner(iss.Cert, iss.Key, pkcs7.SignerInfoConfig{}); err != nil {
			t.Fatal(err)
		}
		der, err := sd.Finish()
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf(`{"cms":%q}`, base64.StdEncoding.EncodeToString(der))
	}
	// A detached SignedData without signed attributes, given by digest (refused before the
	// signer is judged, so the expired signer does not matter).
	noAttrs := func() string {
		sd, err := pkcs7.NewSignedData(msg)
		if err != nil {
			t.Fatal(err)
		}
		sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSM3)
		if err := sd.SignWithoutAttr(expired.Cert, expired.Key, pkcs7.SignerInfoConfig{}); err != nil {
			t.Fatal(err)
		}
		sd.Detach()
		der, err := sd.Finish()
		if err != nil {
			t.Fatal(err)
		}
		d := sm3.Sum(msg)
		return fmt.Sprintf(`{"cms":%q,"digest":%q}`, base64.StdEncoding.EncodeToString(der), base64.StdEncoding.EncodeToString(d[:]))
	}
	flipped := func(ct string) string {
		out, err := attack.FlipCiphertextBit(ct, 20)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	relabelled, err := attack.RelabelCiphertextVersion(ctV1, 3)
	if err != nil {
		t.Fatal(err)
	}
	b64 := func(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

	rows := []struct {
		name   string
		hc     *http.Client
		method string
		path   string
		body   string
		status int
		code   string
	}{
		{"unknown key", settlementHTTP, "POST", "Encrypt", `{"key":"missing","plaintext":"eA=="}`, 404, "crypto_unknown_key"},
		{"wrong operation for the caller", riskHTTP, "POST", "Encrypt", `{"key":"pii","plaintext":"eA=="}`, 403, "crypto_forbidden"},
		{"key not granted to the caller", riskHTTP, "POST", "Decrypt", fmt.Sprintf(`{"key":"pii-other","ciphertext":%q}`, otherCT), 403, "crypto_forbidden"},
		{"valid certificate, not a caller", intruderHTTP, "POST", "Encrypt", `{"key":"pii","plaintext":"eA=="}`, 401, "crypto_unauthenticated"},
		{"GM/T 0136 body, not a caller", intruderHTTP, "POST", "Encrypt", `{"Data":[{"Name":"IV","Type":"Hex","Value":"00"}]}`, 401, "crypto_unauthenticated"},
		{"GM/T 0136 body with IV", settlementHTTP, "POST", "Encrypt", `{"Data":[{"Name":"KeyId","Type":"Raw","Value":"pii"},{"Name":"IV","Type":"Hex","Value":"00"}]}`, 400, "crypto_malformed"},
		{"malformed JSON", settlementHTTP, "POST", "Encrypt", `{"key":"pii","plaintext":`, 400, "crypto_malformed"},
		{"field the operation does not take", settlementHTTP, "POST", "Encrypt", `{"key":"pii","plaintext":"eA==","digest":"eA=="}`, 400, "crypto_malformed"},
		{"oversized body", settlementHTTP, "POST", "Encrypt", `{"key":"pii","plaintext":"` + strings.Repeat("A", 70<<10) + `"}`, 413, "crypto_too_large"},
		{"oversized item", settlementHTTP, "POST", "Encrypt", `{"key":"pii","plaintext":"` + b64(make([]byte, 9<<10)) + `"}`, 413, "crypto_too_large"},
		{"tampered ciphertext", settlementHTTP, "POST", "Decrypt", fmt.Sprintf(`{"key":"pii","ciphertext":%q,"context":%q}`, flipped(ct), b64([]byte("order-7"))), 400, "crypto_bad_ciphertext"},
		{"ciphertext of another key", settlementHTTP, "POST", "Decrypt", fmt.Sprintf(`{"key":"pii","ciphertext":%q}`, otherCT), 400, "crypto_bad_ciphertext"},
		{"another record's context", settlementHTTP, "POST", "Decrypt", fmt.Sprintf(`{"key":"pii","ciphertext":%q,"context":%q}`, ct, b64([]byte("order-8"))), 400, "crypto_bad_ciphertext"},
		{"old ciphertext relabelled as the newest version", riskHTTP, "POST", "Decrypt", fmt.Sprintf(`{"key":"pii","ciphertext":%q}`, relabelled), 400, "crypto_bad_ciphertext"},
		{"version below the caller's minimum", riskHTTP, "POST", "Decrypt", fmt.Sprintf(`{"key":"pii","ciphertext":%q}`, ctV1), 403, "crypto_version_retired"},
		{"expired signer", settlementHTTP, "POST", "VerifyMessage", signedBy(expired), 422, "crypto_cert_expired"},
		{"revoked signer", settlementHTTP, "POST", "VerifyMessage", signedBy(revoked), 422, "crypto_cert_revoked"},
		{"detached message by digest, no signed attributes", settlementHTTP, "POST", "VerifyMessage", noAttrs(), 422, "crypto_content_required"},
		{"detached message by the digest of other content", settlementHTTP, "POST", "VerifyMessage",
			fmt.Sprintf(`{"cms":%q,"digest":%q}`, b64(cms), b64(sm3.New().Sum(nil))), 422, "crypto_bad_signature"},
		{"detached message by a 16-byte digest", settlementHTTP, "POST", "VerifyMessage",
			fmt.Sprintf(`{"cms":%q,"digest":%q}`, b64(cms), b64(make([]byte, 16))), 400, "crypto_malformed"},
		{"unknown operation", settlementHTTP, "POST", "ExportPrivateKey", `{"key":"pii"}`, 404, "crypto_unknown_operation"},
		{"GET", settlementHTTP, "GET", "KeyInfo", ``, 404, "crypto_unknown_operation"},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			req, err := http.NewRequest(r.method, base+r.path, strings.NewReader(r.body))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := r.hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var got struct{ Code, Message string }
			json.Unmarshal(body, &got)
			if resp.StatusCode != r.status || got.Code != r.code || resp.Header.Get("Gm-Crypto-Code") != r.code {
				t.Fatalf("status %d body %s, want %d %s", resp.StatusCode, body, r.status, r.code)
			}
			if resp.Header.Get("Cache-Control") != "no-store" || bytes.Contains(body, []byte("6222")) {
				t.Fatalf("refusal headers/body: %v %s", resp.Header, body)
			}
		})
	}
	// The same refusal through the Go client is a *CryptoError with its code.
	_, err = risk.Decrypt(ctx, "pii", ctV1, nil)
	var ce *client.CryptoError
	if !errors.As(err, &ce) || ce.Code != "crypto_version_retired" || ce.Status != 403 {
		t.Fatalf("client error %v", err)
	}

	// Rotation through the service (RotateKey): version 4 is made in the token by the vault's
	// own rotation and encrypts at once, without a reload; version 1 still decrypts for
	// settlement, risk (min_version 3) decrypts version 4.
	nv, err := settlement.Rotate(ctx, "pii")
	if err != nil || nv != 4 {
		t.Fatalf("rotate: version %d, %v", nv, err)
	}
	ct4, err := settlement.Encrypt(ctx, "pii", secret, []byte("order-9"))
	if err != nil || !strings.HasPrefix(ct4, "gm:v4:") {
		t.Fatalf("encrypt after rotate: %q %v", ct4, err)
	}
	if pt, err := risk.Decrypt(ctx, "pii", ct4, []byte("order-9")); err != nil || !bytes.Equal(pt, secret) {
		t.Fatalf("risk decrypts version 4: %v", err)
	}
	if pt, err := settlement.Decrypt(ctx, "pii", ctV1, nil); err != nil || string(pt) != "old card 6222000011112222" {
		t.Fatalf("version 1 after rotate: %v", err)
	}
	if r, err := settlement.One(ctx, "KeyInfo", "pii", client.CryptoItem{}); err != nil || r.LatestVersion != 4 || len(r.Versions) != 4 {
		t.Fatalf("key_info after rotate: %+v %v", r, err)
	}
	_, err = settlement.Rotate(ctx, "file-pii")
	if !errors.As(err, &ce) || ce.Code != "crypto_wrong_key_type" {
		t.Fatalf("rotate a file key: %v", err)
	}
	_, err = risk.Rotate(ctx, "pii")
	if !errors.As(err, &ce) || ce.Code != "crypto_forbidden" {
		t.Fatalf("risk rotates: %v", err)
	}

	// Metrics: per caller, operation, key and code.
	m := scrapeMetrics(t, inst.admin)
	for _, l := range []map[string]string{
		{"caller": "risk", "op": "decrypt", "key": "pii", "code": "crypto_version_retired"},
		{"caller": "risk", "op": "decrypt", "key": "pii", "code": "ok"},
		{"caller": "-", "op": "encrypt", "key": "pii", "code": "crypto_unauthenticated"},
		{"caller": "settlement", "op": "verify_message", "key": "", "code": "crypto_cert_revoked"},
		{"caller": "settlement", "op": "rotate", "key": "pii", "code": "ok"},
		{"caller": "settlement", "op": "rotate", "key": "file-pii", "code": "crypto_wrong_key_type"},
	} {
		if n, ok := m.sum("gmgate_crypto_requests_total", l); !ok || n < 1 {
			t.Errorf("gmgate_crypto_requests_total%v = %v (%v)", l, n, ok)
		}
	}
	if n, ok := m.sum("gmgate_crypto_items_total", map[string]string{"op": "sign", "key": "platform-sign", "code": "ok"}); !ok || n < 3 {
		t.Errorf("gmgate_crypto_items_total sign = %v", n)
	}

	// Audit: one entry per request, caller and key named, never the plaintext.
	inst.stop()
	logs, _ := filepath.Glob(filepath.Join(inst.dir, "audit", "audit.log.*"))
	var all []byte
	for _, l := range logs {
		b, _ := os.ReadFile(l)
		all = append(all, b...)
	}
	for _, want := range []string{`"scheme":"gm_crypto/decrypt"`, `"key_id":"risk:pii@v3"`, `"reason":"crypto_version_retired"`,
		`"key_id":"settlement:pii@v1"`, `"scheme":"gm_crypto/verify_message"`, `"reason":"crypto_cert_revoked"`, `"reason":"crypto_unauthenticated"`,
		`"scheme":"gm_crypto/rotate","key_id":"settlement:pii@v4"`} {
		if !bytes.Contains(all, []byte(want)) {
			t.Errorf("audit log lacks %s", want)
		}
	}
	for _, secretText := range []string{"6222021234567890", b64(secret), "6222000011112222"} {
		if bytes.Contains(all, []byte(secretText)) {
			t.Errorf("audit log contains plaintext %q", secretText)
		}
	}
	if out := inst.out.String(); strings.Contains(out, "6222021234567890") || strings.Contains(out, b64(secret)) {
		t.Error("process output contains plaintext")
	}

	// The rotated version is in the token: a new process loads it.
	start()
	risk, _ = cryptoClient(t, v.CAFile, riskPair, port)
	if pt, err := risk.Decrypt(ctx, "pii", ct4, []byte("order-9")); err != nil || !bytes.Equal(pt, secret) {
		t.Fatalf("version 4 after a restart: %v", err)
	}
}

func pemString(c *smx509.Certificate) string { return string(pki.EncodeCertificatesPEM(c)) }
