//go:build !cgo

package p11

import (
	"errors"
	"fmt"
)

// Available reports whether PKCS#11 modules can be loaded: not in a build without cgo.
const Available = false

// errNoCgo is what every Ctx method returns; New never returns a Ctx, so none is reached.
var errNoCgo = errors.New("pkcs11: built without cgo (CGO_ENABLED=0): PKCS#11 modules cannot be loaded")

// Ctx stands for a loaded PKCS#11 module; without cgo none can exist.
type Ctx struct{}

// New returns nil: without cgo no PKCS#11 module can be loaded.
func New(module string) *Ctx { return nil }

// Error is a PKCS#11 return value (CKR_*), as in miekg/pkcs11.
type Error uint

func (e Error) Error() string { return fmt.Sprintf("pkcs11: 0x%X", uint(e)) }

type (
	SessionHandle uint
	ObjectHandle  uint
)

type Version struct{ Major, Minor byte }

type Info struct {
	CryptokiVersion    Version
	ManufacturerID     string
	Flags              uint
	LibraryDescription string
	LibraryVersion     Version
}

type SlotInfo struct {
	SlotDescription string
	ManufacturerID  string
	Flags           uint
	HardwareVersion Version
	FirmwareVersion Version
}

type TokenInfo struct {
	Label              string
	ManufacturerID     string
	Model              string
	SerialNumber       string
	Flags              uint
	MaxSessionCount    uint
	SessionCount       uint
	MaxRwSessionCount  uint
	RwSessionCount     uint
	MaxPinLen          uint
	MinPinLen          uint
	TotalPublicMemory  uint
	FreePublicMemory   uint
	TotalPrivateMemory uint
	FreePrivateMemory  uint
	HardwareVersion    Version
	FirmwareVersion    Version
	UTCTime            string
}

type SessionInfo struct {
	SlotID      uint
	State       uint
	Flags       uint
	DeviceError uint
}

type Attribute struct {
	Type  uint
	Value []byte
}

// NewAttribute records typ and, for byte strings, strings and booleans, the value; other values
// only ever reach a token, which this build cannot load.
func NewAttribute(typ uint, x any) *Attribute {
	a := &Attribute{Type: typ}
	switch v := x.(type) {
	case []byte:
		a.Value = v
	case string:
		a.Value = []byte(v)
	case bool:
		a.Value = []byte{0}
		if v {
			a.Value[0] = 1
		}
	}
	return a
}

type Mechanism struct {
	Mechanism uint
	Parameter []byte
}

func NewMechanism(mech uint, x any) *Mechanism {
	m := &Mechanism{Mechanism: mech}
	if p, ok := x.([]byte); ok {
		m.Parameter = p
	}
	return m
}

type GCMParams struct {
	iv, aad []byte
	tagSize int
}

func NewGCMParams(iv, aad []byte, tagSize int) *GCMParams {
	return &GCMParams{iv: iv, aad: aad, tagSize: tagSize}
}

func (p *GCMParams) IV() []byte { return p.iv }
func (p *GCMParams) Free()      {}

type ECDH1DeriveParams struct {
	KDF           uint
	SharedData    []byte
	PublicKeyData []byte
}

func NewECDH1DeriveParams(kdf uint, sharedData, publicKeyData []byte) *ECDH1DeriveParams {
	return &ECDH1DeriveParams{KDF: kdf, SharedData: sharedData, PublicKeyData: publicKeyData}
}

func (c *Ctx) Initialize() error                                     { return errNoCgo }
func (c *Ctx) Finalize() error                                       { return errNoCgo }
func (c *Ctx) Destroy()                                              {}
func (c *Ctx) GetInfo() (Info, error)                                { return Info{}, errNoCgo }
func (c *Ctx) GetSlotList(tokenPresent bool) ([]uint, error)         { return nil, errNoCgo }
func (c *Ctx) GetSlotInfo(slotID uint) (SlotInfo, error)             { return SlotInfo{}, errNoCgo }
func (c *Ctx) GetTokenInfo(slotID uint) (TokenInfo, error)           { return TokenInfo{}, errNoCgo }
func (c *Ctx) GetMechanismList(slotID uint) ([]*Mechanism, error)    { return nil, errNoCgo }
func (c *Ctx) OpenSession(slotID, flags uint) (SessionHandle, error) { return 0, errNoCgo }
func (c *Ctx) CloseSession(sh SessionHandle) error                   { return errNoCgo }
func (c *Ctx) CloseAllSessions(slotID uint) error                    { return errNoCgo }
func (c *Ctx) GetSessionInfo(sh SessionHandle) (SessionInfo, error) {
	return SessionInfo{}, errNoCgo
}
func (c *Ctx) Login(sh SessionHandle, userType uint, pin string) error { return errNoCgo }
func (c *Ctx) Logout(sh SessionHandle) error                           { return errNoCgo }
func (c *Ctx) CreateObject(sh SessionHandle, temp []*Attribute) (ObjectHandle, error) {
	return 0, errNoCgo
}
func (c *Ctx) DestroyObject(sh SessionHandle, oh ObjectHandle) error { return errNoCgo }
func (c *Ctx) GetAttributeValue(sh SessionHandle, o ObjectHandle, a []*Attribute) ([]*Attribute, error) {
	return nil, errNoCgo
}
func (c *Ctx) SetAttributeValue(sh SessionHandle, o ObjectHandle, a []*Attribute) error {
	return errNoCgo
}
func (c *Ctx) FindObjectsInit(sh SessionHandle, temp []*Attribute) error { return errNoCgo }
func (c *Ctx) FindObjects(sh SessionHandle, max int) ([]ObjectHandle, bool, error) {
	return nil, false, errNoCgo
}
func (c *Ctx) FindObjectsFinal(sh SessionHandle) error { return errNoCgo }
func (c *Ctx) GenerateKey(sh SessionHandle, m []*Mechanism, temp []*Attribute) (ObjectHandle, error) {
	return 0, errNoCgo
}
func (c *Ctx) DeriveKey(sh SessionHandle, m []*Mechanism, base ObjectHandle, a []*Attribute) (ObjectHandle, error) {
	return 0, errNoCgo
}
func (c *Ctx) EncryptInit(sh SessionHandle, m []*Mechanism, o ObjectHandle) error { return errNoCgo }
func (c *Ctx) Encrypt(sh SessionHandle, message []byte) ([]byte, error)           { return nil, errNoCgo }
func (c *Ctx) DecryptInit(sh SessionHandle, m []*Mechanism, o ObjectHandle) error { return errNoCgo }
func (c *Ctx) Decrypt(sh SessionHandle, cipher []byte) ([]byte, error)            { return nil, errNoCgo }
func (c *Ctx) SignInit(sh SessionHandle, m []*Mechanism, o ObjectHandle) error    { return errNoCgo }
func (c *Ctx) Sign(sh SessionHandle, message []byte) ([]byte, error)              { return nil, errNoCgo }
