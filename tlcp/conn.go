package tlcp

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emmansun/gmsm/smx509"
	"github.com/gmgate/gmgate/internal/conncore"
	"github.com/gmgate/gmgate/internal/recordio"
)

var cryptoRandReader = rand.Reader

// Record content types.
const (
	recordTypeChangeCipherSpec uint8 = 20
	recordTypeAlert            uint8 = 21
	recordTypeHandshake        uint8 = 22
	recordTypeApplicationData  uint8 = 23
)

// Conn is a TLCP connection, client or server side. It implements net.Conn.
type Conn struct {
	conn     net.Conn
	isClient bool
	config   *Config

	handshake         conncore.Handshake // held while the handshake runs; its permanent error
	handshakeComplete atomic.Bool
	handshakeFn       func(context.Context) error

	// Connection state, set by the handshake.
	vers             uint16
	cipherSuite      uint16
	didResume        bool
	serverName       string
	sessionID        []byte
	peerCertificates []*smx509.Certificate
	verifiedChains   [][]*smx509.Certificate

	in, out halfConn

	hdr     [recordHeaderLen]byte
	rb      recordio.ReadBuffer // received, unconsumed bytes
	input   []byte              // unread application data (aliases rbuf)
	hand    bytes.Buffer        // pending handshake bytes
	retries int                 // records in a row that did not advance

	outBuf    []byte // record output buffer, reused
	sendBuf   []byte // buffered handshake flight
	buffering bool

	closeNotifySent bool
	closeOnce       sync.Once
}

type halfConn struct {
	sync.Mutex
	err    error
	cipher recordCipher
	next   recordCipher // installed at ChangeCipherSpec
	seq    [8]byte
}

func (hc *halfConn) incSeq() error {
	for i := 7; i >= 0; i-- {
		hc.seq[i]++
		if hc.seq[i] != 0 {
			return nil
		}
	}
	return errors.New("tlcp: sequence number wraparound")
}

func (hc *halfConn) changeCipher() bool {
	if hc.next == nil {
		return false
	}
	hc.cipher, hc.next = hc.next, nil
	hc.seq = [8]byte{}
	return true
}

// LocalAddr returns the local network address.
func (c *Conn) LocalAddr() net.Addr { return c.conn.LocalAddr() }

// RemoteAddr returns the remote network address.
func (c *Conn) RemoteAddr() net.Addr { return c.conn.RemoteAddr() }

// SetDeadline sets the read and write deadlines of the underlying connection.
func (c *Conn) SetDeadline(t time.Time) error { return c.conn.SetDeadline(t) }

// SetReadDeadline sets the read deadline of the underlying connection.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.conn.SetReadDeadline(t) }

// SetWriteDeadline sets the write deadline of the underlying connection.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.conn.SetWriteDeadline(t) }

// NetConn returns the underlying connection.
func (c *Conn) NetConn() net.Conn { return c.conn }

// sendAlertLocked sends an alert; c.out must be held.
func (c *Conn) sendAlertLocked(a Alert, level uint8) error {
	if c.out.err != nil && level == alertLevelError {
		return c.out.err
	}
	_, err := c.writeRecordLocked(recordTypeAlert, []byte{level, byte(a)})
	if a == AlertCloseNotify {
		c.closeNotifySent = true
	}
	if level == alertLevelError {
		ae := &AlertError{Alert: a}
		c.out.err = ae
		if err == nil {
			err = ae
		}
	}
	return err
}

// fatal sends a fatal alert for cause and returns the AlertError.
func (c *Conn) fatal(a Alert, cause error) error {
	c.out.Lock()
	c.sendAlertLocked(a, alertLevelError) //nolint:errcheck // best effort; the cause is returned
	c.out.Unlock()
	return &AlertError{Alert: a, Err: cause}
}

// fail converts err to an AlertError, sending the alert if err carries one.
func (c *Conn) fail(err error) error {
	var ae *AlertError
	if errors.As(err, &ae) {
		if ae.Remote {
			return err
		}
		return c.fatal(ae.Alert, ae.Err)
	}
	return err
}

