package client

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emmansun/gmsm/sm2"

	"github.com/gmgate/gmgate/cosign"
)

// lossyTransport drops gm_cosign's reply to (afterSend) or the request of (!afterSend) the
// operation named by drop, once: a terminal losing its network mid-rotation.
type lossyTransport struct {
	drop      string
	afterSend bool
	times     int // how many times to drop (0: once)
}

func (l *lossyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if l.drop != "" && strings.HasSuffix(r.URL.Path, "/"+l.drop) {
		if l.times--; l.times <= 0 {
			l.drop = ""
		}
		if !l.afterSend {
			return nil, errors.New("network down")
		}
		resp, err := http.DefaultTransport.RoundTrip(r)
		if err == nil {
			resp.Body.Close()
		}
		return nil, errors.New("reply lost")
	}
	return http.DefaultTransport.RoundTrip(r)
}

func rotateFixture(t *testing.T) (*CoSigner, string, []byte, *lossyTransport) {
	t.Helper()
	cfg, _ := cosignPlatform(t, false)
	lt := &lossyTransport{}
	cfg.HTTPClient = &http.Client{Transport: lt}
	cs, err := EnrollCoSigner(cfg, "terminal-7")
	if err != nil {
		t.Fatal(err)
	}
	pin := []byte("271828")
	sealed, err := cs.SealWithIterations(pin, MinPINIterations)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "terminal-7.key")
	if err := os.WriteFile(file, sealed, 0o600); err != nil {
		t.Fatal(err)
	}
	return cs, file, pin, lt
}

func signOnce(cs *CoSigner, msg string) error {
	sig, err := cs.Sign(rand.Reader, []byte(msg), nil)
	if err != nil {
		return err
	}
	if !sm2.VerifyASN1WithSM2(cs.Public().(*ecdsa.PublicKey), nil, []byte(msg), sig) {
		return errors.New("signature does not verify under the joint key")
	}
	return nil
}

func TestCoSignerRotate(t *testing.T) {
	cs, file, pin, _ := rotateFixture(t)
	pub := cosign.MarshalPublicKey(cs.Public().(*ecdsa.PublicKey))
	oldFile, _ := os.ReadFile(file)
	if err := signOnce(cs, "before"); err != nil {
		t.Fatal(err)
	}
	// a mistyped PIN is caught before anything is sealed or asked
	if err := cs.Rotate(context.Background(), file, []byte("000000")); !errors.Is(err, ErrWrongPIN) {
		t.Fatalf("wrong PIN: %v", err)
	}
	if err := cs.Rotate(context.Background(), file, pin); err != nil {
		t.Fatal(err)
	}
	newFile, _ := os.ReadFile(file)
	if bytes.Equal(newFile, oldFile) {
		t.Fatal("key file not re-sealed")
	}
	if _, err := os.Stat(file + RotatingSuffix); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("rotating file left behind: %v", err)
	}
	if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %o", fi.Mode().Perm())
	}
	if !bytes.Equal(cosign.MarshalPublicKey(cs.Public().(*ecdsa.PublicKey)), pub) {
		t.Fatal("joint key changed")
	}
	if err := signOnce(cs, "after"); err != nil {
		t.Fatalf("rotated signer: %v", err)
	}
	reopened, err := OpenCoSigner(cs.cfg, newFile, pin)
	if err != nil {
		t.Fatal(err)
	}
	if err := signOnce(reopened, "reopened"); err != nil {
		t.Fatalf("re-sealed file: %v", err)
	}
	// a copy of the old file (backup, thief) can no longer sign
	stale, err := OpenCoSigner(cs.cfg, oldFile, pin)
	if err != nil {
		t.Fatal(err)
	}
	if err := signOnce(stale, "stale"); !errors.Is(err, cosign.ErrVerify) {
		t.Fatalf("old share after rotation: %v", err)
	}
	// Rotate with a file of another share (the stale one) is refused locally
	os.WriteFile(file+".old", oldFile, 0o600)
	if err := cs.Rotate(context.Background(), file+".old", pin); err == nil {
		t.Fatal("rotation from a file of another share accepted")
	}
}

// The confirm reply is lost after the platform committed: Rotate sends the confirm again at
// once, gm_cosign answers the repeat, and the rotation completes in one call.
func TestCoSignerRotateLostConfirmReplyRetried(t *testing.T) {
	cs, file, pin, lt := rotateFixture(t)
	oldFile, _ := os.ReadFile(file)
	lt.drop, lt.afterSend = "confirm", true
	if err := cs.Rotate(context.Background(), file, pin); err != nil {
		t.Fatalf("lost reply, re-sent confirm: %v", err)
	}
	if cur, _ := os.ReadFile(file); bytes.Equal(cur, oldFile) {
		t.Fatal("key file not replaced")
	}
	if err := signOnce(cs, "rotated"); err != nil {
		t.Fatal(err)
	}
}

