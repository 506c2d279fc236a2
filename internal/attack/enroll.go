package attack

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/emmansun/gmsm/sm3"
)

// The attacker of the enrolment store is someone who can write gm_enroll's store directory
// (a backup restore, another service account, an NFS share) but cannot use the vault key
// that authenticates its records: plant a token whose secret they chose, edit a record's
// profile, expiry, common name, revoked flag or key delivery, move records between IDs, put
// back an older copy of a file, or leave a truncated or garbage one.

// ForgedToken is a token record the attacker wrote, with the token string to present.
type ForgedToken struct {
	ID, Token string
}

// ForgeToken writes tokens/<id>.json for a new token whose secret the attacker chose, as an
// older gmgate wrote token records (plain JSON). When envelope is set it wraps the record the
// way authenticated records are wrapped, with a random tag under the given key name and
// version 1 (what an attacker who read another record's layout would try).
func ForgeToken(storeDir, profile, cn string, notAfter time.Time, envelope bool, keyName string) (ForgedToken, error) {
	var id [12]byte
	var sec [32]byte
	if _, err := rand.Read(id[:]); err != nil {
		return ForgedToken{}, err
	}
	if _, err := rand.Read(sec[:]); err != nil {
		return ForgedToken{}, err
	}
	b64 := base64.RawURLEncoding
	sum := sm3.Sum(sec[:])
	ft := ForgedToken{ID: b64.EncodeToString(id[:])}
	ft.Token = "gmet1." + ft.ID + "." + b64.EncodeToString(sec[:])
	rec, err := json.Marshal(map[string]any{"id": ft.ID, "hash": sum[:], "profile": profile, "common_name": cn,
		"not_after": notAfter.UTC(), "created": time.Now().UTC()})
	if err != nil {
		return ForgedToken{}, err
	}
	data := rec
	if envelope {
		tag := make([]byte, 28)
		_, _ = rand.Read(tag)
		if data, err = json.Marshal(map[string]any{"format": 2, "kind": "token", "id": ft.ID, "key": keyName,
			"key_version": 1, "tag": tag, "record": json.RawMessage(rec)}); err != nil {
			return ForgedToken{}, err
		}
	}
	return ft, os.WriteFile(filepath.Join(storeDir, "tokens", ft.ID+".json"), data, 0o600)
}

// EditRecord rewrites the record inside an authenticated store file with edit, keeping its
// tag (a field changed in place: profile, not_after, common_name, revoked, delivery, ...).
// A file in the older plain format is edited directly.
func EditRecord(path string, edit func(rec map[string]any)) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var env map[string]json.RawMessage
	if err := json.Unmarshal(data, &env); err != nil {
		return err
	}
	inner, wrapped := env["record"]
	if !wrapped {
		inner = data
	}
	var rec map[string]any
	if err := json.Unmarshal(inner, &rec); err != nil {
		return err
	}
	edit(rec)
	out, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if wrapped {
		env["record"] = out
		if out, err = json.Marshal(env); err != nil {
			return err
		}
	}
	return os.WriteFile(path, out, 0o600)
}

// SwapFiles exchanges the contents of two files (records moved between IDs).
func SwapFiles(a, b string) error {
	da, err := os.ReadFile(a)
	if err != nil {
		return err
	}
	db, err := os.ReadFile(b)
	if err != nil {
		return err
	}
	return errors.Join(os.WriteFile(a, db, 0o600), os.WriteFile(b, da, 0o600))
}

// Snapshot is a copy of some files of a directory, to put back later (a backup restore).
type Snapshot map[string][]byte

// TakeSnapshot copies every regular file under dir.
func TakeSnapshot(dir string) (Snapshot, error) {
	s := Snapshot{}
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		s[p] = data
		return nil
	})
	return s, err
}

// Restore puts back the files of the snapshot and, when exact is set, removes the files
// created since (a full rollback of the directory); otherwise newer files stay.
func (s Snapshot) Restore(dir string, exact bool) error {
	if exact {
		err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
			if err != nil || fi.IsDir() {
				return err
			}
			if _, ok := s[p]; !ok {
				return os.Remove(p)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	for p, data := range s {
		if err := os.WriteFile(p, data, 0o600); err != nil {
			return fmt.Errorf("attack: restore %s: %w", p, err)
		}
	}
	return nil
}

// Truncate cuts a file to its first n bytes (a torn copy).
func Truncate(path string, n int64) error { return os.Truncate(path, n) }

// Garbage replaces a file with n random bytes.
func Garbage(path string, n int) error {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return os.WriteFile(path, b, 0o600)
}
