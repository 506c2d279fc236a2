package keyvault

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// tokenFacts are the token and slot facts a key reference may name, read when the token is found.
type tokenFacts struct {
	manufacturer, model               string
	slot                              uint
	slotDescription, slotManufacturer string
}

// configMismatch reports why the reference cannot select the configured token, judging only
// what the configuration says (so it also works for a token that is absent): the token name or
// label, the serial and the module. "" means it may select it.
func (r Ref) configMismatch(tc TokenConfig) string {
	if r.Token != "" && r.Token != tc.Name && tc.TokenLabel != "" && r.Token != tc.TokenLabel {
		return fmt.Sprintf("token=%q, but the token is configured with token_label %q", r.Token, tc.TokenLabel)
	}
	if r.Serial != "" && tc.TokenSerial != "" && r.Serial != tc.TokenSerial {
		return fmt.Sprintf("serial=%q, but the token is configured with token_serial %q", r.Serial, tc.TokenSerial)
	}
	if why := r.moduleMismatch(tc.Module); why != "" {
		return why
	}
	return ""
}

// configSelects reports whether the configuration alone shows that the reference selects the
// token (used to give a pin-source's PIN only to tokens the reference certainly names).
func (r Ref) configSelects(tc TokenConfig) bool {
	if r.configMismatch(tc) != "" {
		return false
	}
	if r.Token != "" && r.Token != tc.Name && r.Token != tc.TokenLabel {
		return false
	}
	if r.Serial != "" && r.Serial != tc.TokenSerial {
		return false
	}
	return true
}

// moduleMismatch compares module-path and module-name with the configured module path.
func (r Ref) moduleMismatch(module string) string {
	if r.ModulePath != "" && !sameModulePath(r.ModulePath, module) {
		return fmt.Sprintf("module-path=%s, but the token's module is %s", r.ModulePath, module)
	}
	if r.ModuleName != "" && moduleName(module) != r.ModuleName {
		return fmt.Sprintf("module-name=%s, but the token's module %s is named %s", r.ModuleName, module, moduleName(module))
	}
	return ""
}

// sameModulePath: the module-path is the configured module (same path or same file) or the
// directory that holds it.
func sameModulePath(refPath, module string) bool {
	module = filepath.Clean(module)
	if refPath == module || refPath == filepath.Dir(module) {
		return true
	}
	a, errA := os.Stat(refPath)
	b, errB := os.Stat(module)
	if errA != nil || errB != nil {
		return false
	}
	if a.IsDir() {
		d, err := os.Stat(filepath.Dir(module))
		return err == nil && os.SameFile(a, d)
	}
	return os.SameFile(a, b)
}

// tokenMismatch reports why the reference does not select the open token ("" if it does): the
// configuration checks plus the facts the token, its slot and its library report.
func (r Ref) tokenMismatch(t *token) string {
	if why := r.configMismatch(t.cfg); why != "" {
		return why
	}
	t.mu.Lock()
	label, serial, f := t.label, t.serial, t.found
	t.mu.Unlock()
	info := t.mod.info
	switch {
	case r.Token != "" && r.Token != label && r.Token != t.cfg.TokenLabel && r.Token != t.name:
		return fmt.Sprintf("token=%q, but the token's label is %q", r.Token, label)
	case r.Serial != "" && r.Serial != serial:
		return fmt.Sprintf("serial=%q, but the token's serial is %q", r.Serial, serial)
	case r.Manufacturer != "" && r.Manufacturer != f.manufacturer:
		return fmt.Sprintf("manufacturer=%q, but the token's is %q", r.Manufacturer, f.manufacturer)
	case r.Model != "" && r.Model != f.model:
		return fmt.Sprintf("model=%q, but the token's is %q", r.Model, f.model)
	case r.SlotID != "" && r.SlotID != strconv.FormatUint(uint64(f.slot), 10):
		return fmt.Sprintf("slot-id=%s, but the token is in slot %d", r.SlotID, f.slot)
	case r.SlotDescription != "" && r.SlotDescription != f.slotDescription:
		return fmt.Sprintf("slot-description=%q, but the slot's is %q", r.SlotDescription, f.slotDescription)
	case r.SlotManufacturer != "" && r.SlotManufacturer != f.slotManufacturer:
		return fmt.Sprintf("slot-manufacturer=%q, but the slot's is %q", r.SlotManufacturer, f.slotManufacturer)
	case r.LibraryManufacturer != "" && r.LibraryManufacturer != info.ManufacturerID:
		return fmt.Sprintf("library-manufacturer=%q, but the module's is %q", r.LibraryManufacturer, info.ManufacturerID)
	case r.LibraryDescription != "" && r.LibraryDescription != info.LibraryDescription:
		return fmt.Sprintf("library-description=%q, but the module's is %q", r.LibraryDescription, info.LibraryDescription)
	}
	if r.LibraryVersion != "" {
		ma, mi, _ := parseLibraryVersion(r.LibraryVersion)
		if ma != info.LibraryVersion.Major || mi != info.LibraryVersion.Minor {
			return fmt.Sprintf("library-version=%s, but the module's is %d.%d", r.LibraryVersion, info.LibraryVersion.Major, info.LibraryVersion.Minor)
		}
	}
	return ""
}

