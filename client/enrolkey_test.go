package client

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/audit"
	"github.com/gmgate/gmgate/cosign"
	"github.com/gmgate/gmgate/cosign/platform"
	"github.com/gmgate/gmgate/enroll"
	"github.com/gmgate/gmgate/internal/attack"
	"github.com/gmgate/gmgate/internal/testenv"
	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/sealstore"
)

// countingAudit counts the platform's accepted co-operations by scheme.
type countingAudit struct{ sign, decrypt atomic.Int32 }

func (a *countingAudit) Append(r audit.Record) error {
	if r.Verdict == audit.VerdictAccept {
		switch r.Scheme {
		case "cosign-sign":
			a.sign.Add(1)
		case "cosign-decrypt":
			a.decrypt.Add(1)
		}
	}
	return nil
}

// jointPlatform runs gm_cosign's core (bind_instruction as bind); cfgFor gives a terminal's
// CoSignConfig for a key ID (tokens for that key).
func jointPlatform(t *testing.T, bind bool) (cfgFor func(keyID string) CoSignConfig, shares *cosignShares, aud *countingAudit) {
	mac := cosignMAC("enrol test token key")
	aud = &countingAudit{}
	shares = &cosignShares{m: map[string][]sealstore.Version{}}
	svc, err := platform.New(platform.Config{Shares: shares, Audit: aud, TokenMAC: mac, BindInstruction: bind, RatePerMinute: 6000, Burst: 100})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(svc)
	t.Cleanup(srv.Close)
	return func(keyID string) CoSignConfig {
		return CoSignConfig{URL: srv.URL + "/cosign", SendInstruction: bind, Token: func(op string) (string, error) {
			return platform.IssueToken(mac, keyID, []string{op}, time.Now().Add(time.Minute))
		}}
	}, shares, aud
}

// TestEnrollCoSigner: a collaborative key enrols through gm_enroll: the CSR is co-signed (one
// co-signature, bound to the request's CertificationRequestInfo), the signing certificate is
// for the joint key, and the enveloped encryption key opens by collaborative decryption (one
// co-decryption). It downloads again, renews for the same joint key (default) and, with
// Renewer.NewKey, re-keys to a new joint key; the renewer switches only once the check passes.
func TestEnrollCoSigner(t *testing.T) {
	ts, st, root := enrolServer(t)
	cfgFor, _, aud := jointPlatform(t, true)
	cs, err := EnrollCoSigner(cfgFor("pos-1"), "pos-1")
	if err != nil {
		t.Fatal(err)
	}
	joint := cs.Public().(*ecdsa.PublicKey)
	tok, _, err := enroll.IssueToken(st, enroll.TokenOptions{Profile: "terminal", CommonName: "POS-1"})
	if err != nil {
		t.Fatal(err)
	}
	e := &Enroller{BaseURL: ts.URL + "/.well-known/est", Roots: []*smx509.Certificate{root.Cert}}
	ctx := context.Background()
	p, err := e.EnrollKey(ctx, tok, "POS-1", nil, cs)
	if err != nil {
		t.Fatal(err)
	}
	if !joint.Equal(p.Sign.Certificate.PublicKey) || p.Sign.Key != crypto.PrivateKey(cs) {
		t.Fatal("the signing certificate is not for the joint key, or the pair does not carry the CoSigner")
	}
	if !p.Enc.Key.(*sm2.PrivateKey).PublicKey.Equal(p.Enc.Certificate.PublicKey) {
		t.Fatal("encryption key does not match its certificate")
	}
	if s, d := aud.sign.Load(), aud.decrypt.Load(); s != 1 || d != 1 {
		t.Fatalf("enrolment made %d co-signatures and %d co-decryptions, want 1 and 1", s, d)
	}
	if d, err := e.Download(ctx, cs); err != nil || d.Serial != p.Serial || !d.Enc.Certificate.Equal(p.Enc.Certificate) {
		t.Fatalf("download with the CoSigner: %v", err)
	}

	// Renewal keeps the joint key.
	checked := 0
	r := &Renewer{Enroller: e, RenewBefore: 49 * time.Hour, Check: func(_ context.Context, n *EnrolledPair) error {
		checked++
		if checked == 1 {
			return errors.New("not yet")
		}
		return nil
	}}
	r.SetCurrent(p)
	if changed, err := r.RenewIfDue(ctx); changed || err == nil || r.Current() != p {
		t.Fatalf("failing check switched: %v %v", changed, err)
	}
	if changed, err := r.RenewIfDue(ctx); !changed || err != nil {
		t.Fatalf("renewal: %v %v", changed, err)
	}
	p2 := r.Current()
	if p2.Serial == p.Serial || !joint.Equal(p2.Sign.Certificate.PublicKey) || p2.Sign.Key != crypto.PrivateKey(cs) {
		t.Fatal("default renewal of a collaborative key is not for the same joint key")
	}

	// Re-key: a new joint key made through gm_cosign; the old CoSigner authorises the request.
	var next *CoSigner
	r.NewKey = func(context.Context, *EnrolledPair) (crypto.Signer, error) {
		var err error
		next, err = EnrollCoSigner(cfgFor("pos-1-b"), "pos-1-b")
		return next, err
	}
	r.SetCurrent(p2)
	if changed, err := r.RenewIfDue(ctx); !changed || err != nil {
		t.Fatalf("re-key: %v %v", changed, err)
	}
	p3 := r.Current()
	if !next.Public().(*ecdsa.PublicKey).Equal(p3.Sign.Certificate.PublicKey) || joint.Equal(p3.Sign.Certificate.PublicKey) {
		t.Fatal("re-key did not certify the new joint key")
	}
	if err := e.Revoke(ctx, p3); err != nil {
		t.Fatal(err)
	}
}

