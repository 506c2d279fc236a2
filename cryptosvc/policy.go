package cryptosvc

import (
	"crypto/subtle"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/emmansun/gmsm/sm3"
)

// Op names an operation of the service.
type Op string

// Operations. Each is POSTed to /shf/v1/<Path> (see Ops).
const (
	OpSign       Op = "sign"        // SM2 signature of data (with a user ID) or of a digest
	OpVerify     Op = "verify"      // SM2 verification with a vault key or a certificate
	OpEncrypt    Op = "encrypt"     // SM4-GCM encryption under the newest key version
	OpDecrypt    Op = "decrypt"     // SM4-GCM decryption of any allowed version
	OpRewrap     Op = "rewrap"      // decrypt and re-encrypt under the newest version, inside the service
	OpDataKey    Op = "datakey"     // a fresh SM4 data key, plaintext and wrapped
	OpHMAC       Op = "hmac"        // HMAC-SM3 under the newest version
	OpVerifyHMAC Op = "verify_hmac" // HMAC-SM3 check of any allowed version
	OpRandom     Op = "random"      // random bytes
	OpKeyInfo    Op = "key_info"    // versions of a key, its certificate chain
	OpRotate     Op = "rotate"      // a new version of an SM4 key in the vault, current at once

	OpSignMessage   Op = "sign_message"         // PKCS#7/CMS SignedData, attached or detached
	OpVerifyMessage Op = "verify_message"       // PKCS#7/CMS SignedData, signer chain through pki
	OpVerifyData    Op = "verify_data"          // SM2 verification with a caller-supplied certificate
	OpValidateCert  Op = "validate_certificate" // chain, validity, usage, CRL; parsed identity
	OpParseCert     Op = "parse_certificate"    // parsed identity only (no trust decision)
	OpSeal          Op = "seal_envelope"        // SM2 digital envelope to a verified certificate
	OpOpen          Op = "open_envelope"        // open an envelope addressed to a vault key
)

// opInfo describes an operation: its path under /shf/v1/, whether it names a vault key, and
// whether it may read retired versions (so min_version applies).
type opInfo struct {
	Op      Op
	Path    string
	Keyed   bool
	ReadOld bool
}

var opTable = []opInfo{
	{OpSign, "Sign", true, false},
	{OpVerify, "Verify", true, true},
	{OpEncrypt, "Encrypt", true, false},
	{OpDecrypt, "Decrypt", true, true},
	{OpRewrap, "Rewrap", true, true},
	{OpDataKey, "GenerateDataKey", true, false},
	{OpHMAC, "Hmac", true, false},
	{OpVerifyHMAC, "VerifyHmac", true, true},
	{OpRandom, "GenerateRandom", false, false},
	{OpKeyInfo, "KeyInfo", true, false},
	{OpRotate, "RotateKey", true, false},
	{OpSignMessage, "SignMessage", true, false},
	{OpVerifyMessage, "VerifyMessage", false, false},
	{OpVerifyData, "VerifySignedData", false, false},
	{OpValidateCert, "ValidateCertificate", false, false},
	{OpParseCert, "ParseCertificate", false, false},
	{OpSeal, "SealEnvelope", false, false},
	{OpOpen, "OpenEnvelope", true, false},
}

func lookupOp(op Op) (opInfo, bool) {
	for _, o := range opTable {
		if o.Op == op {
			return o, true
		}
	}
	return opInfo{}, false
}

// OpForPath returns the operation served at /shf/v1/<path> (case-sensitive, as GM/T 0136
// writes its interface names).
func OpForPath(path string) (Op, bool) {
	for _, o := range opTable {
		if o.Path == path {
			return o.Op, true
		}
	}
	return "", false
}

// PathOf returns the path segment of op under /shf/v1/ ("" for an unknown op).
func PathOf(op Op) string {
	o, _ := lookupOp(op)
	return o.Path
}

// Ops lists every operation in a stable order.
func Ops() []Op {
	out := make([]Op, len(opTable))
	for i, o := range opTable {
		out[i] = o.Op
	}
	return out
}

