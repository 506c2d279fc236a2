package caddymodule

import (
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/gmgate/gmgate/tlcp"
)

func init() {
	caddy.RegisterModule(TLCPVars{})
}

// TLCPVars is the `http.handlers.tlcp_vars` handler: for requests that arrived over TLCP or
// over TLS 1.3 with the RFC 8998 SM suites it sets the {gm.tls.*} placeholders:
// {gm.tls.protocol} (tlcp or tls13sm), {gm.tls.version}, {gm.tls.cipher_suite},
// {gm.tls.server_name}, {gm.tls.resumed}, and for a client certificate whose chain was verified
// {gm.tls.client.subject}, {gm.tls.client.serial} and {gm.tls.client.fingerprint} (SM3 of the
// client's signing certificate), for access logs (log_append), headers to the back end and
// matchers. Over TLCP it also sets the older names {tlcp.version}, {tlcp.cipher_suite},
// {tlcp.server_name}, {tlcp.resumed}, {tlcp.client.subject}, {tlcp.client.serial} and
// {tlcp.client.fingerprint} (same values). gm_verify sets the same placeholders itself.
type TLCPVars struct{}

// CaddyModule returns the Caddy module information.
func (TLCPVars) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.tlcp_vars",
		New: func() caddy.Module { return new(TLCPVars) },
	}
}

// ServeHTTP sets the GM TLS placeholders and calls next.
func (TLCPVars) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	setGMTLSPlaceholders(r)
	return next.ServeHTTP(w, r)
}

// tlcpState returns the TLCP state of the connection r came on (false for a request that did
// not come over TLCP, RFC 8998 included).
func tlcpState(r *http.Request) (tlcp.ConnectionState, bool) {
	v, ok := gmConnView(r)
	if !ok || v.protocol != protoTLCP {
		return tlcp.ConnectionState{}, false
	}
	return v.tlcp, true
}

// setTLCPPlaceholders sets the placeholders as setGMTLSPlaceholders does and returns the TLCP
// state of the connection (false for a request that did not come over TLCP, RFC 8998
// included). For the client certificate of either protocol use tlsClientCertificate.
func setTLCPPlaceholders(r *http.Request) (tlcp.ConnectionState, bool) {
	v, ok := setGMTLSPlaceholders(r)
	if !ok || v.protocol != protoTLCP {
		return tlcp.ConnectionState{}, false
	}
	return v.tlcp, true
}

// setGMTLSPlaceholders sets the {gm.tls.*} placeholders of r (and, over TLCP, the {tlcp.*}
// ones) when it came over TLCP or RFC 8998, and returns the connection's view. On a TLCP-only
// port (an http:// server to Caddy) it also sets r.TLS, so that the rest of the chain sees a
// request that came over a secure channel: scheme https for placeholders, X-Forwarded-Proto and
// the @target-uri that signatures cover.
func setGMTLSPlaceholders(r *http.Request) (*connView, bool) {
	v, ok := gmConnView(r)
	if !ok {
		return nil, false
	}
	if r.TLS == nil {
		r.TLS = v.tls // one per connection, as Caddy's own for crypto/tls connections
	}
	repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if repl == nil {
		return v, true
	}
	set := func(name, value string) {
		repl.Set("gm.tls."+name, value)
		if v.protocol == protoTLCP {
			repl.Set("tlcp."+name, value) // the TLCP names, kept as aliases
		}
	}
	repl.Set("gm.tls.protocol", v.protocol)
	set("version", v.version)
	set("cipher_suite", v.suite)
	set("server_name", v.serverName)
	set("resumed", v.resumed)
	if v.client != nil {
		set("client.subject", v.clientSubject)
		set("client.serial", v.clientSerial)
		set("client.fingerprint", v.clientSM3)
	}
	return v, true
}

// Interface guards
var (
	_ caddyhttp.MiddlewareHandler = (*TLCPVars)(nil)
	_ caddyfile.Unmarshaler       = (*TLCPVars)(nil)
)
