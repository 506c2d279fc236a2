package sealstore

import (
	"bytes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/emmansun/gmsm/sm4"

	"github.com/gmgate/gmgate/keyvault"
)

// memKeys is a rotating SM4 key held in memory: the tests rotate it, which the file backend of the
// vault cannot (its keys have one version).
type memKeys struct {
	name     string
	mu       sync.Mutex
	versions []*memKey
	fail     error
}

type memKey struct {
	v   int
	gcm cipher.AEAD
}

func newMemKeys(t testing.TB, name string) *memKeys {
	k := &memKeys{name: name}
	k.rotate(t)
	return k
}

func (k *memKeys) rotate(t testing.TB) {
	raw := make([]byte, 16)
	rand.Read(raw)
	b, err := sm4.NewCipher(raw)
	if err != nil {
		t.Fatal(err)
	}
	g, _ := cipher.NewGCM(b)
	k.mu.Lock()
	k.versions = append(k.versions, &memKey{v: len(k.versions) + 1, gcm: g})
	k.mu.Unlock()
}

func (k *memKeys) Name() string { return k.name }
func (k *memKeys) Current() (Key, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.fail != nil {
		return nil, k.fail
	}
	return k.versions[len(k.versions)-1], nil
}
func (k *memKeys) At(v int) (Key, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.fail != nil {
		return nil, k.fail
	}
	if v < 1 || v > len(k.versions) {
		return nil, errors.New("no such version")
	}
	return k.versions[v-1], nil
}

func (m *memKey) Version() int { return m.v }
func (m *memKey) SealGCM(p, aad []byte) ([]byte, error) {
	n := make([]byte, 12)
	rand.Read(n)
	return m.gcm.Seal(n, n, p, aad), nil
}
func (m *memKey) OpenGCM(s, aad []byte) ([]byte, error) {
	if len(s) < 12 {
		return nil, errors.New("short")
	}
	return m.gcm.Open(nil, s[:12], s[12:], aad)
}

func newStore(t *testing.T) (*Store, *memKeys) {
	t.Helper()
	keys := newMemKeys(t, "escrow-kek")
	s, err := Open(filepath.Join(t.TempDir(), "sealed"), keys)
	if err != nil {
		t.Fatal(err)
	}
	return s, keys
}

func TestPutGetVersions(t *testing.T) {
	s, _ := newStore(t)
	id := []byte("terminal-0001")
	for i := 1; i <= 3; i++ {
		n, err := s.Put("cosign-share", id, []byte(fmt.Sprintf("secret-%d", i)))
		if err != nil || n != i {
			t.Fatalf("put %d: n=%d err=%v", i, n, err)
		}
	}
	got, n, err := s.Get("cosign-share", id)
	if err != nil || n != 3 || string(got) != "secret-3" {
		t.Fatalf("get: %q %d %v", got, n, err)
	}
	old, err := s.GetVersion("cosign-share", id, 1)
	if err != nil || string(old) != "secret-1" {
		t.Fatalf("get v1: %q %v", old, err)
	}
	infos, err := s.Versions("cosign-share", id)
	if err != nil || len(infos) != 3 || infos[2].Version != 3 || infos[0].KeyVersion != 1 {
		t.Fatalf("versions: %+v %v", infos, err)
	}
	if _, _, err := s.Get("cosign-share", []byte("other")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing id: %v", err)
	}
	if _, _, err := s.Get("escrow", id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("same id of another kind: %v", err)
	}
	if _, err := s.GetVersion("cosign-share", id, 9); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing version: %v", err)
	}
	ids, err := s.List("cosign-share")
	if err != nil || len(ids) != 1 || !bytes.Equal(ids[0], id) {
		t.Fatalf("list: %q %v", ids, err)
	}
	if err := s.Destroy("cosign-share", id); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Get("cosign-share", id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after destroy: %v", err)
	}
	if err := s.Destroy("cosign-share", id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("destroy twice: %v", err)
	}
}

