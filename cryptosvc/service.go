package cryptosvc

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/audit"
	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/refusal"
)

// Options configures a Service.
type Options struct {
	// Keys are the vault's keys (VaultKeys). Required.
	Keys Keys
	// Policy says which caller may do what. Required: without a rule nothing is allowed.
	Policy *Policy
	// Certificates verifies signer and submitted certificates (chain, validity, usage, CRL).
	// Without it the certificate operations are refused (crypto_cert_untrusted).
	Certificates *pki.Verifier
	// ChainCertificates verifies chains like Certificates without revocation: GM/T 0029 verify
	// level 1. Nil: level 1 is served at level 2.
	ChainCertificates *pki.Verifier
	// MinVerifyLevel is the lowest GM/T 0029 verify level a request may have applied (0
	// validity and key usage, 1 + chain, 2 + CRL); a request asking for less gets this level.
	// Nil: 2 (every certificate decision checks chain, validity, usage and CRL).
	MinVerifyLevel *int
	// CertificateSet are certificates a request may name by serial or subject DN
	// (cert_serial, cert_subject) instead of giving them; each is verified at every use.
	CertificateSet []*smx509.Certificate
	// CRLs are DER CRLs that SignMessage with include_crl adds when one is issued by a CA of
	// the signer's chain.
	CRLs [][]byte
	// Audit receives one entry per request (nil: none).
	Audit audit.Sink
	// MaxItems bounds a batch (default DefaultMaxItems).
	MaxItems int
	// MaxItemSize bounds each data-bearing field of an item (default DefaultMaxItemSize).
	MaxItemSize int
	// Rand is the randomness source (default crypto/rand).
	Rand io.Reader
	// Now is the clock of audit entries (default time.Now).
	Now func() time.Time
}

// Service performs the operations. It is safe for concurrent use.
type Service struct {
	o Options
}

