package pki_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/gmgate/gmgate/pki"
)

// A CA issues a server dual certificate; a verifier trusting the root checks
// the sign certificate for the sign role and refuses it for the enc role.
func Example() {
	root, _, err := pki.NewRootCA(pki.IssueOptions{CommonName: "Example Root"})
	if err != nil {
		panic(err)
	}
	pair, err := root.IssueServerPair(pki.IssueOptions{CommonName: "pay.example", DNSNames: []string{"pay.example"}})
	if err != nil {
		panic(err)
	}
	v, err := pki.NewVerifier(pki.VerifierOptions{Roots: []*smx509.Certificate{root.Cert}, Now: time.Now})
	if err != nil {
		panic(err)
	}
	_, err = v.Verify(pair.Sign.Cert, nil, pki.RoleSign)
	fmt.Println("sign as sign:", err)
	_, err = v.Verify(pair.Sign.Cert, nil, pki.RoleEnc)
	fmt.Println("sign as enc wrong usage:", errors.Is(err, pki.ErrWrongUsage))
	// Output:
	// sign as sign: <nil>
	// sign as enc wrong usage: true
}
