package cryptosvc

import (
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/keyvault"
	"github.com/gmgate/gmgate/pki"
)

// testPKI is a root, an intermediate, the platform's signing and encryption certificates (keys
// in a file vault), and outside signers: a good one, an expired one, a revoked one (in the
// intermediate's CRL), one under a foreign root, and a client encryption certificate.
type testPKI struct {
	dir                          string
	root, inter, foreign         *pki.CA
	platform, platformEnc        *pki.Issued
	signer, expired, revoked     *pki.Issued
	foreignSigner                *pki.Issued
	clientPair, revokedEncPair   *pki.Pair
	rootPath, interPath, crlPath string
	verifier                     *pki.Verifier
	vault                        *keyvault.Vault
}

var (
	tpOnce sync.Once
	tp     *testPKI
	tpErr  error
)

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func loadTestPKI(t testing.TB) *testPKI {
	t.Helper()
	tpOnce.Do(func() {
		defer func() {
			if r := recover(); r != nil {
				tpErr = r.(error)
			}
		}()
		tp = buildTestPKI()
	})
	if tpErr != nil {
		t.Fatal(tpErr)
	}
	return tp
}

func buildTestPKI() *testPKI {
	p := &testPKI{dir: must(os.MkdirTemp("", "cryptosvc-pki-"))}
	var err error
	if p.root, _, err = pki.NewRootCA(pki.IssueOptions{CommonName: "gmgate test root"}); err != nil {
		panic(err)
	}
	p.inter, _ = must2(p.root.IssueIntermediateCA(pki.IssueOptions{CommonName: "gmgate test intermediate"}))
	p.foreign, _ = must2(pki.NewRootCA(pki.IssueOptions{CommonName: "foreign root"}))
	p.platform = must(p.inter.IssuePlatform(pki.IssueOptions{CommonName: "platform-sign"}))
	p.signer = must(p.inter.IssuePlatform(pki.IssueOptions{CommonName: "settlement signer", Organization: []string{"gmgate"}}))
	p.expired = must(p.inter.IssuePlatform(pki.IssueOptions{CommonName: "expired signer",
		NotBefore: time.Now().Add(-48 * time.Hour), Validity: 24 * time.Hour}))
	p.revoked = must(p.inter.IssuePlatform(pki.IssueOptions{CommonName: "revoked signer", SerialNumber: big.NewInt(0x5eed)}))
	p.foreignSigner = must(p.foreign.IssuePlatform(pki.IssueOptions{CommonName: "foreign signer"}))
	p.clientPair = must(p.inter.IssueClientPair(pki.IssueOptions{CommonName: "risk"}))
	p.revokedEncPair = must(p.inter.IssueClientPair(pki.IssueOptions{CommonName: "revoked recipient"}))
	pair := must(p.inter.IssueClientPair(pki.IssueOptions{CommonName: "platform"}))
	p.platformEnc = pair.Enc
	crl := must(p.inter.CreateCRL([]smx509.RevocationListEntry{
		{SerialNumber: p.revoked.Cert.SerialNumber, RevocationTime: time.Now().Add(-time.Hour)},
		{SerialNumber: p.revokedEncPair.Enc.Cert.SerialNumber, RevocationTime: time.Now().Add(-time.Hour)},
	}, big.NewInt(1), 24*time.Hour))
	write := func(name string, data []byte) string {
		path := filepath.Join(p.dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			panic(err)
		}
		return path
	}
	p.rootPath = write("root.pem", pki.EncodeCertificatesPEM(p.root.Cert))
	p.interPath = write("inter.pem", pki.EncodeCertificatesPEM(p.inter.Cert))
	p.crlPath = write("inter.crl", pki.EncodeCRLPEM(crl))
	store := must(pki.NewCRLStore([]string{p.crlPath}, pki.CRLOptions{Issuers: []*smx509.Certificate{p.inter.Cert}}))
	p.verifier = must(pki.NewVerifier(pki.VerifierOptions{Roots: []*smx509.Certificate{p.root.Cert},
		Intermediates: []*smx509.Certificate{p.inter.Cert}, CRLs: store}))
	keyFile := func(name string, iss *pki.Issued) string {
		return write(name+".key", must(pki.MarshalPrivateKeyPEM(iss.Key, nil)))
	}
	cfg := keyvault.Config{Keys: []keyvault.KeyConfig{
		{Name: "platform-sign", Type: keyvault.KeyTypeSM2, Ref: "file:" + keyFile("platform-sign", p.platform),
			Certificate: write("platform-sign.pem", pki.EncodeCertificatesPEM(p.platform.Cert, p.inter.Cert)), UserID: "settlement@gmgate"},
		{Name: "platform-enc", Type: keyvault.KeyTypeSM2, Ref: "file:" + keyFile("platform-enc", p.platformEnc),
			Certificate: write("platform-enc.pem", pki.EncodeCertificatesPEM(p.platformEnc.Cert, p.inter.Cert))},
	}}
	p.vault = must(keyvault.Open(cfg))
	return p
}

func must2[A, B any](a A, b B, err error) (A, B) {
	if err != nil {
		panic(err)
	}
	return a, b
}

// certService is a service over the test PKI's vault with certificate checks, for callers
// settlement (everything) and risk (verify and validate only).
func certService(t testing.TB, p *testPKI, sink *recSink) *Service {
	t.Helper()
	pol, err := NewPolicy(PolicyConfig{
		Callers: []CallerConfig{{Name: "settlement", SubjectCN: "settlement"}, {Name: "risk", SubjectCN: "risk"}},
		Rules: []Rule{
			{Caller: "settlement", Ops: []Op{OpSign, OpVerify, OpSignMessage, OpKeyInfo}, Key: "platform-sign"},
			{Caller: "settlement", Ops: []Op{OpOpen, OpSignMessage}, Key: "platform-enc"},
			{Caller: "settlement", Ops: []Op{OpVerifyMessage, OpVerifyData, OpValidateCert, OpParseCert, OpSeal}},
			{Caller: "risk", Ops: []Op{OpVerifyMessage, OpValidateCert}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Keys: VaultKeys(p.vault), Policy: pol, Certificates: p.verifier}
	if sink != nil {
		o.Audit = sink
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
