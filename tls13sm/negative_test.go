package tls13sm

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/emmansun/gmsm/ecdh"
	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/internal/attack"
	"github.com/gmgate/gmgate/internal/testpki"
)

// baseHello is a valid RFC 8998 ClientHello with a fresh curveSM2 share.
func baseHello(t *testing.T) *clientHelloMsg {
	t.Helper()
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	h := &clientHelloMsg{
		vers: versionTLS12, random: make([]byte, 32), sessionID: make([]byte, 32),
		cipherSuites: []uint16{TLS_SM4_GCM_SM3}, compressionMethods: []uint8{0}, serverName: "server.test",
		supportedVersions: []uint16{VersionTLS13}, supportedGroups: []uint16{groupCurveSM2},
		signatureAlgorithms: []uint16{schemeSM2SM3},
		keyShares:           []keyShare{{group: groupCurveSM2, data: k.PublicKey().Bytes()}},
	}
	rand.Read(h.random)
	return h
}

func plainRecord(typ uint8, body []byte) []byte {
	return append([]byte{typ, 3, 3, byte(len(body) >> 8), byte(len(body))}, body...)
}

// serverAlertFor sends raw to a fresh server and returns the alert it sends back, after
// checking that its Handshake error names the same alert.
func serverAlertFor(t *testing.T, cfg *Config, raw ...[]byte) Alert {
	t.Helper()
	sraw, craw := tcpPair(t)
	s := Server(sraw, cfg)
	errc := make(chan error, 1)
	go func() { errc <- s.Handshake() }()
	for _, r := range raw {
		if _, err := craw.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	craw.SetReadDeadline(time.Now().Add(10 * time.Second))
	var got Alert
	for {
		rec, err := attack.ReadRecord(craw)
		if err != nil {
			t.Fatalf("no alert from the server: %v", err)
		}
		if rec[0] == recordTypeAlert {
			if len(rec) != 7 || rec[5] != alertLevelError {
				t.Fatalf("malformed alert record %x", rec)
			}
			got = Alert(rec[6])
			break
		}
	}
	serr := <-errc
	if a, ok := alertOf(serr); !ok || a != got {
		t.Fatalf("server error %v does not name the alert it sent (%v)", serr, got)
	}
	return got
}

// TestServerRefusesOutsideProfile: each ClientHello outside the strict RFC 8998 profile is
// refused with its exact alert (RFC 8446 4.1.1, 4.2, 9.2).
func TestServerRefusesOutsideProfile(t *testing.T) {
	badPoint := append([]byte{4}, bytes.Repeat([]byte{0xAB}, 64)...)
	cases := []struct {
		name   string
		mutate func(h *clientHelloMsg)
		want   Alert
	}{
		{"no supported_versions (TLS 1.2 client)", func(h *clientHelloMsg) { h.supportedVersions = nil }, AlertProtocolVersion},
		{"only TLS 1.2 in supported_versions", func(h *clientHelloMsg) { h.supportedVersions = []uint16{versionTLS12} }, AlertProtocolVersion},
		{"only AES suites", func(h *clientHelloMsg) { h.cipherSuites = []uint16{0x1301, 0x1302} }, AlertHandshakeFailure},
		{"ECDSA signature scheme only", func(h *clientHelloMsg) { h.signatureAlgorithms = []uint16{0x0403} }, AlertHandshakeFailure},
		{"RSA-PSS and ECDSA only", func(h *clientHelloMsg) { h.signatureAlgorithms = []uint16{0x0804, 0x0403, 0x0807} }, AlertHandshakeFailure},
		{"no signature_algorithms", func(h *clientHelloMsg) { h.signatureAlgorithms = nil }, AlertMissingExtension},
		{"signature_algorithms_cert without SM2", func(h *clientHelloMsg) { h.signatureAlgorithmsCert = []uint16{0x0403} }, AlertHandshakeFailure},
		{"x25519 only", func(h *clientHelloMsg) {
			h.supportedGroups = []uint16{0x001d}
			h.keyShares = []keyShare{{group: 0x001d, data: bytes.Repeat([]byte{9}, 32)}}
		}, AlertHandshakeFailure},
		{"no supported_groups", func(h *clientHelloMsg) { h.supportedGroups = nil }, AlertMissingExtension},
		{"no key_share", func(h *clientHelloMsg) { h.keyShares = nil }, AlertMissingExtension},
		{"share for a group not in supported_groups", func(h *clientHelloMsg) {
			h.keyShares = append(h.keyShares, keyShare{group: 0x0017, data: bytes.Repeat([]byte{4}, 65)})
		}, AlertIllegalParameter},
		{"duplicate curveSM2 shares", func(h *clientHelloMsg) { h.keyShares = append(h.keyShares, h.keyShares[0]) }, AlertIllegalParameter},
		{"curveSM2 share not on the curve", func(h *clientHelloMsg) { h.keyShares[0].data = badPoint }, AlertIllegalParameter},
		{"curveSM2 share of the wrong length", func(h *clientHelloMsg) { h.keyShares[0].data = h.keyShares[0].data[:33] }, AlertIllegalParameter},
		{"compression", func(h *clientHelloMsg) { h.compressionMethods = []uint8{1, 0} }, AlertIllegalParameter},
		{"early data", func(h *clientHelloMsg) { h.earlyData = true }, AlertIllegalParameter},
		{"PSK without psk_key_exchange_modes", func(h *clientHelloMsg) {
			h.pskIdentities = []pskIdentity{{label: []byte("ticket"), obfuscatedTicketAge: 1}}
			h.pskBinders = [][]byte{make([]byte, 32)}
		}, AlertMissingExtension},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := baseHello(t)
			tc.mutate(h)
			raw := h.marshal()
			if raw == nil {
				t.Fatal("marshal failed")
			}
			if got := serverAlertFor(t, serverConfig(t), plainRecord(recordTypeHandshake, raw)); got != tc.want {
				t.Fatalf("alert %v, want %v", got, tc.want)
			}
		})
	}
}

