package caddymodule

import (
	"runtime/debug"
	"strings"
)

// ReleaseVersion is gmgate's release, set at build time for release builds:
//
//	go build -ldflags '-X github.com/gmgate/gmgate/caddymodule.ReleaseVersion=v1.2.0' ./cmd/gmgate
//
// Without it the module version from the build information is used (a Caddy built with
// `xcaddy build --with github.com/gmgate/gmgate@v1.2.0` has it), or "(devel)".
var ReleaseVersion string

// ReleaseCommit is the commit gmgate was built from, set at build time where Go's own VCS stamp
// is off (-buildvcs=false, builds from a source archive):
//
//	-ldflags '-X github.com/gmgate/gmgate/caddymodule.ReleaseCommit=$(git rev-parse --short=12 HEAD)'
var ReleaseCommit string

// Version returns gmgate's version and the commit it was built from ("" when unknown; "+modified"
// is appended for a dirty work tree).
func Version() (version, commit string) {
	version, commit = ReleaseVersion, ReleaseCommit
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		if version == "" {
			version = "(devel)"
		}
		return version, commit
	}
	const path = "github.com/gmgate/gmgate"
	if version == "" {
		if bi.Main.Path == path {
			version = bi.Main.Version
		}
		for _, d := range bi.Deps {
			if d.Path == path {
				version = d.Version
				if d.Replace != nil {
					version += " => " + d.Replace.Path
				}
			}
		}
	}
	if version == "" {
		version = "(devel)"
	}
	if bi.Main.Path == path && commit == "" {
		var modified bool
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
				if len(commit) > 12 {
					commit = commit[:12]
				}
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if commit != "" && modified {
			commit += "+modified"
		}
	}
	return version, commit
}

// VersionString is the line `gmgate version` prints before Caddy's version.
func VersionString() string {
	v, c := Version()
	var b strings.Builder
	b.WriteString("gmgate ")
	b.WriteString(v)
	if c != "" {
		b.WriteString(" commit ")
		b.WriteString(c)
	}
	b.WriteString(", Caddy")
	return b.String()
}

// LongDescription is the help text of the gmgate binary.
const LongDescription = `gmgate is Caddy with Chinese commercial cryptography (SM2, SM3, SM4, TLCP) for
payment traffic: it terminates TLCP and TLS on one port, verifies the SM2 signature of every
payment instruction (gm_verify), re-signs and encrypts requests to bank channels (gm_channel),
keeps keys in a PKCS#11 vault and writes a tamper-evident audit log.

Run it:

	gmgate run --config Caddyfile      in the foreground (recommended)
	gmgate validate --config Caddyfile check a configuration (no side effects)
	gmgate adapt --config Caddyfile    show the JSON of a Caddyfile

gmgate's own commands (also as gmgate-pki, gmgate-vault, gmgate-audit, gmgate-demo, the names a
Caddy built with xcaddy knows them by):

	gmgate pki      development and test certificates (SM2 dual certificates)
	gmgate vault    keys in the PKCS#11 vault: init, list, generate, rotate, import, csr
	gmgate audit    verify the audit log
	gmgate demo     a complete local demo

Documentation: README.md and docs/ in the gmgate repository; Caddy's own commands and
configuration are documented at https://caddyserver.com/docs/.`
