package caddymodule

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// The JSON documentation test keeps Caddy's JSON docs complete: Caddy documents a module's JSON
// configuration from the Go doc comments of its config struct's fields, so every JSON field of
// every registered gmgate module (caddy.RegisterModule in this package) has one, and so does every
// field of the config structs those fields hold (embedded, pointed to, in slices and maps), in this
// package or another gmgate package (keyvault.Config, channel settings, ...).

const modulePath = "github.com/gmgate/gmgate"

// goPackage is the parsed non-test sources of one gmgate package.
type goPackage struct {
	dir     string
	fset    *token.FileSet
	imports map[*ast.File]map[string]string // file -> import name -> import path
	types   map[string]*ast.TypeSpec
	typeDoc map[string]string    // type name -> its doc comment
	files   map[string]*ast.File // type name -> file it is declared in
	all     []*ast.File
}

var parsedPackages = map[string]*goPackage{}

// loadGoPackage parses the package at import path p (a gmgate package).
func loadGoPackage(t *testing.T, p string) *goPackage {
	t.Helper()
	if pkg, ok := parsedPackages[p]; ok {
		return pkg
	}
	rel := strings.TrimPrefix(strings.TrimPrefix(p, modulePath), "/")
	dir := filepath.Join("..", rel)
	fset := token.NewFileSet()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	pkg := &goPackage{dir: dir, fset: fset, imports: map[*ast.File]map[string]string{},
		types: map[string]*ast.TypeSpec{}, typeDoc: map[string]string{}, files: map[string]*ast.File{}}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		pkg.all = append(pkg.all, f)
		imps := map[string]string{}
		for _, is := range f.Imports {
			ip, _ := strconv.Unquote(is.Path.Value)
			n := ip[strings.LastIndex(ip, "/")+1:]
			if is.Name != nil {
				n = is.Name.Name
			}
			imps[n] = ip
		}
		pkg.imports[f] = imps
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.TYPE {
				continue
			}
			for _, s := range gd.Specs {
				ts := s.(*ast.TypeSpec)
				pkg.types[ts.Name.Name] = ts
				pkg.files[ts.Name.Name] = f
				switch {
				case ts.Doc != nil:
					pkg.typeDoc[ts.Name.Name] = ts.Doc.Text()
				case gd.Doc != nil && len(gd.Specs) == 1:
					pkg.typeDoc[ts.Name.Name] = gd.Doc.Text()
				}
			}
		}
	}
	parsedPackages[p] = pkg
	return pkg
}

// registeredModules returns the type names passed to caddy.RegisterModule in this package.
func registeredModules(t *testing.T) []string {
	t.Helper()
	pkg := loadGoPackage(t, modulePath+"/caddymodule")
	var names []string
	for _, f := range pkg.all {
		ast.Inspect(f, func(n ast.Node) bool {
			c, ok := n.(*ast.CallExpr)
			if !ok || len(c.Args) != 1 {
				return true
			}
			sel, ok := c.Fun.(*ast.SelectorExpr)
			if !ok || sel.Sel.Name != "RegisterModule" {
				return true
			}
			if cl, ok := c.Args[0].(*ast.CompositeLit); ok {
				if id, ok := cl.Type.(*ast.Ident); ok {
					names = append(names, id.Name)
				}
			}
			return true
		})
	}
	sort.Strings(names)
	return names
}

// jsonName returns the JSON name of a struct field and whether it is in the JSON at all.
func jsonName(f *ast.Field, name string) (string, bool) {
	if f.Tag == nil {
		return name, true
	}
	tag, _ := strconv.Unquote(f.Tag.Value)
	j := reflect.StructTag(tag).Get("json")
	if j == "-" {
		return "", false
	}
	if n, _, _ := strings.Cut(j, ","); n != "" {
		return n, true
	}
	return name, true
}

