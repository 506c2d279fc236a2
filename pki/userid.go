package pki

import (
	"reflect"

	"github.com/emmansun/gmsm/sm2"
)

// DefaultUserID is the SM2 default distinguishing identifier (GB/T 32918, GB/T 35276):
// "1234567812345678", the user ID of an SM2 signature when none is agreed. It is a constant: every
// package that needs it (keyvault, signing, tlcp) reads this one.
const DefaultUserID = "1234567812345678"

// SM2SignerOptionFields reads the user ID and the forceGMSign flag of a gmsm signer option, for
// crypto.Signer implementations that are not a gmsm *sm2.PrivateKey (vault tokens, the
// collaborative signer) and must treat an option exactly as gmsm does: forceGMSign means msg is
// the raw message and Z_A uses the user ID (DefaultUserID when empty). gmsm keeps both fields
// unexported; they are read (never written) by reflection.
func SM2SignerOptionFields(o *sm2.SM2SignerOption) (uid []byte, forceGM bool) {
	if o == nil {
		return nil, false
	}
	v := reflect.ValueOf(o).Elem()
	if f := v.FieldByName("uid"); f.IsValid() && f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.Uint8 {
		uid = append([]byte(nil), f.Bytes()...)
	}
	if f := v.FieldByName("forceGMSign"); f.IsValid() && f.Kind() == reflect.Bool {
		forceGM = f.Bool()
	}
	if forceGM && len(uid) == 0 {
		uid = []byte(DefaultUserID)
	}
	return uid, forceGM
}