// TestServerRefusesMalformedInput: framing and encoding errors.
func TestServerRefusesMalformedInput(t *testing.T) {
	good := baseHello(t).marshal()
	pskNotLast := func() []byte {
		h := baseHello(t)
		h.pskModes = []uint8{pskModeDHE}
		h.pskIdentities = []pskIdentity{{label: []byte("ticket"), obfuscatedTicketAge: 1}}
		h.pskBinders = [][]byte{make([]byte, 32)}
		raw := h.marshal()
		// Append an empty extension after pre_shared_key and fix up the lengths.
		raw = append(raw, 0xFF, 0x01, 0, 0)
		n := len(raw) - 4
		raw[1], raw[2], raw[3] = byte(n>>16), byte(n>>8), byte(n)
		extStart := 4 + 2 + 32 + 1 + 32 + 2 + 2 + 2
		el := len(raw) - extStart - 2
		raw[extStart], raw[extStart+1] = byte(el>>8), byte(el)
		return raw
	}()
	truncated := append([]byte(nil), good[:len(good)-3]...)
	truncated[1], truncated[2], truncated[3] = 0, byte((len(truncated)-4)>>8), byte(len(truncated)-4)
	cases := []struct {
		name string
		raw  [][]byte
		want Alert
	}{
		{"truncated ClientHello body", [][]byte{plainRecord(recordTypeHandshake, truncated)}, AlertDecodeError},
		{"pre_shared_key not last", [][]byte{plainRecord(recordTypeHandshake, pskNotLast)}, AlertIllegalParameter},
		{"record over 2^14 bytes", [][]byte{plainRecord(recordTypeHandshake, make([]byte, maxPlaintext+1))}, AlertRecordOverflow},
		{"application data before the handshake", [][]byte{plainRecord(recordTypeApplicationData, []byte("GET /"))}, AlertUnexpectedMessage},
		{"change_cipher_spec before ClientHello", [][]byte{plainRecord(recordTypeChangeCipherSpec, []byte{1})}, AlertUnexpectedMessage},
		{"ServerHello sent to a server", [][]byte{plainRecord(recordTypeHandshake, (&serverHelloMsg{vers: versionTLS12, random: make([]byte, 32), cipherSuite: TLS_SM4_GCM_SM3}).marshal())}, AlertUnexpectedMessage},
		{"empty handshake record", [][]byte{plainRecord(recordTypeHandshake, nil)}, AlertUnexpectedMessage},
		{"handshake message over the size limit", [][]byte{plainRecord(recordTypeHandshake, []byte{typeClientHello, 0x10, 0, 0})}, AlertUnexpectedMessage},
		{"ClientHello and more in the same record", [][]byte{plainRecord(recordTypeHandshake, append(append([]byte(nil), good...), typeFinished, 0, 0, 32))}, AlertUnexpectedMessage},
		{"not TLS at all", [][]byte{[]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")}, AlertProtocolVersion},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := serverAlertFor(t, serverConfig(t), tc.raw...); got != tc.want {
				t.Fatalf("alert %v, want %v", got, tc.want)
			}
		})
	}
}

