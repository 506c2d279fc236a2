package caddymodule

import (
	"net"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/gmgate/gmgate/tlcp"
)

func init() {
	caddy.RegisterModule(TLCPVars{})
}

// TLCPVars is the `http.handlers.tlcp_vars` handler: for requests that arrived over TLCP it sets
// {tlcp.version}, {tlcp.cipher_suite}, {tlcp.server_name}, {tlcp.resumed},
// {tlcp.client.subject}, {tlcp.client.serial} and {tlcp.client.fingerprint} (SM3 of the client's
// signing certificate), for access logs (log_append), headers to the back end and matchers.
// gm_verify sets the same placeholders itself.
type TLCPVars struct{}

// CaddyModule returns the Caddy module information.
func (TLCPVars) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.tlcp_vars",
		New: func() caddy.Module { return new(TLCPVars) },
	}
}

// ServeHTTP sets the TLCP placeholders and calls next.
func (TLCPVars) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	setTLCPPlaceholders(r)
	return next.ServeHTTP(w, r)
}

// tlcpState returns the TLCP state of the connection r came on.
func tlcpState(r *http.Request) (tlcp.ConnectionState, bool) {
	c, ok := requestConn(r)
	if !ok {
		return tlcp.ConnectionState{}, false
	}
	return c.view().state, true
}

// requestConn returns the TLCP connection r came on.
func requestConn(r *http.Request) (*tlcpConn, bool) {
	la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok || la == nil {
		return nil, false
	}
	return liveConn(la.String(), r.RemoteAddr)
}

// setTLCPPlaceholders sets the {tlcp.*} placeholders of r (when it came over TLCP) and returns
// the connection's TLCP state. On a TLCP-only port (an http:// server to Caddy) it also sets
// r.TLS, so that the rest of the chain sees a request that came over a secure channel: scheme
// https for placeholders, X-Forwarded-Proto and the @target-uri that signatures cover.
func setTLCPPlaceholders(r *http.Request) (tlcp.ConnectionState, bool) {
	c, ok := requestConn(r)
	if !ok {
		return tlcp.ConnectionState{}, false
	}
	v := c.view()
	if r.TLS == nil {
		r.TLS = v.tls // one per connection, as Caddy's own for crypto/tls connections
	}
	repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if repl == nil {
		return v.state, true
	}
	repl.Set("tlcp.version", v.version)
	repl.Set("tlcp.cipher_suite", v.suite)
	repl.Set("tlcp.server_name", v.state.ServerName)
	repl.Set("tlcp.resumed", v.resumed)
	if v.state.PeerSignCertificate != nil {
		repl.Set("tlcp.client.subject", v.clientSubject)
		repl.Set("tlcp.client.serial", v.clientSerial)
		repl.Set("tlcp.client.fingerprint", v.clientSM3)
	}
	return v.state, true
}

// Interface guards
var (
	_ caddyhttp.MiddlewareHandler = (*TLCPVars)(nil)
	_ caddyfile.Unmarshaler       = (*TLCPVars)(nil)
)