// checkObjectAttrs refuses id= and type= where the token's storage of this key cannot honour
// them. Wrapped keys (every SM4 key, and SM2 keys on wrapped tokens) are CKO_DATA blobs
// labelled object@N, which have no CKA_ID; native and token_decrypt SM2 keys are
// CKO_PRIVATE_KEY objects (with their CKO_PUBLIC_KEY), selectable by label and/or CKA_ID.
func (r Ref) checkObjectAttrs(kc KeyConfig, t *token) error {
	wrapped := kc.Type == KeyTypeSM4 || (!kc.TokenDecrypt && t.native == nil)
	if wrapped && len(r.ID) > 0 {
		return errorf(ErrBadReference, "id= selects a key object by CKA_ID, but on token %s this key is stored wrapped (CKO_DATA objects labelled object@N, which have no CKA_ID): use object=", t.name)
	}
	switch r.Type {
	case "":
	case "public", "cert":
		return errorf(ErrBadReference, "type=%s names a public object; a vault key is the private key (type=private, or secret-key for SM4)", r.Type)
	case "private":
		if kc.Type != KeyTypeSM2 {
			return errorf(ErrBadReference, "type=private names a private key, but the key is %s (type=secret-key)", kc.Type)
		}
	case "secret-key":
		if kc.Type != KeyTypeSM4 {
			return errorf(ErrBadReference, "type=secret-key names a secret key, but the key is %s (type=private)", kc.Type)
		}
	case "data":
		if !wrapped {
			return errorf(ErrBadReference, "type=data: on token %s the key is a CKO_PRIVATE_KEY object (type=private)", t.name)
		}
	}
	return nil
}

// applyPINSources gives each token without pin_env/pin_file the PIN file that the pin-source of
// the key references selecting it names, and refuses a pin-source that contradicts a token's
// configured PIN. It returns the token configurations to open (cfg is not modified).
func applyPINSources(cfg Config) ([]TokenConfig, error) {
	tokens := append([]TokenConfig(nil), cfg.Tokens...)
	from := map[int]string{} // token index -> key whose pin-source set its PIN file
	for _, kc := range cfg.Keys {
		ref, err := ParseRef(kc.Ref)
		if err != nil || ref.PINSource == "" {
			continue // a bad reference is reported with its key later
		}
		var targets []int
		for i, tc := range tokens {
			if len(kc.Tokens) > 0 {
				for _, n := range kc.Tokens {
					if n == tc.Name {
						targets = append(targets, i)
					}
				}
			} else if ref.configSelects(tc) {
				targets = append(targets, i)
			}
		}
		if len(targets) == 0 {
			return nil, opErr("config", kc.Name, "", ErrConfig, errorf(ErrConfig,
				"pin-source: the configuration shows no token that the reference selects (name it in the key's tokens, or match its token_label, token_serial or name)"))
		}
		for _, i := range targets {
			tc := &tokens[i]
			switch {
			case tc.PINEnv != "":
				return nil, opErr("config", kc.Name, tc.Name, ErrConfig, errorf(ErrConfig,
					"pin-source %s contradicts the token's pin_env %s: configure the PIN once", ref.PINSource, tc.PINEnv))
			case tc.PINFile != "" && filepath.Clean(tc.PINFile) != ref.PINSource:
				if k, ok := from[i]; ok {
					return nil, opErr("config", kc.Name, tc.Name, ErrConfig, errorf(ErrConfig,
						"pin-source %s contradicts the pin-source %s of key %s for the same token", ref.PINSource, tc.PINFile, k))
				}
				return nil, opErr("config", kc.Name, tc.Name, ErrConfig, errorf(ErrConfig,
					"pin-source %s contradicts the token's pin_file %s", ref.PINSource, tc.PINFile))
			case tc.PINFile == "":
				tc.PINFile = ref.PINSource
				from[i] = kc.Name
			}
		}
	}
	return tokens, nil
}

// objSel is the selection of one version's private key: its label and, with id=, its CKA_ID;
// with id= alone, the CKA_ID only.
func (r Ref) objSel(label string) objSel {
	return objSel{label: label, id: r.ID, byID: r.Object == ""}
}
