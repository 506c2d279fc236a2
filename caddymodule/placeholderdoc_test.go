package caddymodule

import (
	"go/ast"
	"go/token"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// codePlaceholders returns the placeholders caddymodule sets: repl.Set("<name>", ...) calls, and
// in setGMTLSPlaceholders its set("<name>", ...) calls, which set gm.tls.<name> and the
// tlcp.<name> alias.
func codePlaceholders(t *testing.T) map[string]bool {
	t.Helper()
	pkg := loadGoPackage(t, modulePath+"/caddymodule")
	out := map[string]bool{}
	lit := func(e ast.Expr) (string, bool) {
		bl, ok := e.(*ast.BasicLit)
		if !ok || bl.Kind != token.STRING {
			return "", false
		}
		s, err := strconv.Unquote(bl.Value)
		return s, err == nil
	}
	for _, f := range pkg.all {
		for _, d := range f.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok || fd.Body == nil {
				continue
			}
			ast.Inspect(fd.Body, func(n ast.Node) bool {
				c, ok := n.(*ast.CallExpr)
				if !ok || len(c.Args) != 2 {
					return true
				}
				name, ok := lit(c.Args[0])
				if !ok {
					return true
				}
				switch fn := c.Fun.(type) {
				case *ast.SelectorExpr:
					if x, ok := fn.X.(*ast.Ident); ok && x.Name == "repl" && fn.Sel.Name == "Set" && !strings.HasSuffix(name, ".") {
						out[name] = true
					}
				case *ast.Ident:
					if fn.Name == "set" && fd.Name.Name == "setGMTLSPlaceholders" {
						out["gm.tls."+name] = true
						out["tlcp."+name] = true
					}
				}
				return true
			})
		}
	}
	if len(out) < 10 {
		t.Fatalf("found %d placeholders in caddymodule: the finder is broken (%v)", len(out), out)
	}
	return out
}

// docPlaceholder matches a gmgate placeholder in the docs; a name ending in * is a family.
var docPlaceholder = regexp.MustCompile(`\{((?:gm|tlcp|http\.auth\.user)\.[a-z_.*]+)\}`)

// TestDocPlaceholdersExist: every {gm.*}, {tlcp.*} and {http.auth.user.*} placeholder the docs
// and Caddyfile.example use is one gmgate sets (a family name.* has members), and verify.md's
// placeholder table lists every placeholder gmgate sets.
func TestDocPlaceholdersExist(t *testing.T) {
	code := codePlaceholders(t)
	files := append(docMarkdownFiles(t), "Caddyfile.example")
	for _, file := range files {
		for i, l := range strings.Split(readRepoFile(t, file), "\n") {
			for _, m := range docPlaceholder.FindAllStringSubmatch(l, -1) {
				name := m[1]
				if prefix, ok := strings.CutSuffix(name, "*"); ok {
					found := false
					for c := range code {
						found = found || strings.HasPrefix(c, prefix)
					}
					if !found {
						t.Errorf("%s:%d: {%s}: gmgate sets no placeholder of that family", file, i+1, name)
					}
					continue
				}
				if !code[name] {
					t.Errorf("%s:%d: {%s} is not a placeholder gmgate sets", file, i+1, name)
				}
			}
		}
	}
	sec := docSectionOf(t, readRepoFile(t, "docs/verify.md"), "verify.md", "Placeholders")
	listed := map[string]bool{}
	for _, tb := range mdTables(sec) {
		if pi := tb.column("placeholder"); pi >= 0 {
			for _, r := range tb.rows {
				for _, m := range docPlaceholder.FindAllStringSubmatch(r[pi], -1) {
					listed[m[1]] = true
				}
			}
		}
	}
	var missing []string
	for c := range code {
		if !listed[c] {
			missing = append(missing, c)
		}
	}
	sort.Strings(missing)
	for _, c := range missing {
		t.Errorf("docs/verify.md (Placeholders): {%s} is not in the table", c)
	}
}
