// Package gmgate is gmgate as a Caddy plugin. Importing it registers every gmgate module with
// Caddy: the gmgate app (key vault, development PKI, shared audit log), the tlcp and tlcp_join
// listener wrappers, the gm_verify and tlcp_vars HTTP handlers, the gm_channel reverse-proxy
// transport, and gmgate's subcommands. Build a Caddy with it as with any plugin:
//
//	CGO_ENABLED=1 xcaddy build v2.11.9 --with github.com/gmgate/gmgate
//
// PKCS#11 tokens (HSMs) need cgo: the key vault's PKCS#11 backend (github.com/miekg/pkcs11) loads
// the HSM's library through it, and xcaddy builds without cgo unless CGO_ENABLED=1. A build with
// CGO_ENABLED=0 works without that backend: file: keys and the development default are served,
// and any configured token or pkcs11: key is refused at validation and start (keyvault's
// ErrModuleLoad, naming cgo). See docs/install.md. The gmgate command (cmd/gmgate) is exactly
// this plugin in Caddy's standard distribution.
package gmgate

import (
	// The modules register themselves in their init functions.
	_ "github.com/gmgate/gmgate/caddymodule"
)
