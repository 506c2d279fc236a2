// Package wechatsdk plugs gmsm's SM2 into the official WeChat Pay Go SDK
// (github.com/wechatpay-apiv3/wechatpay-go v0.2.21), which has no SM2 of its own, through its
// auth.Signer and auth.Verifier interfaces. The SDK then builds the signed string and the
// WECHATPAY2-SM2-WITH-SM3 Authorization header and validates signed replies itself, which makes
// it an independent client of the wechatpay-v3-sm2 scheme. For tests only.
package wechatsdk

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/emmansun/gmsm/sm2"
	"github.com/wechatpay-apiv3/wechatpay-go/core/auth"
)

// Algorithm is what the SDK puts after "WECHATPAY2-" in the Authorization header.
const Algorithm = "SM2-WITH-SM3"

// Signer signs the SDK's requests with a merchant SM2 key (SM3 with Z_A, default user ID, DER).
type Signer struct {
	MchID  string        // merchant ID (mchid)
	Serial string        // serial of the merchant's signing certificate (serial_no)
	Key    crypto.Signer // the merchant's SM2 key
}

// Sign implements auth.Signer.
func (s *Signer) Sign(_ context.Context, message string) (*auth.SignatureResult, error) {
	sig, err := s.Key.Sign(rand.Reader, []byte(message), sm2.DefaultSM2SignerOpts)
	if err != nil {
		return nil, err
	}
	return &auth.SignatureResult{MchID: s.MchID, CertificateSerialNo: s.Serial,
		Signature: base64.StdEncoding.EncodeToString(sig)}, nil
}

// Algorithm implements auth.Signer.
func (s *Signer) Algorithm() string { return Algorithm }

// Verifier checks the platform's signed replies against one platform certificate's key.
type Verifier struct {
	Serial string           // serial of the platform certificate (Wechatpay-Serial)
	Pub    *ecdsa.PublicKey // its SM2 public key
}

// Verify implements auth.Verifier.
func (v *Verifier) Verify(_ context.Context, serial, message, signature string) error {
	if serial != v.Serial {
		return fmt.Errorf("reply signed by unknown serial %s", serial)
	}
	sig, err := base64.StdEncoding.DecodeString(signature)
	if err != nil {
		return err
	}
	if !sm2.VerifyASN1WithSM2(v.Pub, nil, []byte(message), sig) {
		return errors.New("reply SM2 signature does not verify")
	}
	return nil
}

// GetSerial implements auth.Verifier.
func (v *Verifier) GetSerial(context.Context) (string, error) { return v.Serial, nil }

// Interface guards
var (
	_ auth.Signer   = (*Signer)(nil)
	_ auth.Verifier = (*Verifier)(nil)
)