// readRecord reads one record; see readRecordOrCCS.
func (c *Conn) readRecord() error { return c.readRecordOrCCS(false) }

// readRecordOrCCS reads and processes one record. c.in must be held.
func (c *Conn) readRecordOrCCS(expectCCS bool) error {
	if c.in.err != nil {
		return c.in.err
	}
	// Bytes of a partly read record stay in c.rb.Buf across errors such as
	// timeouts, so a later Read resumes where this one stopped.
	if err := c.fill(recordHeaderLen); err != nil {
		return c.readErr(err)
	}
	copy(c.hdr[:], c.rb.Buf[c.rb.Start:])
	typ := c.hdr[0]
	vers := uint16(c.hdr[1])<<8 | uint16(c.hdr[2])
	n := int(c.hdr[3])<<8 | int(c.hdr[4])
	if c.vers == 0 {
		// First record: accept 0x01xx and 0x03xx, the hello decides.
		if vers>>8 != 1 && vers>>8 != 3 {
			return c.inErr(c.fatal(AlertProtocolVersion, fmt.Errorf("unsupported record version %#04x", vers)))
		}
		if typ != recordTypeHandshake && typ != recordTypeAlert {
			return c.inErr(c.fatal(AlertUnexpectedMessage, errors.New("first record is not a handshake")))
		}
	} else if vers != VersionTLCP {
		return c.inErr(c.fatal(AlertProtocolVersion, fmt.Errorf("record version %#04x", vers)))
	}
	if n > maxCiphertext || (c.in.cipher == nil && n > maxPlaintext) {
		return c.inErr(c.fatal(AlertRecordOverflow, fmt.Errorf("record length %d", n)))
	}
	if err := c.fill(recordHeaderLen + n); err != nil {
		return c.readErr(err)
	}
	frag := c.rb.Buf[c.rb.Start+recordHeaderLen : c.rb.Start+recordHeaderLen+n]
	c.rb.Start += recordHeaderLen + n
	data := frag
	if c.in.cipher != nil {
		var err error
		data, err = c.in.cipher.open(&c.in.seq, typ, frag)
		if err != nil {
			return c.inErr(c.fatal(AlertBadRecordMAC, err))
		}
		if err := c.in.incSeq(); err != nil {
			return c.inErr(c.fatal(AlertInternalError, err))
		}
	}
	if len(data) > maxPlaintext {
		return c.inErr(c.fatal(AlertRecordOverflow, errors.New("plaintext too long")))
	}
	switch typ {
	case recordTypeAlert:
		if len(data) != 2 {
			return c.inErr(c.fatal(AlertDecodeError, errors.New("malformed alert")))
		}
		if Alert(data[1]) == AlertCloseNotify {
			c.in.err = io.EOF
			if !c.handshakeComplete.Load() {
				c.in.err = io.ErrUnexpectedEOF
			}
			return c.in.err
		}
		if data[0] == alertLevelWarning {
			return c.retry()
		}
		return c.inErr(&AlertError{Alert: Alert(data[1]), Remote: true})
	case recordTypeChangeCipherSpec:
		if len(data) != 1 || data[0] != 1 {
			return c.inErr(c.fatal(AlertDecodeError, errors.New("malformed ChangeCipherSpec")))
		}
		if !expectCCS || c.hand.Len() > 0 {
			return c.inErr(c.fatal(AlertUnexpectedMessage, errors.New("unexpected ChangeCipherSpec")))
		}
		if !c.in.changeCipher() {
			return c.inErr(c.fatal(AlertInternalError, errors.New("no pending cipher")))
		}
	case recordTypeApplicationData:
		if !c.handshakeComplete.Load() || expectCCS {
			return c.inErr(c.fatal(AlertUnexpectedMessage, errors.New("application data before handshake completion")))
		}
		if c.hand.Len() > 0 {
			// Inside a fragmented handshake message: taking it would overwrite (and
			// so drop) any application data read before while the message completes.
			return c.inErr(c.fatal(AlertUnexpectedMessage, errors.New("application data inside a handshake message")))
		}
		if len(data) == 0 {
			return c.retry()
		}
		c.retries = 0
		c.input = data
	case recordTypeHandshake:
		if len(data) == 0 || expectCCS {
			return c.inErr(c.fatal(AlertUnexpectedMessage, errors.New("unexpected handshake record")))
		}
		if !c.handshakeComplete.Load() {
			// After the handshake every handshake message is a refused renegotiation: it must
			// count toward maxUselessRecords, not reset the count, or a peer can spam them forever.
			c.retries = 0
		}
		c.hand.Write(data)
	default:
		return c.inErr(c.fatal(AlertUnexpectedMessage, fmt.Errorf("unknown record type %d", typ)))
	}
	return nil
}

