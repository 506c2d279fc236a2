package tlcp

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/smx509"
	"github.com/gmgate/gmgate/internal/testenv"
	"github.com/gmgate/gmgate/internal/testpki"
)

// interopDir is ../shared/interop (testenv: fails under GMGATE_REQUIRE_SERVICES=1 when absent).
func interopDir(t testing.TB) string { return testenv.InteropDir(t) }

type recording struct {
	Suite          string `json:"suite"`
	SuiteID        string `json:"suite_id"`
	ClientAuth     bool   `json:"client_auth"`
	ClientCertSent bool   `json:"client_certificate_sent"`
	Resumed        bool   `json:"resumed"`
	Records        []struct {
		Conn int    `json:"conn"`
		Dir  string `json:"dir"`
		Hex  string `json:"hex"`
	} `json:"records"`
	Keylog        string `json:"keylog"`
	ClientAppData string `json:"client_app_data"`
	ServerPrefix  string `json:"server_app_data_prefix"`
	Connections   []struct {
		Conn          int      `json:"conn"`
		Resumed       bool     `json:"resumed"`
		ClientRandom  string   `json:"client_random"`
		ServerRandom  string   `json:"server_random"`
		SessionID     string   `json:"session_id"`
		MasterSecret  string   `json:"master_secret"`
		Messages      []string `json:"handshake_messages"`
		ServerDataLen int      `json:"server_app_data_len"`
		ServerDataSM3 string   `json:"server_app_data_sm3"`
	} `json:"connections"`
}

type tongsuoPKI struct {
	ca, serverSign, serverEnc, clientSign, clientEnc *smx509.Certificate
	serverSignKey, serverEncKey                      *sm2.PrivateKey
}

func loadTongsuoPKI(t testing.TB, dir string) *tongsuoPKI {
	d := filepath.Join(dir, "tongsuo", "pki")
	return &tongsuoPKI{
		ca:            testpki.LoadCert(t, filepath.Join(d, "ca.pem")),
		serverSign:    testpki.LoadCert(t, filepath.Join(d, "server_sign_cert.pem")),
		serverEnc:     testpki.LoadCert(t, filepath.Join(d, "server_enc_cert.pem")),
		clientSign:    testpki.LoadCert(t, filepath.Join(d, "client_sign_cert.pem")),
		clientEnc:     testpki.LoadCert(t, filepath.Join(d, "client_enc_cert.pem")),
		serverSignKey: testpki.LoadKey(t, filepath.Join(d, "server_sign_key.pem")),
		serverEncKey:  testpki.LoadKey(t, filepath.Join(d, "server_enc_key.pem")),
	}
}

