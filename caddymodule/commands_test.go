package caddymodule

import (
	"slices"
	"testing"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
)

// TestCommandsCannotCollide: gmgate's subcommands are registered only under the gmgate- prefix
// (Caddy panics when two plugins register one name), and the gmgate binary maps the short names.
func TestCommandsCannotCollide(t *testing.T) {
	cmds := caddycmd.Commands()
	for _, short := range []string{"pki", "vault", "audit", "demo"} {
		if _, ok := cmds[short]; ok {
			t.Errorf("%q registered without the prefix", short)
		}
		if _, ok := cmds[CommandPrefix+short]; !ok {
			t.Errorf("%q not registered", CommandPrefix+short)
		}
		got := ShortCommand([]string{"gmgate", short, "x"})
		if !slices.Equal(got, []string{"gmgate", CommandPrefix + short, "x"}) {
			t.Errorf("ShortCommand(%s) = %v", short, got)
		}
	}
	if got := ShortCommand([]string{"gmgate", "run", "--config", "x"}); !slices.Equal(got, []string{"gmgate", "run", "--config", "x"}) {
		t.Errorf("ShortCommand changed a Caddy command: %v", got)
	}
}
