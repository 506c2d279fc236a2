package sealstore

import (
	"fmt"

	"github.com/gmgate/gmgate/keyvault"
)

// VaultKey is the sealing key named name in the vault: its current version seals, every version
// the vault still holds opens. The key must be an SM4 key (type sm4 in the vault configuration).
func VaultKey(v *keyvault.Vault, name string) Keys {
	return vaultKeys{v: v, name: name}
}

type vaultKeys struct {
	v    *keyvault.Vault
	name string
}

func (k vaultKeys) Name() string { return k.name }

func (k vaultKeys) Current() (Key, error) {
	key, err := k.v.SM4(k.name)
	if err != nil {
		return nil, err
	}
	return key, nil
}

func (k vaultKeys) At(version int) (Key, error) {
	key, err := k.v.SM4(fmt.Sprintf("%s@%d", k.name, version))
	if err != nil {
		return nil, err
	}
	return key, nil
}