func TestRotateAndRewrap(t *testing.T) {
	s, keys := newStore(t)
	id := []byte("t1")
	s.Put("escrow", id, []byte("enc-key-1"))
	keys.rotate(t)
	s.Put("escrow", id, []byte("enc-key-2"))
	infos, _ := s.Versions("escrow", id)
	if infos[0].KeyVersion != 1 || infos[1].KeyVersion != 2 {
		t.Fatalf("key versions: %+v", infos)
	}
	if b, err := s.GetVersion("escrow", id, 1); err != nil || string(b) != "enc-key-1" {
		t.Fatalf("old version under old key: %q %v", b, err)
	}
	n, err := s.Rewrap("escrow", id)
	if err != nil || n != 1 {
		t.Fatalf("rewrap: %d %v", n, err)
	}
	infos, _ = s.Versions("escrow", id)
	if infos[0].KeyVersion != 2 {
		t.Fatalf("after rewrap: %+v", infos)
	}
	if b, err := s.GetVersion("escrow", id, 1); err != nil || string(b) != "enc-key-1" {
		t.Fatalf("rewrapped version: %q %v", b, err)
	}
}

// Attacks by someone who can write the directory: every one is refused, none yields a secret.
func TestAttackWritableDisk(t *testing.T) {
	type attack struct {
		name string
		edit func(t *testing.T, s *Store, victim, attacker []byte)
		want error
	}
	recPath := func(s *Store, id []byte) string { return s.path("cosign-share", id) }
	editJSON := func(t *testing.T, path string, f func(r *record)) {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var r record
		if err := json.Unmarshal(data, &r); err != nil {
			t.Fatal(err)
		}
		f(&r)
		data, _ = json.Marshal(r)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	attacks := []attack{
		{"attacker's record copied over the victim's", func(t *testing.T, s *Store, v, a []byte) {
			data, _ := os.ReadFile(recPath(s, a))
			os.WriteFile(recPath(s, v), data, 0o600)
		}, ErrIntegrity},
		{"attacker's record renamed to the victim and its id field rewritten", func(t *testing.T, s *Store, v, a []byte) {
			data, _ := os.ReadFile(recPath(s, a))
			os.WriteFile(recPath(s, v), data, 0o600)
			editJSON(t, recPath(s, v), func(r *record) { r.ID = recordID(v) })
		}, ErrIntegrity},
		{"old version relabelled as the newest", func(t *testing.T, s *Store, v, a []byte) {
			editJSON(t, recPath(s, v), func(r *record) { r.Versions[0].N = 2; r.Versions = r.Versions[:1] })
		}, ErrIntegrity},
		{"key version rewritten", func(t *testing.T, s *Store, v, a []byte) {
			editJSON(t, recPath(s, v), func(r *record) { r.Versions[1].KeyVersion = 1 })
		}, ErrIntegrity},
		{"sealed bytes flipped", func(t *testing.T, s *Store, v, a []byte) {
			editJSON(t, recPath(s, v), func(r *record) {
				b := []byte(r.Versions[1].Sealed)
				b[5] ^= 1
				if b[5] == '=' || b[5] == '/' || b[5] == '+' {
					b[5] = 'A'
				}
				r.Versions[1].Sealed = string(b)
			})
		}, ErrIntegrity},
		{"kind rewritten", func(t *testing.T, s *Store, v, a []byte) {
			editJSON(t, recPath(s, v), func(r *record) { r.Kind = "escrow" })
		}, ErrIntegrity},
		{"not JSON", func(t *testing.T, s *Store, v, a []byte) {
			os.WriteFile(recPath(s, v), []byte("{\"format\":1,"), 0o600)
		}, ErrIntegrity},
		{"record deleted", func(t *testing.T, s *Store, v, a []byte) {
			os.Remove(recPath(s, v))
		}, ErrNotFound},
	}
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			s, keys := newStore(t)
			victim, attacker := []byte("victim"), []byte("attacker")
			s.Put("cosign-share", victim, []byte("victim-secret-1"))
			keys.rotate(t)
			s.Put("cosign-share", victim, []byte("victim-secret-2"))
			s.Put("cosign-share", attacker, []byte("attacker-secret"))
			a.edit(t, s, victim, attacker)
			got, _, err := s.Get("cosign-share", victim)
			if !errors.Is(err, a.want) || got != nil {
				t.Fatalf("got %q, %v; want %v", got, err, a.want)
			}
		})
	}
}

