// Package enroll issues, renews and revokes the dual SM2 certificates of payment terminals
// (GM/T 0092-2020, GB/T 35276): the terminal generates its signing key and proves possession
// with a PKCS#10 request; the platform generates the encryption key pair centrally, escrows it
// and delivers it enveloped to the terminal's signing public key (SM2EnvelopedKey), or, for a
// CFCA "double" request, encrypted to the request's temporary public key.
//
// The operations follow EST (RFC 7030): cacerts, simpleenroll (first pair, authorised by a
// one-time enrolment token), simplereenroll (authorised by a request signed with the current,
// valid signing certificate), download of an issued pair, revoke (by the holder or an
// administrator) and the CA's CRL. Server is an http.Handler; the Caddy adapter is gm_enroll.
// The wire formats and flows are in docs/enrolment.md.
//
// Certificates come from an Issuer, the one interface the Server issues through: LocalCA
// signs with a key held in the vault (HSM) through pki; UpstreamIssuer makes the Server a
// registration authority in front of another gmgate acting as the CA (its raenroll and rarevoke
// operations, authorised by the RA's certificate), the CA generating and escrowing the
// encryption key; a vendor REST adapter is another Issuer. The Server checks every pair an
// Issuer returns before storing or delivering it. Evidence goes to an audit.Sink, refusals use
// package refusal, signed requests package signing (http-sig-sm2), and certificate and CRL
// checks package pki.
package enroll
