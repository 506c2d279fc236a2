// Package gmgate is gmgate as a Caddy plugin. Importing it registers every gmgate module with
// Caddy: the gmgate app (key vault, development PKI, shared audit log), the tlcp and tlcp_join
// listener wrappers, the gm_verify and tlcp_vars HTTP handlers, the gm_channel reverse-proxy
// transport, and gmgate's subcommands. Build a Caddy with it as with any plugin:
//
//	CGO_ENABLED=1 xcaddy build v2.11.9 --with github.com/gmgate/gmgate
//
// cgo is required: the PKCS#11 key vault backend (github.com/miekg/pkcs11) loads the HSM's
// library through it. The gmgate command (cmd/gmgate) is exactly this plugin in Caddy's standard
// distribution.
package gmgate

import (
	// The modules register themselves in their init functions.
	_ "github.com/gmgate/gmgate/caddymodule"
)
