package integration

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

// The package rules of docs/architecture.md, checked from the import graph: every package outside
// caddymodule, cmd, integration and the module root is a core package and never imports Caddy;
// gateway and channel never import each other. A new package is covered without being listed.
func TestArchitectureRules(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps=false", "-json=ImportPath,Deps", "github.com/gmgate/gmgate/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	const mod = "github.com/gmgate/gmgate"
	dec := json.NewDecoder(strings.NewReader(string(out)))
	checked := 0
	for dec.More() {
		var p struct {
			ImportPath string
			Deps       []string
		}
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, mod), "/")
		top, _, _ := strings.Cut(rel, "/")
		switch top {
		case "", "caddymodule", "cmd", "integration":
			continue
		}
		checked++
		for _, d := range p.Deps {
			if strings.HasPrefix(d, "github.com/caddyserver/") {
				t.Errorf("core package %s imports Caddy (%s)", p.ImportPath, d)
				break
			}
			if d == mod+"/caddymodule" || strings.HasPrefix(d, mod+"/caddymodule/") {
				t.Errorf("core package %s imports caddymodule", p.ImportPath)
			}
			for _, pair := range [][2]string{{"gateway", "channel"}, {"channel", "gateway"}} {
				if top == pair[0] && (d == mod+"/"+pair[1] || strings.HasPrefix(d, mod+"/"+pair[1]+"/")) {
					t.Errorf("%s imports %s", p.ImportPath, d)
				}
			}
		}
	}
	if checked < 10 {
		t.Fatalf("only %d core packages found: the check is not looking at the module", checked)
	}
}
