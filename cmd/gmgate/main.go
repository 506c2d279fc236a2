// Command gmgate is Caddy v2 with gmgate's commercial-cryptography modules: the gmgate app
// (key vault, development PKI), the TLCP listener, and the gmgate subcommands.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	// The same import as a Caddy built with `xcaddy build --with github.com/gmgate/gmgate`.
	_ "github.com/gmgate/gmgate"
)

func main() {
	caddycmd.Main()
}
