package tlcp

import (
	"fmt"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"
	"github.com/gmgate/gmgate/internal/testpki"
)

// rogueCA is a CA nobody trusts, made by the attacker.
func rogueCA(t *testing.T) *testPKI {
	t.Helper()
	p := &testPKI{caKey: testpki.Key(t)}
	p.caCert = testpki.Issue(t, testpki.Spec{CN: "gmgate test CA", Usage: smx509.KeyUsageCertSign | smx509.KeyUsageCRLSign, IsCA: true}, p.caKey, nil, nil)
	p.client = pairFor(t, p, "client.test", nil, smx509.ExtKeyUsageClientAuth)
	return p
}

// TestAttackRogueClientPairIsNoIdentity is finding 4 of the security review: ECDHE suites make
// every client send a sign/enc pair, and with client_auth none/request/require the chain is not
// verified. A pair from the attacker's own CA (same subject as a real client) used to fill
// PeerSignCertificate, which fed {tlcp.client.*} and bind_tlcp_client. Now only a verified chain
// is an identity; the handshake itself still works where the mode does not verify.
func TestAttackRogueClientPairIsNoIdentity(t *testing.T) {
	p, rogue := getPKI(t), rogueCA(t)
	for _, suite := range []uint16{ECDHE_SM4_GCM_SM3, ECC_SM4_GCM_SM3} {
		for _, mode := range []ClientAuthType{NoClientCert, RequestClientCert, RequireAnyClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert} {
			t.Run(fmt.Sprintf("%s/%s", CipherSuiteName(suite), mode), func(t *testing.T) {
				sc := serverConfig(p)
				sc.ClientAuth = mode
				cc := clientConfig(p, false)
				cc.SignCertificate, cc.EncCertificate = rogue.client.Sign, rogue.client.Enc
				cc.CipherSuites = []uint16{suite}
				var st ConnectionState
				cliErr, srvErr := runPair(t, sc, cc, func(cli, srv *Conn) error {
					st = srv.ConnectionState()
					return echoCheck(10)(cli, srv)
				})
				if mode == VerifyClientCertIfGiven || mode == RequireAndVerifyClientCert {
					if srvErr == nil {
						t.Fatal("server accepted a client chain from an untrusted CA")
					}
					return
				}
				if cliErr != nil || srvErr != nil {
					t.Fatalf("client %v, server %v", cliErr, srvErr)
				}
				if st.PeerSignCertificate != nil || st.PeerEncCertificate != nil || len(st.VerifiedChains) != 0 {
					t.Fatalf("rogue pair became the identity: %v", st.PeerSignCertificate.Subject)
				}
			})
		}
	}
}

// TestAttackResumeAfterRevocation is finding 8: a client resumes a cached session after its
// certificate was revoked (or after it expired). The full handshake refuses it; resumption used
// to skip every check for the cache lifetime. Now the server re-checks validity and the
// revocation callback before it resumes, and falls back to a full handshake, which fails.
func TestAttackResumeAfterRevocation(t *testing.T) {
	p := getPKI(t)
	for _, tc := range []struct {
		name    string
		revoke  bool
		advance time.Duration
	}{{"revoked", true, 0}, {"expired", false, 48 * time.Hour}} {
		t.Run(tc.name, func(t *testing.T) {
			sk, ek := testpki.Key(t), testpki.Key(t)
			notAfter := time.Now().Add(24 * time.Hour)
			sc1 := testpki.Issue(t, testpki.Spec{CN: "client.test", Usage: smx509.KeyUsageDigitalSignature, EKU: []smx509.ExtKeyUsage{smx509.ExtKeyUsageClientAuth}, NotAfter: notAfter}, sk, p.caCert, p.caKey)
			ec1 := testpki.Issue(t, testpki.Spec{CN: "client.test", Usage: smx509.KeyUsageKeyEncipherment | smx509.KeyUsageDataEncipherment | smx509.KeyUsageKeyAgreement, EKU: []smx509.ExtKeyUsage{smx509.ExtKeyUsageClientAuth}, NotAfter: notAfter}, ek, p.caCert, p.caKey)
			revoked := false
			now := time.Now()
			sc := serverConfig(p)
			sc.ClientAuth = RequireAndVerifyClientCert
			sc.SessionCache = NewLRUSessionCache(8, time.Hour)
			sc.Time = func() time.Time { return now }
			sc.VerifyPeerCertificate = func(_ [][]byte, chains [][]*smx509.Certificate) error {
				for _, ch := range chains {
					if revoked && ch[0].SerialNumber.Cmp(sc1.SerialNumber) == 0 {
						return fmt.Errorf("%w: %s", ErrCertificateRevoked, ch[0].Subject.String())
					}
				}
				return nil
			}
			cc := clientConfig(p, false)
			cc.SignCertificate = Certificate{Certificate: [][]byte{sc1.Raw, p.caCert.Raw}, PrivateKey: sk}
			cc.EncCertificate = Certificate{Certificate: [][]byte{ec1.Raw, p.caCert.Raw}, PrivateKey: ek}
			cc.SessionCache = NewLRUSessionCache(8, time.Hour)
			cc.CipherSuites = []uint16{ECC_SM4_GCM_SM3}
			clientNow := now // the attacker's clock does not move: only the server's judgement matters
			cc.Time = func() time.Time { return clientNow }
			if cliErr, srvErr := runPair(t, sc, cc, echoCheck(10)); cliErr != nil || srvErr != nil {
				t.Fatalf("first handshake: client %v, server %v", cliErr, srvErr)
			}
			// Control: resumption works while the certificate is good.
			var resumed bool
			if cliErr, srvErr := runPair(t, sc, cc, func(cli, srv *Conn) error {
				resumed = srv.ConnectionState().DidResume
				return nil
			}); cliErr != nil || srvErr != nil || !resumed {
				t.Fatalf("control resumption: client %v, server %v, resumed %v", cliErr, srvErr, resumed)
			}
			revoked = tc.revoke
			now = now.Add(tc.advance)
			resumed = false
			_, srvErr := runPair(t, sc, cc, func(cli, srv *Conn) error {
				resumed = srv.ConnectionState().DidResume
				return nil
			})
			if srvErr == nil || resumed {
				t.Fatalf("%s client certificate: server error %v, resumed %v", tc.name, srvErr, resumed)
			}
			want := AlertCertificateRevoked
			if !tc.revoke {
				want = AlertCertificateExpired
			}
			if a, ok := alertOf(srvErr); !ok || a != want {
				t.Fatalf("server error %v, want %v", srvErr, want)
			}
		})
	}
}

