package cryptosvc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// Bounds of requests (Options may lower the first two).
const (
	// DefaultMaxItems bounds the items of one batch.
	DefaultMaxItems = 256
	// DefaultMaxItemSize bounds data, plaintext, digest, signature, ciphertext, certificate or
	// CMS message of one item (64 KiB).
	DefaultMaxItemSize = 64 << 10
	// MaxRandomBytes bounds one random item.
	MaxRandomBytes = 1024
	// MaxUserIDLen bounds an SM2 user ID (GB/T 32918 ENTL is 16 bits, in bits).
	MaxUserIDLen = 8191
	// MaxContextLen bounds the context bound into a ciphertext.
	MaxContextLen = 1024
	// MaxChain bounds the extra certificates of an item.
	MaxChain = 8
	// maxBody is the parser's own bound of a body (the handler's max_body_size is lower).
	maxBody = 64 << 20
)

// Item is one input of an operation. Which fields an operation takes is listed in
// docs/crypto-service.md; a field the operation does not take is refused (crypto_malformed), so
// a caller's mistake (a digest given to encrypt) never passes silently. []byte fields are
// standard Base64 in JSON.
type Item struct {
	Data        []byte   `json:"data,omitempty"`
	Digest      []byte   `json:"digest,omitempty"`
	UserID      *string  `json:"user_id,omitempty"`
	Signature   []byte   `json:"signature,omitempty"`
	KeyVersion  int      `json:"key_version,omitempty"`
	Plaintext   []byte   `json:"plaintext,omitempty"`
	Ciphertext  string   `json:"ciphertext,omitempty"`
	Context     []byte   `json:"context,omitempty"`
	HMAC        string   `json:"hmac,omitempty"`
	Bytes       int      `json:"bytes,omitempty"`
	WrappedOnly bool     `json:"wrapped_only,omitempty"`
	Certificate string   `json:"certificate,omitempty"`
	Chain       []string `json:"chain,omitempty"`
	CMS         []byte   `json:"cms,omitempty"`
	Detached    bool     `json:"detached,omitempty"`
	Envelope    []byte   `json:"envelope,omitempty"`
	GMOIDs      bool     `json:"gm_oids,omitempty"`
	GCM         bool     `json:"gcm,omitempty"`
	// CertSerial and CertSubject name a certificate of the service's configured certificate set
	// by its serial (hex) and/or subject DN (RFC 4514, as the results print it) instead of
	// giving it (GM/T 0029 verification by serial or DN).
	CertSerial  string `json:"cert_serial,omitempty"`
	CertSubject string `json:"cert_subject,omitempty"`
	// VerifyLevel is GM/T 0029's verify level: 0 validity (and key usage), 1 + chain, 2 + CRL
	// (absent: 2). The service applies at least its configured minimum (default 2).
	VerifyLevel *int `json:"verify_level,omitempty"`
	// IncludeCRL adds the CRLs of the signer's chain to a SignedData; NoChain leaves out the
	// CA certificates (the signer's certificate stays).
	IncludeCRL bool `json:"include_crl,omitempty"`
	NoChain    bool `json:"no_chain,omitempty"`
}

// Request is the body of every operation: a key (for keyed operations) and either one item
// inline or a batch of items in batch_input (as Vault's transit engine).
type Request struct {
	Key string `json:"key,omitempty"`
	Item
	BatchInput []Item `json:"batch_input,omitempty"`

	batch bool
}

// Items returns the request's items (one for a single request).
func (r *Request) Items() []Item {
	if r.batch {
		return r.BatchInput
	}
	return []Item{r.Item}
}

// Batch reports whether the request came as batch_input.
func (r *Request) Batch() bool { return r.batch }

// field names an Item field that is set.
type field string

const (
	fData        field = "data"
	fDigest      field = "digest"
	fUserID      field = "user_id"
	fSignature   field = "signature"
	fKeyVersion  field = "key_version"
	fPlaintext   field = "plaintext"
	fCiphertext  field = "ciphertext"
	fContext     field = "context"
	fHMAC        field = "hmac"
	fBytes       field = "bytes"
	fWrappedOnly field = "wrapped_only"
	fCertificate field = "certificate"
	fChain       field = "chain"
	fCMS         field = "cms"
	fDetached    field = "detached"
	fEnvelope    field = "envelope"
	fGMOIDs      field = "gm_oids"
	fGCM         field = "gcm"
	fCertSerial  field = "cert_serial"
	fCertSubject field = "cert_subject"
	fVerifyLevel field = "verify_level"
	fIncludeCRL  field = "include_crl"
	fNoChain     field = "no_chain"
)

