package keyvault

import (
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/pki"
)

// InitResult reports the key-encryption key of one token after Init.
type InitResult struct {
	Token   string `json:"token"`
	Label   string `json:"kek_label"`
	Created bool   `json:"created"`
}

// String renders the result for people.
func (r InitResult) String() string {
	if r.Created {
		return fmt.Sprintf("token %s: created key-encryption key %q (AES-256, sensitive, non-extractable)", r.Token, r.Label)
	}
	return fmt.Sprintf("token %s: key-encryption key %q already present", r.Token, r.Label)
}

// Init creates the AES-256 key-encryption key in the named wrapped-mode token, or in every
// wrapped-mode token when tokenName is "". It is idempotent.
func (v *Vault) Init(tokenName string) ([]InitResult, error) {
	if v.closed.Load() {
		return nil, opErr("init", "", tokenName, ErrClosed, nil)
	}
	var out []InitResult
	for _, t := range v.tokens {
		if tokenName != "" && t.name != tokenName {
			continue
		}
		if t.native != nil {
			if tokenName != "" {
				return out, opErr("init", "", t.name, ErrUnsupported, errorf(ErrUnsupported, "native-mode tokens need no key-encryption key"))
			}
			continue
		}
		created, err := t.createKEK()
		if err != nil {
			return out, err
		}
		if created {
			v.log.Info("keyvault: created key-encryption key", "token", t.name, "label", t.kekLabel)
		}
		out = append(out, InitResult{Token: t.name, Label: t.kekLabel, Created: created})
	}
	if len(out) == 0 && tokenName != "" {
		return nil, opErr("init", "", tokenName, ErrTokenUnavailable, errorf(ErrTokenUnavailable, "no such open token"))
	}
	return out, nil
}

// KeyInfo describes one key for list, generate, import and rotate.
type KeyInfo struct {
	Name        string   `json:"name"`
	Type        KeyType  `json:"type"`
	Ref         string   `json:"ref"`
	Backend     string   `json:"backend"`
	Versions    []int    `json:"versions"`
	Current     int      `json:"current"`
	InUse       int      `json:"in_use"` // the version that signs and decrypts (the certificate's, else Current)
	Tokens      []string `json:"tokens,omitempty"`
	Fingerprint string   `json:"fingerprint,omitempty"` // SHA-256 of the SPKI (SM2) — never key bytes
	Certificate bool     `json:"certificate"`
	Loaded      bool     `json:"loaded"`
}

// String renders the info for people.
func (k KeyInfo) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%s, %s) %s", k.Name, k.Type, k.Backend, k.Ref)
	if !k.Loaded {
		b.WriteString(": not present")
		return b.String()
	}
	vs := make([]string, len(k.Versions))
	for i, n := range k.Versions {
		vs[i] = fmt.Sprint(n)
		if n == k.Current {
			vs[i] += "*"
		}
		if n == k.InUse && k.InUse != k.Current {
			vs[i] += "(in use: its certificate)"
		}
	}
	fmt.Fprintf(&b, ": versions %s", strings.Join(vs, ","))
	if len(k.Tokens) > 0 {
		fmt.Fprintf(&b, " on %s", strings.Join(k.Tokens, ","))
	}
	if k.Fingerprint != "" {
		fmt.Fprintf(&b, " sha256:%s", k.Fingerprint)
	}
	if k.Certificate {
		b.WriteString(" +certificate")
	}
	return b.String()
}

