package main

import (
	"crypto/rand"
	"runtime"
	"time"

	"github.com/emmansun/gmsm/sm2"
)

// sm2Costs is the CPU time of one gmsm SM2 operation, measured in this process as the calling
// thread's CPU time (RUSAGE_THREAD) over a loop, so that other load on the machine does not
// count (it would in a wall-clock benchmark).
type sm2Costs struct {
	Sign, Verify, Encrypt, Decrypt time.Duration
}

// signedMessageSize approximates the signed string of a request or reply (method, path,
// timestamp, nonce, a JSON body or a UnionPay form): SM3 of it is part of every operation.
const signedMessageSize = 320

// measureSM2 runs each operation for about per of CPU time.
func measureSM2(per time.Duration) (sm2Costs, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	key, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		return sm2Costs{}, err
	}
	msg := make([]byte, signedMessageSize)
	for i := range msg {
		msg[i] = byte('a' + i%26)
	}
	opts := sm2.NewSM2SignerOption(true, nil) // SM3 with Z_A over the default user ID, DER
	sig, err := key.Sign(rand.Reader, msg, opts)
	if err != nil {
		return sm2Costs{}, err
	}
	premaster := make([]byte, 48) // TLCP ECC pre-master secret
	ct, err := sm2.EncryptASN1(rand.Reader, &key.PublicKey, premaster)
	if err != nil {
		return sm2Costs{}, err
	}
	var firstErr error
	loop := func(op func() error) time.Duration {
		_ = op() // warm tables
		n := 0
		start := threadCPU()
		wall := time.Now()
		for {
			if err := op(); err != nil && firstErr == nil {
				firstErr = err
			}
			n++
			used := threadCPU() - start
			if n >= 50 && (used >= per || time.Since(wall) > 10*per) {
				return used / time.Duration(n)
			}
		}
	}
	var c sm2Costs
	c.Sign = loop(func() error { _, err := key.Sign(rand.Reader, msg, opts); return err })
	c.Verify = loop(func() error {
		if !sm2.VerifyASN1WithSM2(&key.PublicKey, nil, msg, sig) {
			return errVerify
		}
		return nil
	})
	c.Encrypt = loop(func() error { _, err := sm2.EncryptASN1(rand.Reader, &key.PublicKey, premaster); return err })
	c.Decrypt = loop(func() error { _, err := key.Decrypt(nil, ct, sm2.ASN1DecrypterOpts); return err })
	return c, firstErr
}

type boundError string

func (e boundError) Error() string { return string(e) }

const errVerify = boundError("sm2 verify of a fresh signature failed")

// bound is the SM2 work one request needs on the gateway side, in CPU time.
type bound struct {
	Costs sm2Costs
	// Per request, always: ingress verifies the client's signature and signs the reply; egress
	// signs the bank request and verifies the bank's reply.
	IngressPerReq, EgressPerReq time.Duration
	// Handshakes amortized over the requests of the measured step.
	IngressHSPerReq, EgressHSPerReq float64
	IngressHS, EgressHS             time.Duration // SM2 cost of one full handshake on that side
}

// newBound derives the per-request bound for a step: hsFull full TLCP handshakes on the
// ingress and bankConns new connections (full handshakes, gm_channel keeps no session cache)
// from the egress to the bank, over reqs requests.
func newBound(c sm2Costs, reqs int, hsFull float64, bankConns int64) bound {
	b := bound{Costs: c}
	// Server side, ECC suite with client authentication: sign the ServerKeyExchange, decrypt
	// the pre-master secret, verify the client's CertificateVerify (its chain verification
	// is cached by package tlcp).
	b.IngressHS = c.Sign + c.Decrypt + c.Verify
	// Client side: verify the bank's ServerKeyExchange, encrypt the pre-master secret, sign
	// the CertificateVerify.
	b.EgressHS = c.Verify + c.Encrypt + c.Sign
	if reqs > 0 {
		b.IngressHSPerReq = hsFull / float64(reqs)
		b.EgressHSPerReq = float64(bankConns) / float64(reqs)
	}
	b.IngressPerReq = c.Verify + c.Sign + time.Duration(b.IngressHSPerReq*float64(b.IngressHS))
	b.EgressPerReq = c.Sign + c.Verify + time.Duration(b.EgressHSPerReq*float64(b.EgressHS))
	return b
}

// Total is the SM2 CPU time per request over both gateway processes.
func (b bound) Total() time.Duration { return b.IngressPerReq + b.EgressPerReq }