func recordID(id []byte) string { return base64.StdEncoding.EncodeToString(id) }

func TestRefusals(t *testing.T) {
	s, keys := newStore(t)
	cases := []struct {
		name   string
		kind   string
		id     []byte
		secret []byte
	}{
		{"empty kind", "", []byte("a"), []byte("x")},
		{"kind with slash", "../etc", []byte("a"), []byte("x")},
		{"upper-case kind", "Escrow", []byte("a"), []byte("x")},
		{"empty id", "escrow", nil, []byte("x")},
		{"long id", "escrow", bytes.Repeat([]byte("a"), MaxIDSize+1), []byte("x")},
		{"empty secret", "escrow", []byte("a"), nil},
		{"huge secret", "escrow", []byte("a"), make([]byte, MaxSecretSize+1)},
	}
	for _, c := range cases {
		if _, err := s.Put(c.kind, c.id, c.secret); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	keys.fail = errors.New("token unavailable")
	if _, err := s.Put("escrow", []byte("a"), []byte("x")); !errors.Is(err, ErrKey) {
		t.Errorf("vault down on put: %v", err)
	}
	keys.fail = nil
	s.Put("escrow", []byte("a"), []byte("x"))
	keys.fail = errors.New("token unavailable")
	if b, _, err := s.Get("escrow", []byte("a")); !errors.Is(err, ErrKey) || b != nil {
		t.Errorf("vault down on get: %q %v", b, err)
	}
	keys.fail = nil
	for i := 2; i <= MaxVersions; i++ {
		if _, err := s.Put("escrow", []byte("a"), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Put("escrow", []byte("a"), []byte("x")); !errors.Is(err, ErrFull) {
		t.Errorf("past MaxVersions: %v", err)
	}
}

func TestOpenRefusesSharedDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "d")
	os.Mkdir(dir, 0o700)
	os.Chmod(dir, 0o777)
	if _, err := Open(dir, newMemKeys(t, "k")); !errors.Is(err, ErrStorage) {
		t.Fatalf("world-writable dir: %v", err)
	}
	s, err := Open(filepath.Join(t.TempDir(), "new"), newMemKeys(t, "k"))
	if err != nil {
		t.Fatal(err)
	}
	s.Put("k", []byte("a"), []byte("x"))
	fi, _ := os.Stat(s.path("k", []byte("a")))
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("record mode %o", fi.Mode().Perm())
	}
}

// A store opened with another sealing key name refuses records sealed under the first.
func TestAnotherKeyNameRefused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "d")
	a, _ := Open(dir, newMemKeys(t, "kek-a"))
	a.Put("escrow", []byte("t"), []byte("x"))
	b, _ := Open(dir, newMemKeys(t, "kek-b"))
	if _, _, err := b.Get("escrow", []byte("t")); !errors.Is(err, ErrIntegrity) {
		t.Fatalf("other key name: %v", err)
	}
}

func TestConcurrentWritersKeepEveryVersion(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "d")
	keys := newMemKeys(t, "k")
	s1, _ := Open(dir, keys)
	s2, _ := Open(dir, keys) // a second instance sharing the directory
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			s := s1
			if i%2 == 1 {
				s = s2
			}
			if _, err := s.Put("escrow", []byte("t"), []byte(fmt.Sprint(i))); err != nil {
				t.Error(err)
			}
		}(i)
	}
	wg.Wait()
	infos, err := s1.Versions("escrow", []byte("t"))
	if err != nil || len(infos) != 20 {
		t.Fatalf("versions after concurrent puts: %d %v", len(infos), err)
	}
}

