package keyvault

import (
	"crypto"
	"reflect"

	"github.com/emmansun/gmsm/sm2"

	"github.com/gmgate/gmgate/pki"
)

// signerOptionFields reads the user ID and forceGMSign flag of a gmsm signer option (one
// implementation, in pki, shared with the collaborative signer of the client SDK).
func signerOptionFields(o *sm2.SM2SignerOption) (uid []byte, forceGM bool) {
	return pki.SM2SignerOptionFields(o)
}

// decrypterOrderC1C2C3 reports whether gmsm decrypter options ask for C1C2C3 splicing.
func decrypterOrderC1C2C3(o *sm2.DecrypterOpts) bool {
	if o == nil {
		return false
	}
	f := reflect.ValueOf(o).Elem().FieldByName("ciphertextSplicingOrder")
	return f.IsValid() && f.CanUint() && f.Uint() == uint64(sm2.C1C2C3)
}

// normalizeCiphertext converts any ciphertext form gmsm accepts into C1C3C2 raw with an
// uncompressed C1, so a token needs to handle only one encoding.
func normalizeCiphertext(msg []byte, opts crypto.DecrypterOpts) ([]byte, error) {
	if len(msg) < 1+64+32 {
		return nil, errorf(ErrInvalidInput, "ciphertext too short")
	}
	if msg[0] == 0x30 {
		out, err := sm2.ASN1Ciphertext2Plain(msg, nil)
		if err != nil {
			return nil, errorf(ErrInvalidInput, "bad ASN.1 SM2 ciphertext")
		}
		return out, nil
	}
	if msg[0] != 0x04 {
		return nil, errorf(ErrInvalidInput, "only uncompressed C1 is supported")
	}
	if d, ok := opts.(*sm2.DecrypterOpts); ok && decrypterOrderC1C2C3(d) {
		out, err := sm2.AdjustCiphertextSplicingOrder(msg, sm2.C1C2C3, sm2.C1C3C2)
		if err != nil {
			return nil, errorf(ErrInvalidInput, "bad C1C2C3 ciphertext")
		}
		return out, nil
	}
	return msg, nil
}
