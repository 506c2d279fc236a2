package testenv

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// SoftHSMTokenDir returns the directory under tokdir (SoftHSM2's directories.tokendir) of the
// token whose serial is serial.
func SoftHSMTokenDir(t testing.TB, tokdir, serial string) string {
	t.Helper()
	dirs, _ := filepath.Glob(filepath.Join(tokdir, "*"))
	for _, d := range dirs {
		if b, err := os.ReadFile(filepath.Join(d, "token.object")); err == nil && bytes.Contains(b, []byte(serial)) {
			return d
		}
	}
	t.Fatalf("no token directory under %s holds serial %s", tokdir, serial)
	return ""
}

// MoveSoftHSMObjects moves the key objects of the SoftHSM2 token directory dir (every *.object
// and *.lock but the token's own) to aside, or back from aside when remove is false, and bumps
// the token's generation counter, which is how SoftHSM2 tells the processes using the token
// that its object store changed: their keys are gone (a wiped or replaced HSM), or back.
func MoveSoftHSMObjects(t testing.TB, dir, aside string, remove bool) {
	t.Helper()
	from, to := dir, aside
	if !remove {
		from, to = aside, dir
	}
	files, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range files {
		name := f.Name()
		if strings.HasPrefix(name, "token.") || (!strings.HasSuffix(name, ".object") && !strings.HasSuffix(name, ".lock")) {
			continue
		}
		if err := os.Rename(filepath.Join(from, name), filepath.Join(to, name)); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n == 0 {
		t.Fatalf("no key objects to move from %s", from)
	}
	genPath := filepath.Join(dir, "generation")
	gen, err := os.ReadFile(genPath)
	if err != nil || len(gen) != 8 {
		t.Fatalf("SoftHSM2 generation file: %d bytes, %v", len(gen), err)
	}
	binary.BigEndian.PutUint64(gen, binary.BigEndian.Uint64(gen)+1)
	if err := os.WriteFile(genPath, gen, 0o600); err != nil {
		t.Fatal(err)
	}
}