// The vault adapter: a file SM4 key in the vault seals and opens.
func TestVaultKey(t *testing.T) {
	dir := t.TempDir()
	raw := make([]byte, 16)
	rand.Read(raw)
	path := filepath.Join(dir, "kek.key")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := keyvault.Open(keyvault.Config{Keys: []keyvault.KeyConfig{{Name: "escrow-kek", Type: keyvault.KeyTypeSM4, Ref: "file:" + path}}})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	s, err := Open(filepath.Join(dir, "sealed"), VaultKey(v, "escrow-kek"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put("escrow", []byte("t"), []byte("enc-key")); err != nil {
		t.Fatal(err)
	}
	got, n, err := s.Get("escrow", []byte("t"))
	if err != nil || n != 1 || string(got) != "enc-key" {
		t.Fatalf("%q %d %v", got, n, err)
	}
	if _, _, err := s.Get("escrow", []byte("u")); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	s2, _ := Open(filepath.Join(dir, "sealed"), VaultKey(v, "missing"))
	if _, err := s2.Put("escrow", []byte("t"), []byte("x")); !errors.Is(err, ErrKey) {
		t.Fatalf("missing vault key: %v", err)
	}
}

func FuzzRecord(f *testing.F) {
	s, _ := Open(filepath.Join(f.TempDir(), "d"), newMemKeys(f, "k"))
	s.Put("escrow", []byte("t"), []byte("x"))
	seed, _ := os.ReadFile(s.path("escrow", []byte("t")))
	f.Add(seed)
	f.Add([]byte(`{"format":1,"kind":"escrow","id":"dA==","key":"k","versions":[{"n":1,"key_version":99,"sealed":"AAAA"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := s.path("escrow", []byte("t"))
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		got, _, err := s.Get("escrow", []byte("t"))
		if err == nil && string(got) != "x" {
			t.Fatalf("a forged record opened to %q", got)
		}
		s.Versions("escrow", []byte("t"))
		s.List("escrow")
	})
}

func TestDestroyVersionAndGetAll(t *testing.T) {
	s, _ := newStore(t)
	id := []byte("terminal-0002")
	for i := 1; i <= 3; i++ {
		if _, err := s.Put("cosign-d2", id, []byte(fmt.Sprintf("share-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DestroyVersion("cosign-d2", id, 2); err != nil {
		t.Fatal(err)
	}
	all, err := s.GetAll("cosign-d2", id)
	if err != nil || len(all) != 2 || all[0].Version != 1 || all[1].Version != 3 ||
		string(all[0].Secret) != "share-1" || string(all[1].Secret) != "share-3" {
		t.Fatalf("after destroying v2: %+v %v", all, err)
	}
	if _, err := s.GetVersion("cosign-d2", id, 2); !errors.Is(err, ErrNotFound) {
		t.Fatalf("destroyed version still opens: %v", err)
	}
	// the kept versions still open under their own numbers (seals bound to n are unchanged)
	if v3, err := s.GetVersion("cosign-d2", id, 3); err != nil || string(v3) != "share-3" {
		t.Fatalf("v3: %q %v", v3, err)
	}
	if err := s.DestroyVersion("cosign-d2", id, 2); !errors.Is(err, ErrNotFound) {
		t.Fatalf("destroy a missing version: %v", err)
	}
	if err := s.DestroyVersion("cosign-d2", id, 0); !errors.Is(err, ErrInvalidInput) {
		t.Fatalf("version 0: %v", err)
	}
	if err := s.DestroyVersion("cosign-d2", id, 1); err != nil {
		t.Fatal(err)
	}
	if err := s.DestroyVersion("cosign-d2", id, 3); !errors.Is(err, ErrInvalidInput) {
		t.Fatalf("destroying the last version must be refused: %v", err)
	}
	if got, n, err := s.Get("cosign-d2", id); err != nil || n != 3 || string(got) != "share-3" {
		t.Fatalf("get after: %q %d %v", got, n, err)
	}
	if err := s.DestroyVersion("cosign-d2", []byte("nobody"), 1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing record: %v", err)
	}
	if _, err := os.Stat(s.path("cosign-d2", []byte("nobody"))); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("DestroyVersion of a missing record created a file: %v", err)
	}
	if _, err := s.GetAll("cosign-d2", []byte("nobody")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetAll missing: %v", err)
	}
}

// A version moved to another number in the file (the attacker renumbers the pending share as the
// current one) no longer opens: GetAll fails as a whole.
func TestAttackGetAllRenumbered(t *testing.T) {
	s, _ := newStore(t)
	id := []byte("terminal-0003")
	s.Put("cosign-d2", id, []byte("old"))
	s.Put("cosign-d2", id, []byte("new"))
	path := s.path("cosign-d2", id)
	r, err := s.readFile(path)
	if err != nil {
		t.Fatal(err)
	}
	r.Versions = r.Versions[1:]
	r.Versions[0].N = 1
	data, _ := json.Marshal(r)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetAll("cosign-d2", id); !errors.Is(err, ErrIntegrity) {
		t.Fatalf("renumbered version: %v", err)
	}
}

// TestCreateExclusive: of many creators of one record on two stores sharing the directory
// (two instances), exactly one succeeds; the others get ErrExists and write nothing.
func TestCreateExclusive(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "d")
	keys := newMemKeys(t, "k")
	s1, _ := Open(dir, keys)
	s2, _ := Open(dir, keys)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var won []string
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			s := []*Store{s1, s2}[i%2]
			switch err := s.Create("cosign-d2", []byte("term-1"), []byte(fmt.Sprint("share ", i))); {
			case err == nil:
				mu.Lock()
				won = append(won, fmt.Sprint("share ", i))
				mu.Unlock()
			case !errors.Is(err, ErrExists):
				t.Error(err)
			}
		}(i)
	}
	wg.Wait()
	vs, err := s2.GetAll("cosign-d2", []byte("term-1"))
	if err != nil || len(won) != 1 || len(vs) != 1 || vs[0].Version != 1 || string(vs[0].Secret) != won[0] {
		t.Fatalf("winners %v, record %v %v: want one creator and its secret as the only version", won, vs, err)
	}
}

// TestPutIfDestroyVersionIf: the conditional writes see the record under its lock: a record
// destroyed since the caller read it is not re-created (ErrNotFound), a record another writer
// changed is left alone (ErrConflict), an unchanged one is written.
func TestPutIfDestroyVersionIf(t *testing.T) {
	s, _ := newStore(t)
	kind, id := "cosign-d2", []byte("term-2")
	if err := s.Create(kind, id, []byte("v1")); err != nil {
		t.Fatal(err)
	}
	is := func(want ...string) func([]Version) bool {
		return func(vs []Version) bool {
			if len(vs) != len(want) {
				return false
			}
			for i := range vs {
				if string(vs[i].Secret) != want[i] {
					return false
				}
			}
			return true
		}
	}
	if _, err := s.PutIf(kind, id, []byte("v2"), is("other")); !errors.Is(err, ErrConflict) {
		t.Fatalf("PutIf on a changed record: %v", err)
	}
	if n, err := s.PutIf(kind, id, []byte("v2"), is("v1")); err != nil || n != 2 {
		t.Fatalf("PutIf on the expected record: %d %v", n, err)
	}
	if err := s.DestroyVersionIf(kind, id, 1, is("v1")); !errors.Is(err, ErrConflict) {
		t.Fatalf("DestroyVersionIf on a changed record: %v", err)
	}
	if err := s.DestroyVersionIf(kind, id, 1, is("v1", "v2")); err != nil {
		t.Fatal(err)
	}
	if err := s.Destroy(kind, id); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutIf(kind, id, []byte("v3"), func([]Version) bool { return true }); !errors.Is(err, ErrNotFound) {
		t.Fatalf("PutIf after Destroy: %v, want ErrNotFound", err)
	}
	if err := s.DestroyVersionIf(kind, id, 2, func([]Version) bool { return true }); !errors.Is(err, ErrNotFound) {
		t.Fatalf("DestroyVersionIf after Destroy: %v", err)
	}
	if _, err := s.GetAll(kind, id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a conditional write re-created a destroyed record: %v", err)
	}
	if err := s.Create(kind, id, []byte("again")); err != nil {
		t.Fatalf("Create after Destroy: %v", err)
	}
	if err := s.Create(kind, id, []byte("twice")); !errors.Is(err, ErrExists) {
		t.Fatalf("second Create: %v", err)
	}
}
