package platform

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"io"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm3"

	"github.com/gmgate/gmgate/cosign"
	"github.com/gmgate/gmgate/refusal"
	"github.com/gmgate/gmgate/sealstore"
)

// Rotation (share refresh) keeps the joint key P: the platform draws ρ, seals d_2' = d_2 ρ^-1 as
// a pending version of the key's record next to the current one and returns ρ; the terminal
// computes d_1' = d_1 ρ, co-signs the rotation challenge with the pending share (a sign request
// carrying rotation_id) and posts the signature to confirm; only then does the pending version
// become the only one. See docs/cosign.md, "Rotation".
//
// Record layout: one version is the current share; a second, newer version is a pending
// rotation. Every version is d_2 || P, a pending one followed by rotation ID (16) || start
// (unix seconds, 8). More than two versions, or a pending version of another joint key, fail
// closed (cosign_internal).

// Rotation operations (path suffixes). A session token allows both with the op "rotate".
const (
	OpRotate  = "rotate"
	OpConfirm = "confirm"
)

// RotationIDSize is the size of a rotation ID.
const RotationIDSize = 16

const (
	shareSize   = cosign.ScalarSize + cosign.PointSize
	pendingSize = shareSize + RotationIDSize + 8
)

// RotationChallengeDigest is cosign.RotationChallengeDigest: what the terminal's confirming
// co-signature signs.
func RotationChallengeDigest(pub *ecdsa.PublicKey, keyID string, rotationID []byte) ([]byte, error) {
	return cosign.RotationChallengeDigest(pub, keyID, rotationID)
}

// shareState is a key's record: the current share and, during a rotation, the pending one.
type shareState struct {
	share   *cosign.Share
	pub     *ecdsa.PublicKey
	version int
	pending *pendingRotation
	// rotation is the ID of the rotation that made the current share (nil for a share from
	// key generation): a repeated confirm of it is answered again (idempotent).
	rotation []byte
	// all and cur fingerprint the record as read (every version; the current one alone): the
	// writes are conditional on them (sealstore PutIf, DestroyVersionIf).
	all, cur [sm3.Size]byte
}

// fingerprint digests versions (numbers and secrets): what a conditional write compares.
func fingerprint(vs []sealstore.Version) [sm3.Size]byte {
	h := sm3.New()
	h.Write([]byte("gmgate cosign share record\x00"))
	for _, v := range vs {
		h.Write(binary.BigEndian.AppendUint32(nil, uint32(v.Version)))
		h.Write(binary.BigEndian.AppendUint32(nil, uint32(len(v.Secret))))
		h.Write(v.Secret)
	}
	var out [sm3.Size]byte
	h.Sum(out[:0])
	return out
}

// unchanged is the condition of a write: the record is still exactly as read (fp).
func unchanged(fp [sm3.Size]byte) func([]sealstore.Version) bool {
	return func(vs []sealstore.Version) bool {
		got := fingerprint(vs)
		return subtle.ConstantTimeCompare(got[:], fp[:]) == 1
	}
}

// storeErr maps a failed conditional write: the record destroyed meanwhile (cosign_unknown_key,
// nothing re-created), changed meanwhile (conflict), anything else (cosign_unavailable).
func storeErr(err error, conflict refusal.Code) error {
	switch {
	case errors.Is(err, sealstore.ErrNotFound):
		return refuse(CodeUnknownKey, err)
	case errors.Is(err, sealstore.ErrConflict):
		return refuse(conflict, err)
	}
	return refuse(CodeUnavailable, err)
}

type pendingRotation struct {
	share   *cosign.Share
	id      []byte
	started time.Time
	version int
}

func (k *shareState) destroy() {
	if k == nil {
		return
	}
	k.share.Destroy()
	if k.pending != nil {
		k.pending.share.Destroy()
	}
}

// live reports whether the pending rotation may still be confirmed at now.
func (p *pendingRotation) live(now time.Time, timeout time.Duration) bool {
	return p != nil && now.Before(p.started.Add(timeout)) && !now.Before(p.started.Add(-time.Minute))
}