// TestSecondClientHelloChecked: after a HelloRetryRequest the second ClientHello must carry
// exactly one curveSM2 share and keep everything else (RFC 8446 4.1.2).
func TestSecondClientHelloChecked(t *testing.T) {
	first := func() *clientHelloMsg {
		h := baseHello(t)
		h.supportedGroups = []uint16{0x0017, groupCurveSM2}
		h.keyShares = []keyShare{{group: 0x0017, data: bytes.Repeat([]byte{4}, 65)}}
		return h
	}
	cases := []struct {
		name   string
		second func(h1 *clientHelloMsg) *clientHelloMsg
		want   Alert
	}{
		{"still no curveSM2 share", func(h1 *clientHelloMsg) *clientHelloMsg { return h1 }, AlertIllegalParameter},
		{"new random", func(h1 *clientHelloMsg) *clientHelloMsg {
			h := baseHello(t)
			h.supportedGroups = h1.supportedGroups
			return h
		}, AlertIllegalParameter},
		{"dropped the selected suite", func(h1 *clientHelloMsg) *clientHelloMsg {
			h := *h1
			h.cipherSuites = []uint16{TLS_SM4_CCM_SM3}
			h.keyShares = baseHello(t).keyShares
			return &h
		}, AlertIllegalParameter},
		{"two shares", func(h1 *clientHelloMsg) *clientHelloMsg {
			h := *h1
			h.keyShares = append(baseHello(t).keyShares, h1.keyShares[0])
			return &h
		}, AlertIllegalParameter},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h1 := first()
			raw1 := append([]byte(nil), h1.marshal()...)
			h2 := tc.second(h1)
			raw2 := h2.marshal()
			got := serverAlertFor(t, serverConfig(t), plainRecord(recordTypeHandshake, raw1),
				plainRecord(recordTypeChangeCipherSpec, []byte{1}), plainRecord(recordTypeHandshake, raw2))
			if got != tc.want {
				t.Fatalf("alert %v, want %v", got, tc.want)
			}
		})
	}
}