// readCCS reads records until the peer's ChangeCipherSpec switched the read cipher.
func (c *Conn) readCCS() error {
	if c.hand.Len() > 0 {
		return newAlert(AlertUnexpectedMessage, "handshake message straddles ChangeCipherSpec")
	}
	for c.in.next != nil {
		if err := c.readRecordOrCCS(true); err != nil {
			return err
		}
	}
	return nil
}

// fill makes at least n unconsumed bytes available in c.rb (see recordio.ReadBuffer.Fill).
func (c *Conn) fill(n int) error {
	return c.rb.Fill(c.conn, n, recordHeaderLen+maxCiphertext)
}

// readErr records a read error as permanent unless it is a timeout.
func (c *Conn) readErr(err error) error {
	if err == io.EOF && !c.handshakeComplete.Load() {
		err = io.ErrUnexpectedEOF
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return err
	}
	c.in.err = err
	return err
}

func (c *Conn) inErr(err error) error {
	c.in.err = err
	return err
}

// retry counts records that do not advance the connection.
func (c *Conn) retry() error {
	c.retries++
	if c.retries > maxUselessRecords {
		return c.inErr(c.fatal(AlertUnexpectedMessage, errors.New("too many empty records or warnings")))
	}
	return nil
}

// readHandshake reads one complete handshake message (header included).
func (c *Conn) readHandshake() ([]byte, error) {
	msg, err := recordio.ReadHandshake(&c.hand, c.config.maxHandshake(), c.readRecord)
	var tooLarge *recordio.TooLargeError
	if errors.As(err, &tooLarge) {
		return nil, c.inErr(c.fatal(AlertDecodeError, err))
	}
	return msg, err
}

// writeRecordLocked writes data as records of type typ. c.out must be held.
func (c *Conn) writeRecordLocked(typ uint8, data []byte) (int, error) {
	if c.out.err != nil {
		return 0, c.out.err
	}
	written := 0
	for first := true; first || len(data) > 0; first = false {
		m := len(data)
		if m > maxPlaintext {
			m = maxPlaintext
		}
		vers := VersionTLCP
		out := append(c.outBuf[:0], typ, byte(vers>>8), byte(vers), 0, 0)
		var err error
		if c.out.cipher == nil {
			out = append(out, data[:m]...)
		} else {
			out, err = c.out.cipher.seal(out, &c.out.seq, out[:3], data[:m], c.config.rand())
			if err != nil {
				c.out.err = err
				return written, err
			}
			if err := c.out.incSeq(); err != nil {
				c.out.err = err
				return written, err
			}
		}
		l := len(out) - recordHeaderLen
		out[3], out[4] = byte(l>>8), byte(l)
		c.outBuf = out
		if c.buffering {
			c.sendBuf = append(c.sendBuf, out...)
		} else if _, err := c.conn.Write(out); err != nil {
			c.out.err = err
			return written, err
		}
		written += m
		data = data[m:]
	}
	if typ == recordTypeChangeCipherSpec {
		if !c.out.changeCipher() {
			return written, errors.New("tlcp: no pending write cipher")
		}
	}
	return written, nil
}

// writeHandshake writes one handshake message record(s) and adds it to the transcript.
func (c *Conn) writeHandshake(msg []byte, fh *finishedHash) error {
	c.out.Lock()
	defer c.out.Unlock()
	if fh != nil {
		fh.Write(msg)
	}
	_, err := c.writeRecordLocked(recordTypeHandshake, msg)
	return err
}

func (c *Conn) writeCCS() error {
	c.out.Lock()
	defer c.out.Unlock()
	_, err := c.writeRecordLocked(recordTypeChangeCipherSpec, []byte{1})
	return err
}