// set lists the fields of it that are present (non-zero).
func (it *Item) set() []field {
	var out []field
	add := func(ok bool, f field) {
		if ok {
			out = append(out, f)
		}
	}
	add(it.Data != nil, fData)
	add(it.Digest != nil, fDigest)
	add(it.UserID != nil, fUserID)
	add(it.Signature != nil, fSignature)
	add(it.KeyVersion != 0, fKeyVersion)
	add(it.Plaintext != nil, fPlaintext)
	add(it.Ciphertext != "", fCiphertext)
	add(it.Context != nil, fContext)
	add(it.HMAC != "", fHMAC)
	add(it.Bytes != 0, fBytes)
	add(it.WrappedOnly, fWrappedOnly)
	add(it.Certificate != "", fCertificate)
	add(it.Chain != nil, fChain)
	add(it.CMS != nil, fCMS)
	add(it.Detached, fDetached)
	add(it.Envelope != nil, fEnvelope)
	add(it.GMOIDs, fGMOIDs)
	add(it.GCM, fGCM)
	add(it.CertSerial != "", fCertSerial)
	add(it.CertSubject != "", fCertSubject)
	add(it.VerifyLevel != nil, fVerifyLevel)
	add(it.IncludeCRL, fIncludeCRL)
	add(it.NoChain, fNoChain)
	return out
}

// opFields lists the fields each operation takes.
var opFields = map[Op][]field{
	OpSign:          {fData, fDigest, fUserID},
	OpVerify:        {fData, fDigest, fUserID, fSignature, fKeyVersion},
	OpEncrypt:       {fPlaintext, fContext},
	OpDecrypt:       {fCiphertext, fContext},
	OpRewrap:        {fCiphertext, fContext},
	OpDataKey:       {fContext, fWrappedOnly},
	OpHMAC:          {fData},
	OpVerifyHMAC:    {fData, fHMAC},
	OpRandom:        {fBytes},
	OpKeyInfo:       {},
	OpRotate:        {},
	OpSignMessage:   {fData, fDigest, fDetached, fGMOIDs, fIncludeCRL, fNoChain},
	OpVerifyMessage: {fCMS, fData, fDigest, fVerifyLevel},
	OpVerifyData:    {fData, fDigest, fUserID, fSignature, fCertificate, fChain, fCertSerial, fCertSubject, fVerifyLevel},
	OpValidateCert:  {fCertificate, fChain, fCertSerial, fCertSubject, fVerifyLevel},
	OpParseCert:     {fCertificate},
	OpSeal:          {fPlaintext, fCertificate, fChain, fGMOIDs, fGCM},
	OpOpen:          {fEnvelope},
}

// ParseRequest decodes and bounds the body of op: strict JSON (unknown fields, member names
// not spelt exactly or given twice, trailing data and a body over the parser's bound refused), the key name, the batch size, each item's
// fields against what op takes and each item's sizes. Errors carry CodeMalformed,
// CodeTooLarge or CodeUnknownOperation; the body is never echoed in them.
func ParseRequest(op Op, body []byte, maxItems, maxItemSize int) (*Request, error) {
	info, ok := lookupOp(op)
	if !ok {
		return nil, fail(CodeUnknownOperation, fmt.Errorf("operation %q", op))
	}
	if maxItems <= 0 {
		maxItems = DefaultMaxItems
	}
	if maxItemSize <= 0 {
		maxItemSize = DefaultMaxItemSize
	}
	if len(body) > maxBody {
		return nil, fail(CodeTooLarge, errors.New("body over the parser's bound"))
	}
	var r Request
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return nil, fail(CodeMalformed, errors.New("body is not a request object of known fields"))
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fail(CodeMalformed, errors.New("trailing data after the request object"))
	}
	if err := checkMemberNames(body, requestNames); err != nil {
		return nil, err
	}
	if info.Keyed {
		if !validKeyName(r.Key) {
			return nil, fail(CodeMalformed, errors.New("key: want a vault key name (no '@', ':' or spaces, at most 128 bytes)"))
		}
	} else if r.Key != "" {
		return nil, fail(CodeMalformed, errors.New("key: this operation takes no key"))
	}
	if r.BatchInput != nil {
		if len(r.Item.set()) > 0 {
			return nil, fail(CodeMalformed, errors.New("both batch_input and inline item fields"))
		}
		if len(r.BatchInput) == 0 {
			return nil, fail(CodeMalformed, errors.New("empty batch_input"))
		}
		if op == OpRotate {
			return nil, fail(CodeMalformed, errors.New("rotate takes no batch_input (one rotation per request)"))
		}
		if len(r.BatchInput) > maxItems {
			return nil, fail(CodeTooLarge, fmt.Errorf("batch of %d items, limit %d", len(r.BatchInput), maxItems))
		}
		r.batch = true
	}
	for i := range r.Items() {
		it := &r.Items()[i]
		if err := checkItem(op, it, maxItemSize); err != nil {
			if r.batch {
				return nil, fmt.Errorf("batch_input[%d]: %w", i, err)
			}
			return nil, err
		}
	}
	return &r, nil
}

