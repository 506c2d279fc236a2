package integration

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// xcaddyMain is the main.go xcaddy generates for `xcaddy build --with github.com/gmgate/gmgate`
// (its mainModuleTemplate: Caddy's command, the standard modules, one blank import per plugin).
const xcaddyMain = `package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	// plug in Caddy modules here
	_ "github.com/caddyserver/caddy/v2/modules/standard"
	_ "github.com/gmgate/gmgate"
)

func main() {
	caddycmd.Main()
}
`

// TestXcaddyPlugin builds Caddy the way xcaddy does (a fresh module "caddy" whose main.go is
// xcaddy's, requiring Caddy and gmgate, gmgate replaced by this repository as `--with
// github.com/gmgate/gmgate=.` does) and checks that it registers exactly gmgate's modules,
// from gmgate's packages, the same set as the gmgate binary. xcaddy also passes -trimpath and
// build tags; they change no import, so they are left out here to reuse the build cache of the
// gmgate binary (the test then only links).
func TestXcaddyPlugin(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	caddyVersion := requiredVersion(t, root, "github.com/caddyserver/caddy/v2")
	dir := t.TempDir()
	gomod := "module caddy\n\ngo 1.26.0\n\n" +
		"require (\n\tgithub.com/caddyserver/caddy/v2 " + caddyVersion + "\n\tgithub.com/gmgate/gmgate v0.0.0\n)\n\n" +
		"replace github.com/gmgate/gmgate => " + root + "\n"
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"go.mod": []byte(gomod), "go.sum": sum, "main.go": []byte(xcaddyMain)} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "caddy")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = dir
	// Offline: every module comes from the module cache the repository's build filled; -mod=mod
	// lets go complete go.mod from gmgate's requirements, as `go get` does for xcaddy.
	build.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off", "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building Caddy with the gmgate plugin: %v\n%s", err, out)
	}

	plugin := gmgateModules(t, bin)
	want := []string{"caddy.listeners.tlcp", "caddy.listeners.tlcp_join", "caddy.listeners.tls13sm", "gmgate", "http.handlers.gm_cosign", "http.handlers.gm_crypto", "http.handlers.gm_enroll", "http.handlers.gm_verify",
		"http.handlers.tlcp_vars", "http.reverse_proxy.transport.gm_channel"}
	if !slices.Equal(plugin, want) {
		t.Fatalf("Caddy built with the plugin registers gmgate modules %v, want %v", plugin, want)
	}
	if binary := gmgateModules(t, gmgateBin(t)); !slices.Equal(plugin, binary) {
		t.Fatalf("the plugin registers %v, the gmgate binary %v", plugin, binary)
	}
}

// gmgateModules lists the non-standard modules of bin (`list-modules --skip-standard --json`),
// sorted, with the package of each when the build records it (a dependency's; the gmgate
// binary's own modules are in its main module and have none).
func gmgateModules(t *testing.T, bin string) []string {
	t.Helper()
	out, err := exec.Command(bin, "list-modules", "--skip-standard", "--packages", "--json").Output()
	if err != nil {
		t.Fatalf("%s list-modules: %v\n%s", bin, err, out)
	}
	var list []struct {
		Name    string `json:"module_name"`
		Type    string `json:"module_type"`
		Package string `json:"package"`
	}
	if err := json.Unmarshal(out, &list); err != nil {
		t.Fatalf("%s list-modules --json: %v\n%s", bin, err, out)
	}
	var mods []string
	for _, m := range list {
		if m.Type != "non-standard" {
			t.Fatalf("%s list-modules --skip-standard listed %+v", bin, m)
		}
		if m.Package != "" && !strings.HasPrefix(m.Package, "github.com/gmgate/gmgate/") {
			t.Fatalf("module %s comes from %s, not from gmgate", m.Name, m.Package)
		}
		mods = append(mods, m.Name)
	}
	slices.Sort(mods)
	return mods
}

// requiredVersion returns the version of module path that the repository's go.mod requires.
func requiredVersion(t *testing.T, root, path string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*(?:require\s+)?` + regexp.QuoteMeta(path) + `\s+(v\S+)`).FindSubmatch(data)
	if m == nil {
		t.Fatalf("go.mod does not require %s", path)
	}
	return string(m[1])
}
