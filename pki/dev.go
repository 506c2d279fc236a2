package pki

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/emmansun/gmsm/smx509"
)

// DevPKI is the development PKI managed by EnsureDevPKI (like Caddy's
// `tls internal`): a root CA, a server sign+enc pair, a platform signing
// certificate and a demo client pair, stored as PEM files under Dir.
type DevPKI struct {
	// Dir holds the files (mode 0700; keys 0600).
	Dir string
	// RootCertPath is the root certificate to install as trusted in clients.
	RootCertPath string
	Root         *CA
	Server       *Pair
	Platform     *Issued
	Client       *Pair
	// Bank is the demo bank's TLCP server pair (same names as Server).
	Bank *Pair
	// BankPlatform is the demo bank's platform signing certificate (it
	// signs the bank's replies).
	BankPlatform *Issued
}

// Development PKI constants.
const (
	// DevRenewBefore is the remaining lifetime under which EnsureDevPKI
	// re-issues a leaf (or replaces the root).
	DevRenewBefore = 30 * 24 * time.Hour
	devLockName    = ".lock"
	devLockStale   = 2 * time.Minute
	devLockWait    = 30 * time.Second
)

// File base names under DevPKI.Dir; keys are "<base>.key", certificates "<base>.pem".
const (
	// DevRootBase is the root CA ("root.pem" is DevPKI.RootCertPath).
	DevRootBase = "root"
	// DevServerSignBase is the server signature certificate.
	DevServerSignBase = "server_sign"
	// DevServerEncBase is the server encryption certificate.
	DevServerEncBase = "server_enc"
	// DevPlatformBase is the platform signing certificate.
	DevPlatformBase = "platform"
	// DevClientSignBase is the demo client signature certificate.
	DevClientSignBase = "client_sign"
	// DevClientEncBase is the demo client encryption certificate.
	DevClientEncBase = "client_enc"
	// DevBankSignBase is the demo bank's TLCP signature certificate.
	DevBankSignBase = "bank_sign"
	// DevBankEncBase is the demo bank's TLCP encryption certificate.
	DevBankEncBase = "bank_enc"
	// DevBankPlatformBase is the demo bank's platform signing certificate.
	DevBankPlatformBase = "bank_platform"
)

// EnsureDevPKI creates under dir (mode 0700) on first use: a root CA, a
// server pair for names (DNS names and IP addresses; default "localhost",
// "127.0.0.1"), a platform signing certificate and a demo client pair, as PEM
// files (keys 0600, unencrypted: development only). Later calls reuse them,
// re-issuing the server pair when names change and any leaf that is invalid,
// no longer chains to the root, or is within 30 days of expiry (a root within
// 30 days of expiry is replaced along with every leaf). Files are written to
// a temporary name and renamed, and a lock file in dir serialises processes
// racing on the same dir.
func EnsureDevPKI(dir string, names []string) (*DevPKI, error) {
	return ensureDevPKI(dir, names, time.Now)
}

func ensureDevPKI(dir string, names []string, now func() time.Time) (*DevPKI, error) {
	if dir == "" {
		return nil, errors.New("pki: EnsureDevPKI: empty dir")
	}
	if len(names) == 0 {
		names = []string{"localhost", "127.0.0.1"}
	}
	dnsNames, ips, err := splitNames(names)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pki: dev PKI dir: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pki: dev PKI dir: %w", err)
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	defer unlock()

	t := now()
	d := &DevPKI{Dir: dir, RootCertPath: filepath.Join(dir, DevRootBase+".pem")}
	nb := t.Add(-backdate)

	root, ok := loadDevIssued(dir, DevRootBase, nil, RoleCA, t)
	fresh := !ok
	if fresh {
		ca, key, err := NewRootCA(IssueOptions{CommonName: "gmgate Development Root CA", Organization: []string{"gmgate development"}, NotBefore: nb})
		if err != nil {
			return nil, err
		}
		root = &Issued{Cert: ca.Cert, Key: key}
		if err := writeDevIssued(dir, DevRootBase, root); err != nil {
			return nil, err
		}
	}
	d.Root = &CA{Cert: root.Cert, Key: root.Key}

	// A leaf or pair is re-issued when a file is missing or invalid, the root is new, or (for
	// the TLCP server pairs) the names changed.
	named := func(p *Pair) bool {
		return sameNames(p.Sign.Cert, dnsNames, ips) && sameNames(p.Enc.Cert, dnsNames, ips)
	}
	always := func(*Pair) bool { return true }
	pair := func(signBase, encBase string, keep func(*Pair) bool, issue func() (*Pair, error)) (*Pair, error) {
		s, ok1 := loadDevIssued(dir, signBase, root.Cert, RoleSign, t)
		e, ok2 := loadDevIssued(dir, encBase, root.Cert, RoleEnc, t)
		if !fresh && ok1 && ok2 && keep(&Pair{Sign: s, Enc: e}) {
			return &Pair{Sign: s, Enc: e}, nil
		}
		p, err := issue()
		if err != nil {
			return nil, err
		}
		return p, writeDevPair(dir, signBase, encBase, p)
	}
	signer := func(base, cn, org string) (*Issued, error) {
		if iss, ok := loadDevIssued(dir, base, root.Cert, RoleSign, t); !fresh && ok {
			return iss, nil
		}
		iss, err := d.Root.IssuePlatform(IssueOptions{CommonName: cn, Organization: []string{org}, NotBefore: nb})
		if err != nil {
			return nil, err
		}
		return iss, writeDevIssued(dir, base, iss)
	}
	serverOpts := func(org string) IssueOptions {
		return IssueOptions{CommonName: names[0], Organization: []string{org}, DNSNames: dnsNames, IPAddresses: ips, NotBefore: nb}
	}
	if d.Server, err = pair(DevServerSignBase, DevServerEncBase, named, func() (*Pair, error) {
		return d.Root.IssueServerPair(serverOpts("gmgate development"))
	}); err != nil {
		return nil, err
	}
	if d.Platform, err = signer(DevPlatformBase, "gmgate development platform", "gmgate development"); err != nil {
		return nil, err
	}
	if d.Client, err = pair(DevClientSignBase, DevClientEncBase, always, func() (*Pair, error) {
		return d.Root.IssueClientPair(IssueOptions{CommonName: "gmgate demo client", Organization: []string{"gmgate development"}, NotBefore: nb})
	}); err != nil {
		return nil, err
	}
	// The demo bank: its own TLCP server pair and the certificate its replies are signed with.
	if d.Bank, err = pair(DevBankSignBase, DevBankEncBase, named, func() (*Pair, error) {
		return d.Root.IssueServerPair(serverOpts("gmgate demo bank"))
	}); err != nil {
		return nil, err
	}
	if d.BankPlatform, err = signer(DevBankPlatformBase, "gmgate demo bank platform", "gmgate demo bank"); err != nil {
		return nil, err
	}
	return d, nil
}

