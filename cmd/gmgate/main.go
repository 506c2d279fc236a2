// Command gmgate is Caddy v2 with gmgate's commercial-cryptography modules: the gmgate app
// (key vault, development PKI), the TLCP listener, and the gmgate subcommands.
package main

import (
	"os"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	// The same import as a Caddy built with `xcaddy build --with github.com/gmgate/gmgate`.
	_ "github.com/gmgate/gmgate"
	"github.com/gmgate/gmgate/caddymodule"
)

func main() {
	// The binary says what it is: `gmgate version` prints gmgate's version and commit before
	// Caddy's, and the help names gmgate.
	caddy.CustomBinaryName = "gmgate"
	caddy.CustomLongDescription = caddymodule.LongDescription
	caddy.CustomVersion = caddymodule.VersionString()
	// gmgate's own commands are registered as gmgate-pki, gmgate-vault, gmgate-audit and
	// gmgate-demo (no clash with other plugins); in this binary the short names work too.
	os.Args = caddymodule.ShortCommand(os.Args)
	caddycmd.Main()
}
