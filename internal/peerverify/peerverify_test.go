package peerverify

import (
	"fmt"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"
	"github.com/gmgate/gmgate/pki"
)

type testPKI struct {
	root, other   *pki.CA
	server        *pki.Pair
	client        *pki.Pair
	roots, others *smx509.CertPool
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	root, _, err := pki.NewRootCA(pki.IssueOptions{CommonName: "Payment Root"})
	if err != nil {
		t.Fatal(err)
	}
	other, _, err := pki.NewRootCA(pki.IssueOptions{CommonName: "Rogue Root"})
	if err != nil {
		t.Fatal(err)
	}
	server, err := root.IssueServerPair(pki.IssueOptions{CommonName: "bank.example", DNSNames: []string{"bank.example"}, Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	client, err := root.IssueClientPair(pki.IssueOptions{CommonName: "terminal-1"})
	if err != nil {
		t.Fatal(err)
	}
	p := &testPKI{root: root, other: other, server: server, client: client,
		roots: smx509.NewCertPool(), others: smx509.NewCertPool()}
	p.roots.AddCert(root.Cert)
	p.others.AddCert(other.Cert)
	return p
}

func peerOf(pair *pki.Pair, roots *smx509.CertPool, server bool, name string, now time.Time) Peer {
	certs := []*smx509.Certificate{pair.Sign.Cert, pair.Enc.Cert}
	return Peer{
		Raw:   [][]byte{pair.Sign.Cert.Raw, pair.Enc.Cert.Raw},
		Sign:  pair.Sign.Cert,
		Enc:   pair.Enc.Cert,
		Certs: certs, Roots: roots, Server: server, ServerName: name, Now: now,
	}
}

func TestVerifyReasons(t *testing.T) {
	p := newTestPKI(t)
	now := time.Now()
	tests := []struct {
		name string
		peer Peer
		ok   bool
		want Reason
	}{
		{"server ok", peerOf(p.server, p.roots, true, "bank.example", now), true, 0},
		{"client ok", peerOf(p.client, p.roots, false, "", now), true, 0},
		{"server name mismatch", peerOf(p.server, p.roots, true, "evil.example", now), false, BadCertificate},
		{"rogue root", peerOf(p.server, p.others, true, "bank.example", now), false, UnknownCA},
		{"no roots", peerOf(p.server, nil, true, "bank.example", now), false, UnknownCA},
		{"expired", peerOf(p.server, p.roots, true, "bank.example", now.Add(2*time.Hour)), false, Expired},
		{"client certificate as server", peerOf(p.client, p.roots, true, "", now), false, UnsupportedCertificate},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c Cache
			chains, err := c.Verify(tt.peer)
			if tt.ok {
				if err != nil || len(chains) == 0 {
					t.Fatalf("Verify = %v, %v; want chains", chains, err)
				}
				if c.Len() != 1 {
					t.Fatalf("cache has %d entries, want 1", c.Len())
				}
				return
			}
			if err == nil {
				t.Fatal("Verify accepted the peer")
			}
			if got := Classify(err); got != tt.want {
				t.Fatalf("Classify(%v) = %d, want %d", err, got, tt.want)
			}
			if c.Len() != 0 {
				t.Fatal("a failed verification was cached")
			}
		})
	}
}

// TestEncLeafChecked: TLCP's encryption certificate must chain too; a
// rogue enc certificate beside a good sign certificate is refused.
func TestEncLeafChecked(t *testing.T) {
	p := newTestPKI(t)
	rogue, err := p.other.IssueServerPair(pki.IssueOptions{CommonName: "bank.example", DNSNames: []string{"bank.example"}})
	if err != nil {
		t.Fatal(err)
	}
	peer := peerOf(p.server, p.roots, true, "bank.example", time.Now())
	peer.Enc = rogue.Enc.Cert
	peer.Raw[1] = rogue.Enc.Cert.Raw
	var c Cache
	if _, err := c.Verify(peer); err == nil || Classify(err) != UnknownCA {
		t.Fatalf("Verify with rogue enc leaf = %v, want unknown CA", err)
	}
}

// TestCacheBoundedByValidity: an entry cached while the chain was valid is
// not used once a certificate expires, nor before it is valid, nor for
// another server name or role.
func TestCacheBoundedByValidity(t *testing.T) {
	p := newTestPKI(t)
	now := time.Now()
	var c Cache
	if _, err := c.Verify(peerOf(p.server, p.roots, true, "bank.example", now)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Verify(peerOf(p.server, p.roots, true, "bank.example", now.Add(time.Minute))); err != nil {
		t.Fatalf("cached chain refused: %v", err)
	}
	if _, err := c.Verify(peerOf(p.server, p.roots, true, "bank.example", now.Add(2*time.Hour))); err == nil || Classify(err) != Expired {
		t.Fatalf("expired chain after caching = %v, want expired", err)
	}
	if _, err := c.Verify(peerOf(p.server, p.roots, true, "bank.example", p.server.Sign.Cert.NotBefore.Add(-time.Minute))); err == nil {
		t.Fatal("chain accepted before its validity from the cache")
	}
	if _, err := c.Verify(peerOf(p.server, p.roots, true, "evil.example", now)); err == nil {
		t.Fatal("cache entry reused for another server name")
	}
	if _, err := c.Verify(peerOf(p.client, p.roots, false, "", now)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Verify(peerOf(p.client, p.roots, true, "", now)); err == nil {
		t.Fatal("a client chain cached for the client role was reused for the server role")
	}
}

func TestCacheBounded(t *testing.T) {
	p := newTestPKI(t)
	now := time.Now()
	var c Cache
	chains := [][]*smx509.Certificate{{p.server.Sign.Cert, p.root.Cert}}
	for i := 0; i < CacheMax+10; i++ {
		c.put(cacheKey([][]byte{[]byte(fmt.Sprint(i))}, true, ""), chains, nil, nil, now)
	}
	if c.Len() != CacheMax {
		t.Fatalf("cache has %d entries, want %d", c.Len(), CacheMax)
	}
	var nilCache *Cache
	if _, err := nilCache.Verify(peerOf(p.server, p.roots, true, "bank.example", now)); err != nil {
		t.Fatalf("nil cache: %v", err)
	}
}