// TestAttackSingleShareProofOfPossession: a CSR for the joint public key cannot be made with one
// share. The holder of d_1 alone (a thief with the phone's key file) or of d_2 alone (a thief
// with the platform's share database) signing as if it were the whole key gives a request
// gm_enroll refuses (enroll_csr_invalid), and d_1 with a platform holding another d_2 (the
// thief's own gm_cosign) never even produces a request: the terminal's check of the
// co-signature under the joint key fails (cosign.ErrVerify).
func TestAttackSingleShareProofOfPossession(t *testing.T) {
	ts, st, root := enrolServer(t)
	cfgFor, shares, _ := jointPlatform(t, true)
	cs, err := EnrollCoSigner(cfgFor("pos-2"), "pos-2")
	if err != nil {
		t.Fatal(err)
	}
	e := &Enroller{BaseURL: ts.URL, Roots: []*smx509.Certificate{root.Cert}}
	good, err := newCSR(cs, "POS-2", nil)
	if err != nil {
		t.Fatal(err)
	}
	d1 := cs.current().Bytes()
	d2, _, err := shares.Get(platform.ShareKind, []byte("pos-2"))
	if err != nil {
		t.Fatal(err)
	}
	post := func(csr []byte) error {
		tok, _, err := enroll.IssueToken(st, enroll.TokenOptions{Profile: "terminal", CommonName: "POS-2"})
		if err != nil {
			t.Fatal(err)
		}
		req, err := e.request(context.Background(), enroll.OpSimpleEnroll, enroll.MediaPKCS10, encodeB64(csr))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		_, err = e.pair(req, cs)
		return err
	}
	for name, share := range map[string][]byte{"d1 alone": d1, "d2 alone": d2[:cosign.ScalarSize]} {
		k, err := attack.ShareAsKey(share)
		if err != nil {
			t.Fatal(err)
		}
		forged, err := attack.ResignCSR(good, k)
		if err != nil {
			t.Fatal(err)
		}
		if err := post(forged); !isCode(err, "enroll_csr_invalid") {
			t.Errorf("%s: CSR for the joint key accepted or refused otherwise: %v", name, err)
		}
	}
	// The thief's own platform: keygen for the stolen d_1's partial key gives it a d_2' of its own.
	thiefCfg, _, _ := jointPlatform(t, false)
	cfg := thiefCfg("pos-2")
	share, err := cosign.ParseShare(d1)
	if err != nil {
		t.Fatal(err)
	}
	var kg struct{ P2, PublicKey []byte }
	if err := cfg.call("keygen", map[string]any{"key_id": "pos-2", "p1": share.PartialPublicKey()}, &kg); err != nil {
		t.Fatal(err)
	}
	thief := &CoSigner{cfg: cfg, keyID: "pos-2", share: share, pub: cs.pub}
	if _, err := newCSR(thief, "POS-2", nil); !errors.Is(err, cosign.ErrVerify) {
		t.Fatalf("d1 with another platform's d2: %v, want cosign.ErrVerify", err)
	}
	// Control: the real pair of shares makes a request gm_enroll accepts.
	if err := post(good); err != nil {
		t.Fatalf("the co-signed request: %v", err)
	}
}