func (v *Vault) info(e *keyEntry) KeyInfo {
	ki := KeyInfo{Name: e.cfg.Name, Type: e.cfg.Type, Ref: e.ref.String(), Backend: "file"}
	for _, t := range e.replicas {
		ki.Tokens = append(ki.Tokens, t.name)
		ki.Backend = "pkcs11-" + t.cfg.Mode
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	for n := range e.versions {
		ki.Versions = append(ki.Versions, n)
	}
	sort.Ints(ki.Versions)
	ki.Current = e.current
	ki.InUse = e.active()
	ki.Loaded = len(e.versions) > 0
	ki.Certificate = len(e.certs) > 0
	if lv := e.versions[e.current]; lv != nil && lv.sm2 != nil {
		if der, err := smx509.MarshalPKIXPublicKey(lv.sm2.pub); err == nil {
			sum := sha256.Sum256(der)
			ki.Fingerprint = hex.EncodeToString(sum[:])
		}
	}
	return ki
}

// List describes every configured key.
func (v *Vault) List() ([]KeyInfo, error) {
	if v.closed.Load() {
		return nil, opErr("list", "", "", ErrClosed, nil)
	}
	out := make([]KeyInfo, 0, len(v.order))
	for _, n := range v.order {
		out = append(out, v.info(v.keys[n]))
	}
	return out, nil
}

// Generate creates version 1 of a configured key (fails with ErrExists if any version exists:
// use Rotate). In wrapped mode the key is generated in memory from crypto/rand, sealed under
// every replica's KEK and stored; in file mode a PKCS#8 (SM2) or "SM4 KEY" PEM file is written.
func (v *Vault) Generate(name string) (*KeyInfo, error) {
	e, _, err := v.entry("generate", name)
	if err != nil {
		return nil, err
	}
	e.mu.RLock()
	n := len(e.versions)
	e.mu.RUnlock()
	if n > 0 {
		return nil, opErr("generate", name, "", ErrExists, errorf(ErrExists, "key has versions; use rotate"))
	}
	raw, err := newRawKey(e.cfg.Type)
	if err != nil {
		return nil, opErr("generate", name, "", ErrToken, err)
	}
	defer zero(raw)
	return v.store(e, "generate", raw, true)
}

// Rotate creates version N+1 of a key and makes it current; older versions stay loaded for
// decryption and verification.
func (v *Vault) Rotate(name string) (*KeyInfo, error) {
	e, _, err := v.entry("rotate", name)
	if err != nil {
		return nil, err
	}
	if e.ref.Scheme == "file" {
		return nil, opErr("rotate", name, "file", ErrUnsupported, errorf(ErrUnsupported, "file keys have one version"))
	}
	raw, err := newRawKey(e.cfg.Type)
	if err != nil {
		return nil, opErr("rotate", name, "", ErrToken, err)
	}
	defer zero(raw)
	return v.store(e, "rotate", raw, false)
}

// Import stores externally created key material as the next version of a configured key (version
// 1 if none). SM2: PEM PKCS#8, encrypted PKCS#8 (password) or SEC 1; SM4: 16 raw bytes, 32 hex
// digits or an "SM4 KEY" PEM block.
func (v *Vault) Import(name string, data, password []byte) (*KeyInfo, error) {
	e, _, err := v.entry("import", name)
	if err != nil {
		return nil, err
	}
	if len(data) > maxKeyFile {
		return nil, opErr("import", name, "", ErrInvalidInput, nil)
	}
	var raw []byte
	switch e.cfg.Type {
	case KeyTypeSM2:
		priv, err := ParseSM2PrivateKeyPEM(data, password)
		if err != nil {
			return nil, opErr("import", name, "", err, nil)
		}
		raw = make([]byte, 32)
		priv.D.FillBytes(raw)
		w := priv.D.Bits()
		for i := range w {
			w[i] = 0
		}
	default:
		raw, err = ParseSM4Key(data)
		if err != nil {
			return nil, opErr("import", name, "", err, nil)
		}
	}
	defer zero(raw)
	e.mu.RLock()
	n := len(e.versions)
	e.mu.RUnlock()
	if e.ref.Scheme == "file" && n > 0 {
		return nil, opErr("import", name, "file", ErrExists, nil)
	}
	return v.store(e, "import", raw, n == 0)
}

func newRawKey(t KeyType) ([]byte, error) {
	if t == KeyTypeSM4 {
		b := make([]byte, SM4KeySize)
		if _, err := io.ReadFull(rand.Reader, b); err != nil {
			return nil, err
		}
		return b, nil
	}
	priv, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	raw := make([]byte, 32)
	priv.D.FillBytes(raw)
	w := priv.D.Bits()
	for i := range w {
		w[i] = 0
	}
	return raw, nil
}

// store writes raw key material as the next version (first=true: must be version 1) to every
// replica (or the file) and loads it.
func (v *Vault) store(e *keyEntry, op string, raw []byte, first bool) (*KeyInfo, error) {
	if e.ref.Scheme == "file" {
		lv, err := v.materialize(e, "file", 1, raw)
		if err != nil {
			return nil, err
		}
		var data []byte
		if e.cfg.Type == KeyTypeSM2 {
			der, err := smx509.MarshalPKCS8PrivateKey(lv.sm2.priv)
			if err != nil {
				lv.close()
				return nil, opErr(op, e.cfg.Name, "file", ErrInvalidInput, err)
			}
			data = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
			zero(der)
		} else {
			data = pem.EncodeToMemory(&pem.Block{Type: pemTypeSM4, Bytes: raw})
		}
		err = writeFileKey(e.ref.Path, data)
		zero(data)
		if err != nil {
			lv.close()
			return nil, opErr(op, e.cfg.Name, "file", err, nil)
		}
		v.log.Warn("keyvault: DEVELOPMENT ONLY: wrote a plaintext key file", "key", e.cfg.Name, "path", e.ref.Path)
		e.setVersion(1, lv)
		ki := v.info(e)
		return &ki, nil
	}
	if e.ref.Object == "" {
		return nil, opErr(op, e.cfg.Name, "", ErrUnsupported,
			errorf(ErrUnsupported, "a reference by id= alone names one existing key; add object= (the label of its versions) to generate, import or rotate"))
	}
	for _, t := range e.replicas {
		if t.native != nil && e.cfg.Type == KeyTypeSM2 {
			return nil, opErr(op, e.cfg.Name, t.name, ErrUnsupported,
				errorf(ErrUnsupported, "native-mode SM2 keys are generated and imported with the vendor's tools"))
		}
	}
	// Next version: one above the highest stored on any reachable replica.
	next := 1
	var reached int
	for _, t := range e.replicas {
		vs, err := t.blobVersions(e.ref.Object)
		if e.cfg.TokenDecrypt {
			var evs []ecVersion
			evs, err = t.ecVersions(e.ref)
			vs = vs[:0]
			for _, ev := range evs {
				vs = append(vs, ev.ver)
			}
		}
		if err != nil {
			v.log.Warn("keyvault: replica unreachable while choosing version", "key", e.cfg.Name, "token", t.name, "error", err)
			continue
		}
		reached++
		if len(vs) > 0 && vs[len(vs)-1] >= next {
			next = vs[len(vs)-1] + 1
		}
	}
	if reached == 0 {
		return nil, opErr(op, e.cfg.Name, "", ErrTokenUnavailable, nil)
	}
	if first && next != 1 {
		return nil, opErr(op, e.cfg.Name, "", ErrExists, errorf(ErrExists, "key already stored in a token; use rotate"))
	}
	aad := blobAAD(e.ref.Object, next, purposeFor(e.cfg.Type))
	label := blobLabel(e.ref.Object, next)
	var errs []error
	var stored []string
	for _, t := range e.replicas {
		var err error
		if e.cfg.TokenDecrypt {
			err = v.putDerive(t, label, e.ref.ID, raw)
		} else {
			var blob []byte
			blob, err = t.seal(aad, raw)
			if err == nil {
				err = t.putBlob(label, blob)
			}
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		stored = append(stored, t.name)
	}
	if len(errs) > 0 {
		return nil, opErr(op, e.cfg.Name, "", ErrTokenUnavailable,
			fmt.Errorf("version %d stored on [%s] only: %w", next, strings.Join(stored, ","), errors.Join(errs...)))
	}
	if e.cfg.TokenDecrypt {
		var src *token
		for _, t := range e.replicas {
			if t.name == stored[0] {
				src = t
			}
		}
		if err := v.loadDerive(e, src); err != nil {
			return nil, err
		}
	} else {
		lv, err := v.materialize(e, stored[0], next, raw)
		if err != nil {
			return nil, err
		}
		e.setVersion(next, lv)
	}
	v.log.Info("keyvault: stored key version", "key", e.cfg.Name, "version", next, "op", op, "tokens", stored)
	ki := v.info(e)
	return &ki, nil
}

// PublicExport is the public part of an SM2 key.
type PublicExport struct {
	Name           string `json:"name"`
	Version        int    `json:"version"`
	PublicKeyPEM   string `json:"public_key_pem"`
	CertificatePEM string `json:"certificate_pem,omitempty"`
	Fingerprint    string `json:"fingerprint"`
}

// String renders the export as PEM text.
func (p PublicExport) String() string {
	return p.PublicKeyPEM + p.CertificatePEM
}

// ExportPublic returns the PEM public key (and configured certificate chain) of an SM2 key
// ("name" or "name@N").
func (v *Vault) ExportPublic(name string) (*PublicExport, error) {
	_, lv, _, err := v.version("export-public", name, KeyTypeSM2)
	if err != nil {
		return nil, err
	}
	der, err := smx509.MarshalPKIXPublicKey(lv.sm2.pub)
	if err != nil {
		return nil, opErr("export-public", name, "", ErrInvalidInput, err)
	}
	sum := sha256.Sum256(der)
	out := &PublicExport{Name: lv.sm2.name, Version: lv.sm2.version,
		PublicKeyPEM: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})),
		Fingerprint:  hex.EncodeToString(sum[:])}
	if certs, err := v.Certificate(lv.sm2.name); err == nil && pubEqual(certs[0].PublicKey, lv.sm2.pub) {
		for _, c := range certs {
			out.CertificatePEM += string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
		}
	}
	return out, nil
}

