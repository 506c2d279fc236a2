package sealstore

import "fmt"

// TagSize is the size of a tag: the 12-byte nonce and the 16-byte SM4-GCM tag.
const TagSize = 28

// Tag authenticates data (which stays in clear) under the current version of keys: SM4-GCM
// with an empty plaintext and data as the additional data (GMAC, under a fresh random nonce).
// It returns the key version and nonce || tag. Callers put in data everything the tag must
// bind: a domain label, the record's kind and id, the key's name and version.
func Tag(keys Keys, data []byte) (keyVersion int, tag []byte, err error) {
	if keys == nil {
		return 0, nil, fmt.Errorf("%w: no key", ErrKey)
	}
	key, err := keys.Current()
	if err != nil {
		return 0, nil, fmt.Errorf("%w: %v", ErrKey, err)
	}
	tag, err = key.SealGCM(nil, data)
	if err != nil {
		return 0, nil, fmt.Errorf("%w: %v", ErrKey, err)
	}
	if len(tag) != TagSize {
		return 0, nil, fmt.Errorf("%w: unexpected tag size %d", ErrKey, len(tag))
	}
	return key.Version(), tag, nil
}

// CheckTag verifies a Tag of data made under version keyVersion of keys (any version the vault
// still holds: a rotated key keeps verifying). It returns an error wrapping ErrIntegrity when
// the tag does not verify, ErrKey when that key version is unavailable.
func CheckTag(keys Keys, keyVersion int, tag, data []byte) error {
	if keys == nil {
		return fmt.Errorf("%w: no key", ErrKey)
	}
	if keyVersion < 1 || len(tag) != TagSize {
		return fmt.Errorf("%w: malformed tag", ErrIntegrity)
	}
	key, err := keys.At(keyVersion)
	if err != nil {
		return fmt.Errorf("%w: key version %d: %v", ErrKey, keyVersion, err)
	}
	pt, err := key.OpenGCM(tag, data)
	if err != nil || len(pt) != 0 {
		return fmt.Errorf("%w: tag does not verify", ErrIntegrity)
	}
	return nil
}
