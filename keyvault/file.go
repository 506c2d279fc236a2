package keyvault

import (
	"encoding/hex"
	"encoding/pem"
	"errors"
	"io"
	"os"
	"strings"

	"github.com/emmansun/gmsm/sm2"

	"github.com/gmgate/gmgate/pki"
)

// maxKeyFile bounds key and certificate files.
const maxKeyFile = 1 << 20

// PEM block type used for SM4 key files of the development file backend.
const pemTypeSM4 = "SM4 KEY"

func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, errorf(ErrKeyNotFound, "file %s does not exist", path)
		}
		return nil, errorf(ErrConfig, "cannot open %s", path)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, errorf(ErrConfig, "cannot read %s", path)
	}
	if len(b) > maxKeyFile {
		zero(b)
		return nil, errorf(ErrInvalidInput, "%s is larger than %d bytes", path, maxKeyFile)
	}
	return b, nil
}

// ParseSM2PrivateKeyPEM parses an SM2 private key from PEM: PKCS#8 ("PRIVATE KEY"), encrypted
// PKCS#8 ("ENCRYPTED PRIVATE KEY", needs password) or SEC 1 ("EC PRIVATE KEY"), using the
// project's pki.ParsePrivateKeyPEM. The error never includes key bytes or the password.
func ParseSM2PrivateKeyPEM(data, password []byte) (*sm2.PrivateKey, error) {
	k, err := pki.ParsePrivateKeyPEM(data, password)
	if err != nil {
		switch {
		case errors.Is(err, pki.ErrBadPassword):
			return nil, errorf(ErrPassword, "encrypted PKCS#8 key: wrong or missing password (password_env / password_file)")
		case errors.Is(err, pki.ErrNotSM2):
			return nil, errorf(ErrWrongKeyType, "key is not an SM2 private key")
		}
		return nil, errorf(ErrInvalidInput, "%v", err)
	}
	return k, nil
}

// ParseSM4Key parses SM4 key material: 16 raw bytes, 32 hex digits (optionally with
// whitespace), or a PEM block of type "SM4 KEY" holding 16 bytes.
func ParseSM4Key(data []byte) ([]byte, error) {
	if len(data) == SM4KeySize {
		return append([]byte(nil), data...), nil
	}
	if block, _ := pem.Decode(data); block != nil {
		defer zero(block.Bytes)
		if block.Type != pemTypeSM4 || len(block.Bytes) != SM4KeySize {
			return nil, errorf(ErrInvalidInput, "PEM SM4 key must be type %q with 16 bytes", pemTypeSM4)
		}
		return append([]byte(nil), block.Bytes...), nil
	}
	s := strings.Join(strings.Fields(string(data)), "")
	if len(s) == 2*SM4KeySize {
		if b, err := hex.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, errorf(ErrInvalidInput, "SM4 key must be 16 bytes, 32 hex digits or a %q PEM block", pemTypeSM4)
}

// loadFileKey loads the single version (1) of a file-backed key.
func (v *Vault) loadFileKey(e *keyEntry) error {
	data, err := readBounded(e.ref.Path)
	if err != nil {
		return opErr("load", e.cfg.Name, "file", err, nil)
	}
	defer zero(data)
	v.log.Warn("keyvault: DEVELOPMENT ONLY: key loaded from a plaintext file; use a PKCS#11 token in production",
		"key", e.cfg.Name, "path", e.ref.Path)
	switch e.cfg.Type {
	case KeyTypeSM2:
		pw, err := readSecret(&v.opts, "key "+e.cfg.Name+" password", e.cfg.PasswordEnv, e.cfg.PasswordFile)
		if err != nil {
			return opErr("load", e.cfg.Name, "file", ErrPassword, err)
		}
		defer zero(pw)
		priv, err := ParseSM2PrivateKeyPEM(data, pw)
		if err != nil {
			return opErr("load", e.cfg.Name, "file", err, nil)
		}
		k, err := newSoftSM2Key(e.cfg.Name, 1, "file", v.opts.observer, priv, e.uid)
		if err != nil {
			return opErr("load", e.cfg.Name, "file", err, nil)
		}
		e.setVersion(1, &loadedVersion{sm2: k, token: "file"})
	case KeyTypeSM4:
		kb, err := ParseSM4Key(data)
		if err != nil {
			return opErr("load", e.cfg.Name, "file", err, nil)
		}
		defer zero(kb)
		k, err := newSM4Key(e.cfg.Name, 1, "file", v.opts.observer, kb)
		if err != nil {
			return opErr("load", e.cfg.Name, "file", err, nil)
		}
		e.setVersion(1, &loadedVersion{sm4: k, token: "file"})
	}
	return nil
}

// writeFileKey creates a new key file (mode 0600, never overwriting).
func writeFileKey(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if os.IsExist(err) {
			return errorf(ErrExists, "file %s already exists", path)
		}
		return errorf(ErrConfig, "cannot create %s", path)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return errorf(ErrConfig, "cannot write %s", path)
	}
	return f.Close()
}