// CSRRequest describes a certificate signing request.
type CSRRequest struct {
	Subject        pkix.Name `json:"subject"`
	DNSNames       []string  `json:"dns_names,omitempty"`
	EmailAddresses []string  `json:"email_addresses,omitempty"`
	IPAddresses    []net.IP  `json:"ip_addresses,omitempty"`
}

// CSRResult is a PEM certificate signing request.
type CSRResult struct {
	Name    string `json:"name"`
	Version int    `json:"version"`
	PEM     string `json:"pem"`
}

// String renders the CSR PEM.
func (c CSRResult) String() string { return c.PEM }

// CSR makes an SM2-with-SM3 PKCS#10 request signed by the newest version of an SM2 key (the
// one `rotate` made; "name@N" for version N). The request signature uses the default user ID,
// as CAs verify it.
func (v *Vault) CSR(name string, req CSRRequest) (*CSRResult, error) {
	if !strings.Contains(name, "@") {
		if _, current, err := v.Versions(name); err == nil {
			name = fmt.Sprintf("%s@%d", name, current)
		}
	}
	k, err := v.SM2Key(name)
	if err != nil {
		return nil, err
	}
	tmpl := &smx509.CertificateRequest{
		Subject:            req.Subject,
		DNSNames:           req.DNSNames,
		EmailAddresses:     req.EmailAddresses,
		IPAddresses:        req.IPAddresses,
		SignatureAlgorithm: smx509.SM2WithSM3,
	}
	der, err := smx509.CreateCertificateRequest(rand.Reader, tmpl, defaultUIDSigner{k})
	if err != nil {
		return nil, opErr("csr", name, "", ErrInvalidInput, err)
	}
	return &CSRResult{Name: k.name, Version: k.version,
		PEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))}, nil
}

// defaultUIDSigner signs with the default SM2 user ID whatever the key's configured one.
type defaultUIDSigner struct{ k *SM2Key }

func (s defaultUIDSigner) Public() crypto.PublicKey { return s.k.Public() }
func (s defaultUIDSigner) Sign(r io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	if _, ok := opts.(*sm2.SM2SignerOption); ok {
		opts = sm2.NewSM2SignerOption(true, []byte(pki.DefaultUserID))
	}
	return s.k.Sign(r, msg, opts)
}
