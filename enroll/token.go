package enroll

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strings"
	"time"

	"github.com/emmansun/gmsm/sm3"
)

// Enrolment tokens are "gmet1.<id>.<secret>": id is 12 random bytes, secret 32 random bytes,
// both base64url without padding. The store keeps only SM3(secret); the token is shown once.
const (
	tokenPrefix   = "gmet1."
	tokenIDLen    = 12
	tokenSecLen   = 32
	maxTokenLen   = 128
	maxTokenTTL   = 90 * 24 * time.Hour
	defaultTokTTL = 24 * time.Hour
)

var b64url = base64.RawURLEncoding

// TokenOptions describes a token to issue.
type TokenOptions struct {
	// Profile names the profile the token enrols under. Required.
	Profile string
	// CommonName, when set, is the only common name the token may enrol (recommended: the
	// terminal's ID).
	CommonName string
	// TTL is how long the token is valid. Default 24h, at most 90 days.
	TTL time.Duration
	// Note is stored with the record (asset number, shop).
	Note string
	// Now is the issuing time; zero means time.Now.
	Now time.Time
}

// IssueToken creates a one-time enrolment token, stores its record in st and returns the token
// string (to hand to the terminal; it is not stored) with the record.
func IssueToken(st Store, opts TokenOptions) (string, TokenRecord, error) {
	if opts.Profile == "" {
		return "", TokenRecord{}, fmt.Errorf("enroll: token needs a profile")
	}
	if len(opts.CommonName) > maxCNLen || len(opts.Note) > 256 {
		return "", TokenRecord{}, fmt.Errorf("enroll: token common name or note too long")
	}
	ttl := opts.TTL
	if ttl == 0 {
		ttl = defaultTokTTL
	}
	if ttl < 0 || ttl > maxTokenTTL {
		return "", TokenRecord{}, fmt.Errorf("enroll: token TTL %s outside (0, %s]", ttl, maxTokenTTL)
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	var id [tokenIDLen]byte
	var sec [tokenSecLen]byte
	if _, err := rand.Read(id[:]); err != nil {
		return "", TokenRecord{}, err
	}
	if _, err := rand.Read(sec[:]); err != nil {
		return "", TokenRecord{}, err
	}
	sum := sm3.Sum(sec[:])
	rec := TokenRecord{
		ID: b64url.EncodeToString(id[:]), Hash: sum[:], Profile: opts.Profile, CommonName: opts.CommonName,
		NotAfter: now.Add(ttl).UTC(), Created: now.UTC(), Note: opts.Note,
	}
	if err := st.PutToken(rec); err != nil {
		return "", TokenRecord{}, fmt.Errorf("enroll: storing token: %w", err)
	}
	tok := tokenPrefix + rec.ID + "." + b64url.EncodeToString(sec[:])
	clear(sec[:])
	return tok, rec, nil
}

// parseToken splits a token into its ID and secret; ok is false for anything malformed.
func parseToken(tok string) (id string, secret []byte, ok bool) {
	if len(tok) > maxTokenLen || !strings.HasPrefix(tok, tokenPrefix) {
		return "", nil, false
	}
	id, s, found := strings.Cut(tok[len(tokenPrefix):], ".")
	if !found {
		return "", nil, false
	}
	// Only the canonical encoding (the decoder skips CR and LF and ignores trailing bits): the
	// ID is a store file name, a lockout key and an audit field (FuzzParseToken).
	rawID, err := b64url.DecodeString(id)
	if err != nil || len(rawID) != tokenIDLen || b64url.EncodeToString(rawID) != id {
		return "", nil, false
	}
	secret, err = b64url.DecodeString(s)
	if err != nil || len(secret) != tokenSecLen || b64url.EncodeToString(secret) != s {
		return "", nil, false
	}
	return id, secret, true
}

// checkTokenSecret compares SM3(secret) with the stored digest in constant time.
func checkTokenSecret(rec TokenRecord, secret []byte) bool {
	sum := sm3.Sum(secret)
	return subtle.ConstantTimeCompare(sum[:], rec.Hash) == 1
}
