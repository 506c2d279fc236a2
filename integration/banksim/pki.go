package banksim

import (
	"fmt"

	"github.com/emmansun/gmsm/smx509"
	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/tlcp"
)

// TestPKI is a complete test PKI for a bank channel, issued with package pki: the bank's root
// with its platform signing certificate, its encryption certificate (for digital envelopes) and
// its TLCP server pair; the platform's root with its signing certificate, its encryption
// certificate and its TLCP client pair; and a rogue root with a signing certificate no one
// trusts (for the wrong-certificate misbehaviour).
type TestPKI struct {
	BankRoot     *pki.CA
	BankSign     *pki.Issued // bank platform signing certificate (replies)
	BankEnc      *pki.Issued // bank encryption certificate (envelopes to the bank)
	BankServer   *pki.Pair   // TLCP server pair
	PlatformRoot *pki.CA
	PlatformSign *pki.Issued // platform signing certificate (requests)
	PlatformEnc  *pki.Issued // platform encryption certificate (envelopes to the platform)
	PlatformTLCP *pki.Pair   // TLCP client pair
	RogueRoot    *pki.CA
	RogueSign    *pki.Issued
}

// NewTestPKI issues a fresh TestPKI; host names the bank's TLCP server (DNS SAN; 127.0.0.1
// and localhost are added).
func NewTestPKI(host string) (*TestPKI, error) {
	p := &TestPKI{}
	var err error
	if p.BankRoot, _, err = pki.NewRootCA(pki.IssueOptions{CommonName: "banksim root", Organization: []string{"banksim"}}); err != nil {
		return nil, err
	}
	if p.BankSign, err = p.BankRoot.IssuePlatform(pki.IssueOptions{CommonName: "banksim platform signing"}); err != nil {
		return nil, err
	}
	bankPair, err := p.BankRoot.IssueServerPair(pki.IssueOptions{CommonName: "banksim envelope"})
	if err != nil {
		return nil, err
	}
	p.BankEnc = bankPair.Enc
	dns := []string{"localhost"}
	if host != "" {
		dns = append(dns, host)
	}
	if p.BankServer, err = p.BankRoot.IssueServerPair(pki.IssueOptions{CommonName: "banksim tlcp", DNSNames: dns,
		IPAddresses: loopbackIPs()}); err != nil {
		return nil, err
	}
	if p.PlatformRoot, _, err = pki.NewRootCA(pki.IssueOptions{CommonName: "platform root", Organization: []string{"gmgate test"}}); err != nil {
		return nil, err
	}
	if p.PlatformSign, err = p.PlatformRoot.IssuePlatform(pki.IssueOptions{CommonName: "platform signing"}); err != nil {
		return nil, err
	}
	platPair, err := p.PlatformRoot.IssueClientPair(pki.IssueOptions{CommonName: "platform envelope"})
	if err != nil {
		return nil, err
	}
	p.PlatformEnc = platPair.Enc
	if p.PlatformTLCP, err = p.PlatformRoot.IssueClientPair(pki.IssueOptions{CommonName: "platform tlcp client"}); err != nil {
		return nil, err
	}
	if p.RogueRoot, _, err = pki.NewRootCA(pki.IssueOptions{CommonName: "rogue root"}); err != nil {
		return nil, err
	}
	if p.RogueSign, err = p.RogueRoot.IssuePlatform(pki.IssueOptions{CommonName: "rogue signing"}); err != nil {
		return nil, err
	}
	return p, nil
}

// ServerTLCPConfig returns the bank's TLCP server configuration: its sign/enc pair (leaf and
// root) and mutual authentication against the platform root.
func (p *TestPKI) ServerTLCPConfig() *tlcp.Config {
	pool := smx509.NewCertPool()
	pool.AddCert(p.PlatformRoot.Cert)
	return &tlcp.Config{
		SignCertificate: tlcp.Certificate{Certificate: [][]byte{p.BankServer.Sign.Cert.Raw, p.BankRoot.Cert.Raw}, PrivateKey: p.BankServer.Sign.Key},
		EncCertificate:  tlcp.Certificate{Certificate: [][]byte{p.BankServer.Enc.Cert.Raw, p.BankRoot.Cert.Raw}, PrivateKey: p.BankServer.Enc.Key},
		ClientCAs:       pool,
		ClientAuth:      tlcp.RequireAndVerifyClientCert,
	}
}

// ClientTLCPConfig returns the platform's TLCP client configuration for serverName: its
// sign/enc pair for mutual authentication and the bank root.
func (p *TestPKI) ClientTLCPConfig(serverName string) *tlcp.Config {
	pool := smx509.NewCertPool()
	pool.AddCert(p.BankRoot.Cert)
	return &tlcp.Config{
		SignCertificate: tlcp.Certificate{Certificate: [][]byte{p.PlatformTLCP.Sign.Cert.Raw, p.PlatformRoot.Cert.Raw}, PrivateKey: p.PlatformTLCP.Sign.Key},
		EncCertificate:  tlcp.Certificate{Certificate: [][]byte{p.PlatformTLCP.Enc.Cert.Raw, p.PlatformRoot.Cert.Raw}, PrivateKey: p.PlatformTLCP.Enc.Key},
		RootCAs:         pool,
		ServerName:      serverName,
	}
}

// Describe returns a one-line summary (serials) for logs.
func (p *TestPKI) Describe() string {
	return fmt.Sprintf("bank sign %s, bank enc %s, platform sign %s", p.BankSign.Cert.SerialNumber, p.BankEnc.Cert.SerialNumber, p.PlatformSign.Cert.SerialNumber)
}