// checkItem refuses fields op does not take and sizes over their bounds.
func checkItem(op Op, it *Item, maxItemSize int) error {
	allowed := opFields[op]
	for _, f := range it.set() {
		ok := false
		for _, a := range allowed {
			ok = ok || a == f
		}
		if !ok {
			return fail(CodeMalformed, fmt.Errorf("field %s is not taken by %s", f, op))
		}
	}
	for _, n := range []int{len(it.Data), len(it.Digest), len(it.Signature), len(it.Plaintext), len(it.Ciphertext),
		len(it.HMAC), len(it.Certificate), len(it.CMS), len(it.Envelope)} {
		if n > maxItemSize {
			return fail(CodeTooLarge, fmt.Errorf("item field of %d bytes, limit %d", n, maxItemSize))
		}
	}
	if it.UserID != nil && (len(*it.UserID) == 0 || len(*it.UserID) > MaxUserIDLen) {
		return fail(CodeMalformed, fmt.Errorf("user_id: 1..%d bytes", MaxUserIDLen))
	}
	if len(it.Context) > MaxContextLen {
		return fail(CodeTooLarge, fmt.Errorf("context over %d bytes", MaxContextLen))
	}
	if it.KeyVersion < 0 {
		return fail(CodeMalformed, errors.New("key_version: negative"))
	}
	if it.Bytes < 0 || it.Bytes > MaxRandomBytes {
		return fail(CodeMalformed, fmt.Errorf("bytes: 1..%d", MaxRandomBytes))
	}
	if it.VerifyLevel != nil && (*it.VerifyLevel < 0 || *it.VerifyLevel > 2) {
		return fail(CodeMalformed, errors.New("verify_level: 0, 1 or 2"))
	}
	if len(it.CertSerial) > 128 || len(it.CertSubject) > 4096 {
		return fail(CodeTooLarge, errors.New("cert_serial or cert_subject too long"))
	}
	if len(it.Chain) > MaxChain {
		return fail(CodeTooLarge, fmt.Errorf("chain of %d certificates, limit %d", len(it.Chain), MaxChain))
	}
	total := 0
	for _, c := range it.Chain {
		total += len(c)
	}
	if total > maxItemSize {
		return fail(CodeTooLarge, errors.New("chain over the item bound"))
	}
	return nil
}

// browserHeaders are request headers only browsers send (the Origin of a cross-origin or POST
// request, Fetch Metadata). Internal systems (HTTP libraries, curl) send none of them.
var browserHeaders = []string{"Origin", "Sec-Fetch-Site", "Sec-Fetch-Mode", "Sec-Fetch-Dest"}

// CheckNotBrowser refuses (CodeForbidden) a request a browser sent. Callers are authenticated
// by their client certificate, which a browser presents on its own: a page of any site could
// otherwise make a browser holding a caller's certificate POST an operation (a text/plain form
// or a no-cors fetch carries any JSON body; no content type is required), such as RotateKey,
// with that caller's rights. The service is for systems, not browsers.
func CheckNotBrowser(h http.Header) error {
	for _, k := range browserHeaders {
		if _, ok := h[k]; ok {
			return fail(CodeForbidden, fmt.Errorf("browser request (%s header): the crypto service serves systems", k))
		}
	}
	return nil
}