// TestClientAuthAlerts: certificate problems end with the alert that names them, on both sides.
func TestClientAuthAlerts(t *testing.T) {
	p := getPKI(t)
	rogueKey := testpki.Key(t)
	rogueCA := testpki.Issue(t, testpki.Spec{CN: "rogue CA", Usage: 0x60, IsCA: true}, rogueKey, nil, nil)
	rogueClient := func() *Certificate {
		k := testpki.Key(t)
		c := testpki.Issue(t, testpki.Spec{CN: "rogue terminal", Usage: 1, EKU: nil}, k, rogueCA, rogueKey)
		return &Certificate{Certificate: [][]byte{c.Raw}, PrivateKey: k}
	}()
	// A hostile client sends an encryption-only certificate (keyEncipherment|dataEncipherment);
	// ours would refuse to use it, so its prepared state is forced.
	encOnly := leafCert(t, p, testpki.Spec{CN: "enc-only terminal", Usage: smx509.KeyUsageKeyEncipherment | smx509.KeyUsageDataEncipherment})
	forcePrepared(t, encOnly)
	expired := leafCert(t, p, testpki.Spec{CN: "expired terminal", Usage: 1, NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})
	cases := []struct {
		name       string
		auth       ClientAuthType
		cert       *Certificate
		revoke     bool
		wantServer Alert
	}{
		{"required but none sent", RequireAndVerifyClientCert, nil, false, AlertCertificateRequired},
		{"required (any) but none sent", RequireAnyClientCert, nil, false, AlertCertificateRequired},
		{"untrusted CA", RequireAndVerifyClientCert, rogueClient, false, AlertUnknownCA},
		{"encryption-only key usage", RequireAndVerifyClientCert, encOnly, false, AlertUnsupportedCertificate},
		{"expired", RequireAndVerifyClientCert, expired, false, AlertCertificateExpired},
		{"revoked", RequireAndVerifyClientCert, p.client, true, AlertCertificateRevoked},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			scfg := serverConfig(t)
			scfg.ClientAuth = tc.auth
			if tc.revoke {
				scfg.VerifyPeerCertificate = func([][]byte, [][]*smx509.Certificate) error { return ErrCertificateRevoked }
			}
			ccfg := clientConfig(t)
			ccfg.Certificate = tc.cert
			s, c, serr, _ := handshakePair(t, scfg, ccfg)
			if a, ok := alertOf(serr); !ok || a != tc.wantServer {
				t.Fatalf("server: %v, want %v", serr, tc.wantServer)
			}
			// The client learns it on its first read (its handshake ended with its Finished).
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err := c.Read(make([]byte, 1))
			var ae *AlertError
			if !errors.As(err, &ae) || !ae.Remote || ae.Alert != tc.wantServer {
				t.Fatalf("client read: %v, want remote %v", err, tc.wantServer)
			}
			_ = s
		})
	}
}

// TestClientRefusesServerCertificate: the client's side of the certificate checks.
func TestClientRefusesServerCertificate(t *testing.T) {
	p := getPKI(t)
	wrongName := leafCert(t, p, testpki.Spec{CN: "other.test", DNS: []string{"other.test"}, Usage: 1, EKU: nil})
	cases := []struct {
		name string
		cfg  func(c *Config)
		cert *Certificate
		want Alert
	}{
		{"untrusted root", func(c *Config) { c.RootCAs = nil }, p.server, AlertUnknownCA},
		{"wrong host name", func(c *Config) {}, wrongName, AlertBadCertificate},
		{"revoked", func(c *Config) {
			c.VerifyPeerCertificate = func([][]byte, [][]*smx509.Certificate) error { return ErrCertificateRevoked }
		}, p.server, AlertCertificateRevoked},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			scfg := serverConfig(t)
			scfg.Certificate = tc.cert
			ccfg := clientConfig(t)
			tc.cfg(ccfg)
			_, _, serr, cerr := handshakePair(t, scfg, ccfg)
			if a, ok := alertOf(cerr); !ok || a != tc.want {
				t.Fatalf("client: %v, want %v", cerr, tc.want)
			}
			var ae *AlertError
			if !errors.As(serr, &ae) || !ae.Remote || ae.Alert != tc.want {
				t.Fatalf("server: %v, want remote %v", serr, tc.want)
			}
		})
	}
}

