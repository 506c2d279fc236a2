package keyvault

import (
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
)

func TestManagementLifecycle(t *testing.T) {
	needHSM(t)
	tc := tokenCfg("main", tokMain)
	tc.KEKLabel = "kek-" + randHex(4) // fresh KEK so Init really creates one
	o2, o4 := uniqueObject("m2"), uniqueObject("m4")
	cfg := Config{Tokens: []TokenConfig{tc}, Keys: []KeyConfig{
		{Name: "platform", Type: KeyTypeSM2, Ref: "pkcs11:token=" + tokMain + ";object=" + o2},
		{Name: "transport", Type: KeyTypeSM4, Ref: "pkcs11:token=" + tokMain + ";object=" + o4},
	}}
	// Without admin mode, missing keys (and KEK) fail closed.
	_, err := Open(cfg)
	mustKind(t, err, ErrKeyNotFound)

	admin, err := Open(cfg, WithAdmin())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	// Generate before init: no KEK in the token.
	_, err = admin.Generate("platform")
	mustKind(t, err, ErrKeyNotFound)

	res, err := admin.Init("")
	if err != nil || len(res) != 1 || !res[0].Created || !strings.Contains(res[0].String(), "created") {
		t.Fatalf("init: %+v %v", res, err)
	}
	res, err = admin.Init("main")
	if err != nil || res[0].Created {
		t.Fatalf("second init should find the KEK: %+v %v", res, err)
	}
	_, err = admin.Init("nope")
	mustKind(t, err, ErrTokenUnavailable)

	g, err := admin.Generate("platform")
	if err != nil || g.Current != 1 || len(g.Versions) != 1 || g.Fingerprint == "" {
		t.Fatalf("generate: %+v %v", g, err)
	}
	if _, err := admin.Generate("transport"); err != nil {
		t.Fatal(err)
	}
	_, err = admin.Generate("platform")
	mustKind(t, err, ErrExists)

	list, err := admin.List()
	if err != nil || len(list) != 2 {
		t.Fatalf("list: %v", err)
	}
	js, _ := json.Marshal(list)
	if !strings.Contains(string(js), `"current":1`) || !strings.Contains(list[0].String(), "versions 1*") {
		t.Fatalf("list output: %s / %s", js, list[0])
	}

	exp, err := admin.ExportPublic("platform")
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode([]byte(exp.PublicKeyPEM))
	pubAny, err := smx509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := admin.Signer("platform")
	if !pubAny.(*ecdsa.PublicKey).Equal(signer.Public()) {
		t.Fatal("exported public key differs")
	}

	csr, err := admin.CSR("platform", CSRRequest{Subject: pkixName("platform.gmgate.test"), DNSNames: []string{"platform.gmgate.test"}})
	if err != nil {
		t.Fatal(err)
	}
	cblk, _ := pem.Decode([]byte(csr.PEM))
	req, err := smx509.ParseCertificateRequest(cblk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := req.CheckSignature(); err != nil {
		t.Fatalf("CSR signature: %v", err)
	}
	if req.Subject.CommonName != "platform.gmgate.test" || !pubAny.(*ecdsa.PublicKey).Equal(req.PublicKey) {
		t.Fatal("CSR content wrong")
	}

	// Material encrypted/sealed under version 1.
	ct1, _ := sm2.Encrypt(rand.Reader, signer.Public().(*ecdsa.PublicKey), []byte("v1 secret"), nil)
	s4, _ := admin.SM4("transport")
	sealed1, err := s4.SealGCM([]byte("v1 data"), nil)
	if err != nil {
		t.Fatal(err)
	}

	// Rotate both.
	r, err := admin.Rotate("platform")
	if err != nil || r.Current != 2 || len(r.Versions) != 2 {
		t.Fatalf("rotate: %+v %v", r, err)
	}
	if _, err := admin.Rotate("transport"); err != nil {
		t.Fatal(err)
	}
	// A fresh vault (another process after `gmgate vault rotate`) sees both versions.
	v, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	vs, cur, err := v.Versions("platform")
	if err != nil || cur != 2 || len(vs) != 2 {
		t.Fatalf("versions: %v %d %v", vs, cur, err)
	}
	s2, _ := v.Signer("platform")
	if s2.Public().(*ecdsa.PublicKey).Equal(signer.Public()) {
		t.Fatal("rotation kept the same key")
	}
	_, err = v.Signer("platform@1")
	mustKind(t, err, ErrVersionRetired)
	if _, err := v.Signer("platform@2"); err != nil {
		t.Fatal(err)
	}
	d1, err := v.Decrypter("platform@1")
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := d1.Decrypt(nil, ct1, nil); err != nil || string(pt) != "v1 secret" {
		t.Fatalf("old version decrypt: %v", err)
	}
	d2, _ := v.Decrypter("platform")
	if _, err := d2.Decrypt(nil, ct1, nil); err == nil {
		t.Fatal("current version decrypted a v1 ciphertext")
	}
	pub1, _ := v.PublicKey("platform@1")
	if !pub1.(*ecdsa.PublicKey).Equal(signer.Public()) {
		t.Fatal("PublicKey(@1) wrong")
	}
	old4, err := v.SM4("transport@1")
	if err != nil || !old4.Retired() {
		t.Fatalf("old SM4: %v", err)
	}
	if pt, err := old4.OpenGCM(sealed1, nil); err != nil || string(pt) != "v1 data" {
		t.Fatalf("old SM4 open: %v", err)
	}
	_, err = old4.SealGCM([]byte("x"), nil)
	mustKind(t, err, ErrVersionRetired)
	_, err = old4.HMACSM3([]byte("x"))
	mustKind(t, err, ErrVersionRetired)
	cur4, _ := v.SM4("transport")
	if _, err := cur4.OpenGCM(sealed1, nil); err == nil {
		t.Fatal("current SM4 opened v1 data")
	}

	// Reload makes a rotation done elsewhere visible to a running vault.
	if _, err := admin.Rotate("platform"); err != nil {
		t.Fatal(err)
	}
	if err := v.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, cur, _ := v.Versions("platform"); cur != 3 {
		t.Fatalf("after reload current = %d, want 3", cur)
	}

	// Import: SM2 PEM and SM4 hex become the next version.
	imp := newSM2(t)
	ki, err := admin.Import("platform", sm2PEM(t, imp, []byte("pw")), []byte("pw"))
	if err != nil || ki.Current != 4 {
		t.Fatalf("import: %+v %v", ki, err)
	}
	pub4, _ := admin.PublicKey("platform")
	if !imp.PublicKey.Equal(pub4) {
		t.Fatal("imported key not current")
	}
	_, err = admin.Import("platform", []byte("junk"), nil)
	mustKind(t, err, ErrInvalidInput)
	_, err = admin.Import("transport", []byte("00112233"), nil)
	mustKind(t, err, ErrInvalidInput)
}

// After `rotate`, the version the configured certificate carries keeps signing and decrypting
// until the certificate of the new version is installed (no old-certificate/new-key mismatch);
// the CSR for that certificate is made with the new version.
func TestRotationKeepsCertifiedVersion(t *testing.T) {
	needHSM(t)
	obj := uniqueObject("rot")
	dir := t.TempDir()
	base := Config{Tokens: []TokenConfig{tokenCfg("main", tokMain)}, Keys: []KeyConfig{
		{Name: "srv", Type: KeyTypeSM2, Ref: "pkcs11:token=" + tokMain + ";object=" + obj},
	}}
	admin, err := Open(base, WithAdmin())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.Init(""); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Generate("srv"); err != nil {
		t.Fatal(err)
	}
	v1, _ := admin.Signer("srv")
	ca, _ := sm2.GenerateKey(rand.Reader)
	certFor := func(name string, pub any) string {
		tmpl := &smx509.Certificate{SerialNumber: big.NewInt(int64(len(name))), Subject: pkixName(name)}
		der, err := smx509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, ca)
		if err != nil {
			t.Fatal(err)
		}
		return writeFile(t, dir, name+".pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	}
	withCert := func(path string) Config {
		c := base
		c.Keys = []KeyConfig{base.Keys[0]}
		c.Keys[0].Certificate = path
		return c
	}
	cert1 := certFor("v1", v1.Public())

	if _, err := admin.Rotate("srv"); err != nil {
		t.Fatal(err)
	}
	v2, err := admin.Signer("srv@2")
	if err != nil {
		t.Fatal(err)
	}

	// A reload between rotate and the new certificate: version 1 still serves.
	v, err := Open(withCert(cert1))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	s, _ := v.Signer("srv")
	d, _ := v.Decrypter("srv")
	if !s.Public().(*ecdsa.PublicKey).Equal(v1.Public()) || !d.Public().(*ecdsa.PublicKey).Equal(v1.Public()) {
		t.Fatal("the new version serves while the certificate still carries the old one")
	}
	list, err := v.List()
	if err != nil || list[0].Current != 2 || list[0].InUse != 1 || !strings.Contains(list[0].String(), "1(in use") {
		t.Fatalf("list %+v %v", list, err)
	}
	csr, err := v.CSR("srv", CSRRequest{Subject: pkixName("v2")})
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode([]byte(csr.PEM))
	req, err := smx509.ParseCertificateRequest(blk.Bytes)
	if err != nil || !req.PublicKey.(*ecdsa.PublicKey).Equal(v2.Public()) || csr.Version != 2 {
		t.Fatalf("the CSR is not for the new version: %v", err)
	}

	// The new certificate installed: version 2 serves, version 1 only decrypts and verifies.
	v3, err := Open(withCert(certFor("v2", v2.Public())))
	if err != nil {
		t.Fatal(err)
	}
	defer v3.Close()
	s, _ = v3.Signer("srv")
	if !s.Public().(*ecdsa.PublicKey).Equal(v2.Public()) {
		t.Fatal("the new certificate did not bring the new version into use")
	}
	_, err = v3.Signer("srv@1")
	mustKind(t, err, ErrVersionRetired)
	if _, err := v3.Decrypter("srv@1"); err != nil {
		t.Fatal(err)
	}
}