// TestAttackEnvelopeToAnotherTerminal: an encryption key enveloped to another terminal's joint
// key does not open by this terminal's collaborative decryption, and a pair issued for another
// terminal's key is refused before any co-decryption is spent on it.
func TestAttackEnvelopeToAnotherTerminal(t *testing.T) {
	ts, st, root := enrolServer(t)
	cfgFor, _, aud := jointPlatform(t, true)
	a, err := EnrollCoSigner(cfgFor("pos-a"), "pos-a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := EnrollCoSigner(cfgFor("pos-b"), "pos-b")
	if err != nil {
		t.Fatal(err)
	}
	encKey, _ := sm2.GenerateKey(rand.Reader)
	toB, err := sm2.MarshalEnvelopedPrivateKey(rand.Reader, b.Public().(*ecdsa.PublicKey), encKey)
	if err != nil {
		t.Fatal(err)
	}
	if k, err := openEnvelopedKey(b, toB); err != nil || !k.Equal(encKey) {
		t.Fatalf("control: b opens its own envelope: %v", err)
	}
	if _, err := openEnvelopedKey(a, toB); err == nil {
		t.Fatal("terminal a opened an envelope to terminal b's joint key")
	}

	// b's whole enrolment answer handed to a (a rogue or confused server): refused before the
	// envelope is opened.
	tok, _, _ := enroll.IssueToken(st, enroll.TokenOptions{Profile: "terminal", CommonName: "POS-B"})
	e := &Enroller{BaseURL: ts.URL, Roots: []*smx509.Certificate{root.Cert}}
	csr, err := newCSR(b, "POS-B", nil)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := e.request(context.Background(), enroll.OpSimpleEnroll, enroll.MediaPKCS10, encodeB64(csr))
	req.Header.Set("Authorization", "Bearer "+tok)
	before := aud.decrypt.Load()
	if _, err := e.pair(req, a); !errors.Is(err, ErrEnrolResponse) {
		t.Fatalf("b's pair accepted by a: %v", err)
	}
	if aud.decrypt.Load() != before {
		t.Fatal("a co-decryption was spent on another terminal's answer")
	}
}

// TestOpenEnvelopedKeyMatchesGmsm: for software keys the interface-based parse agrees with
// gmsm's smx509.ParseCSRResponse / sm2.ParseEnvelopedPrivateKey, and altered envelopes fail.
func TestOpenEnvelopedKeyMatchesGmsm(t *testing.T) {
	root, _, _ := pki.NewRootCA(pki.IssueOptions{CommonName: "envelope test CA"})
	sk, _ := sm2.GenerateKey(rand.Reader)
	ek, _ := sm2.GenerateKey(rand.Reader)
	sc, _ := root.IssueFor(&sk.PublicKey, pki.RoleSign, pki.IssueOptions{CommonName: "t"})
	ec, _ := root.IssueFor(&ek.PublicKey, pki.RoleEnc, pki.IssueOptions{CommonName: "t"})
	der, err := smx509.MarshalCSRResponse([]*smx509.Certificate{sc}, ek, []*smx509.Certificate{ec})
	if err != nil {
		t.Fatal(err)
	}
	want, err := smx509.ParseCSRResponse(sk, der)
	if err != nil {
		t.Fatal(err)
	}
	got, err := parseCSRResponse(der)
	if err != nil {
		t.Fatal(err)
	}
	k, err := openEnvelopedKey(sk, got.envelope)
	if err != nil || !k.Equal(want.EncryptPrivateKey) || !got.sign.Equal(want.SignCerts[0]) || !got.enc.Equal(want.EncryptCerts[0]) {
		t.Fatalf("differs from gmsm: %v", err)
	}
	env, _ := sm2.MarshalEnvelopedPrivateKey(rand.Reader, &sk.PublicKey, ek)
	for i := range env {
		bad := append([]byte(nil), env...)
		bad[i] ^= 0x01
		if k, err := openEnvelopedKey(sk, bad); err == nil && !k.Equal(ek) {
			t.Fatalf("altered byte %d gave another key", i)
		}
	}
}

// FuzzOpenEnrolResponse: hostile CSRResponses and envelopes never panic, and an envelope that
// opens gives the key its public key field names.
func FuzzOpenEnrolResponse(f *testing.F) {
	root, _, _ := pki.NewRootCA(pki.IssueOptions{CommonName: "fuzz CA"})
	sk, _ := sm2.GenerateKey(rand.Reader)
	ek, _ := sm2.GenerateKey(rand.Reader)
	sc, _ := root.IssueFor(&sk.PublicKey, pki.RoleSign, pki.IssueOptions{CommonName: "t"})
	ec, _ := root.IssueFor(&ek.PublicKey, pki.RoleEnc, pki.IssueOptions{CommonName: "t"})
	der, _ := smx509.MarshalCSRResponse([]*smx509.Certificate{sc}, ek, []*smx509.Certificate{ec})
	env, _ := sm2.MarshalEnvelopedPrivateKey(rand.Reader, &sk.PublicKey, ek)
	f.Add(der)
	f.Add(env)
	f.Add([]byte{0x30, 0x03, 0x31, 0x01, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, err := parseCSRResponse(b); err == nil && (r.sign == nil || r.enc == nil || len(r.envelope) == 0) {
			t.Fatal("accepted an incomplete CSRResponse")
		}
		if k, err := openEnvelopedKey(sk, b); err == nil && !k.Equal(ek) {
			t.Fatal("opened a key that is not the enveloped one")
		}
	})
}

// TestCoSignedCSRTongsuo: Tongsuo (an independent implementation) verifies the proof of
// possession of a co-signed PKCS#10 request for the joint key, and refuses the same request
// re-signed by the share d_1 alone.
func TestCoSignedCSRTongsuo(t *testing.T) {
	bin := testenv.TongsuoBin(t)
	cfgFor, _, _ := jointPlatform(t, true)
	cs, err := EnrollCoSigner(cfgFor("pos-ts"), "pos-ts")
	if err != nil {
		t.Fatal(err)
	}
	csr, err := newCSR(cs, "POS-7", nil)
	if err != nil {
		t.Fatal(err)
	}
	k1, _ := attack.ShareAsKey(cs.current().Bytes())
	forged, err := attack.ResignCSR(csr, k1)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	verify := func(der []byte) (string, error) {
		f := filepath.Join(dir, "req.pem")
		if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "req", "-in", f, "-verify", "-noout", "-vfyopt", "distid:1234567812345678")
		cmd.Env = append(os.Environ(), "OPENSSL_CONF="+filepath.Join(filepath.Dir(bin), "openssl.cnf"))
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := verify(csr); err != nil || !strings.Contains(out, "verify OK") {
		t.Fatalf("tongsuo req -verify of the co-signed request: %v\n%s", err, out)
	}
	if out, err := verify(forged); err == nil || !strings.Contains(out, "verify failure") {
		t.Fatalf("tongsuo verified the request signed by d_1 alone:\n%s", out)
	}
}
