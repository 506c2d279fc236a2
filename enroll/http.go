package enroll

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net"
	"net/http"
	"path"
	"strings"

	"github.com/gmgate/gmgate/audit"
	"github.com/gmgate/gmgate/internal/abuse"
	"github.com/gmgate/gmgate/refusal"
)

// Media types of the wire (docs/enrolment.md).
const (
	// MediaPKCS10 is a request body: a base64 DER PKCS#10 request (RFC 7030 §4.2.1).
	MediaPKCS10 = "application/pkcs10"
	// MediaCACerts is the cacerts body: base64 DER PKCS#7 certs-only (RFC 7030 §4.1.3).
	MediaCACerts = "application/pkcs7-mime; smime-type=certs-only"
	// MediaPair is the body of an issued pair (Response as JSON).
	MediaPair = "application/json"
	// MediaCRL is the CRL body (DER, RFC 5280).
	MediaCRL = "application/pkix-crl"
)

// ServeHTTP dispatches on the last path segment: GET cacerts, POST simpleenroll (Authorization:
// Bearer <token>), POST simplereenroll, POST download, POST revoke (signed, http-sig-sm2),
// GET crl.
//
// An operation other than cacerts and crl is answered only once its audit entry is written: if
// the audit log fails, the answer is enroll_unavailable (an issued pair stays in the store and
// can be downloaded later).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	op := path.Base(r.URL.Path)
	rw := &reply{h: w.Header()}
	var code refusal.Code
	var keyID, serial string
	if op == OpCACerts || op == OpCRL {
		code, keyID, serial = s.serve(rw, r, op)
	} else {
		code, keyID, serial = s.limited(rw, r, op)
	}
	if op != OpCACerts && op != OpCRL && s.cfg.Audit != nil {
		rec := audit.Record{Time: s.cfg.Now(), Direction: audit.DirectionInbound, Scheme: "enroll/" + opLabel(op),
			KeyID: keyID, CertSerial: serial, Verdict: audit.VerdictAccept, Reason: string(code)}
		if code != refusal.OK {
			rec.Verdict = audit.VerdictReject
		}
		if s.cfg.RequestIDHeader != "" {
			rec.RequestID = r.Header.Get(s.cfg.RequestIDHeader)
		}
		if err := s.cfg.Audit.Append(rec); err != nil && code == refusal.OK {
			code = CodeUnavailable
		}
	}
	if s.cfg.Observe != nil {
		s.cfg.Observe(opLabel(op), code)
	}
	if code != refusal.OK {
		for _, k := range []string{"Content-Type", "Content-Transfer-Encoding", "ETag", "Cache-Control"} {
			w.Header().Del(k)
		}
		WriteError(w, code)
		return
	}
	w.WriteHeader(rw.status)
	_, _ = w.Write(rw.body.Bytes())
}

// limited runs op under the limits of the client address (and, for simpleenroll, of the
// token ID), counting failed attempts. When the limits' state is unavailable the request is
// refused (enroll_unavailable), never served unchecked.
func (s *Server) limited(w *reply, r *http.Request, op string) (refusal.Code, string, string) {
	addr := s.clientAddress(r)
	now := s.cfg.Now()
	ctx := r.Context()
	v, err := s.addrs.Admit(ctx, addr, now)
	if err != nil {
		s.limitError("address", err)
		return CodeUnavailable, "", ""
	}
	switch v {
	case abuse.Allowed:
	case abuse.Locked:
		return CodeLocked, "", ""
	default:
		return CodeRateLimited, "", ""
	}
	code, keyID, serial := s.serve(w, r, op)
	tokenID := ""
	if op == OpSimpleEnroll {
		tokenID = keyID
	}
	switch code {
	case refusal.OK:
		// The operation is done: a failure count left standing only errs towards a lockout.
		if err := s.addrs.Succeed(ctx, addr); err != nil {
			s.limitError("address", err)
		}
		if tokenID != "" {
			if err := s.tokens.Succeed(ctx, tokenID); err != nil {
				s.limitError("token", err)
			}
		}
	case CodeTokenInvalid, CodeTokenExpired, CodeTokenUsed, CodeStoreIntegrity, CodeAuthInvalid:
		// The request is refused anyway; a failure not counted is told to OnLimitError.
		if locked, err := s.addrs.Fail(ctx, addr, now); err != nil {
			s.limitError("address", err)
		} else if locked && s.cfg.OnLockout != nil {
			s.cfg.OnLockout("address")
		}
		if tokenID != "" {
			if locked, err := s.tokens.Fail(ctx, tokenID, now); err != nil {
				s.limitError("token", err)
			} else if locked && s.cfg.OnLockout != nil {
				s.cfg.OnLockout("token")
			}
		}
	}
	return code, keyID, serial
}

