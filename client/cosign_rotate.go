package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/emmansun/gmsm/sm2"

	"github.com/gmgate/gmgate/cosign"
)

// RotatingSuffix names the sealed new share written beside the key file during Rotate; it
// replaces the key file only after gm_cosign confirmed the rotation.
const RotatingSuffix = ".rotating"

// ErrRotationUnsettled means Rotate could not learn whether gm_cosign confirmed the rotation (the
// confirm reply was lost): both the key file and the new share (keyFile+RotatingSuffix) are kept;
// the next Rotate settles it first.
var ErrRotationUnsettled = errors.New("client: rotation outcome unknown; run Rotate again to settle it")

// Rotate refreshes the key's shares with gm_cosign without changing the joint key, so the key's
// certificate stays valid: gm_cosign draws ρ and keeps d_2 ρ^-1 as a pending share, the terminal
// computes d_1 ρ, seals it under pin beside keyFile (keyFile+RotatingSuffix, written
// atomically), co-signs the rotation challenge with the pending share and confirms; only then does
// the new sealed share replace keyFile (atomic rename) and the old d_1 leave memory. A copy of the
// old d_1 (an earlier backup, a stolen file) is useless afterwards: gm_cosign has destroyed d_2.
//
// keyFile must hold this key sealed under pin (checked first: a mistyped PIN never seals the new
// share). If gm_cosign refuses a step, keyFile and the old share stay as they were. If a previous
// Rotate ended with ErrRotationUnsettled, this one first settles it: it resumes the rotation
// (co-signs its challenge with the new share and confirms, which succeeds while the rotation
// is still pending), else co-decrypts a probe ciphertext with the new share, promotes the new
// file when gm_cosign holds the matching share, and discards it otherwise. A confirm whose reply
// is lost is re-sent once at once (gm_cosign answers a repeat of a committed confirm again). The session token (CoSignConfig.Token) must allow "rotate" (confirm)
// and "sign" (the challenge). A Sign or Decrypt running while the shares switch may fail once.
func (c *CoSigner) Rotate(ctx context.Context, keyFile string, pin []byte) error {
	c.rotMu.Lock()
	defer c.rotMu.Unlock()
	old, err := os.ReadFile(keyFile)
	if err != nil {
		return fmt.Errorf("client: rotate: %w", err)
	}
	iterations, err := c.checkSealed(old, pin)
	if err != nil {
		return err
	}
	pendingFile := keyFile + RotatingSuffix
	switch settled, err := c.settle(ctx, keyFile, pendingFile, pin); {
	case err != nil:
		return err
	case settled:
		return nil // the earlier rotation had been confirmed: the new share is now current
	}

	cur := c.current()
	if cur == nil {
		return errDestroyed
	}
	var resp struct {
		Rho        []byte `json:"rho"`
		RotationID []byte `json:"rotation_id"`
		P2         []byte `json:"p2"`
		PublicKey  []byte `json:"public_key"`
	}
	if err := c.cfg.callContext(ctx, "rotate", map[string]any{"key_id": c.keyID}, &resp); err != nil {
		return err
	}
	defer clear(resp.Rho)
	next, err := cur.Refreshed(resp.Rho)
	if err != nil {
		return fmt.Errorf("client: platform's refresh factor: %w", err)
	}
	if p, err := next.JointPublicKey(resp.P2); err != nil || !p.Equal(c.pub) || !bytes.Equal(resp.PublicKey, cosign.MarshalPublicKey(c.pub)) {
		next.Destroy()
		return errors.New("client: platform's rotation does not keep the joint key")
	}
	if len(resp.RotationID) != rotationIDSize {
		next.Destroy()
		return errors.New("client: platform's rotation ID is not 16 bytes")
	}
	nc := &CoSigner{cfg: c.cfg, keyID: c.keyID, pub: c.pub, share: next}
	sealed, err := nc.SealWithIterations(pin, iterations)
	if err == nil {
		err = writeFileAtomic(pendingFile, rotatingFile(resp.RotationID, sealed))
	}
	if err != nil {
		next.Destroy()
		return fmt.Errorf("client: rotate: sealing the new share: %w", err)
	}
	err = nc.confirmRotation(ctx, resp.RotationID)
	switch {
	case notCommitted(err):
		// not confirmed: the platform keeps the old share current
		os.Remove(pendingFile)
		next.Destroy()
		return err
	case err != nil:
		next.Destroy()
		return fmt.Errorf("%w: %v", ErrRotationUnsettled, err)
	}
	return c.promote(keyFile, pendingFile, next)
}

