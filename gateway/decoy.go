package gateway

import (
	"crypto/rand"

	"github.com/emmansun/gmsm/sm2"
)

// decoyVerify is one SM2 verification of a fixed, valid signature under a
// throwaway key: the work a refusal does when it failed before the request's
// own verification, so that a padding error and a signature error take the
// same time class (AllowCBC, sign-then-seal).
type decoyVerify struct {
	key *sm2.PrivateKey
	msg []byte
	sig []byte
}

func newDecoyVerify() (*decoyVerify, error) {
	k, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	msg := []byte("gmgate decoy verification")
	sig, err := sm2.SignASN1(rand.Reader, k, msg, sm2.DefaultSM2SignerOpts)
	if err != nil {
		return nil, err
	}
	return &decoyVerify{key: k, msg: msg, sig: sig}, nil
}

// run verifies the decoy; the result is known and ignored.
func (d *decoyVerify) run() {
	_ = sm2.VerifyASN1WithSM2(&d.key.PublicKey, nil, d.msg, d.sig)
}
