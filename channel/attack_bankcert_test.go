package channel

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/internal/testpki"
	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/signing"
)

// TestAttackRevokedBankReplyKey: the bank's reply-signing key is compromised; the bank revokes
// its certificate, or the intermediate CA that issued it expires. The channel checked the bank
// certificate's chain and CRLs once, when it was loaded, and afterwards only the leaf's own
// validity dates: whoever held the key kept forging replies the channel accepted and forwarded
// as the bank's word. Now the certificate a reply names is verified again (chain, every CA's
// validity, usage, CRLs) at most certRecheckTTL after the last check.
func TestAttackRevokedBankReplyKey(t *testing.T) {
	start := time.Now()
	var mu sync.Mutex
	now := start
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }

	rootKey, interKey, bankKey := testpki.Key(t), testpki.Key(t), testpki.Key(t)
	root := testpki.Issue(t, testpki.Spec{CN: "bank root", Usage: smx509.KeyUsageCertSign | smx509.KeyUsageCRLSign, IsCA: true,
		NotAfter: start.Add(240 * time.Hour)}, rootKey, nil, nil)
	inter := testpki.Issue(t, testpki.Spec{CN: "bank issuing CA", Usage: smx509.KeyUsageCertSign | smx509.KeyUsageCRLSign, IsCA: true,
		NotAfter: start.Add(2 * time.Hour)}, interKey, root, rootKey)
	bankCert := testpki.Issue(t, testpki.Spec{CN: "bank reply signer", Usage: smx509.KeyUsageDigitalSignature,
		NotAfter: start.Add(48 * time.Hour)}, bankKey, inter, interKey)
	platformKey := testpki.Key(t)
	platform := testpki.Issue(t, testpki.Spec{CN: "platform", Usage: smx509.KeyUsageDigitalSignature}, platformKey, root, rootKey)

	crlPath := filepath.Join(t.TempDir(), "bank.crl")
	writeCRL := func(revoked ...*smx509.Certificate) {
		ca, err := pki.NewCA(inter, interKey)
		if err != nil {
			t.Fatal(err)
		}
		var entries []smx509.RevocationListEntry
		for _, c := range revoked {
			entries = append(entries, smx509.RevocationListEntry{SerialNumber: c.SerialNumber})
		}
		der, err := ca.CreateCRLAt(entries, nil, clock().Add(-time.Minute), start.Add(200*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(crlPath, der, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeCRL()
	crls, err := pki.NewCRLStore([]string{crlPath}, pki.CRLOptions{CheckInterval: -1, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	v, err := pki.NewVerifier(pki.VerifierOptions{Roots: []*smx509.Certificate{root}, Intermediates: []*smx509.Certificate{inter},
		CRLs: crls, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	ch, err := New(Config{Name: "bank", Scheme: signing.Settings{Name: signing.WechatPayName},
		PlatformSigner: platformKey, PlatformCert: platform, MerchantID: "1900000001",
		BankCerts: []*smx509.Certificate{bankCert}, Verifier: v, Now: clock})
	if err != nil {
		t.Fatal(err)
	}

	// forge is the attacker holding the bank's key: a well-formed reply signed now.
	forge := func() *signing.Message {
		m := &signing.Message{Kind: signing.Response, Status: 200, Body: []byte(`{"trade_state":"SUCCESS","amount":{"total":100000}}`)}
		if err := signing.NewWechatPay().Sign(m, signing.Key{Signer: bankKey, KeyID: signing.SerialHex(bankCert.SerialNumber)}, clock(), ""); err != nil {
			t.Fatal(err)
		}
		return m
	}
	if _, _, err := ch.OpenReply(forge(), "", 1<<20); err != nil {
		t.Fatalf("control: a reply signed by the bank's valid key: %v", err)
	}

	writeCRL(bankCert)
	advance(31 * time.Second) // past certRecheckTTL
	if _, _, err := ch.OpenReply(forge(), "", 1<<20); CodeOf(err) != CodeBankCertificateInvalid {
		t.Fatalf("reply signed with a revoked bank key: %v (code %q), want %s", err, CodeOf(err), CodeBankCertificateInvalid)
	}

	writeCRL()
	advance(31 * time.Second) // past certRecheckTTL
	if _, _, err := ch.OpenReply(forge(), "", 1<<20); err != nil {
		t.Fatalf("control: the revocation lifted (a newer CRL without it): %v", err)
	}
	advance(2 * time.Hour) // the issuing CA expired; the bank certificate's own dates still hold
	if _, _, err := ch.OpenReply(forge(), "", 1<<20); CodeOf(err) != CodeBankCertificateInvalid {
		t.Fatalf("reply signed under an expired intermediate CA: %v (code %q), want %s", err, CodeOf(err), CodeBankCertificateInvalid)
	}
}