// CallerConfig declares one internal system by its certificate (the client certificate of its
// TLCP/TLS connection, or the certificate of its signed request). At least one of Fingerprint
// and SubjectCN is required; when both are set both must match.
//
// The one matching rule: Fingerprint is the SM3 of the whole certificate DER (it pins one
// certificate: subject, issuer, key and serial); SubjectCN is compared byte for byte with the
// subject's common name, and a subject with no or with several CN attributes never matches by CN.
// Nothing else of the subject (other RDNs, the full DN, SANs) and no SPKI hash is matched. Two
// callers that one certificate could both match (the same CN where either has no fingerprint or
// both the same, or the same fingerprint) are refused by NewPolicy, so at most one caller
// matches any certificate.
type CallerConfig struct {
	// Name is how rules, audit entries and metrics name the caller ([a-z0-9._-], 1..64 bytes).
	Name string `json:"name"`
	// Fingerprint is the SM3 fingerprint (hex, of the certificate DER, as `gmgate pki show`
	// prints it) of the caller's client certificate.
	Fingerprint string `json:"fingerprint,omitempty"`
	// SubjectCN is the subject common name of the caller's client certificate. The certificate
	// must have been verified by the listener (tlcp client_auth require_and_verify, or Caddy's
	// TLS client authentication), so a CN is only as good as the CAs trusted there.
	SubjectCN string `json:"subject_cn,omitempty"`
}

// Rule allows one caller some operations on one key. Operations without a key (random,
// verify_message, verify_data, validate_certificate, parse_certificate, seal_envelope) take
// no key.
type Rule struct {
	// Caller is the Name of the caller the rule allows.
	Caller string `json:"caller"`
	// Ops are the operations allowed (at least one).
	Ops []Op `json:"ops"`
	// Key is the vault key the operations use; required for keyed operations, empty for the
	// others.
	Key string `json:"key,omitempty"`
	// MinVersion is the lowest key version the caller may decrypt, rewrap or verify with
	// (0: any loaded version). Raising it after a rotation retires the older versions for this
	// caller without touching the vault.
	MinVersion int `json:"min_version,omitempty"`
}

// PolicyConfig is the policy: who the callers are and what each may do. Everything not
// allowed by a rule is refused.
type PolicyConfig struct {
	Callers []CallerConfig `json:"callers,omitempty"`
	Rules   []Rule         `json:"rules,omitempty"`
}

// Policy is a checked PolicyConfig.
type Policy struct {
	callers []callerMatch
	allow   map[grantKey]int // -> min version
}

type callerMatch struct {
	name string
	fp   []byte
	cn   string
}

type grantKey struct {
	caller string
	op     Op
	key    string
}

// Caller is an authenticated internal system.
type Caller struct {
	// Name is the configured caller name.
	Name string
	// Serial is the hex serial of its certificate (for the audit entry).
	Serial string
}

func validName(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// validKeyName accepts vault key names (printable ASCII without '@', ':' or spaces, 1..128 bytes).
func validKeyName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c > '~' || c == '@' || c == ':' {
			return false
		}
	}
	return true
}