// Both confirm replies are lost after the platform committed: Rotate reports it unsettled and
// keeps both files; the next Rotate finds the rotation committed (its challenge is refused, the
// probe decrypts with the new share) and promotes it.
func TestCoSignerRotateLostConfirmReply(t *testing.T) {
	cs, file, pin, lt := rotateFixture(t)
	oldFile, _ := os.ReadFile(file)
	lt.drop, lt.afterSend, lt.times = "confirm", true, 2
	if err := cs.Rotate(context.Background(), file, pin); !errors.Is(err, ErrRotationUnsettled) {
		t.Fatalf("lost reply: %v", err)
	}
	if cur, _ := os.ReadFile(file); !bytes.Equal(cur, oldFile) {
		t.Fatal("key file replaced before the rotation was known to be confirmed")
	}
	if _, err := os.Stat(file + RotatingSuffix); err != nil {
		t.Fatalf("new share not kept: %v", err)
	}
	if err := cs.Rotate(context.Background(), file, pin); err != nil {
		t.Fatalf("settling: %v", err)
	}
	if _, err := os.Stat(file + RotatingSuffix); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("rotating file left behind: %v", err)
	}
	if err := signOnce(cs, "settled"); err != nil {
		t.Fatal(err)
	}
	nf, _ := os.ReadFile(file)
	reopened, err := OpenCoSigner(cs.cfg, nf, pin)
	if err != nil || signOnce(reopened, "file") != nil {
		t.Fatalf("promoted file does not sign: %v", err)
	}
}

// The confirm never reaches the platform (twice): the old share stays current, Rotate reports
// it unsettled; the next Rotate resumes the still-pending rotation (co-signs its challenge
// with the new share, confirms) at once instead of waiting for rotation_timeout.
func TestCoSignerRotateConfirmNeverSent(t *testing.T) {
	cs, file, pin, lt := rotateFixture(t)
	oldFile, _ := os.ReadFile(file)
	lt.drop, lt.times = "confirm", 2
	if err := cs.Rotate(context.Background(), file, pin); !errors.Is(err, ErrRotationUnsettled) {
		t.Fatalf("unsent confirm: %v", err)
	}
	if err := signOnce(cs, "still old"); err != nil {
		t.Fatalf("old share during an unconfirmed rotation: %v", err)
	}
	if cur, _ := os.ReadFile(file); !bytes.Equal(cur, oldFile) {
		t.Fatal("key file changed before the confirm")
	}
	if err := cs.Rotate(context.Background(), file, pin); err != nil {
		t.Fatalf("resuming the pending rotation: %v", err)
	}
	if _, err := os.Stat(file + RotatingSuffix); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("rotating file left behind: %v", err)
	}
	if cur, _ := os.ReadFile(file); bytes.Equal(cur, oldFile) {
		t.Fatal("key file not replaced after the resumed rotation")
	}
	if err := signOnce(cs, "rotated"); err != nil {
		t.Fatal(err)
	}
	old, err := OpenCoSigner(cs.cfg, oldFile, pin)
	if err != nil {
		t.Fatal(err)
	}
	if err := signOnce(old, "old file"); !errors.Is(err, cosign.ErrVerify) {
		t.Fatalf("the old key file after the resumed rotation: %v, want cosign.ErrVerify", err)
	}
}

// The rotating file carries the rotation ID before the sealed share; a file without the header
// (an older SDK's) is the sealed share alone and settles by the probe.
func TestRotatingFileFormat(t *testing.T) {
	id := bytes.Repeat([]byte{7}, rotationIDSize)
	sealed := []byte(sealMagic + "rest of a sealed key")
	gotID, gotSealed := parseRotating(rotatingFile(id, sealed))
	if !bytes.Equal(gotID, id) || !bytes.Equal(gotSealed, sealed) {
		t.Fatalf("round trip: %x %q", gotID, gotSealed)
	}
	if gotID, gotSealed := parseRotating(sealed); gotID != nil || !bytes.Equal(gotSealed, sealed) {
		t.Fatalf("headerless file: %x %q", gotID, gotSealed)
	}
	if gotID, _ := parseRotating([]byte(rotatingMagic + "short")); gotID != nil {
		t.Fatal("a truncated header yields a rotation ID")
	}
}