func mustHex(t testing.TB, s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// feedConn is a net.Conn whose reads come from a buffer the test fills.
type feedConn struct {
	buf bytes.Buffer
}

func (f *feedConn) Read(p []byte) (int, error) {
	if f.buf.Len() == 0 {
		return 0, io.EOF
	}
	return f.buf.Read(p)
}
func (f *feedConn) Write(p []byte) (int, error)      { return len(p), nil }
func (f *feedConn) Close() error                     { return nil }
func (f *feedConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (f *feedConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (f *feedConn) SetDeadline(time.Time) error      { return nil }
func (f *feedConn) SetReadDeadline(time.Time) error  { return nil }
func (f *feedConn) SetWriteDeadline(time.Time) error { return nil }

func recordingFiles(t *testing.T) (string, []string) {
	dir := interopDir(t)
	files, err := filepath.Glob(filepath.Join(dir, "tongsuo", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range files {
		if filepath.Base(f) != "primitives.json" {
			out = append(out, f)
		}
	}
	if len(out) < 7 {
		t.Fatalf("expected 7 recordings, found %d", len(out))
	}
	return dir, out
}

func loadRecording(t *testing.T, path string) *recording {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var r recording
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatal(err)
	}
	return &r
}

// TestTongsuoRecordings replays every recorded connection through this
// package's record layer, parsers, PRF and signature code.
func TestTongsuoRecordings(t *testing.T) {
	dir, files := recordingFiles(t)
	tp := loadTongsuoPKI(t, dir)
	for _, f := range files {
		rec := loadRecording(t, f)
		t.Run(filepath.Base(f), func(t *testing.T) {
			suite := suiteByID(uint16(mustHexUint(t, rec.SuiteID)))
			if suite == nil || suite.name != rec.Suite {
				t.Fatalf("unknown suite %s %s", rec.SuiteID, rec.Suite)
			}
			keylog := map[string]string{}
			for _, line := range strings.Split(strings.TrimSpace(rec.Keylog), "\n") {
				f := strings.Fields(line)
				if len(f) == 3 && f[0] == "CLIENT_RANDOM" {
					keylog[f[1]] = f[2]
				}
			}
			for _, cinfo := range rec.Connections {
				replayConnection(t, rec, suite, tp, cinfo.Conn, keylog)
			}
		})
	}
}

func mustHexUint(t testing.TB, s string) uint64 {
	var v uint64
	for _, c := range strings.TrimPrefix(strings.ToLower(s), "0x") {
		switch {
		case c >= '0' && c <= '9':
			v = v*16 + uint64(c-'0')
		case c >= 'a' && c <= 'f':
			v = v*16 + uint64(c-'a'+10)
		default:
			t.Fatalf("bad hex %q", s)
		}
	}
	return v
}

func replayConnection(t *testing.T, rec *recording, suite *cipherSuite, tp *tongsuoPKI, conn int, keylog map[string]string) {
	ci := rec.Connections[conn]
	cr, sr := mustHex(t, ci.ClientRandom), mustHex(t, ci.ServerRandom)
	ms := mustHex(t, keylog[ci.ClientRandom])
	if len(ms) != 48 || !bytes.Equal(ms, mustHex(t, ci.MasterSecret)) {
		t.Fatalf("conn %d: keylog master secret missing or different from connections[].master_secret", conn)
	}
	cfg := &Config{}
	// c2s is read by a server-side Conn, s2c by a client-side Conn.
	c2sFeed, s2cFeed := &feedConn{}, &feedConn{}
	rd := map[string]*Conn{"c2s": Server(c2sFeed, cfg), "s2c": Client(s2cFeed, cfg)}
	feed := map[string]*feedConn{"c2s": c2sFeed, "s2c": s2cFeed}
	fh := newFinishedHash()
	var transcript []string
	var pms []byte
	var serverCerts, clientCerts []*smx509.Certificate
	finished := map[string]bool{}
	appData := map[string]*bytes.Buffer{"c2s": {}, "s2c": {}}
	closed := map[string]bool{}
	checked := map[string]bool{}

	cm, sm, ck, sk, civ, siv := keyBlock(ms, cr, sr, suite)
	for _, r := range rec.Records {
		if r.Conn != conn {
			continue
		}
		c := rd[r.Dir]
		raw := mustHex(t, r.Hex)
		if len(raw) < 5 || int(raw[3])<<8|int(raw[4]) != len(raw)-5 {
			t.Fatalf("record framing broken in recording")
		}
		feed[r.Dir].buf.Write(raw)
		if raw[0] == recordTypeChangeCipherSpec {
			// Install the keys derived from the keylog master secret.
			var err error
			if r.Dir == "c2s" {
				c.in.next, err = newRecordCipher(suite, cm, ck, civ)
			} else {
				c.in.next, err = newRecordCipher(suite, sm, sk, siv)
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := c.readCCS(); err != nil {
				t.Fatalf("%s CCS: %v", r.Dir, err)
			}
			continue
		}
		if finished[r.Dir] {
			c.handshakeComplete.Store(true)
		}
		err := c.readRecord()
		c.vers = VersionTLCP // the hello sets it in a live handshake
		if errors.Is(err, io.EOF) {
			closed[r.Dir] = true // close_notify
			continue
		}
		if err != nil {
			t.Fatalf("%s record: %v", r.Dir, err)
		}
		if len(c.input) > 0 {
			appData[r.Dir].Write(c.input)
			c.input = nil
		}
		for c.hand.Len() >= 4 {
			h := c.hand.Bytes()
			n := int(h[1])<<16 | int(h[2])<<8 | int(h[3])
			if c.hand.Len() < 4+n {
				break
			}
			msg, err := c.readHandshake()
			if err != nil {
				t.Fatal(err)
			}
			name := handshakeName(msg[0])
			transcript = append(transcript, r.Dir+":"+name)
			switch msg[0] {
			case typeClientHello:
				var m clientHelloMsg
				if !m.unmarshal(msg) || !bytes.Equal(m.random, cr) || m.vers != VersionTLCP {
					t.Fatal("ClientHello did not parse or random differs")
				}
				if hex.EncodeToString(m.sessionID) != ci.SessionID && ci.Resumed {
					t.Fatal("resumption ClientHello lacks the session ID")
				}
			case typeServerHello:
				var m serverHelloMsg
				if !m.unmarshal(msg) || !bytes.Equal(m.random, sr) || m.cipherSuite != suite.id {
					t.Fatal("ServerHello did not parse or differs")
				}
				if hex.EncodeToString(m.sessionID) != ci.SessionID {
					t.Fatalf("session ID %x, want %s", m.sessionID, ci.SessionID)
				}
			case typeCertificate:
				var m certificateMsg
				if !m.unmarshal(msg) || len(m.certificates) < 2 {
					t.Fatal("Certificate did not parse")
				}
				var certs []*smx509.Certificate
				for _, der := range m.certificates {
					cc, err := smx509.ParseCertificate(der)
					if err != nil {
						t.Fatal(err)
					}
					certs = append(certs, cc)
				}
				// Tongsuo's certificates pass our peer checks (SM2 keys,
				// pki.CheckUsage key usage for the sign and enc positions).
				if _, err := (&Conn{config: &Config{}}).verifyPeer(m.certificates, r.Dir == "s2c", false); err != nil {
					t.Fatalf("%s certificates rejected: %v", r.Dir, err)
				}
				if r.Dir == "s2c" {
					if !certs[0].Equal(tp.serverSign) || !certs[1].Equal(tp.serverEnc) {
						t.Fatal("server certificates are not [sign, enc]")
					}
					serverCerts = certs
				} else {
					if !certs[0].Equal(tp.clientSign) || !certs[1].Equal(tp.clientEnc) {
						t.Fatal("client certificates are not [sign, enc]")
					}
					clientCerts = certs
				}
			case typeServerKeyExchange:
				var m serverKeyExchangeMsg
				if !m.unmarshalSuite(msg, suite.ecdhe) {
					t.Fatal("ServerKeyExchange did not parse")
				}
				var signed []byte
				if suite.ecdhe {
					signed = ecdheSKEMessage(cr, sr, m.params)
				} else {
					signed = eccSKEMessage(cr, sr, encSuffixOf(serverCerts[1].Raw))
				}
				pub, _ := sm2PublicKey(serverCerts[0])
				if !verifySignature(pub, signed, m.signature) {
					t.Fatal("ServerKeyExchange signature does not verify")
				}
				bad := append([]byte{}, signed...)
				bad[0] ^= 1
				if verifySignature(pub, bad, m.signature) {
					t.Fatal("ServerKeyExchange signature verifies over a wrong message")
				}
				checked["ske"] = true
			case typeCertificateRequest:
				var m certificateRequestMsg
				if !m.unmarshal(msg) {
					t.Fatal("CertificateRequest did not parse")
				}
			case typeServerHelloDone:
				var m serverHelloDoneMsg
				if !m.unmarshal(msg) {
					t.Fatal("ServerHelloDone did not parse")
				}
			case typeClientKeyExchange:
				var m clientKeyExchangeMsg
				if !m.unmarshal(msg) {
					t.Fatal("ClientKeyExchange did not parse")
				}
				if suite.ecdhe {
					if _, ok := m.ecdhePoint(); !ok || len(m.body) != 69 {
						t.Fatal("ECDHE ClientKeyExchange did not parse as 69 bytes")
					}
				} else {
					ct, ok := m.eccCiphertext()
					if !ok {
						t.Fatal("ECC ClientKeyExchange did not parse")
					}
					p, err := decryptPreMaster(tp.serverEncKey, nil, ct)
					if err != nil {
						t.Fatalf("pre-master decryption: %v", err)
					}
					pms = p
					if got := masterFromPreMaster(pms, cr, sr); !bytes.Equal(got, ms) {
						t.Fatal("master secret from decrypted pre-master differs from the keylog")
					}
					checked["pms"] = true
				}
			case typeCertificateVerify:
				var m certificateVerifyMsg
				if !m.unmarshal(msg) {
					t.Fatal("CertificateVerify did not parse")
				}
				pub, _ := sm2PublicKey(clientCerts[0])
				if !verifySignature(pub, fh.Sum(), m.signature) {
					t.Fatal("CertificateVerify signature does not verify")
				}
				checked["cv"] = true
			case typeFinished:
				var m finishedMsg
				if !m.unmarshal(msg) {
					t.Fatal("Finished did not parse")
				}
				label := labelClientFin
				if r.Dir == "s2c" {
					label = labelServerFin
				}
				if want := verifyData(ms, label, fh.Sum()); !bytes.Equal(want, m.verifyData) {
					t.Fatalf("%s Finished verify_data mismatch", r.Dir)
				}
				finished[r.Dir] = true
			case 4: // NewSessionTicket (Tongsuo with tickets on): only hashed.
			default:
				t.Fatalf("unexpected handshake type %d", msg[0])
			}
			fh.Write(msg)
		}
	}
	if strings.Join(transcript, ",") != strings.Join(ci.Messages, ",") &&
		strings.Join(withoutTicket(transcript), ",") != strings.Join(ci.Messages, ",") {
		t.Fatalf("conn %d transcript %v, recording says %v", conn, transcript, ci.Messages)
	}
	if !finished["c2s"] || !finished["s2c"] {
		t.Fatal("both Finished messages must be verified")
	}
	if !ci.Resumed {
		if !checked["ske"] {
			t.Fatal("no ServerKeyExchange checked")
		}
		if !suite.ecdhe && !checked["pms"] {
			t.Fatal("no pre-master checked")
		}
		if rec.ClientCertSent && !checked["cv"] {
			t.Fatal("no CertificateVerify checked")
		}
	}
	if got := appData["c2s"].String(); got != rec.ClientAppData {
		t.Fatalf("client app data %q", got)
	}
	sd := appData["s2c"].Bytes()
	if !bytes.HasPrefix(sd, []byte(rec.ServerPrefix)) || len(sd) != ci.ServerDataLen {
		t.Fatalf("server app data: len %d want %d", len(sd), ci.ServerDataLen)
	}
	sum := sm3.Sum(sd)
	if hex.EncodeToString(sum[:]) != ci.ServerDataSM3 {
		t.Fatal("server app data SM3 differs")
	}
	if !closed["c2s"] || !closed["s2c"] {
		t.Fatal("expected close_notify in both directions")
	}
	_ = pms
}

func withoutTicket(tr []string) []string {
	var out []string
	for _, s := range tr {
		if !strings.HasSuffix(s, "NewSessionTicket") {
			out = append(out, s)
		}
	}
	return out
}

func handshakeName(t uint8) string {
	switch t {
	case typeClientHello:
		return "ClientHello"
	case typeServerHello:
		return "ServerHello"
	case typeCertificate:
		return "Certificate"
	case typeServerKeyExchange:
		return "ServerKeyExchange"
	case typeCertificateRequest:
		return "CertificateRequest"
	case typeServerHelloDone:
		return "ServerHelloDone"
	case typeCertificateVerify:
		return "CertificateVerify"
	case typeClientKeyExchange:
		return "ClientKeyExchange"
	case typeFinished:
		return "Finished"
	case 4:
		return "NewSessionTicket"
	}
	return "unknown"
}
