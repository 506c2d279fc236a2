package client_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/emmansun/gmsm/pkcs7"
	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/client"
	"github.com/gmgate/gmgate/cryptosvc"
	"github.com/gmgate/gmgate/keyvault"
	"github.com/gmgate/gmgate/pki"
)

// TestCryptoHashers: GM/T 0029's Init/Update/Final as client-side hashing. Megabytes are
// written to the hashers, the requests that reach the service stay a few hundred bytes, and
// the results verify independently over the whole data: the raw signature with the key's
// configured user ID, the detached SignedData with gmsm's pkcs7 and through the service by the
// content's digest, the verification by certificate (and a changed byte is refused by both
// verifications).
func TestCryptoHashers(t *testing.T) {
	dir := t.TempDir()
	root, _, err := pki.NewRootCA(pki.IssueOptions{CommonName: "hasher test root"})
	if err != nil {
		t.Fatal(err)
	}
	platform, err := root.IssuePlatform(pki.IssueOptions{CommonName: "platform-sign"})
	if err != nil {
		t.Fatal(err)
	}
	signer, err := root.IssuePlatform(pki.IssueOptions{CommonName: "bank signer"})
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	keyPEM, err := pki.MarshalPrivateKeyPEM(platform.Key, nil)
	if err != nil {
		t.Fatal(err)
	}
	v, err := keyvault.Open(keyvault.Config{Keys: []keyvault.KeyConfig{{Name: "platform-sign", Type: keyvault.KeyTypeSM2,
		Ref: "file:" + write("k.pem", keyPEM), Certificate: write("c.pem", pki.EncodeCertificatesPEM(platform.Cert)), UserID: "settlement@gmgate"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	pv, err := pki.NewVerifier(pki.VerifierOptions{Roots: []*smx509.Certificate{root.Cert}})
	if err != nil {
		t.Fatal(err)
	}
	pol, err := cryptosvc.NewPolicy(cryptosvc.PolicyConfig{Callers: []cryptosvc.CallerConfig{{Name: "app", SubjectCN: "app"}},
		Rules: []cryptosvc.Rule{{Caller: "app", Ops: []cryptosvc.Op{"sign", "sign_message", "key_info"}, Key: "platform-sign"},
			{Caller: "app", Ops: []cryptosvc.Op{"verify_data", "verify_message"}}}})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := cryptosvc.New(cryptosvc.Options{Keys: cryptosvc.VaultKeys(v), Policy: pol, Certificates: pv})
	if err != nil {
		t.Fatal(err)
	}
	var largest atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if n := int64(len(body)); n > largest.Load() {
			largest.Store(n)
		}
		op, _ := cryptosvc.OpForPath(strings.TrimPrefix(r.URL.Path, "/shf/v1/"))
		resp, err := svc.Do(r.Context(), cryptosvc.Caller{Name: "app"}, op, body, "")
		if err != nil {
			cryptosvc.WriteError(w, cryptosvc.CodeOf(err))
			return
		}
		out, _ := resp.MarshalJSON()
		w.Write(out)
	}))
	defer srv.Close()
	c, err := client.NewCryptoService(srv.URL, client.Config{Transport: srv.Client().Transport})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	data := make([]byte, 3<<20)
	rand.Read(data)
	feed := func(w io.Writer) {
		for off := 0; off < len(data); off += 64 << 10 {
			w.Write(data[off:min(off+64<<10, len(data))])
		}
	}

	sh, err := c.NewSignHasher(ctx, "platform-sign", "")
	if err != nil {
		t.Fatal(err)
	}
	feed(sh)
	sig, ver, err := sh.Sign(ctx)
	if err != nil || ver != 1 {
		t.Fatalf("sign: %v", err)
	}
	if !sm2.VerifyASN1WithSM2(platform.Cert.PublicKey.(*ecdsa.PublicKey), []byte("settlement@gmgate"), data, sig) {
		t.Fatal("the streamed signature does not verify over the data with the key's user ID")
	}

	mh := c.NewMessageHasher("platform-sign")
	feed(mh)
	cms, err := mh.SignMessage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p7, err := pkcs7.Parse(cms)
	if err != nil || len(p7.Content) != 0 {
		t.Fatalf("detached SignedData: %v", err)
	}
	p7.Content = data
	pool := smx509.NewCertPool()
	pool.AddCert(root.Cert)
	if err := p7.VerifyWithChain(pool); err != nil {
		t.Fatalf("gmsm does not verify the streamed SignedData: %v", err)
	}
	// VerifySignedMessage Init/Update/Final: the detached SignedData verified by the content's
	// digest (and, below, refused over a changed byte).
	vmh := c.NewVerifyMessageHasher(cms)
	feed(vmh)
	if who, err := vmh.Verify(ctx); err != nil || who.Subject != platform.Cert.Subject.String() {
		t.Fatalf("verify message hasher: %+v %v", who, err)
	}

	bankSig, err := signer.Key.Sign(rand.Reader, data, sm2.DefaultSM2SignerOpts)
	if err != nil {
		t.Fatal(err)
	}
	vh, err := c.NewVerifyHasher(signer.Cert, "")
	if err != nil {
		t.Fatal(err)
	}
	feed(vh)
	who, err := vh.Verify(ctx, bankSig)
	if err != nil || who.Subject != signer.Cert.Subject.String() {
		t.Fatalf("verify hasher: %+v %v", who, err)
	}
	data[12345] ^= 1
	vh, _ = c.NewVerifyHasher(signer.Cert, "")
	feed(vh)
	_, err = vh.Verify(ctx, bankSig)
	var ce *client.CryptoError
	if !errors.As(err, &ce) || ce.Code != "crypto_bad_signature" {
		t.Fatalf("changed data: %v", err)
	}
	vmh = c.NewVerifyMessageHasher(cms)
	feed(vmh)
	if _, err := vmh.Verify(ctx); !errors.As(err, &ce) || ce.Code != "crypto_bad_signature" {
		t.Fatalf("verify message hasher, changed data: %v", err)
	}
	if n := largest.Load(); n > 4<<10 {
		t.Fatalf("a request of %d bytes reached the service: the data crossed the wire", n)
	}
}