func (s *Server) limitError(scope string, err error) {
	if s.cfg.OnLimitError != nil {
		s.cfg.OnLimitError(scope, err)
	}
}

func (s *Server) clientAddress(r *http.Request) string {
	if s.cfg.ClientAddress != nil {
		if a := s.cfg.ClientAddress(r); a != "" {
			return a
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// reply buffers a success answer until the audit entry is written.
type reply struct {
	h      http.Header
	status int
	body   bytes.Buffer
}

func (r *reply) Header() http.Header         { return r.h }
func (r *reply) WriteHeader(status int)      { r.status = status }
func (r *reply) Write(b []byte) (int, error) { return r.body.Write(b) }

func opLabel(op string) string {
	switch op {
	case OpCACerts, OpSimpleEnroll, OpSimpleReenroll, OpDownload, OpRevoke, OpRecover, OpCRL, OpRAEnroll, OpRARevoke:
		return op
	}
	return "unknown"
}

// serve runs op and writes a success reply; it returns the code (OK when it wrote one).
func (s *Server) serve(w *reply, r *http.Request, op string) (code refusal.Code, keyID, serial string) {
	switch op {
	case OpCACerts:
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			return codeMethodNotAllowed, "", ""
		}
		w.Header().Set("Content-Type", MediaCACerts)
		w.Header().Set("Content-Transfer-Encoding", "base64")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(s.cacerts)
		return refusal.OK, "", ""
	case OpCRL:
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			return codeMethodNotAllowed, "", ""
		}
		der, n, err := s.CRL(r.Context())
		if err != nil {
			return CodeOf(fail(CodeUnavailable, err)), "", ""
		}
		etag := `"` + n.Text(16) + `"`
		w.Header().Set("ETag", etag)
		w.Header().Set("Cache-Control", "no-cache")
		if inm := r.Header.Get("If-None-Match"); inm != "" && inm == etag {
			w.WriteHeader(http.StatusNotModified)
			return refusal.OK, "", ""
		}
		w.Header().Set("Content-Type", MediaCRL)
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(der)
		return refusal.OK, "", ""
	case OpSimpleEnroll, OpSimpleReenroll, OpDownload, OpRevoke, OpRecover, OpRAEnroll, OpRARevoke:
	default:
		return CodeNotFound, "", ""
	}
	if r.Method != http.MethodPost {
		return codeMethodNotAllowed, "", ""
	}
	body, err := s.readBody(r)
	if err != nil {
		return CodeOf(err), "", ""
	}
	var out *Response
	switch op {
	case OpSimpleEnroll:
		tok, ok := bearer(r)
		if !ok {
			return CodeTokenInvalid, "", ""
		}
		if id, _, ok := parseToken(tok); ok {
			locked, err := s.tokens.Locked(r.Context(), id, s.cfg.Now())
			if err != nil {
				s.limitError("token", err)
				return CodeUnavailable, id, ""
			}
			if locked {
				return CodeLocked, id, ""
			}
		}
		der, err := decodePKCS10(r, body)
		if err != nil {
			return CodeOf(err), "", ""
		}
		out, keyID, err = s.Enroll(r.Context(), tok, der)
		if err != nil {
			return CodeOf(err), keyID, ""
		}
	default:
		var h *holder
		var err error
		if op == OpSimpleReenroll && len(r.Header.Values("Signature")) == 0 && s.cfg.PeerCertificate != nil {
			// No signed request: the TLCP client authentication of the connection, if any.
			h, err = s.authenticatePeer(r.Context(), s.cfg.PeerCertificate(r))
		} else {
			h, err = s.authenticate(r.Context(), r, body)
		}
		if err != nil {
			return CodeOf(err), "", ""
		}
		keyID = h.keyID()
		// A registration authority's key is good for the RA operations only, and those are for
		// registration authorities only.
		if (h.ra != "") != (op == OpRAEnroll || op == OpRARevoke) {
			return CodeAuthInvalid, keyID, ""
		}
		switch op {
		case OpRAEnroll:
			if out, err = s.RAEnroll(r.Context(), h, r, body); err != nil {
				return CodeOf(err), keyID, ""
			}
		case OpSimpleReenroll:
			der, err := decodePKCS10(r, body)
			if err != nil {
				return CodeOf(err), keyID, ""
			}
			if out, err = s.Reenroll(r.Context(), h, der); err != nil {
				return CodeOf(err), keyID, ""
			}
		case OpDownload:
			if out, err = s.Download(h); err != nil {
				return CodeOf(err), keyID, ""
			}
		case OpRecover:
			rk, err := s.Recover(h, h.adminCert, body)
			if err != nil {
				return CodeOf(err), keyID, ""
			}
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusOK)
			_ = json.NewEncoder(w).Encode(rk)
			return refusal.OK, keyID, rk.EncSerial
		case OpRevoke, OpRARevoke:
			rec, err := s.Revoke(r.Context(), h, body)
			if err != nil {
				return CodeOf(err), keyID, ""
			}
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusOK)
			_ = json.NewEncoder(w).Encode(map[string]any{"serial": rec.Serial, "enc_serial": rec.EncSerial, "revoked_at": rec.RevokedAt})
			return refusal.OK, keyID, rec.Serial
		}
	}
	b, err := json.Marshal(out)
	if err != nil {
		return CodeInternal, keyID, ""
	}
	w.Header().Set("Content-Type", MediaPair)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
	return refusal.OK, keyID, out.Serial
}

