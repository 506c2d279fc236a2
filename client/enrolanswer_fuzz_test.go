package client

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"testing"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/enroll"
	"github.com/gmgate/gmgate/pki"
)

// FuzzEnrolAnswer feeds arbitrary enrolment answers (the JSON gm_enroll returns, read by the
// SDK from the network) to the whole check of the issued pair: every refusal wraps
// ErrEnrolResponse, and an accepted answer yields exactly the pair the CA issued for this
// terminal (its signing certificate, the encryption certificate and the enveloped key that
// matches it): a byte flipped in a genuine answer never yields another pair.
func FuzzEnrolAnswer(f *testing.F) {
	root, _, err := pki.NewRootCA(pki.IssueOptions{CommonName: "fuzz CA"})
	if err != nil {
		f.Fatal(err)
	}
	sk, _ := sm2.GenerateKey(rand.Reader)
	ek, _ := sm2.GenerateKey(rand.Reader)
	sc, err := root.IssueFor(&sk.PublicKey, pki.RoleSign, pki.IssueOptions{CommonName: "t"})
	if err != nil {
		f.Fatal(err)
	}
	ec, err := root.IssueFor(&ek.PublicKey, pki.RoleEnc, pki.IssueOptions{CommonName: "t"})
	if err != nil {
		f.Fatal(err)
	}
	der, err := smx509.MarshalCSRResponse([]*smx509.Certificate{sc}, ek, []*smx509.Certificate{ec})
	if err != nil {
		f.Fatal(err)
	}
	genuine, _ := json.Marshal(enroll.Response{Serial: "1", SignCert: sc.Raw, EncCert: ec.Raw,
		Chain: [][]byte{root.Cert.Raw}, Delivery: enroll.Delivery{CSRResponse: der}})
	f.Add(genuine)
	f.Add([]byte(`{"csr_response":"MAA=","chain":["MAA="]}`))
	f.Add([]byte(`null`))
	e := &Enroller{Roots: []*smx509.Certificate{root.Cert}}
	if p, err := e.openResponse(genuine, sk); err != nil || p == nil {
		f.Fatalf("genuine answer refused: %v", err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := e.openResponse(body, sk)
		if err != nil {
			if p != nil || !errors.Is(err, ErrEnrolResponse) {
				t.Fatalf("refusal %v outside ErrEnrolResponse (pair %v)", err, p)
			}
			return
		}
		k, ok := p.Enc.Key.(*sm2.PrivateKey)
		if !ok || !k.Equal(ek) || !bytes.Equal(p.Sign.Certificate.Raw, sc.Raw) || !bytes.Equal(p.Enc.Certificate.Raw, ec.Raw) {
			t.Fatal("accepted a pair the CA did not issue for this terminal")
		}
	})
}

// FuzzParseRotating: the rotation file (written by the SDK, read back after a crash) splits
// into a 16-byte ID and the sealed share only when it starts with the magic; the split
// reverses rotatingFile.
func FuzzParseRotating(f *testing.F) {
	f.Add(rotatingFile(bytes.Repeat([]byte{1}, rotationIDSize), []byte("GMCOSIGN1...")))
	f.Add([]byte("GMCOSIGN1 sealed share of an older SDK"))
	f.Add([]byte(rotatingMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		id, sealed := parseRotating(b)
		if id == nil {
			if !bytes.Equal(sealed, b) {
				t.Fatal("a file without the header was changed")
			}
			return
		}
		if len(id) != rotationIDSize || !bytes.Equal(rotatingFile(id, sealed), b) {
			t.Fatalf("split %x into %x + %x", b, id, sealed)
		}
	})
}
