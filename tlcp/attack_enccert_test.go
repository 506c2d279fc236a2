package tlcp

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/internal/attack"
	"github.com/gmgate/gmgate/pki"
)

// crlCheck is gmgate's revocation callback (caddymodule's revocationCheck): every certificate of
// every chain it is given is looked up in the CRLs of its issuer. store is swapped by the tests.
func crlCheck(store *atomic.Pointer[pki.CRLStore]) func([][]byte, [][]*smx509.Certificate) error {
	return func(_ [][]byte, chains [][]*smx509.Certificate) error {
		for _, chain := range chains {
			for i := 0; i+1 < len(chain); i++ {
				revoked, err := store.Load().IsRevoked(chain[i], chain[i+1])
				if err != nil {
					return err
				}
				if revoked {
					return fmt.Errorf("%w: serial %s", ErrCertificateRevoked, chain[i].SerialNumber.Text(16))
				}
			}
		}
		return nil
	}
}

// crlStoreRevoking returns a CRL store holding one CRL of the test CA listing certs.
func crlStoreRevoking(t *testing.T, p *testPKI, certs ...*smx509.Certificate) *pki.CRLStore {
	t.Helper()
	ca, err := pki.NewCA(p.caCert, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	var entries []smx509.RevocationListEntry
	for _, c := range certs {
		entries = append(entries, smx509.RevocationListEntry{SerialNumber: c.SerialNumber})
	}
	der, err := ca.CreateCRL(entries, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ca.crl")
	if err := os.WriteFile(path, der, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := pki.NewCRLStore([]string{path}, pki.CRLOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// runTapped is runPair with the client's connection tapped by a passive observer.
func runTapped(t *testing.T, sc, cc *Config) (cliErr, srvErr error, resumed bool, tap *attack.Tap) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	errc := make(chan error, 1)
	go func() {
		raw, err := ln.Accept()
		if err != nil {
			errc <- err
			return
		}
		s := Server(raw, sc)
		err = s.Handshake()
		if err == nil {
			buf := make([]byte, 1)
			_, err = s.Read(buf)
		}
		s.Close()
		errc <- err
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	tap = attack.NewTap(raw)
	cli := Client(tap, cc)
	if cliErr = cli.Handshake(); cliErr == nil {
		resumed = cli.ConnectionState().DidResume
		_, cliErr = cli.Write([]byte("x"))
	}
	cli.Close()
	return cliErr, <-errc, resumed, tap
}

// TestAttackRevokedEncryptionCertificate: an encryption key is compromised and its certificate
// revoked. The revocation check (VerifyPeerCertificate) used to be given the signing
// certificate's chains only, so a revoked encryption certificate passed: a gmgate client (the
// bank channel) kept encrypting ECC pre-master secrets to the compromised key, which a passive
// observer holding it decrypts (attack.TLCPPreMaster), and a gmgate server kept accepting a
// terminal whose encryption certificate (seal_reply's recipient) was revoked, on full
// handshakes and on resumption. Now the encryption certificate's chain is checked like the
// signing certificate's: certificate_revoked before the client sends its key exchange.
func TestAttackRevokedEncryptionCertificate(t *testing.T) {
	p := getPKI(t)
	encOf := func(pair *CertificatePair) (*smx509.Certificate, *sm2.PrivateKey) {
		c, err := smx509.ParseCertificate(pair.Enc.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return c, pair.Enc.PrivateKey.(*sm2.PrivateKey)
	}

	t.Run("bank encryption certificate, full handshake", func(t *testing.T) {
		bank := pairFor(t, p, "bank.test", []string{"server.test"}, smx509.ExtKeyUsageServerAuth)
		encCert, encKey := encOf(bank)
		var store atomic.Pointer[pki.CRLStore]
		store.Store(crlStoreRevoking(t, p, encCert))
		sc := &Config{SignCertificate: bank.Sign, EncCertificate: bank.Enc}
		cc := clientConfig(p, false)
		cc.CipherSuites = []uint16{ECC_SM4_GCM_SM3}
		cc.VerifyPeerCertificate = crlCheck(&store)
		cliErr, _, _, tap := runTapped(t, sc, cc)
		if pms, err := attack.TLCPPreMaster(tap.Written(), encKey); err == nil {
			t.Errorf("the client encrypted its pre-master secret to a revoked encryption key: the holder of that key read it (%x...)", pms[:4])
		}
		if a, ok := alertOf(cliErr); !ok || a != AlertCertificateRevoked {
			t.Fatalf("client error %v, want certificate_revoked", cliErr)
		}
	})

	t.Run("bank encryption certificate, resumption", func(t *testing.T) {
		bank := pairFor(t, p, "bank.test", []string{"server.test"}, smx509.ExtKeyUsageServerAuth)
		encCert, _ := encOf(bank)
		var store atomic.Pointer[pki.CRLStore]
		store.Store(crlStoreRevoking(t, p))
		sc := &Config{SignCertificate: bank.Sign, EncCertificate: bank.Enc, SessionCache: NewLRUSessionCache(8, time.Hour)}
		cc := clientConfig(p, false)
		cc.CipherSuites = []uint16{ECC_SM4_GCM_SM3}
		cc.SessionCache = NewLRUSessionCache(8, time.Hour)
		cc.VerifyPeerCertificate = crlCheck(&store)
		if cliErr, srvErr, _, _ := runTapped(t, sc, cc); cliErr != nil || srvErr != nil {
			t.Fatalf("first handshake: client %v, server %v", cliErr, srvErr)
		}
		if cliErr, _, resumed, _ := runTapped(t, sc, cc); cliErr != nil || !resumed {
			t.Fatalf("control resumption: %v, resumed %v", cliErr, resumed)
		}
		store.Store(crlStoreRevoking(t, p, encCert))
		cliErr, _, resumed, _ := runTapped(t, sc, cc)
		if cliErr == nil || resumed {
			t.Fatalf("resumed a session with a bank whose encryption certificate is revoked: error %v, resumed %v", cliErr, resumed)
		}
		if a, ok := alertOf(cliErr); !ok || a != AlertCertificateRevoked {
			t.Fatalf("client error %v, want certificate_revoked", cliErr)
		}
	})

	for _, suite := range []uint16{ECC_SM4_GCM_SM3, ECDHE_SM4_GCM_SM3} {
		t.Run("terminal encryption certificate, "+CipherSuiteName(suite), func(t *testing.T) {
			terminal := pairFor(t, p, "terminal.test", nil, smx509.ExtKeyUsageClientAuth)
			encCert, _ := encOf(terminal)
			var store atomic.Pointer[pki.CRLStore]
			store.Store(crlStoreRevoking(t, p))
			sc := serverConfig(p)
			sc.ClientAuth = RequireAndVerifyClientCert
			sc.SessionCache = NewLRUSessionCache(8, time.Hour)
			sc.VerifyPeerCertificate = crlCheck(&store)
			cc := clientConfig(p, false)
			cc.SignCertificate, cc.EncCertificate = terminal.Sign, terminal.Enc
			cc.CipherSuites = []uint16{suite}
			cc.SessionCache = NewLRUSessionCache(8, time.Hour)
			if cliErr, srvErr, _, _ := runTapped(t, sc, cc); cliErr != nil || srvErr != nil {
				t.Fatalf("first handshake: client %v, server %v", cliErr, srvErr)
			}
			store.Store(crlStoreRevoking(t, p, encCert))
			_, srvErr, resumed, _ := runTapped(t, sc, cc) // resumption
			if a, ok := alertOf(srvErr); !ok || a != AlertCertificateRevoked || resumed {
				t.Fatalf("resumption with a revoked terminal encryption certificate: server error %v, resumed %v", srvErr, resumed)
			}
			cc.SessionCache = nil
			_, srvErr, _, _ = runTapped(t, sc, cc) // full handshake
			if a, ok := alertOf(srvErr); !ok || a != AlertCertificateRevoked {
				t.Fatalf("full handshake with a revoked terminal encryption certificate: server error %v, want certificate_revoked", srvErr)
			}
		})
	}

	t.Run("control: revoking an unrelated certificate changes nothing; the tap reads a good key's pre-master", func(t *testing.T) {
		other := pairFor(t, p, "other.test", nil, smx509.ExtKeyUsageClientAuth)
		otherEnc, _ := encOf(other)
		var store atomic.Pointer[pki.CRLStore]
		store.Store(crlStoreRevoking(t, p, otherEnc))
		cc := clientConfig(p, true)
		cc.VerifyPeerCertificate = crlCheck(&store)
		sc := serverConfig(p)
		sc.ClientAuth = RequireAndVerifyClientCert
		sc.VerifyPeerCertificate = crlCheck(&store)
		cc.CipherSuites = []uint16{ECC_SM4_GCM_SM3}
		cliErr, srvErr, _, tap := runTapped(t, sc, cc)
		if cliErr != nil || srvErr != nil {
			t.Fatalf("client %v, server %v", cliErr, srvErr)
		}
		// The attacker's tool works: whoever holds the server's encryption key reads the
		// pre-master secret of an ECC handshake (why a revoked one must not be used).
		_, serverEncKey := encOf(p.server)
		if pms, err := attack.TLCPPreMaster(tap.Written(), serverEncKey); err != nil || len(pms) != 48 || pms[0] != 1 || pms[1] != 1 {
			t.Fatalf("pre-master from the captured flight: %x, %v", pms, err)
		}
	})
}