func (s *Server) readBody(r *http.Request) ([]byte, error) {
	if r.ContentLength > s.cfg.MaxRequestSize {
		return nil, failf(CodeTooLarge, "declared body too large")
	}
	b, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, s.cfg.MaxRequestSize))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, failf(CodeTooLarge, "body too large")
		}
		return nil, fail(CodeRequestInvalid, err)
	}
	return b, nil
}

func bearer(r *http.Request) (string, bool) {
	v := r.Header.Values("Authorization")
	if len(v) != 1 {
		return "", false
	}
	tok, ok := strings.CutPrefix(v[0], "Bearer ")
	return strings.TrimSpace(tok), ok && tok != ""
}

// decodePKCS10 checks the media type and decodes the base64 body (whitespace allowed).
func decodePKCS10(r *http.Request, body []byte) ([]byte, error) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != MediaPKCS10 {
		return nil, failf(CodeMediaType, "want "+MediaPKCS10)
	}
	return DecodeBase64Body(body)
}

// DecodeBase64Body decodes an EST base64 body (standard alphabet, line breaks allowed).
func DecodeBase64Body(body []byte) ([]byte, error) {
	clean := bytes.Map(func(r rune) rune {
		switch r {
		case '\r', '\n', ' ', '\t':
			return -1
		}
		return r
	}, body)
	der := make([]byte, base64.StdEncoding.DecodedLen(len(clean)))
	n, err := base64.StdEncoding.Decode(der, clean)
	if err != nil || n == 0 {
		return nil, failf(CodeCSRInvalid, "body is not base64")
	}
	return der[:n], nil
}