// TestTamperedRecordsRefused: a man in the middle who flips one bit of any protected record
// (server flight, client Finished, application data) ends the connection with bad_record_mac;
// one who rewrites the ClientHello (suite order, to steer the choice) is caught at once: the
// handshake keys are derived over the transcript, so the server's first protected record
// does not authenticate for the client.
func TestTamperedRecordsRefused(t *testing.T) {
	cases := []struct {
		name     string
		toServer bool
		index    int
		mutate   func(rec []byte) []byte
		want     Alert
		side     string // which side detects it and sends the alert
	}{
		{"server EncryptedExtensions..Finished record", false, 2, flipLast, AlertBadRecordMAC, "client"},
		{"client Finished record", true, 2, flipLast, AlertBadRecordMAC, "server"},
		{"ClientHello suite order rewritten", true, 0, func(rec []byte) []byte {
			i := bytes.Index(rec, []byte{0, 4, 0x00, 0xC6, 0x00, 0xC7})
			if i < 0 {
				panic("suite list not found")
			}
			out := append([]byte(nil), rec...)
			out[i+2], out[i+3], out[i+4], out[i+5] = 0x00, 0xC7, 0x00, 0xC6
			return out
		}, AlertBadRecordMAC, "client"}, // the server's keys cover the rewritten hello: its first protected record fails
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			es := startEchoServer(t, serverConfig(t))
			proxy, err := attack.StartRecordProxy(es.addr, func(toServer bool, i int, rec []byte) [][]byte {
				if toServer == tc.toServer && i == tc.index {
					return [][]byte{tc.mutate(rec)}
				}
				return [][]byte{rec}
			})
			if err != nil {
				t.Fatal(err)
			}
			defer proxy.Close()
			raw, err := net.Dial("tcp", proxy.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			c := Client(raw, clientConfig(t))
			c.SetDeadline(time.Now().Add(10 * time.Second))
			cerr := c.Handshake()
			if cerr == nil {
				_, cerr = io.WriteString(c, "ping\n")
				if cerr == nil {
					_, cerr = c.Read(make([]byte, 16))
				}
			}
			r := es.next(t)
			local, remote := cerr, r.err
			if tc.side == "server" {
				local, remote = r.err, cerr
			}
			if a, ok := alertOf(local); !ok || a != tc.want {
				t.Fatalf("%s: %v, want %v", tc.side, local, tc.want)
			}
			// The peer either receives the alert or, when the alert itself is protected with
			// keys it does not share (the rewritten hello), fails the same way locally.
			var ae *AlertError
			if !errors.As(remote, &ae) || ae.Alert != tc.want {
				t.Fatalf("peer of the %s: %v, want %v", tc.side, remote, tc.want)
			}
		})
	}
}

func flipLast(rec []byte) []byte {
	out := append([]byte(nil), rec...)
	out[len(out)-1] ^= 0x01
	return out
}

// forcePrepared makes cert usable by our client even when prepareCert would refuse it (a
// hostile peer's view).
func forcePrepared(t *testing.T, cert *Certificate) {
	t.Helper()
	leaf, err := smx509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	cert.once.Do(func() {
		cert.prep = &preparedCert{leaf: leaf, signer: cert.PrivateKey.(crypto.Signer), certMsg: cert.Certificate}
	})
}