// NewPolicy checks cfg: unique valid caller names, each with a matcher; rules naming known
// callers and operations, a key exactly for keyed operations, min_version only where old
// versions are read.
func NewPolicy(cfg PolicyConfig) (*Policy, error) {
	p := &Policy{allow: map[grantKey]int{}}
	seen := map[string]bool{}
	for _, c := range cfg.Callers {
		if !validName(c.Name, 64) {
			return nil, fmt.Errorf("cryptosvc: caller name %q: want 1..64 of [a-z0-9._-]", c.Name)
		}
		if seen[c.Name] {
			return nil, fmt.Errorf("cryptosvc: caller %q declared twice", c.Name)
		}
		seen[c.Name] = true
		m := callerMatch{name: c.Name, cn: c.SubjectCN}
		if c.Fingerprint != "" {
			fp, err := hex.DecodeString(strings.ReplaceAll(strings.ToLower(c.Fingerprint), ":", ""))
			if err != nil || len(fp) != sm3.Size {
				return nil, fmt.Errorf("cryptosvc: caller %q: fingerprint must be 32 bytes of hex (SM3 of the certificate)", c.Name)
			}
			m.fp = fp
		}
		if m.fp == nil && m.cn == "" {
			return nil, fmt.Errorf("cryptosvc: caller %q: needs a fingerprint or a subject_cn", c.Name)
		}
		for _, o := range p.callers {
			if overlap(o, m) {
				return nil, fmt.Errorf("cryptosvc: callers %q and %q can match the same certificate (same subject_cn without distinct fingerprints, or the same fingerprint): identities must be unambiguous", o.name, m.name)
			}
		}
		p.callers = append(p.callers, m)
	}
	for i, r := range cfg.Rules {
		if !seen[r.Caller] {
			return nil, fmt.Errorf("cryptosvc: rule %d: unknown caller %q", i+1, r.Caller)
		}
		if len(r.Ops) == 0 {
			return nil, fmt.Errorf("cryptosvc: rule %d: no operations", i+1)
		}
		if r.MinVersion < 0 {
			return nil, fmt.Errorf("cryptosvc: rule %d: negative min_version", i+1)
		}
		readOld := false
		for _, op := range r.Ops {
			info, ok := lookupOp(op)
			if !ok {
				return nil, fmt.Errorf("cryptosvc: rule %d: unknown operation %q", i+1, op)
			}
			if info.Keyed && !validKeyName(r.Key) {
				return nil, fmt.Errorf("cryptosvc: rule %d: operation %s needs a key name", i+1, op)
			}
			if !info.Keyed && r.Key != "" {
				return nil, fmt.Errorf("cryptosvc: rule %d: operation %s takes no key", i+1, op)
			}
			readOld = readOld || info.ReadOld
			g := grantKey{r.Caller, op, r.Key}
			if old, dup := p.allow[g]; dup && old != r.MinVersion {
				return nil, fmt.Errorf("cryptosvc: rule %d: %s/%s/%s granted twice with different min_version", i+1, r.Caller, op, r.Key)
			}
			p.allow[g] = r.MinVersion
		}
		if r.MinVersion > 0 && !readOld {
			return nil, fmt.Errorf("cryptosvc: rule %d: min_version applies only to operations that read old versions (decrypt, rewrap, verify, verify_hmac)", i+1)
		}
	}
	return p, nil
}

// overlap reports whether one certificate could match both a and b.
func overlap(a, b callerMatch) bool {
	if a.fp != nil && b.fp != nil {
		if subtle.ConstantTimeCompare(a.fp, b.fp) != 1 {
			return false // distinct pinned certificates
		}
		return true // the same certificate named twice, whatever the CNs say
	}
	return a.cn == "" || b.cn == "" || a.cn == b.cn
}

var oidCommonName = asn1.ObjectIdentifier{2, 5, 4, 3}

// singleCN returns the subject's common name when it has exactly one CN attribute.
func singleCN(subject pkix.Name) (string, bool) {
	cn, n := "", 0
	for _, a := range subject.Names {
		if a.Type.Equal(oidCommonName) {
			v, ok := a.Value.(string)
			if !ok {
				return "", false
			}
			cn, n = v, n+1
		}
	}
	return cn, n == 1
}

// Identify returns the caller whose certificate this is (der, and its parsed subject), by the
// rule of CallerConfig. The certificate must already be verified (chain, validity, usage,
// revocation): by the listener for a client certificate, by the signed-request verifier for a
// request signature.
func (p *Policy) Identify(der []byte, subject pkix.Name) (string, bool) {
	if p == nil || len(der) == 0 {
		return "", false
	}
	sum := sm3.Sum(der)
	cn, oneCN := singleCN(subject)
	for _, c := range p.callers {
		if c.fp != nil && subtle.ConstantTimeCompare(c.fp, sum[:]) != 1 {
			continue
		}
		if c.cn != "" && (!oneCN || c.cn != cn) {
			continue
		}
		return c.name, true
	}
	return "", false
}

// allowed returns the caller's minimum version for op on key, and whether op is allowed.
func (p *Policy) allowed(caller string, op Op, key string) (int, bool) {
	if p == nil {
		return 0, false
	}
	mv, ok := p.allow[grantKey{caller, op, key}]
	return mv, ok
}
