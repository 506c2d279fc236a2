package sealstore

import (
	"errors"
	"testing"
)

// TestTag: a tag verifies under the version that made it, also after a rotation; any change of
// the data, the tag or the version fails with ErrIntegrity; a missing key version is ErrKey.
func TestTag(t *testing.T) {
	keys := newMemKeys(t, "store-mac")
	data := []byte("gmgate-enroll-v2\x00token\x00abc")
	v, tag, err := Tag(keys, data)
	if err != nil || v != 1 || len(tag) != TagSize {
		t.Fatalf("Tag: v=%d len=%d err=%v", v, len(tag), err)
	}
	if err := CheckTag(keys, v, tag, data); err != nil {
		t.Fatal(err)
	}
	keys.rotate(t)
	if err := CheckTag(keys, v, tag, data); err != nil {
		t.Fatalf("old version after rotation: %v", err)
	}
	v2, tag2, _ := Tag(keys, data)
	if v2 != 2 {
		t.Fatalf("current version %d, want 2", v2)
	}
	flipped := append([]byte(nil), tag...)
	flipped[TagSize-1] ^= 1
	edited := append([]byte(nil), data...)
	edited[len(edited)-1] ^= 1
	for name, tc := range map[string]struct {
		v    int
		tag  []byte
		data []byte
		want error
	}{
		"edited data":     {v, tag, edited, ErrIntegrity},
		"flipped tag":     {v, flipped, data, ErrIntegrity},
		"wrong version":   {v2, tag, data, ErrIntegrity},
		"short tag":       {v, tag[:TagSize-1], data, ErrIntegrity},
		"empty tag":       {v, nil, data, ErrIntegrity},
		"version zero":    {0, tag, data, ErrIntegrity},
		"unknown version": {9, tag2, data, ErrKey},
	} {
		if err := CheckTag(keys, tc.v, tc.tag, tc.data); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
	if err := CheckTag(nil, v, tag, data); !errors.Is(err, ErrKey) {
		t.Errorf("nil keys: %v", err)
	}
	keys.fail = errors.New("token unavailable")
	if _, _, err := Tag(keys, data); !errors.Is(err, ErrKey) {
		t.Errorf("vault down: %v", err)
	}
}