// loadState reads the key's record once and parses its current and pending shares.
func (s *Service) loadState(keyID string) (*shareState, error) {
	vs, err := s.cfg.Shares.GetAll(ShareKind, []byte(keyID))
	switch {
	case errors.Is(err, sealstore.ErrNotFound):
		return nil, refuse(CodeUnknownKey, err)
	case err != nil:
		return nil, refuse(CodeUnavailable, err)
	}
	defer func() {
		for _, v := range vs {
			clear(v.Secret)
		}
	}()
	if len(vs) > 2 {
		return nil, refuse(CodeInternal, errors.New("share record holds more than a current and a pending version"))
	}
	cur := vs[0].Secret
	if len(cur) != shareSize && len(cur) != pendingSize {
		return nil, refuse(CodeInternal, errors.New("share record has the wrong size"))
	}
	share, err := cosign.ParseShare(cur[:cosign.ScalarSize])
	if err != nil {
		return nil, refuse(CodeInternal, err)
	}
	st := &shareState{share: share, version: vs[0].Version, all: fingerprint(vs), cur: fingerprint(vs[:1])}
	if len(cur) == pendingSize {
		st.rotation = append([]byte(nil), cur[shareSize:shareSize+RotationIDSize]...)
	}
	st.pub, err = cosign.ParsePublicKey(cur[cosign.ScalarSize:shareSize])
	if err != nil {
		st.destroy()
		return nil, refuse(CodeInternal, err)
	}
	if len(vs) == 2 {
		p := vs[1].Secret
		if len(p) != pendingSize || !bytes.Equal(p[cosign.ScalarSize:shareSize], cur[cosign.ScalarSize:shareSize]) {
			st.destroy()
			return nil, refuse(CodeInternal, errors.New("pending share is malformed or of another joint key"))
		}
		ps, err := cosign.ParseShare(p[:cosign.ScalarSize])
		if err != nil {
			st.destroy()
			return nil, refuse(CodeInternal, err)
		}
		st.pending = &pendingRotation{
			share:   ps,
			id:      append([]byte(nil), p[shareSize:shareSize+RotationIDSize]...),
			started: time.Unix(int64(binary.BigEndian.Uint64(p[shareSize+RotationIDSize:])), 0),
			version: vs[1].Version,
		}
	}
	return st, nil
}

// rotate starts a rotation: it draws ρ and a rotation ID, seals d_2 ρ^-1 as the pending version
// and answers ρ, the rotation ID and the pending partial key P_2' (so the terminal checks that
// its d_1 ρ gives the same joint key before it seals anything). A live pending rotation refuses
// (cosign_rotation_pending); an expired one is destroyed first. Called with the key's lock held.
func (s *Service) rotate(st *shareState, keyID string, now time.Time) (*Response, error) {
	expect := st.all
	if st.pending != nil {
		if st.pending.live(now, s.cfg.RotationTimeout) {
			return nil, refuse(CodeRotationPending, errors.New("a rotation is pending"))
		}
		if err := s.cfg.Shares.DestroyVersionIf(ShareKind, []byte(keyID), st.pending.version, unchanged(st.all)); err != nil {
			return nil, storeErr(err, CodeRotationPending)
		}
		expect = st.cur
	}
	rho, err := cosign.GenerateRefresh(s.cfg.Rand)
	if err != nil {
		return nil, refuse(CodeInternal, err)
	}
	defer clear(rho)
	id := make([]byte, RotationIDSize)
	if _, err := io.ReadFull(s.cfg.Rand, id); err != nil {
		return nil, refuse(CodeInternal, err)
	}
	d2, err := st.share.RefreshedInverse(rho)
	if err != nil {
		return nil, mapErr(err)
	}
	defer d2.Destroy()
	secret := d2.Bytes()
	defer clear(secret)
	secret = append(secret, cosign.MarshalPublicKey(st.pub)...)
	secret = append(secret, id...)
	secret = binary.BigEndian.AppendUint64(secret, uint64(now.Unix()))
	// sealed only if the record is still the one read: destroyed meanwhile, nothing is
	// re-created (the pending share alone must never become a key); another rotation sealed
	// meanwhile (another instance), this one is refused
	v, err := s.cfg.Shares.PutIf(ShareKind, []byte(keyID), secret, unchanged(expect))
	if err != nil {
		return nil, storeErr(err, CodeRotationPending)
	}
	if v <= st.version {
		return nil, refuse(CodeInternal, errors.New("pending version is not newer than the current one"))
	}
	return &Response{
		Rho: append([]byte(nil), rho...), RotationID: id,
		P2: d2.PartialPublicKey(), PublicKey: cosign.MarshalPublicKey(st.pub),
	}, nil
}

