//go:build cgo

package p11

import "github.com/miekg/pkcs11"

// Available reports whether PKCS#11 modules can be loaded (this build has cgo).
const Available = true

type (
	Ctx               = pkcs11.Ctx
	Error             = pkcs11.Error
	SessionHandle     = pkcs11.SessionHandle
	ObjectHandle      = pkcs11.ObjectHandle
	Version           = pkcs11.Version
	Info              = pkcs11.Info
	SlotInfo          = pkcs11.SlotInfo
	TokenInfo         = pkcs11.TokenInfo
	SessionInfo       = pkcs11.SessionInfo
	Attribute         = pkcs11.Attribute
	Mechanism         = pkcs11.Mechanism
	GCMParams         = pkcs11.GCMParams
	ECDH1DeriveParams = pkcs11.ECDH1DeriveParams
)

var (
	New                  = pkcs11.New
	NewAttribute         = pkcs11.NewAttribute
	NewMechanism         = pkcs11.NewMechanism
	NewGCMParams         = pkcs11.NewGCMParams
	NewECDH1DeriveParams = pkcs11.NewECDH1DeriveParams
)