// TestClientRefusesNonSM2Certificates: a hostile peer that pairs the SM suites with an ECDSA
// P-256 certificate is refused with unsupported_certificate, by our client (server
// certificate, even with InsecureSkipVerify) and by our server (client certificate).
func TestClientRefusesNonSM2Certificates(t *testing.T) {
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(77), Subject: pkix.Name{CommonName: "server.test"},
		DNSNames: []string{"server.test"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &ecKey.PublicKey, ecKey)
	if err != nil {
		t.Fatal(err)
	}
	ecCert := func() *Certificate {
		c := &Certificate{Certificate: [][]byte{der}, PrivateKey: ecKey}
		forcePrepared(t, c)
		return c
	}
	t.Run("server certificate", func(t *testing.T) {
		scfg := serverConfig(t)
		scfg.Certificate = ecCert()
		ccfg := clientConfig(t)
		ccfg.InsecureSkipVerify = true
		_, _, _, cerr := handshakePair(t, scfg, ccfg)
		if a, ok := alertOf(cerr); !ok || a != AlertUnsupportedCertificate {
			t.Fatalf("client: %v, want unsupported_certificate", cerr)
		}
	})
	t.Run("client certificate", func(t *testing.T) {
		scfg := serverConfig(t)
		scfg.ClientAuth = RequireAnyClientCert // even unverified, the key type is checked
		ccfg := clientConfig(t)
		ccfg.Certificate = ecCert()
		_, _, serr, _ := handshakePair(t, scfg, ccfg)
		if a, ok := alertOf(serr); !ok || a != AlertUnsupportedCertificate {
			t.Fatalf("server: %v, want unsupported_certificate", serr)
		}
	})
}

// TestClientAuthModes: each mode against a client with no certificate, a valid one and one of
// an untrusted CA (the five modes mean what they mean in crypto/tls).
func TestClientAuthModes(t *testing.T) {
	p := getPKI(t)
	rogueKey := testpki.Key(t)
	rogueCA := testpki.Issue(t, testpki.Spec{CN: "rogue CA", Usage: smx509.KeyUsageCertSign, IsCA: true}, rogueKey, nil, nil)
	rk := testpki.Key(t)
	rc := testpki.Issue(t, testpki.Spec{CN: "rogue terminal", Usage: smx509.KeyUsageDigitalSignature}, rk, rogueCA, rogueKey)
	rogue := &Certificate{Certificate: [][]byte{rc.Raw}, PrivateKey: rk}
	type outcome struct {
		ok       bool
		alert    Alert
		verified bool
	}
	cases := []struct {
		mode                ClientAuthType
		none, valid, untrus outcome
	}{
		{NoClientCert, outcome{ok: true}, outcome{ok: true}, outcome{ok: true}},
		{RequestClientCert, outcome{ok: true}, outcome{ok: true}, outcome{ok: true}},
		{RequireAnyClientCert, outcome{alert: AlertCertificateRequired}, outcome{ok: true}, outcome{ok: true}},
		{VerifyClientCertIfGiven, outcome{ok: true}, outcome{ok: true, verified: true}, outcome{alert: AlertUnknownCA}},
		{RequireAndVerifyClientCert, outcome{alert: AlertCertificateRequired}, outcome{ok: true, verified: true}, outcome{alert: AlertUnknownCA}},
	}
	for _, tc := range cases {
		for _, cl := range []struct {
			name string
			cert *Certificate
			want outcome
		}{{"none", nil, tc.none}, {"valid", p.client, tc.valid}, {"untrusted", rogue, tc.untrus}} {
			t.Run(tc.mode.String()+"/"+cl.name, func(t *testing.T) {
				scfg := serverConfig(t)
				scfg.ClientAuth = tc.mode
				ccfg := clientConfig(t)
				ccfg.Certificate = cl.cert
				s, _, serr, _ := handshakePair(t, scfg, ccfg)
				if cl.want.ok {
					if serr != nil {
						t.Fatalf("server: %v", serr)
					}
					if got := len(s.ConnectionState().VerifiedChains) > 0; got != cl.want.verified {
						t.Fatalf("verified %v, want %v", got, cl.want.verified)
					}
					if tc.mode != NoClientCert && cl.cert != nil && len(s.ConnectionState().PeerCertificates) == 0 {
						t.Fatal("certificate not recorded")
					}
					return
				}
				if a, ok := alertOf(serr); !ok || a != cl.want.alert {
					t.Fatalf("server: %v, want %v", serr, cl.want.alert)
				}
			})
		}
	}
}