// splitNames separates IP addresses from DNS names.
func splitNames(names []string) ([]string, []net.IP, error) {
	var dns []string
	var ips []net.IP
	for _, n := range names {
		if n == "" {
			return nil, nil, errors.New("pki: EnsureDevPKI: empty name")
		}
		if ip := net.ParseIP(n); ip != nil {
			ips = append(ips, ip)
		} else {
			dns = append(dns, n)
		}
	}
	return dns, ips, nil
}

// sameNames reports whether c's SANs are exactly dns and ips (as sets).
func sameNames(c *smx509.Certificate, dns []string, ips []net.IP) bool {
	norm := func(d []string, ip []net.IP) []string {
		out := append([]string(nil), d...)
		for _, a := range ip {
			out = append(out, "ip:"+a.String())
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	return slices.Equal(norm(c.DNSNames, c.IPAddresses), norm(dns, ips))
}

// loadDevIssued loads <base>.pem/.key and checks them: key matches, role,
// issued by issuer (self-signed when issuer is nil), valid at t and not
// within DevRenewBefore of expiry.
func loadDevIssued(dir, base string, issuer *smx509.Certificate, role Role, t time.Time) (*Issued, bool) {
	certs, err := LoadCertificatesFile(filepath.Join(dir, base+".pem"))
	if err != nil || len(certs) != 1 {
		return nil, false
	}
	c := certs[0]
	key, err := LoadPrivateKeyFile(filepath.Join(dir, base+".key"), nil)
	if err != nil || !key.PublicKey.Equal(c.PublicKey) {
		return nil, false
	}
	if r, err := ClassifyRole(c); err != nil || r != role {
		return nil, false
	}
	parent := issuer
	if parent == nil {
		parent = c
	}
	if !bytes.Equal(c.RawIssuer, parent.RawSubject) || c.CheckSignatureFrom(parent) != nil {
		return nil, false
	}
	if t.Before(c.NotBefore) || c.NotAfter.Sub(t) < DevRenewBefore {
		return nil, false
	}
	return &Issued{Cert: c, Key: key}, true
}

func writeDevPair(dir, signBase, encBase string, p *Pair) error {
	if err := writeDevIssued(dir, signBase, p.Sign); err != nil {
		return err
	}
	return writeDevIssued(dir, encBase, p.Enc)
}

// writeDevIssued writes the key (0600) then the certificate (0644), each
// atomically.
func writeDevIssued(dir, base string, iss *Issued) error {
	keyPEM, err := MarshalPrivateKeyPEM(iss.Key, nil)
	if err != nil {
		return err
	}
	defer zero(keyPEM)
	if err := writeFileAtomic(filepath.Join(dir, base+".key"), keyPEM, 0o600); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, base+".pem"), EncodeCertificatesPEM(iss.Cert), 0o644)
}

// writeFileAtomic writes data to a temporary file in the same directory and
// renames it over path.
func writeFileAtomic(path string, data []byte, perm fs.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			_ = os.Remove(tmp)
		}
	}()
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	ok = true
	return nil
}

// lockDir takes an exclusive lock file in dir (O_EXCL create), waiting up
// to devLockWait. A lock older than devLockStale (crashed holder) is broken.
func lockDir(dir string) (func(), error) {
	p := filepath.Join(dir, devLockName)
	deadline := time.Now().Add(devLockWait)
	for {
		f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err == nil {
			_, _ = f.WriteString(strconv.Itoa(os.Getpid()))
			_ = f.Close()
			return func() { _ = os.Remove(p) }, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("pki: lock %s: %w", p, err)
		}
		if st, serr := os.Stat(p); serr == nil && time.Since(st.ModTime()) > devLockStale {
			_ = os.Remove(p)
			continue
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("pki: lock %s: held by another process for more than %v", p, devLockWait)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