// TestAttackClientResumesRevokedServer is finding 8 on the bank-channel side: the client (gm_channel
// toward a bank) keeps a session to the bank; the bank's certificate is revoked. The client must
// not resume that session: it re-checks before offering it, and the full handshake then refuses
// the revoked certificate.
func TestAttackClientResumesRevokedServer(t *testing.T) {
	p := getPKI(t)
	sc := serverConfig(p)
	sc.SessionCache = NewLRUSessionCache(8, time.Hour)
	revoked := false
	cc := clientConfig(p, false)
	cc.CipherSuites = []uint16{ECC_SM4_GCM_SM3}
	cc.SessionCache = NewLRUSessionCache(8, time.Hour)
	cc.VerifyPeerCertificate = func(_ [][]byte, chains [][]*smx509.Certificate) error {
		if revoked {
			return fmt.Errorf("%w: bank certificate", ErrCertificateRevoked)
		}
		return nil
	}
	if cliErr, srvErr := runPair(t, sc, cc, echoCheck(10)); cliErr != nil || srvErr != nil {
		t.Fatalf("first handshake: client %v, server %v", cliErr, srvErr)
	}
	var resumed bool
	if cliErr, _ := runPair(t, sc, cc, func(cli, srv *Conn) error { resumed = cli.ConnectionState().DidResume; return nil }); cliErr != nil || !resumed {
		t.Fatalf("control resumption: %v, resumed %v", cliErr, resumed)
	}
	revoked, resumed = true, false
	cliErr, _ := runPair(t, sc, cc, func(cli, srv *Conn) error { resumed = cli.ConnectionState().DidResume; return nil })
	if cliErr == nil || resumed {
		t.Fatalf("resumed toward a revoked bank certificate: error %v, resumed %v", cliErr, resumed)
	}
	if a, ok := alertOf(cliErr); !ok || a != AlertCertificateRevoked {
		t.Fatalf("client error %v, want certificate_revoked", cliErr)
	}
}

// TestAttackRenegotiationSpam: after the handshake a peer sends ClientHello after ClientHello.
// Each is refused with a no_renegotiation warning; they used to reset the useless-record counter,
// so the peer could keep the server answering forever. Now the connection fails after
// maxUselessRecords of them.
func TestAttackRenegotiationSpam(t *testing.T) {
	p := getPKI(t)
	_, srvErr := runPair(t, serverConfig(p), clientConfig(p, false), func(cli, srv *Conn) error {
		go func() {
			for i := 0; i < 10*maxUselessRecords; i++ {
				cli.out.Lock()
				_, err := cli.writeRecordLocked(recordTypeHandshake, []byte{typeClientHello, 0, 0, 0})
				cli.out.Unlock()
				if err != nil {
					return
				}
			}
			_, _ = cli.Write([]byte("x"))
		}()
		buf := make([]byte, 1)
		_, err := srv.Read(buf)
		if err == nil {
			return fmt.Errorf("server read application data after %d renegotiation attempts", 10*maxUselessRecords)
		}
		if a, ok := alertOf(err); !ok || a != AlertUnexpectedMessage {
			return fmt.Errorf("server error %v, want unexpected_message", err)
		}
		return nil
	})
	if srvErr != nil {
		t.Fatal(srvErr)
	}
}