// undocumentedFields walks the config struct named typ of package p and everything its JSON
// fields hold, and returns "pkg.Type.Field (json)" for each JSON field without a doc comment.
func undocumentedFields(t *testing.T, p, typ string, seen map[string]bool) []string {
	t.Helper()
	key := p + "." + typ
	if seen[key] {
		return nil
	}
	seen[key] = true
	pkg := loadGoPackage(t, p)
	ts, ok := pkg.types[typ]
	if !ok {
		t.Fatalf("%s: no type %s", p, typ)
	}
	file := pkg.files[typ]
	var out []string
	if _, isStruct := ts.Type.(*ast.StructType); isStruct && strings.TrimSpace(pkg.typeDoc[typ]) == "" {
		out = append(out, p[strings.LastIndex(p, "/")+1:]+"."+typ+" (the type)")
	}
	// follow visits the named gmgate types an expression refers to.
	var follow func(e ast.Expr)
	follow = func(e ast.Expr) {
		switch e := e.(type) {
		case *ast.Ident:
			if _, ok := pkg.types[e.Name]; ok {
				out = append(out, undocumentedFields(t, p, e.Name, seen)...)
			}
		case *ast.SelectorExpr:
			if x, ok := e.X.(*ast.Ident); ok {
				if ip := pkg.imports[file][x.Name]; strings.HasPrefix(ip, modulePath+"/") {
					out = append(out, undocumentedFields(t, ip, e.Sel.Name, seen)...)
				}
			}
		case *ast.StarExpr:
			follow(e.X)
		case *ast.ArrayType:
			follow(e.Elt)
		case *ast.MapType:
			follow(e.Value)
		case *ast.StructType:
			out = append(out, structFields(t, p, pkg, typ, e, follow)...)
		}
	}
	follow(ts.Type)
	return out
}

// structFields checks the fields of one struct type and follows the types they hold.
func structFields(t *testing.T, p string, pkg *goPackage, typ string, st *ast.StructType, follow func(ast.Expr)) []string {
	t.Helper()
	var out []string
	short := p[strings.LastIndex(p, "/")+1:]
	for _, f := range st.Fields.List {
		if len(f.Names) == 0 { // embedded: its fields are promoted into this JSON object
			j, in := jsonName(f, "")
			if !in {
				continue
			}
			if j != "" && (f.Doc == nil || strings.TrimSpace(f.Doc.Text()) == "") {
				out = append(out, short+"."+typ+"."+types2string(f.Type)+" ("+j+")")
			}
			follow(f.Type)
			continue
		}
		inJSON := false
		for _, n := range f.Names {
			if !n.IsExported() {
				continue
			}
			j, in := jsonName(f, n.Name)
			if !in {
				continue
			}
			inJSON = true
			if f.Doc == nil || strings.TrimSpace(f.Doc.Text()) == "" {
				out = append(out, short+"."+typ+"."+n.Name+" ("+j+")")
			}
		}
		if inJSON {
			follow(f.Type)
		}
	}
	return out
}

func types2string(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.Ident:
		return e.Name
	case *ast.StarExpr:
		return types2string(e.X)
	case *ast.SelectorExpr:
		return types2string(e.X) + "." + e.Sel.Name
	}
	return "?"
}

// TestModuleConfigFieldsDocumented: every JSON field of every registered module's config, and of
// the config structs it holds, has a Go doc comment (Caddy's JSON docs are made of them).
func TestModuleConfigFieldsDocumented(t *testing.T) {
	mods := registeredModules(t)
	if len(mods) < 10 {
		t.Fatalf("found %d caddy.RegisterModule calls (%v), want every gmgate module", len(mods), mods)
	}
	seen := map[string]bool{}
	var missing []string
	for _, m := range mods {
		missing = append(missing, undocumentedFields(t, modulePath+"/caddymodule", m, seen)...)
	}
	for _, m := range missing {
		t.Errorf("%s has no doc comment", m)
	}
	var walked []string
	for k := range seen {
		walked = append(walked, strings.TrimPrefix(k, modulePath+"/"))
	}
	sort.Strings(walked)
	t.Logf("config types checked: %v", walked)
}
