package tls13sm

import (
	"bytes"
	"context"
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

// Record content types (RFC 8446 5.1).
const (
	recordTypeChangeCipherSpec uint8 = 20
	recordTypeAlert            uint8 = 21
	recordTypeHandshake        uint8 = 22
	recordTypeApplicationData  uint8 = 23
)

// Conn is a TLS 1.3 (RFC 8998 profile) connection, client or server side.
// It implements net.Conn.
type Conn struct {
	conn     net.Conn
	isClient bool
	config   *Config

	handshake         conncore.Handshake // held while the handshake runs; its permanent error
	handshakeComplete atomic.Bool
	handshakeFn       func(context.Context) error

	// Connection state, set by the handshake.
	cipherSuite      uint16
	didResume        bool
	didHRR           bool // a HelloRetryRequest was sent or received
	serverName       string
	alpn             string
	peerCertificates []*smx509.Certificate
	verifiedChains   [][]*smx509.Certificate

	// resumptionSecret is kept after the handshake for tickets (client side: to
	// turn received NewSessionTickets into sessions).
	resumptionSecret []byte
	ticketsSeen      int

	in, out halfConn

	rb       recordio.ReadBuffer // received, unconsumed bytes
	input    []byte              // unread application data
	hand     bytes.Buffer        // pending handshake bytes
	retries  int                 // records in a row that did not advance
	sentCH   bool                // a ClientHello was sent or received (CCS allowed from here on)
	peerFin  bool                // the peer's Finished was received (CCS no longer allowed)
	firstRec bool                // the first record was written

	outBuf    []byte
	innerBuf  []byte // inner plaintext of the record being sealed
	sendBuf   []byte // buffered handshake flight
	buffering bool

	closeNotifySent bool
}

// halfConn is one direction's record protection.
type halfConn struct {
	sync.Mutex
	err    error
	prot   *recordProtection // nil: plaintext
	seq    uint64
	secret []byte // current traffic secret (for KeyUpdate)
	suite  uint16
}

// setTrafficSecret installs a new traffic secret and resets the sequence number.
func (hc *halfConn) setTrafficSecret(suite uint16, secret []byte) error {
	p, err := newProtection(suite, secret)
	if err != nil {
		return err
	}
	if hc.secret != nil {
		zero(hc.secret)
	}
	hc.prot, hc.seq, hc.suite = p, 0, suite
	hc.secret = append([]byte(nil), secret...)
	return nil
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
func (c *Conn) sendAlertLocked(a Alert) error {
	level := uint8(alertLevelError)
	if a == AlertCloseNotify || a == AlertUserCanceled {
		level = alertLevelWarning
	}
	if c.out.err != nil && level == alertLevelError {
		return c.out.err
	}
	c.buffering = false
	if len(c.sendBuf) > 0 { // an alert ends any pending flight
		c.conn.Write(c.sendBuf) //nolint:errcheck // best effort
		c.sendBuf = c.sendBuf[:0]
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
	c.sendAlertLocked(a) //nolint:errcheck // best effort; the cause is returned
	c.out.Unlock()
	return &AlertError{Alert: a, Err: cause}
}

// fail converts err to an AlertError, sending the alert if err carries a local one.
func (c *Conn) fail(err error) error {
	var ae *AlertError
	if errors.As(err, &ae) {
		if ae.Remote {
			return err
		}
		if c.out.err == nil {
			return c.fatal(ae.Alert, ae.Err)
		}
	}
	return err
}

// readRecord reads and processes one record. c.in must be held.
func (c *Conn) readRecord() error {
	if c.in.err != nil {
		return c.in.err
	}
	if err := c.fill(recordHeaderLen); err != nil {
		return c.readErr(err)
	}
	hdr := c.rb.Buf[c.rb.Start : c.rb.Start+recordHeaderLen]
	typ := hdr[0]
	vers := uint16(hdr[1])<<8 | uint16(hdr[2])
	n := int(hdr[3])<<8 | int(hdr[4])
	if vers>>8 != 3 {
		return c.inErr(c.fatal(AlertProtocolVersion, fmt.Errorf("record version 0x%04X", vers)))
	}
	if n > maxCiphertext || (c.in.prot == nil && n > maxPlaintext) {
		return c.inErr(c.fatal(AlertRecordOverflow, fmt.Errorf("record of %d bytes", n)))
	}
	if err := c.fill(recordHeaderLen + n); err != nil {
		return c.readErr(err)
	}
	record := c.rb.Buf[c.rb.Start : c.rb.Start+recordHeaderLen+n]
	c.rb.Start += recordHeaderLen + n
	payload := record[recordHeaderLen:]

	// A single change_cipher_spec byte 0x01 may arrive, unprotected, between
	// the first ClientHello and the peer's Finished (RFC 8446 5, D.4); it is
	// dropped. Anything else of that type is refused.
	if typ == recordTypeChangeCipherSpec {
		if n != 1 || payload[0] != 1 || !c.sentCH || c.peerFin {
			return c.inErr(c.fatal(AlertUnexpectedMessage, errors.New("unexpected change_cipher_spec")))
		}
		return c.retry()
	}

	if c.in.prot != nil {
		if typ != recordTypeApplicationData {
			return c.inErr(c.fatal(AlertUnexpectedMessage, fmt.Errorf("unprotected record of type %d after key change", typ)))
		}
		if n < aeadTagLen+1 {
			return c.inErr(c.fatal(AlertBadRecordMAC, errors.New("short protected record")))
		}
		nonce := c.in.prot.nonce(c.in.seq)
		plain, err := c.in.prot.aead.Open(payload[:0], nonce[:], payload, record[:recordHeaderLen])
		if err != nil {
			return c.inErr(c.fatal(AlertBadRecordMAC, errors.New("record authentication failed")))
		}
		c.in.seq++
		if c.in.seq == 0 {
			return c.inErr(c.fatal(AlertInternalError, errors.New("read sequence number wrapped")))
		}
		// Strip the padding and find the real content type.
		i := len(plain) - 1
		for i >= 0 && plain[i] == 0 {
			i--
		}
		if i < 0 {
			return c.inErr(c.fatal(AlertUnexpectedMessage, errors.New("protected record without content type")))
		}
		typ, payload = plain[i], plain[:i]
		if len(payload) > maxPlaintext {
			return c.inErr(c.fatal(AlertRecordOverflow, errors.New("inner plaintext too long")))
		}
		if typ == recordTypeChangeCipherSpec {
			return c.inErr(c.fatal(AlertUnexpectedMessage, errors.New("protected change_cipher_spec")))
		}
	}

	switch typ {
	case recordTypeAlert:
		if len(payload) != 2 || c.hand.Len() > 0 {
			return c.inErr(c.fatal(AlertDecodeError, errors.New("malformed alert")))
		}
		a := Alert(payload[1])
		if a == AlertCloseNotify {
			return c.inErr(io.EOF)
		}
		if a == AlertUserCanceled && payload[0] == alertLevelWarning {
			return c.retry()
		}
		return c.inErr(&AlertError{Alert: a, Remote: true})
	case recordTypeHandshake:
		if len(payload) == 0 {
			return c.inErr(c.fatal(AlertUnexpectedMessage, errors.New("empty handshake record")))
		}
		if c.hand.Len()+len(payload) > c.config.maxHandshake()+4 {
			return c.inErr(c.fatal(AlertUnexpectedMessage, errors.New("too much buffered handshake data")))
		}
		c.hand.Write(payload)
		if !c.handshakeComplete.Load() {
			c.retries = 0 // after the handshake only application data counts as progress
		}
		return nil
	case recordTypeApplicationData:
		if c.in.prot == nil || !c.handshakeComplete.Load() {
			return c.inErr(c.fatal(AlertUnexpectedMessage, errors.New("application data before the handshake completed")))
		}
		if c.hand.Len() > 0 {
			return c.inErr(c.fatal(AlertUnexpectedMessage, errors.New("application data inside a handshake message")))
		}
		if len(payload) == 0 {
			return c.retry()
		}
		c.input = payload
		c.retries = 0
		return nil
	}
	return c.inErr(c.fatal(AlertUnexpectedMessage, fmt.Errorf("record of unknown type %d", typ)))
}

// fill makes at least n unconsumed bytes available in c.rb (see recordio.ReadBuffer.Fill).
func (c *Conn) fill(n int) error {
	return c.rb.Fill(c.conn, n, recordHeaderLen+maxCiphertext)
}

// readErr records a read error as permanent unless it is a timeout.
func (c *Conn) readErr(err error) error {
	// Only close_notify ends a stream cleanly; a bare TCP close is a
	// truncation (an attacker cutting a payment reply short), never io.EOF.
	if err == io.EOF {
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
		return c.inErr(c.fatal(AlertUnexpectedMessage, errors.New("too many records without progress")))
	}
	return nil
}

// readHandshakeBytes reads one complete handshake message (header included).
func (c *Conn) readHandshakeBytes() ([]byte, error) {
	msg, err := recordio.ReadHandshake(&c.hand, c.config.maxHandshake(), c.readRecord)
	var tooLarge *recordio.TooLargeError
	if errors.As(err, &tooLarge) {
		return nil, c.inErr(c.fatal(AlertUnexpectedMessage, err))
	}
	return msg, err
}

// readHandshake reads the next message, which must be of type typ, into m.
// A wrong type is unexpected_message; a malformed body decode_error.
func (c *Conn) readHandshake(typ uint8, m handshakeMessage) error {
	data, err := c.readHandshakeBytes()
	if err != nil {
		return err
	}
	if data[0] != typ {
		return c.inErr(c.fatal(AlertUnexpectedMessage, fmt.Errorf("got handshake message %d, want %d", data[0], typ)))
	}
	if !m.unmarshal(data) {
		return c.inErr(c.fatal(AlertDecodeError, fmt.Errorf("malformed handshake message %d", typ)))
	}
	return nil
}

// keyChangeBoundary refuses a key change in the middle of a handshake message
// (RFC 8446 5.1: messages must not span key changes).
func (c *Conn) keyChangeBoundary() error {
	if c.hand.Len() > 0 {
		return c.inErr(c.fatal(AlertUnexpectedMessage, errors.New("handshake data spans a key change")))
	}
	return nil
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
		out := c.outBuf[:0]
		if c.out.prot == nil {
			vers := versionTLS12
			if !c.firstRec && typ == recordTypeHandshake && c.isClient {
				vers = versionTLS10 // the initial ClientHello, as most stacks send it
			}
			out = append(out, typ, byte(vers>>8), byte(vers), byte(m>>8), byte(m))
			out = append(out, data[:m]...)
		} else {
			l := m + 1 + aeadTagLen
			out = append(out, recordTypeApplicationData, 0x03, 0x03, byte(l>>8), byte(l))
			// The inner plaintext is built in its own buffer: gmsm's CCM Seal
			// (v0.44.1) authenticates its plaintext argument after encrypting
			// into dst, so sealing in place would MAC the ciphertext.
			inner := append(c.innerBuf[:0], data[:m]...)
			inner = append(inner, typ)
			c.innerBuf = inner
			nonce := c.out.prot.nonce(c.out.seq)
			out = c.out.prot.aead.Seal(out[:recordHeaderLen], nonce[:], inner, out[:recordHeaderLen])
			c.out.seq++
			if c.out.seq == 0 {
				c.out.err = errors.New("tls13sm: write sequence number wrapped")
				return written, c.out.err
			}
		}
		c.firstRec = true
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
	return written, nil
}

// writeHandshake writes one handshake message and adds it to the transcript.
func (c *Conn) writeHandshake(msg []byte, transcript interface{ Write([]byte) (int, error) }) error {
	if msg == nil {
		return c.fatal(AlertInternalError, errors.New("cannot marshal handshake message"))
	}
	c.out.Lock()
	defer c.out.Unlock()
	if transcript != nil {
		transcript.Write(msg) //nolint:errcheck // hash writes do not fail
	}
	_, err := c.writeRecordLocked(recordTypeHandshake, msg)
	return err
}

// writeCCS writes the middlebox-compatibility change_cipher_spec (RFC 8446 D.4).
func (c *Conn) writeCCS() error {
	c.out.Lock()
	defer c.out.Unlock()
	if c.out.err != nil {
		return c.out.err
	}
	rec := []byte{recordTypeChangeCipherSpec, 3, 3, 0, 1, 1}
	if c.buffering {
		c.sendBuf = append(c.sendBuf, rec...)
		return nil
	}
	_, err := c.conn.Write(rec)
	if err != nil {
		c.out.err = err
	}
	return err
}

func (c *Conn) startFlight() {
	c.out.Lock()
	c.buffering = true
	c.out.Unlock()
}

func (c *Conn) flush() error {
	c.out.Lock()
	defer c.out.Unlock()
	return conncore.Flush(c.conn, &c.sendBuf, &c.buffering, &c.out.err)
}

func (c *Conn) setWriteSecret(suite uint16, secret []byte) error {
	c.out.Lock()
	defer c.out.Unlock()
	return c.out.setTrafficSecret(suite, secret)
}

func (c *Conn) setReadSecret(suite uint16, secret []byte) error {
	if err := c.keyChangeBoundary(); err != nil {
		return err
	}
	return c.in.setTrafficSecret(suite, secret)
}

// Write writes application data, in records of at most 16 KiB.
func (c *Conn) Write(b []byte) (int, error) {
	if err := c.Handshake(); err != nil {
		return 0, err
	}
	return conncore.Write(b, &c.out, &c.closeNotifySent, "tls13sm", c.writeApplicationData)
}

// writeApplicationData writes b as application data records. c.out must be held.
func (c *Conn) writeApplicationData(b []byte) (int, error) {
	return c.writeRecordLocked(recordTypeApplicationData, b)
}

// Read reads application data. Post-handshake messages (NewSessionTicket,
// KeyUpdate) are processed on the way.
func (c *Conn) Read(b []byte) (int, error) {
	if err := c.Handshake(); err != nil {
		return 0, err
	}
	return conncore.Read(b, &c.in, &c.input, &c.hand, c.readRecord, c.handlePostHandshake)
}

// handlePostHandshake processes one post-handshake message. c.in must be held.
func (c *Conn) handlePostHandshake() error {
	data, err := c.readHandshakeBytes()
	if err != nil {
		return err
	}
	if err := c.retry(); err != nil {
		return err
	}
	switch {
	case data[0] == typeKeyUpdate:
		var m keyUpdateMsg
		if !m.unmarshal(data) {
			return c.inErr(c.fatal(AlertDecodeError, errors.New("malformed KeyUpdate")))
		}
		return c.handleKeyUpdate(&m)
	case data[0] == typeNewSessionTicket && c.isClient:
		var m newSessionTicketMsg
		if !m.unmarshal(data) {
			return c.inErr(c.fatal(AlertDecodeError, errors.New("malformed NewSessionTicket")))
		}
		return c.handleNewSessionTicket(&m)
	}
	return c.inErr(c.fatal(AlertUnexpectedMessage, fmt.Errorf("unexpected post-handshake message type %d", data[0])))
}

// handleKeyUpdate switches the read key and, if asked, answers with a
// KeyUpdate of our own before any further data (RFC 8446 4.6.3).
func (c *Conn) handleKeyUpdate(m *keyUpdateMsg) error {
	if m.value > 1 {
		return c.inErr(c.fatal(AlertIllegalParameter, errors.New("KeyUpdate request_update out of range")))
	}
	if err := c.keyChangeBoundary(); err != nil {
		return err
	}
	next := nextTrafficSecret(c.in.secret)
	err := c.in.setTrafficSecret(c.in.suite, next)
	zero(next)
	if err != nil {
		return c.inErr(c.fatal(AlertInternalError, err))
	}
	if m.updateRequested {
		c.out.Lock()
		defer c.out.Unlock()
		if c.closeNotifySent {
			return nil
		}
		return c.sendKeyUpdateLocked(false)
	}
	return nil
}

// sendKeyUpdateLocked sends a KeyUpdate and switches the write key. c.out must be held.
func (c *Conn) sendKeyUpdateLocked(requestPeer bool) error {
	msg := (&keyUpdateMsg{updateRequested: requestPeer}).marshal()
	if _, err := c.writeRecordLocked(recordTypeHandshake, msg); err != nil {
		return err
	}
	next := nextTrafficSecret(c.out.secret)
	defer zero(next)
	if err := c.out.setTrafficSecret(c.out.suite, next); err != nil {
		c.out.err = err
		return err
	}
	return nil
}

// updateKeys sends a KeyUpdate (asking the peer to update too if requestPeer).
func (c *Conn) updateKeys(requestPeer bool) error {
	if err := c.Handshake(); err != nil {
		return err
	}
	c.out.Lock()
	defer c.out.Unlock()
	if c.closeNotifySent {
		return errors.New("tls13sm: key update after close_notify")
	}
	return c.sendKeyUpdateLocked(requestPeer)
}

// Close sends close_notify (after a completed handshake), closes the connection and forgets
// its secrets.
func (c *Conn) Close() error {
	return conncore.Close(&c.handshakeComplete, c.conn, c.closeNotify, c.forgetSecrets)
}

// forgetSecrets zeroes the traffic and resumption secrets once the connection is closed. A
// direction still in use by a concurrent Read, Write or handshake (which the close ends) keeps
// its secret; it is never used again.
func (c *Conn) forgetSecrets() {
	if c.in.TryLock() {
		zero(c.in.secret)
		c.in.secret = nil
		zero(c.resumptionSecret)
		c.resumptionSecret = nil
		if c.in.err == nil {
			c.in.err = net.ErrClosed
		}
		c.in.Unlock()
	}
	if c.out.TryLock() {
		zero(c.out.secret)
		c.out.secret = nil
		if c.out.err == nil {
			c.out.err = net.ErrClosed
		}
		c.out.Unlock()
	}
}

// CloseWrite sends close_notify without closing the connection.
func (c *Conn) CloseWrite() error {
	return conncore.CloseWrite(&c.handshakeComplete, "tls13sm", c.closeNotify)
}

func (c *Conn) closeNotify() error {
	return conncore.CloseNotify(&c.out, &c.closeNotifySent, c.conn, func() error {
		return c.sendAlertLocked(AlertCloseNotify)
	})
}

// Handshake runs the handshake if it has not run yet.
func (c *Conn) Handshake() error {
	return c.HandshakeContext(context.Background())
}

// HandshakeContext runs the handshake; ctx cancellation or Config.HandshakeTimeout abort it.
func (c *Conn) HandshakeContext(ctx context.Context) error {
	return c.handshake.Run(ctx, &c.handshakeComplete, c.conn, "tls13sm", c.prepareHandshake, c.runHandshake)
}

// prepareHandshake refuses a missing or invalid Config and returns the handshake timeout.
func (c *Conn) prepareHandshake() (time.Duration, error) {
	if c.config == nil {
		return 0, errors.New("tls13sm: nil Config")
	}
	if err := c.config.validate(); err != nil {
		return 0, err
	}
	return c.config.HandshakeTimeout, nil
}

// runHandshake runs the protocol's handshake under the read lock, sending the alert of a local
// failure, and when it succeeded ends the buffering of its flights.
func (c *Conn) runHandshake(ctx context.Context) error {
	return conncore.RunLocked(ctx, &c.in, &c.out, &c.buffering, &c.sendBuf, func(ctx context.Context) error {
		if err := c.handshakeFn(ctx); err != nil {
			return c.fail(err)
		}
		return nil
	})
}

// ConnectionState returns details about the connection.
func (c *Conn) ConnectionState() ConnectionState {
	c.handshake.Lock()
	defer c.handshake.Unlock()
	return ConnectionState{
		Version:            VersionTLS13,
		HandshakeComplete:  c.handshakeComplete.Load(),
		DidResume:          c.didResume,
		CipherSuite:        c.cipherSuite,
		ServerName:         c.serverName,
		NegotiatedProtocol: c.alpn,
		PeerCertificates:   c.peerCertificates,
		VerifiedChains:     c.verifiedChains,
	}
}