// rotationIDSize is the size of gm_cosign's rotation IDs.
const rotationIDSize = 16

// rotatingMagic starts keyFile+RotatingSuffix: the rotation ID follows (so that a rotation
// whose confirm was lost can be resumed), then the new share sealed as the key file.
const rotatingMagic = "GMCOSROT1"

func rotatingFile(id, sealed []byte) []byte {
	out := append([]byte(rotatingMagic), id...)
	return append(out, sealed...)
}

// parseRotating splits a rotating file; a file without the header (an older SDK's) has no ID.
func parseRotating(b []byte) (id, sealed []byte) {
	if len(b) >= len(rotatingMagic)+rotationIDSize && string(b[:len(rotatingMagic)]) == rotatingMagic {
		return b[len(rotatingMagic) : len(rotatingMagic)+rotationIDSize], b[len(rotatingMagic)+rotationIDSize:]
	}
	return nil, b
}

// confirmRotation proves the new share (rotationProof, with the pending share) and confirms;
// a confirm lost on the way (no reply) is sent once more: gm_cosign answers a repeated confirm
// of the rotation it committed again, and a first one normally.
func (c *CoSigner) confirmRotation(ctx context.Context, id []byte) error {
	proof, err := c.rotationProof(ctx, id)
	if err != nil {
		return err
	}
	req := map[string]any{"key_id": c.keyID, "rotation_id": id, "signature": proof}
	err = c.cfg.callContext(ctx, "confirm", req, &struct{}{})
	var refused *CoSignError
	if err != nil && !errors.As(err, &refused) && ctx.Err() == nil {
		err = c.cfg.callContext(ctx, "confirm", req, &struct{}{})
	}
	return err
}

// notCommitted reports a rotation step refused in a way that proves gm_cosign did not commit
// it: a refusal other than cosign_unavailable and cosign_internal (which may come after the
// commit, an audit write failing), or a co-signature that does not verify.
func notCommitted(err error) bool {
	var refused *CoSignError
	if errors.As(err, &refused) {
		return refused.Code != "cosign_unavailable" && refused.Code != "cosign_internal"
	}
	return errors.Is(err, cosign.ErrVerify)
}

// rotationProof co-signs the rotation challenge with the platform's pending share (sign with
// rotation_id); Finish verifies the result under the joint key, so only d_1 ρ passes.
func (c *CoSigner) rotationProof(ctx context.Context, rotationID []byte) ([]byte, error) {
	e, err := cosign.RotationChallengeDigest(c.pub, c.keyID, rotationID)
	if err != nil {
		return nil, err
	}
	sg, err := cosign.StartSign(rand.Reader, c.pub, e)
	if err != nil {
		return nil, err
	}
	var resp struct {
		PartialSignature []byte `json:"partial_signature"`
	}
	req := map[string]any{"key_id": c.keyID, "e": e, "q1": sg.Q1(), "rotation_id": rotationID}
	if err := c.cfg.callContext(ctx, "sign", req, &resp); err != nil {
		return nil, err
	}
	r, s1, err := cosign.ParsePartialSignature(resp.PartialSignature)
	if err != nil {
		return nil, fmt.Errorf("client: platform's partial signature: %w", err)
	}
	share := c.current()
	if share == nil {
		return nil, errDestroyed
	}
	return sg.Finish(share, r, s1)
}

