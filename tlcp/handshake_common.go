package tlcp

import (
	"crypto/subtle"

	"github.com/emmansun/gmsm/smx509"
)

// handshakeState is what the client and the server handshakes have in
// common: the connection, the side, the negotiated parameters, the transcript
// and the master secret. Both clientHandshake and serverHandshake embed it;
// the methods below serve both sides, parameterized by isClient (which half
// of the key block is read and which is written, which Finished label is
// sent and which is expected).
type handshakeState struct {
	c            *Conn
	isClient     bool
	hello        *clientHelloMsg
	serverRandom []byte
	suite        *cipherSuite
	pair         *preparedPair
	fh           finishedHash
	ms           []byte
	session      *SessionState
	encChains    [][]*smx509.Certificate // verified chains of the peer's encryption certificate
}

func newHandshakeState(c *Conn, isClient bool) handshakeState {
	return handshakeState{c: c, isClient: isClient, fh: newFinishedHash()}
}

// messageParser is anything that parses a handshake message (every
// handshakeMessage is one).
type messageParser interface {
	unmarshal(data []byte) bool
}

// parseFunc adapts a parse function (e.g. one that needs the suite) to
// messageParser.
type parseFunc func(data []byte) bool

func (f parseFunc) unmarshal(data []byte) bool { return f(data) }

// expectMsg checks that raw is a handshake message of type want and parses
// it into m. name is used in the alerts ("expected name", "malformed name").
func expectMsg(raw []byte, want uint8, m messageParser, name string) error {
	if raw[0] != want {
		return newAlert(AlertUnexpectedMessage, "expected "+name)
	}
	if !m.unmarshal(raw) {
		return newAlert(AlertDecodeError, "malformed "+name)
	}
	return nil
}

// readMsgUnrecorded reads the next handshake message and checks and parses
// it with expectMsg, without adding it to the transcript: the caller adds
// raw once it has used the transcript hash that precedes the message.
func (hs *handshakeState) readMsgUnrecorded(want uint8, m messageParser, name string) (raw []byte, err error) {
	if raw, err = hs.c.readHandshake(); err != nil {
		return nil, err
	}
	if err := expectMsg(raw, want, m, name); err != nil {
		return nil, err
	}
	return raw, nil
}

// readMsg reads the next handshake message, checks and parses it with
// expectMsg and adds it to the transcript.
func (hs *handshakeState) readMsg(want uint8, m messageParser, name string) error {
	raw, err := hs.readMsgUnrecorded(want, m, name)
	if err != nil {
		return err
	}
	hs.fh.Write(raw)
	return nil
}

// establishKeys derives the key block from hs.ms and stages the record
// ciphers (activated by the next ChangeCipherSpec in each direction). The
// client writes with the client half and reads with the server half; the
// server the other way round. The MAC keys and keys are zeroized.
func (hs *handshakeState) establishKeys() error {
	c := hs.c
	cm, sm, ck, sk, civ, siv := keyBlock(hs.ms, hs.hello.random, hs.serverRandom, hs.suite)
	defer func() {
		zeroize(cm)
		zeroize(sm)
		zeroize(ck)
		zeroize(sk)
	}()
	clientCipher, err := newRecordCipher(hs.suite, cm, ck, civ)
	if err != nil {
		return wrapAlert(AlertInternalError, err)
	}
	serverCipher, err := newRecordCipher(hs.suite, sm, sk, siv)
	if err != nil {
		return wrapAlert(AlertInternalError, err)
	}
	rc, wc := serverCipher, clientCipher
	if !hs.isClient {
		rc, wc = clientCipher, serverCipher
	}
	c.in.next = rc
	c.out.Lock()
	c.out.next = wc
	c.out.Unlock()
	return nil
}

// finishedLabels returns the PRF label of our Finished and of the peer's.
func (hs *handshakeState) finishedLabels() (ours, peers []byte) {
	if hs.isClient {
		return labelClientFin, labelServerFin
	}
	return labelServerFin, labelClientFin
}

// readFinished reads the peer's ChangeCipherSpec and Finished and compares
// its verify_data in constant time.
func (hs *handshakeState) readFinished() error {
	c := hs.c
	if err := c.readCCS(); err != nil {
		return err
	}
	_, label := hs.finishedLabels()
	want := verifyData(hs.ms, label, hs.fh.Sum())
	var fin finishedMsg
	raw, err := hs.readMsgUnrecorded(typeFinished, &fin, "Finished")
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare(fin.verifyData, want) != 1 {
		peer := "server"
		if !hs.isClient {
			peer = "client"
		}
		return newAlert(AlertDecryptError, peer+" Finished is wrong")
	}
	hs.fh.Write(raw)
	return nil
}

// sendFinished writes our ChangeCipherSpec and Finished.
func (hs *handshakeState) sendFinished() error {
	c := hs.c
	if err := c.writeCCS(); err != nil {
		return err
	}
	label, _ := hs.finishedLabels()
	fin := &finishedMsg{verifyData: verifyData(hs.ms, label, hs.fh.Sum())}
	return c.writeHandshake(fin.marshal(), &hs.fh)
}

// finish stages the record keys and runs the ChangeCipherSpec + Finished
// exchange. sendFirst is true for the side that speaks first (the client in
// a full handshake, the server on resumption): it sends, flushes, then
// reads. The other side reads, then sends and flushes.
func (hs *handshakeState) finish(sendFirst bool) error {
	c := hs.c
	if err := hs.establishKeys(); err != nil {
		return err
	}
	if !sendFirst {
		if err := hs.readFinished(); err != nil {
			return err
		}
	}
	c.buffering = true
	if err := hs.sendFinished(); err != nil {
		return err
	}
	if err := c.flush(); err != nil {
		return err
	}
	if sendFirst {
		return hs.readFinished()
	}
	return nil
}

// resume completes an abbreviated handshake that resumes hs.session under
// session ID sid: the Finished exchange with the session's master secret
// (see finish for sendFirst), then the session's peer certificates.
func (hs *handshakeState) resume(sendFirst bool, sid []byte) error {
	c := hs.c
	hs.ms = hs.session.MasterSecret
	if err := hs.finish(sendFirst); err != nil {
		return err
	}
	c.sessionID = sid
	c.peerCertificates = hs.session.PeerCertificates
	c.verifiedChains = hs.session.VerifiedChains
	return nil
}

// newSession returns the cache entry for the full handshake just completed.
func (hs *handshakeState) newSession(sid []byte, serverName string) *SessionState {
	c := hs.c
	return &SessionState{SessionID: sid, CipherSuite: hs.suite.id, MasterSecret: hs.ms,
		PeerCertificates: c.peerCertificates, VerifiedChains: c.verifiedChains, encChains: hs.encChains,
		ServerName: serverName, Created: c.config.now()}
}