// pendingFor returns the live pending rotation named by id, or a refusal: none or expired
// (cosign_rotation_unknown: also a replayed confirm), another ID (cosign_rotation_mismatch).
func (s *Service) pendingFor(st *shareState, id []byte, now time.Time) (*pendingRotation, error) {
	if len(id) != RotationIDSize {
		return nil, refuse(CodeMalformedRequest, errors.New("rotation ID is not 16 bytes"))
	}
	if !st.pending.live(now, s.cfg.RotationTimeout) {
		return nil, refuse(CodeRotationUnknown, errors.New("no pending rotation"))
	}
	if subtle.ConstantTimeCompare(st.pending.id, id) != 1 {
		return nil, refuse(CodeRotationMismatch, errors.New("another rotation is pending"))
	}
	return st.pending, nil
}

// confirm completes a rotation: the signature must verify under P over the rotation challenge.
// Only the pending pair can have made it: the rotation ID is unknown before the rotation starts,
// sign refuses the challenge digest with the current share while the rotation is pending, and
// the old d_1 with the pending d_2' gives no valid signature. Then the
// current version is destroyed and the pending one is the key's only share. Called with the
// key's lock held.
//
// A repeated confirm of the rotation that made the current share (its reply was lost) is
// answered again and changes nothing, so the terminal can re-send it; any other confirm without
// a live pending rotation is cosign_rotation_unknown.
func (s *Service) confirm(st *shareState, req *Request, now time.Time) ([]byte, error) {
	if len(req.RotationID) == RotationIDSize && !st.pending.live(now, s.cfg.RotationTimeout) && ctEqual(st.rotation, req.RotationID) {
		e, err := s.checkConfirmation(st, req)
		return e, err
	}
	if _, err := s.pendingFor(st, req.RotationID, now); err != nil {
		return nil, err
	}
	e, err := s.checkConfirmation(st, req)
	if err != nil {
		return e, err
	}
	// destroyed only if the record is still the one read: a destruction of the key meanwhile
	// is final (cosign_unknown_key); a concurrent confirm that won is answered as a repeat
	if err := s.cfg.Shares.DestroyVersionIf(ShareKind, []byte(req.KeyID), st.version, unchanged(st.all)); err != nil {
		if errors.Is(err, sealstore.ErrConflict) {
			if again, lerr := s.loadState(req.KeyID); lerr == nil {
				done := again.pending == nil && ctEqual(again.rotation, req.RotationID)
				again.destroy()
				if done {
					return e, nil
				}
			}
		}
		return e, storeErr(err, CodeRotationUnknown)
	}
	return e, nil
}

// checkConfirmation verifies the confirming signature: over the challenge of the request's
// rotation ID, under P.
func (s *Service) checkConfirmation(st *shareState, req *Request) ([]byte, error) {
	e, err := RotationChallengeDigest(st.pub, req.KeyID, req.RotationID)
	if err != nil {
		return nil, refuse(CodeInternal, err)
	}
	if len(req.Signature) == 0 || len(req.Signature) > 80 || !sm2.VerifyASN1(st.pub, e, req.Signature) {
		return e, refuse(CodeRotationMismatch, errors.New("confirmation signature does not verify"))
	}
	return e, nil
}