// settle resolves a rotation left unsettled: it reports true when the new share in pendingFile
// is the one gm_cosign now pairs with (and promotes it), false when there is none or it was not
// confirmed (the file is removed).
func (c *CoSigner) settle(ctx context.Context, keyFile, pendingFile string, pin []byte) (bool, error) {
	sealed, err := os.ReadFile(pendingFile)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("client: rotate: %w", err)
	}
	id, sealed := parseRotating(sealed)
	nc, err := OpenCoSigner(c.cfg, sealed, pin)
	if err != nil || nc.keyID != c.keyID || !nc.pub.Equal(c.pub) {
		os.Remove(pendingFile) // unreadable or of another key: never promoted
		return false, nil
	}
	if id != nil {
		// resume: while the rotation is pending this confirms it now (no wait for
		// rotation_timeout); once committed or expired the platform refuses the challenge
		// (cosign_rotation_unknown) and the probe below tells the two apart
		switch err := nc.confirmRotation(ctx, id); {
		case err == nil:
			nc.mu.Lock()
			next := nc.share
			nc.share = nil
			nc.mu.Unlock()
			return true, c.promote(keyFile, pendingFile, next)
		case !notCommitted(err):
			nc.Destroy()
			return false, fmt.Errorf("%w: %v", ErrRotationUnsettled, err)
		}
	}
	probe := make([]byte, 32)
	rand.Read(probe)
	ct, err := sm2.Encrypt(rand.Reader, c.pub, probe, nil)
	if err != nil {
		nc.Destroy()
		return false, err
	}
	got, err := nc.decryptContext(ctx, ct)
	switch {
	case err == nil && bytes.Equal(got, probe):
		nc.mu.Lock()
		next := nc.share
		nc.share = nil
		nc.mu.Unlock()
		return true, c.promote(keyFile, pendingFile, next)
	case errors.Is(err, cosign.ErrDecrypt):
		nc.Destroy()
		os.Remove(pendingFile)
		return false, nil
	case err == nil:
		err = errors.New("client: probe decrypted to something else")
	}
	nc.Destroy()
	return false, fmt.Errorf("%w: %v", ErrRotationUnsettled, err)
}

// promote replaces keyFile by the confirmed new share and switches the share in memory.
// The new key file is the rotating file's sealed share, written atomically; the rotating file is
// removed after (a crash in between leaves both holding the new share: the next Rotate settles
// it again).
func (c *CoSigner) promote(keyFile, pendingFile string, next *cosign.Share) error {
	raw, err := os.ReadFile(pendingFile)
	if err == nil {
		_, sealed := parseRotating(raw)
		err = writeFileAtomic(keyFile, sealed)
	}
	if err != nil {
		next.Destroy()
		return fmt.Errorf("%w: rotation confirmed but %s could not replace the key file: %v", ErrRotationUnsettled, pendingFile, err)
	}
	os.Remove(pendingFile)
	syncDir(filepath.Dir(keyFile))
	c.mu.Lock()
	old := c.share
	c.share = next
	c.mu.Unlock()
	if old != nil {
		old.Destroy()
	}
	return nil
}

// checkSealed opens sealed with pin and checks it is this key and this share; it returns the
// file's PBKDF2 count (the new share is sealed with the same).
func (c *CoSigner) checkSealed(sealed, pin []byte) (int, error) {
	oc, err := OpenCoSigner(c.cfg, sealed, pin)
	if err != nil {
		return 0, err
	}
	defer oc.Destroy()
	cur := c.current()
	if cur == nil {
		return 0, errDestroyed
	}
	a, b := oc.share.Bytes(), cur.Bytes()
	defer clear(a)
	defer clear(b)
	if oc.keyID != c.keyID || !oc.pub.Equal(c.pub) || !bytes.Equal(a, b) {
		return 0, errors.New("client: rotate: the key file holds another key or share")
	}
	return int(binary.BigEndian.Uint32(sealed[len(sealMagic):])), nil
}

func (c *CoSigner) decryptContext(ctx context.Context, ct []byte) ([]byte, error) {
	dc, err := cosign.StartDecrypt(rand.Reader, ct)
	if err != nil {
		return nil, err
	}
	var resp struct {
		T2 []byte `json:"t2"`
	}
	if err := c.cfg.callContext(ctx, "decrypt", map[string]any{"key_id": c.keyID, "t1": dc.T1()}, &resp); err != nil {
		return nil, err
	}
	share := c.current()
	if share == nil {
		return nil, errDestroyed
	}
	return dc.Finish(share, resp.T2)
}

// writeFileAtomic writes data to path (0600) through a synced temporary file and a rename.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".gmcosign-*")
	if err != nil {
		return err
	}
	name := tmp.Name()
	defer os.Remove(name) // no-op after the rename
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(name, path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
