package attack

import (
	"fmt"
	"net"
	"time"
)

// SilentPeers opens n TCP connections to addr that never send a byte (the slow-loris of a
// port that peeks at the first record), spread round-robin over the given local source IPs
// (loopback aliases such as 127.0.0.2 emulate a distributed attacker). The caller closes them
// with CloseAll.
func SilentPeers(addr string, n int, sources []string) ([]net.Conn, error) {
	if len(sources) == 0 {
		sources = []string{"127.0.0.1"}
	}
	conns := make([]net.Conn, 0, n)
	for i := 0; i < n; i++ {
		d := net.Dialer{Timeout: 5 * time.Second,
			LocalAddr: &net.TCPAddr{IP: net.ParseIP(sources[i%len(sources)])}}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			CloseAll(conns)
			return nil, fmt.Errorf("attack: silent peer %d: %w", i, err)
		}
		conns = append(conns, c)
	}
	return conns, nil
}

// CloseAll closes every connection.
func CloseAll(conns []net.Conn) {
	for _, c := range conns {
		_ = c.Close()
	}
}

// Loopbacks returns n loopback source addresses 127.0.0.<first>.. (n <= 250).
func Loopbacks(first, n int) []string {
	out := make([]string, 0, n)
	for i := 0; i < n && first+i < 255; i++ {
		out = append(out, fmt.Sprintf("127.0.0.%d", first+i))
	}
	return out
}
