package attack

import (
	"errors"
	"io"
	"net"
	"sync"
)

// RecordProxy is a TCP man in the middle for TLS-shaped protocols (TLS 1.3, TLCP): it cuts
// each direction's byte stream into records (5-byte header, 2-byte length) and passes every
// record through Rewrite before forwarding it, so a test can flip bits in protected records,
// rewrite a ClientHello, drop, reorder or replay records.
type RecordProxy struct {
	// Rewrite gets the direction (toServer: client to server), the record's index in that
	// direction (from 0) and the record, header included; it returns what to forward in its
	// place (nil drops it). Nil forwards everything unchanged.
	Rewrite func(toServer bool, i int, rec []byte) [][]byte

	target string
	ln     net.Listener
	wg     sync.WaitGroup
}

// StartRecordProxy listens on a loopback port and relays each accepted connection to target.
func StartRecordProxy(target string, rewrite func(toServer bool, i int, rec []byte) [][]byte) (*RecordProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &RecordProxy{Rewrite: rewrite, target: target, ln: ln}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

// Addr is the address clients dial instead of the target.
func (p *RecordProxy) Addr() string { return p.ln.Addr().String() }

// Close stops accepting and waits for the relays to end.
func (p *RecordProxy) Close() error {
	err := p.ln.Close()
	p.wg.Wait()
	return err
}

func (p *RecordProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.wg.Add(2)
		go p.relay(c, s, true)
		go p.relay(s, c, false)
	}
}

func (p *RecordProxy) relay(from, to net.Conn, toServer bool) {
	defer p.wg.Done()
	defer to.Close()
	defer from.Close()
	for i := 0; ; i++ {
		rec, err := ReadRecord(from)
		if err != nil {
			return
		}
		out := [][]byte{rec}
		if p.Rewrite != nil {
			out = p.Rewrite(toServer, i, rec)
		}
		for _, r := range out {
			if _, err := to.Write(r); err != nil {
				return
			}
		}
	}
}

// ReadRecord reads one TLS-shaped record (header included) from r.
func ReadRecord(r io.Reader) ([]byte, error) {
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return nil, err
	}
	n := int(hdr[3])<<8 | int(hdr[4])
	if n > 1<<15 {
		return nil, errors.New("attack: record too long")
	}
	rec := make([]byte, 5+n)
	copy(rec, hdr)
	if _, err := io.ReadFull(r, rec[5:]); err != nil {
		return nil, err
	}
	return rec, nil
}