func (c *Conn) flush() error {
	c.out.Lock()
	defer c.out.Unlock()
	return conncore.Flush(c.conn, &c.sendBuf, &c.buffering, &c.out.err)
}

// Write writes application data, in records of at most 16 KiB.
func (c *Conn) Write(b []byte) (int, error) {
	if err := c.Handshake(); err != nil {
		return 0, err
	}
	return conncore.Write(b, &c.out, &c.closeNotifySent, "tlcp", c.writeApplicationData)
}

// writeApplicationData writes b as application data records. c.out must be held.
func (c *Conn) writeApplicationData(b []byte) (int, error) {
	return c.writeRecordLocked(recordTypeApplicationData, b)
}

// Read reads application data.
func (c *Conn) Read(b []byte) (int, error) {
	if err := c.Handshake(); err != nil {
		return 0, err
	}
	return conncore.Read(b, &c.in, &c.input, &c.hand, c.readRecord, c.handlePostHandshake)
}

// handlePostHandshake refuses renegotiation. c.in must be held.
func (c *Conn) handlePostHandshake() error {
	msg, err := c.readHandshake()
	if err != nil {
		return err
	}
	switch {
	case !c.isClient && msg[0] == typeClientHello,
		c.isClient && msg[0] == typeHelloRequest:
		c.out.Lock()
		err := c.sendAlertLocked(AlertNoRenegotiation, alertLevelWarning)
		c.out.Unlock()
		if err != nil {
			return err
		}
		return c.retry()
	}
	return c.inErr(c.fatal(AlertUnexpectedMessage, fmt.Errorf("unexpected post-handshake message type %d", msg[0])))
}

// Close sends close_notify (after a completed handshake) and closes the connection.
func (c *Conn) Close() error {
	return conncore.Close(&c.handshakeComplete, c.conn, c.closeNotify, nil)
}

// CloseWrite sends close_notify without closing the connection.
func (c *Conn) CloseWrite() error {
	return conncore.CloseWrite(&c.handshakeComplete, "tlcp", c.closeNotify)
}

func (c *Conn) closeNotify() error {
	return conncore.CloseNotify(&c.out, &c.closeNotifySent, c.conn, func() error {
		return c.sendAlertLocked(AlertCloseNotify, alertLevelWarning)
	})
}

// Handshake runs the handshake if it has not run yet.
func (c *Conn) Handshake() error {
	return c.HandshakeContext(context.Background())
}

// HandshakeContext runs the handshake; ctx cancellation or Config.HandshakeTimeout abort it.
func (c *Conn) HandshakeContext(ctx context.Context) error {
	return c.handshake.Run(ctx, &c.handshakeComplete, c.conn, "tlcp",
		func() (time.Duration, error) { return c.config.HandshakeTimeout, nil }, c.runHandshake)
}

// runHandshake runs the protocol's handshake under the read lock and, when it succeeded, ends
// the buffering of its flights.
func (c *Conn) runHandshake(ctx context.Context) error {
	return conncore.RunLocked(ctx, &c.in, &c.out, &c.buffering, &c.sendBuf, c.handshakeFn)
}

// ConnectionState returns details about the connection.
func (c *Conn) ConnectionState() ConnectionState {
	c.handshake.Lock()
	defer c.handshake.Unlock()
	st := ConnectionState{
		Version:           c.vers,
		HandshakeComplete: c.handshakeComplete.Load(),
		DidResume:         c.didResume,
		CipherSuite:       c.cipherSuite,
		ServerName:        c.serverName,
		SessionID:         c.sessionID,
		PeerCertificates:  c.peerCertificates,
		VerifiedChains:    c.verifiedChains,
	}
	if len(c.verifiedChains) > 0 { // an unverified chain is no identity
		if len(c.peerCertificates) > 0 {
			st.PeerSignCertificate = c.peerCertificates[0]
		}
		if len(c.peerCertificates) > 1 && !c.peerCertificates[1].IsCA {
			st.PeerEncCertificate = c.peerCertificates[1]
		}
	}
	return st
}