// New checks o and returns a Service.
func New(o Options) (*Service, error) {
	if o.Keys == nil {
		return nil, errors.New("cryptosvc: Keys are required")
	}
	if o.Policy == nil {
		return nil, errors.New("cryptosvc: a Policy is required")
	}
	if o.MaxItems <= 0 {
		o.MaxItems = DefaultMaxItems
	}
	if o.MaxItemSize <= 0 {
		o.MaxItemSize = DefaultMaxItemSize
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MinVerifyLevel == nil {
		two := 2
		o.MinVerifyLevel = &two
	} else if l := *o.MinVerifyLevel; l < 0 || l > 2 {
		return nil, errors.New("cryptosvc: MinVerifyLevel must be 0, 1 or 2")
	}
	for _, c := range o.CertificateSet {
		if c == nil {
			return nil, errors.New("cryptosvc: nil certificate in CertificateSet")
		}
	}
	return &Service{o: o}, nil
}

// Result is the outcome of one item. In a batch a failed item carries Code and Message (the
// fixed message of the code) and nothing else.
type Result struct {
	Signature     []byte       `json:"signature,omitempty"`
	Valid         bool         `json:"valid,omitempty"`
	Ciphertext    string       `json:"ciphertext,omitempty"`
	Plaintext     []byte       `json:"plaintext,omitempty"`
	HMAC          string       `json:"hmac,omitempty"`
	Random        []byte       `json:"random,omitempty"`
	KeyVersion    int          `json:"key_version,omitempty"`
	Versions      []int        `json:"versions,omitempty"`
	LatestVersion int          `json:"latest_version,omitempty"`
	MinVersion    int          `json:"min_version,omitempty"`
	Signer        *CertInfo    `json:"signer,omitempty"`
	Certificate   *CertInfo    `json:"certificate,omitempty"`
	CMS           []byte       `json:"cms,omitempty"`
	Content       []byte       `json:"content,omitempty"`
	Envelope      []byte       `json:"envelope,omitempty"`
	Certificates  []string     `json:"certificates,omitempty"`
	PublicKey     string       `json:"public_key,omitempty"`
	UserID        string       `json:"user_id,omitempty"`
	VerifyLevel   *int         `json:"verify_level,omitempty"`
	Code          refusal.Code `json:"code,omitempty"`
	Message       string       `json:"message,omitempty"`
}

// Response is the outcome of a request.
type Response struct {
	// Op and Key echo the request (for metrics).
	Op  Op
	Key string
	// Results holds one result per item.
	Results []Result
	batch   bool
}

// Batch reports whether the request came as batch_input.
func (r *Response) Batch() bool { return r.batch }

// MarshalJSON writes a single result inline, a batch as {"batch_results":[...]}.
func (r *Response) MarshalJSON() ([]byte, error) {
	if r.batch {
		return json.Marshal(struct {
			BatchResults []Result `json:"batch_results"`
		}{r.Results})
	}
	if len(r.Results) != 1 {
		return nil, errors.New("cryptosvc: single response without exactly one result")
	}
	return json.Marshal(r.Results[0])
}

// Wipe overwrites the plaintexts and random bytes of the response (call it once the response
// is written).
func (r *Response) Wipe() {
	for i := range r.Results {
		wipe(r.Results[i].Plaintext)
		wipe(r.Results[i].Random)
	}
}

func wipe(b []byte) {
	for i := range b {
		b[i] = 0
	}
}

// itemOutcome is what one item leaves for the audit entry.
type itemOutcome struct {
	digest  []byte // SM3 of the item's non-secret side (see docs), nil when none
	version int
	err     error
}

// Do performs op for caller on body (the request's JSON). A caller with an empty Name is
// unauthenticated and refused. It returns the response, or a *refusal.Error of this package
// (a refused request, or the one item of a single request failing). Every call, refused or
// not, is one audit entry; if that entry cannot be written the result is withheld
// (crypto_audit_unavailable). requestID correlates the entry with access logs.
func (s *Service) Do(ctx context.Context, caller Caller, op Op, body []byte, requestID string) (*Response, error) {
	resp, outs, key, err := s.do(ctx, caller, op, body)
	if aerr := s.audit(caller, op, key, outs, resp, err, requestID); aerr != nil {
		if resp != nil {
			resp.Wipe()
		}
		return nil, fail(CodeAuditUnavailable, aerr)
	}
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// Refused records a request refused before the service could read it (its caller could not be
// authenticated, or its signed-request freshness could not be checked): one audit entry with
// code c. It returns the audit error, if any.
func (s *Service) Refused(caller Caller, op Op, c refusal.Code, requestID string) error {
	return s.audit(caller, op, "", nil, nil, fail(c, nil), requestID)
}

func (s *Service) do(ctx context.Context, caller Caller, op Op, body []byte) (*Response, []itemOutcome, string, error) {
	if caller.Name == "" {
		return nil, nil, "", fail(CodeUnauthenticated, errors.New("no verified client certificate of a configured caller"))
	}
	info, ok := lookupOp(op)
	if !ok {
		return nil, nil, "", fail(CodeUnknownOperation, fmt.Errorf("operation %q", op))
	}
	req, err := ParseRequest(op, body, s.o.MaxItems, s.o.MaxItemSize)
	if err != nil {
		return nil, nil, "", err
	}
	minVersion, ok := s.o.Policy.allowed(caller.Name, op, req.Key)
	if !ok {
		return nil, nil, req.Key, fail(CodeForbidden, fmt.Errorf("caller %s may not %s with key %q", caller.Name, op, req.Key))
	}
	if !info.ReadOld {
		minVersion = 0
	}
	items := req.Items()
	resp := &Response{Op: op, Key: req.Key, Results: make([]Result, len(items)), batch: req.batch}
	outs := make([]itemOutcome, len(items))
	for i := range items {
		if err := ctx.Err(); err != nil {
			for j := i; j < len(items); j++ {
				outs[j].err = fail(CodeInternal, err)
			}
			break
		}
		outs[i] = s.item(op, req.Key, minVersion, &items[i], &resp.Results[i])
	}
	for i := range outs {
		if outs[i].err != nil {
			c := CodeOf(outs[i].err)
			resp.Results[i] = Result{Code: c, Message: c.Message()}
		}
	}
	if !req.batch && outs[0].err != nil {
		return nil, outs, req.Key, outs[0].err
	}
	return resp, outs, req.Key, nil
}

// item runs one item; on error res is left for the caller to replace.
func (s *Service) item(op Op, key string, minVersion int, it *Item, res *Result) itemOutcome {
	switch op {
	case OpSign:
		return s.sign(key, it, res)
	case OpVerify:
		return s.verify(key, minVersion, it, res)
	case OpEncrypt:
		return s.encrypt(key, it, res)
	case OpDecrypt:
		return s.decrypt(key, minVersion, it, res)
	case OpRewrap:
		return s.rewrap(key, minVersion, it, res)
	case OpDataKey:
		return s.datakey(key, it, res)
	case OpHMAC:
		return s.hmac(key, it, res)
	case OpVerifyHMAC:
		return s.verifyHMAC(key, minVersion, it, res)
	case OpRandom:
		return s.random(it, res)
	case OpKeyInfo:
		return s.keyInfo(key, res)
	case OpRotate:
		return s.rotate(key, res)
	case OpSignMessage:
		return s.signMessage(key, it, res)
	case OpVerifyMessage:
		return s.verifyMessage(it, res)
	case OpVerifyData:
		return s.verifyData(it, res)
	case OpValidateCert:
		return s.validateCert(it, res)
	case OpParseCert:
		return s.parseCertificate(it, res)
	case OpSeal:
		return s.sealEnvelope(it, res)
	case OpOpen:
		return s.openEnvelope(key, it, res)
	}
	return itemOutcome{err: fail(CodeUnknownOperation, fmt.Errorf("operation %q", op))}
}

func sum(b []byte) []byte {
	d := sm3.Sum(b)
	return d[:]
}

// signInput checks that exactly one of data and digest is given (a digest is e = SM3(Z_A||M),
// 32 bytes, and takes no user ID) and returns the audit digest.
func signInput(it *Item) ([]byte, error) {
	switch {
	case it.Data != nil && it.Digest != nil:
		return nil, fail(CodeMalformed, errors.New("both data and digest"))
	case it.Digest != nil:
		if len(it.Digest) != sm3.Size {
			return nil, fail(CodeMalformed, fmt.Errorf("digest must be %d bytes", sm3.Size))
		}
		if it.UserID != nil {
			return nil, fail(CodeMalformed, errors.New("a digest already includes Z_A: user_id is not taken with digest"))
		}
		return append([]byte(nil), it.Digest...), nil
	case it.Data != nil:
		return sum(it.Data), nil
	}
	return nil, fail(CodeMalformed, errors.New("data or digest is required"))
}

func (s *Service) sign(key string, it *Item, res *Result) itemOutcome {
	d, err := signInput(it)
	if err != nil {
		return itemOutcome{err: err}
	}
	signer, err := s.o.Keys.Signer(key)
	if err != nil {
		return itemOutcome{digest: d, err: keyCode(err)}
	}
	var sig []byte
	switch {
	case it.Digest != nil:
		sig, err = signer.Sign(s.o.Rand, it.Digest, crypto.Hash(0))
	case it.UserID != nil:
		sig, err = signer.Sign(s.o.Rand, it.Data, sm2.NewSM2SignerOption(true, []byte(*it.UserID)))
	default:
		sig, err = signer.Sign(s.o.Rand, it.Data, nil)
	}
	if err != nil {
		return itemOutcome{digest: d, err: keyCode(err)}
	}
	res.Signature, res.KeyVersion = sig, versionOf(signer)
	return itemOutcome{digest: d, version: res.KeyVersion}
}

func versionOf(k any) int {
	if v, ok := k.(versioned); ok {
		return v.Version()
	}
	return 0
}

// verifyVersion resolves the version a verification uses (the item's key_version, else the
// version that signs now) and the key's configured user ID.
func (s *Service) verifyVersion(key string, want int) (int, []byte, error) {
	signer, err := s.o.Keys.Signer(key)
	if err != nil {
		return 0, nil, keyCode(err)
	}
	var uid []byte
	if u, ok := signer.(interface{ UserID() []byte }); ok {
		uid = u.UserID()
	}
	if want == 0 {
		want = versionOf(signer)
		if want == 0 {
			return 0, nil, fail(CodeInternal, errors.New("signer reports no version"))
		}
	}
	return want, uid, nil
}

func (s *Service) verify(key string, minVersion int, it *Item, res *Result) itemOutcome {
	d, err := signInput(it)
	if err != nil {
		return itemOutcome{err: err}
	}
	if it.Signature == nil {
		return itemOutcome{digest: d, err: fail(CodeMalformed, errors.New("signature is required"))}
	}
	ver, keyUID, err := s.verifyVersion(key, it.KeyVersion)
	if err != nil {
		return itemOutcome{digest: d, err: err}
	}
	if ver < minVersion {
		return itemOutcome{digest: d, version: ver, err: fail(CodeVersionRetired, fmt.Errorf("version %d below %d", ver, minVersion))}
	}
	pk, err := s.o.Keys.PublicKey(key + "@" + strconv.Itoa(ver))
	if err != nil {
		return itemOutcome{digest: d, version: ver, err: keyCode(err)}
	}
	pub, ok := pk.(*ecdsa.PublicKey)
	if !ok {
		return itemOutcome{digest: d, version: ver, err: fail(CodeWrongKeyType, errors.New("not an SM2 public key"))}
	}
	var good bool
	switch {
	case it.Digest != nil:
		good = sm2.VerifyASN1(pub, it.Digest, it.Signature)
	default:
		uid := keyUID
		if it.UserID != nil {
			uid = []byte(*it.UserID)
		}
		if len(uid) == 0 {
			uid = []byte(pki.DefaultUserID)
		}
		good = sm2.VerifyASN1WithSM2(pub, uid, it.Data, it.Signature)
	}
	if !good {
		return itemOutcome{digest: d, version: ver, err: fail(CodeBadSignature, nil)}
	}
	res.Valid, res.KeyVersion = true, ver
	return itemOutcome{digest: d, version: ver}
}

func (s *Service) encrypt(key string, it *Item, res *Result) itemOutcome {
	if it.Plaintext == nil {
		return itemOutcome{err: fail(CodeMalformed, errors.New("plaintext is required"))}
	}
	k, err := s.o.Keys.SymmetricKey(key)
	if err != nil {
		return itemOutcome{err: keyCode(err)}
	}
	ct, err := s.seal(key, k, it.Plaintext, it.Context)
	if err != nil {
		return itemOutcome{err: err}
	}
	res.Ciphertext, res.KeyVersion = ct, k.Version()
	return itemOutcome{digest: sum([]byte(ct)), version: k.Version()}
}

func (s *Service) seal(key string, k SymmetricKey, pt, context []byte) (string, error) {
	sealed, err := k.SealGCM(pt, aadFor(key, k.Version(), context))
	if err != nil {
		return "", keyCode(err)
	}
	return formatVersioned(k.Version(), sealed), nil
}

// open decrypts a "gm:v<N>:..." ciphertext of key, refusing versions below minVersion before
// any decryption.
func (s *Service) open(key string, minVersion int, ct string, context []byte) ([]byte, int, error) {
	ver, sealed, err := parseVersioned(ct)
	if err != nil {
		return nil, 0, fail(CodeMalformed, fmt.Errorf("ciphertext: %w", err))
	}
	if ver < minVersion {
		return nil, ver, fail(CodeVersionRetired, fmt.Errorf("version %d below %d", ver, minVersion))
	}
	k, err := s.o.Keys.SymmetricKey(key + "@" + strconv.Itoa(ver))
	if err != nil {
		return nil, ver, keyCode(err)
	}
	pt, err := k.OpenGCM(sealed, aadFor(key, ver, context))
	if err != nil {
		c := keyCode(err)
		if CodeOf(c) == CodeMalformed { // too short to be a sealed value: the same answer as a bad tag
			c = fail(CodeBadCiphertext, err)
		}
		return nil, ver, c
	}
	return pt, ver, nil
}

func (s *Service) decrypt(key string, minVersion int, it *Item, res *Result) itemOutcome {
	if it.Ciphertext == "" {
		return itemOutcome{err: fail(CodeMalformed, errors.New("ciphertext is required"))}
	}
	d := sum([]byte(it.Ciphertext))
	pt, ver, err := s.open(key, minVersion, it.Ciphertext, it.Context)
	if err != nil {
		return itemOutcome{digest: d, version: ver, err: err}
	}
	if pt == nil {
		pt = []byte{}
	}
	res.Plaintext, res.KeyVersion = pt, ver
	return itemOutcome{digest: d, version: ver}
}

func (s *Service) rewrap(key string, minVersion int, it *Item, res *Result) itemOutcome {
	if it.Ciphertext == "" {
		return itemOutcome{err: fail(CodeMalformed, errors.New("ciphertext is required"))}
	}
	d := sum([]byte(it.Ciphertext))
	pt, ver, err := s.open(key, minVersion, it.Ciphertext, it.Context)
	if err != nil {
		return itemOutcome{digest: d, version: ver, err: err}
	}
	defer wipe(pt)
	k, err := s.o.Keys.SymmetricKey(key)
	if err != nil {
		return itemOutcome{digest: d, version: ver, err: keyCode(err)}
	}
	ct, err := s.seal(key, k, pt, it.Context)
	if err != nil {
		return itemOutcome{digest: d, version: ver, err: err}
	}
	res.Ciphertext, res.KeyVersion = ct, k.Version()
	return itemOutcome{digest: d, version: k.Version()}
}

// DataKeySize is the size of a generated data key (an SM4 key).
const DataKeySize = 16

func (s *Service) datakey(key string, it *Item, res *Result) itemOutcome {
	k, err := s.o.Keys.SymmetricKey(key)
	if err != nil {
		return itemOutcome{err: keyCode(err)}
	}
	dk := make([]byte, DataKeySize)
	if _, err := io.ReadFull(s.o.Rand, dk); err != nil {
		return itemOutcome{err: fail(CodeInternal, err)}
	}
	ct, err := s.seal(key, k, dk, it.Context)
	if err != nil {
		wipe(dk)
		return itemOutcome{err: err}
	}
	if it.WrappedOnly {
		wipe(dk)
		dk = nil
	}
	res.Plaintext, res.Ciphertext, res.KeyVersion = dk, ct, k.Version()
	return itemOutcome{digest: sum([]byte(ct)), version: k.Version()}
}

func (s *Service) hmac(key string, it *Item, res *Result) itemOutcome {
	if it.Data == nil {
		return itemOutcome{err: fail(CodeMalformed, errors.New("data is required"))}
	}
	k, err := s.o.Keys.SymmetricKey(key)
	if err != nil {
		return itemOutcome{err: keyCode(err)}
	}
	mac, err := k.HMACSM3(it.Data)
	if err != nil {
		return itemOutcome{err: keyCode(err)}
	}
	res.HMAC, res.KeyVersion = formatVersioned(k.Version(), mac), k.Version()
	return itemOutcome{digest: sum([]byte(res.HMAC)), version: k.Version()}
}

func (s *Service) verifyHMAC(key string, minVersion int, it *Item, res *Result) itemOutcome {
	if it.Data == nil || it.HMAC == "" {
		return itemOutcome{err: fail(CodeMalformed, errors.New("data and hmac are required"))}
	}
	d := sum([]byte(it.HMAC))
	ver, mac, err := parseVersioned(it.HMAC)
	if err != nil {
		return itemOutcome{digest: d, err: fail(CodeMalformed, fmt.Errorf("hmac: %w", err))}
	}
	if ver < minVersion {
		return itemOutcome{digest: d, version: ver, err: fail(CodeVersionRetired, fmt.Errorf("version %d below %d", ver, minVersion))}
	}
	k, err := s.o.Keys.SymmetricKey(key + "@" + strconv.Itoa(ver))
	if err != nil {
		return itemOutcome{digest: d, version: ver, err: keyCode(err)}
	}
	if err := k.VerifyHMACSM3(it.Data, mac); err != nil {
		c := keyCode(err)
		if code := CodeOf(c); code == CodeBadCiphertext || code == CodeMalformed {
			c = fail(CodeBadSignature, err)
		}
		return itemOutcome{digest: d, version: ver, err: c}
	}
	res.Valid, res.KeyVersion = true, ver
	return itemOutcome{digest: d, version: ver}
}

func (s *Service) random(it *Item, res *Result) itemOutcome {
	n := it.Bytes
	if n == 0 {
		n = 32
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(s.o.Rand, b); err != nil {
		return itemOutcome{err: fail(CodeInternal, err)}
	}
	res.Random = b
	return itemOutcome{}
}

func (s *Service) keyInfo(key string, res *Result) itemOutcome {
	vs, latest, err := s.o.Keys.Versions(key)
	if err != nil {
		return itemOutcome{err: keyCode(err)}
	}
	res.Versions, res.LatestVersion = vs, latest
	if signer, err := s.o.Keys.Signer(key); err == nil {
		if u, ok := signer.(interface{ UserID() []byte }); ok {
			res.UserID = string(u.UserID())
		}
	}
	if pk, err := s.o.Keys.PublicKey(key); err == nil { // SM2 keys: the version in use (Z_A for client-side hashing)
		if der, err := smx509.MarshalPKIXPublicKey(pk); err == nil {
			res.PublicKey = string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
		}
	}
	if certs, err := s.o.Keys.Certificate(key); err == nil { // GM/T 0029 ExportCert
		for _, c := range certs {
			res.Certificates = append(res.Certificates, string(pki.EncodeCertificatesPEM(c)))
		}
	}
	return itemOutcome{version: latest}
}

// rotate adds a version of an SM4 key (encryption and HMAC keys): the vault stores it on every
// replica and loads it, so the next Encrypt, Hmac or Rewrap uses it at once; older versions stay
// loaded for Decrypt and VerifyHmac (down to each caller's min_version). SM2 keys are refused:
// their certificates name one public key, so they rotate through `gmgate vault rotate` with a
// new certificate.
func (s *Service) rotate(key string, res *Result) itemOutcome {
	if _, err := s.o.Keys.SymmetricKey(key); err != nil {
		return itemOutcome{err: keyCode(err)}
	}
	ver, err := s.o.Keys.Rotate(key)
	if err != nil {
		return itemOutcome{err: keyCode(err)}
	}
	vs, latest, err := s.o.Keys.Versions(key)
	if err != nil {
		return itemOutcome{version: ver, err: keyCode(err)}
	}
	res.KeyVersion, res.Versions, res.LatestVersion = ver, vs, latest
	return itemOutcome{version: ver}
}

// audit writes the request's one entry. Scheme is "gm_crypto/<op>"; KeyID is
// "<caller>:<key>@v<versions>" (the versions the items used, comma-separated); CertSerial is
// the caller's certificate serial; SignedSM3 is the SM3 digest of the items' non-secret sides
// (never of a plaintext); Signature is a single sign request's signature; Reason is "ok" or the
// refusal code (of the first failed item of a batch).
func (s *Service) audit(caller Caller, op Op, key string, outs []itemOutcome, resp *Response, err error, requestID string) error {
	if s.o.Audit == nil {
		return nil
	}
	rec := audit.Record{Time: s.o.Now(), Direction: audit.DirectionInbound, Scheme: "gm_crypto/" + string(op),
		CertSerial: caller.Serial, RequestID: requestID, Verdict: audit.VerdictAccept, Reason: audit.ReasonOK}
	name := caller.Name
	if name == "" {
		name = "-"
	}
	rec.KeyID = name + ":" + key
	var versions []int
	seen := map[int]bool{}
	for _, o := range outs {
		if o.version > 0 && !seen[o.version] {
			seen[o.version] = true
			versions = append(versions, o.version)
		}
	}
	sort.Ints(versions)
	if len(versions) > 0 {
		vs := make([]string, len(versions))
		for i, v := range versions {
			vs[i] = "v" + strconv.Itoa(v)
		}
		rec.KeyID += "@" + strings.Join(vs, ",")
	}
	rec.SignedSM3 = digestOf(outs)
	code := refusal.OK
	if err != nil {
		code = CodeOf(err)
	} else {
		for _, o := range outs {
			if o.err != nil {
				code = CodeOf(o.err)
				break
			}
		}
	}
	if code != refusal.OK {
		rec.Verdict, rec.Reason = audit.VerdictReject, string(code)
	}
	if err == nil && resp != nil && !resp.batch && op == OpSign {
		rec.Signature = resp.Results[0].Signature
	}
	return s.o.Audit.Append(rec)
}

// digestOf is the digest of one item, or for several SM3 over each item's digest prefixed with
// its 4-byte length (0 for an item without one).
func digestOf(outs []itemOutcome) []byte {
	switch len(outs) {
	case 0:
		return nil
	case 1:
		return outs[0].digest
	}
	h := sm3.New()
	var l [4]byte
	for _, o := range outs {
		binary.BigEndian.PutUint32(l[:], uint32(len(o.digest)))
		h.Write(l[:])
		h.Write(o.digest)
	}
	return h.Sum(nil)
}

// CertInfo is the parsed identity of a certificate: who signed, or whom a certificate names.
type CertInfo struct {
	Subject   string    `json:"subject"`
	Issuer    string    `json:"issuer"`
	Serial    string    `json:"serial"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	SM3       string    `json:"fingerprint_sm3"`
	Role      string    `json:"role,omitempty"`
}

// Policy returns the service's policy (for identifying callers).
func (s *Service) Policy() *Policy { return s.o.Policy }
