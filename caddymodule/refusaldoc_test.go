package caddymodule

import (
	"go/ast"
	"go/token"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/gmgate/gmgate/channel"
	"github.com/gmgate/gmgate/cosign/platform"
	"github.com/gmgate/gmgate/cryptosvc"
	"github.com/gmgate/gmgate/enroll"
	"github.com/gmgate/gmgate/gateway"
	"github.com/gmgate/gmgate/refusal"
)

// The refusal-code documentation test keeps the code tables of the docs true to the code: every
// refusal code a handler can send to a client (a refusal.Catalog per family) is a Code constant
// of its package, is in the table of every doc page that documents that family, with the status
// the catalog gives it, and no code table anywhere in the docs lists a code that does not exist.

// refusalFamily is one refusal.Catalog: the package that declares its codes and the doc tables
// that must list exactly its codes.
type refusalFamily struct {
	name  string
	pkg   string // import path of the package declaring the Code constants
	codes []refusal.Code
	docs  []docRef // a section of a page holding one table with a "code" column
}

func refusalFamilies() []refusalFamily {
	return []refusalFamily{
		{"gateway", "gateway", gateway.Codes(), []docRef{
			{"verify.md", "Error codes"}, {"operations.md", "Codes a client sees (gm_verify)"}}},
		{"channel", "channel", channel.Codes(), []docRef{
			{"channel.md", "Failure codes"}, {"operations.md", "Codes the back end sees (gm_channel)"}}},
		{"enroll", "enroll", enroll.Codes(), []docRef{{"enrolment.md", "Refusals"}}},
		{"cryptosvc", "cryptosvc", cryptosvc.Codes(), []docRef{{"crypto-service.md", "Refusal codes"}}},
		{"cosign", "cosign/platform", platform.Refusals.Codes(), []docRef{{"cosign.md", "Platform: the `gm_cosign` handler"}}},
	}
}

// codeConstants returns the string constants of type Code or refusal.Code declared in the
// non-test sources of a gmgate package.
func codeConstants(t *testing.T, pkgPath string) []string {
	t.Helper()
	pkg := loadGoPackage(t, modulePath+"/"+pkgPath)
	var out []string
	for _, f := range pkg.all {
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, s := range gd.Specs {
				vs := s.(*ast.ValueSpec)
				if vs.Type == nil || !isCodeType(vs.Type) {
					continue
				}
				for _, v := range vs.Values {
					bl, ok := v.(*ast.BasicLit)
					if !ok || bl.Kind != token.STRING {
						t.Errorf("%s: a Code constant whose value is not a string literal", pkgPath)
						continue
					}
					s, _ := strconv.Unquote(bl.Value)
					out = append(out, s)
				}
			}
		}
	}
	return out
}

func isCodeType(e ast.Expr) bool {
	switch e := e.(type) {
	case *ast.Ident:
		return e.Name == "Code"
	case *ast.SelectorExpr:
		x, ok := e.X.(*ast.Ident)
		return ok && x.Name == "refusal" && e.Sel.Name == "Code"
	}
	return false
}

// codeTableRows returns code -> status cell ("" without a status column) of a table with a
// "code" column; cells of that column that are not one `code span` are skipped.
func codeTableRows(t *testing.T, where string, tb mdTable) map[string]string {
	t.Helper()
	ci, si := tb.column("code"), tb.column("status")
	rows := map[string]string{}
	for _, r := range tb.rows {
		if ci >= len(r) {
			continue
		}
		c := r[ci]
		if len(c) < 3 || c[0] != '`' || c[len(c)-1] != '`' || strings.Count(c, "`") != 2 {
			continue // "(Caddy error)" and the like
		}
		code := c[1 : len(c)-1]
		if _, dup := rows[code]; dup {
			t.Errorf("%s: %q has two rows", where, code)
		}
		rows[code] = ""
		if si >= 0 && si < len(r) {
			rows[code] = r[si]
		}
	}
	return rows
}

// TestRefusalCodesDocumented: the Code constants of each refusal family are exactly its catalog;
// each doc table of a family lists exactly the catalog's codes, with the catalog's status.
func TestRefusalCodesDocumented(t *testing.T) {
	for _, fam := range refusalFamilies() {
		t.Run(fam.name, func(t *testing.T) {
			inCatalog := map[string]bool{}
			var catalog []string
			for _, c := range fam.codes {
				inCatalog[string(c)] = true
				catalog = append(catalog, string(c))
			}
			// The source: a Code constant outside the catalog would reach a client as the
			// family's internal error; a catalog code without a constant is written inline.
			consts := codeConstants(t, fam.pkg)
			inConsts := map[string]bool{}
			for _, c := range consts {
				inConsts[c] = true
				if !inCatalog[c] && c != string(refusal.OK) {
					t.Errorf("%s: Code constant %q is not in the %s catalog", fam.pkg, c, fam.name)
				}
			}
			for _, c := range catalog {
				if !inConsts[c] {
					t.Errorf("%s: catalog code %q is not a Code constant of %s", fam.name, c, fam.pkg)
				}
			}
			for _, ref := range fam.docs {
				where := "docs/" + ref.file + " (" + ref.section + ")"
				sec := docSectionOf(t, readRepoFile(t, "docs/"+ref.file), ref.file, ref.section)
				var rows map[string]string
				for _, tb := range mdTables(sec) {
					if tb.column("code") >= 0 {
						if rows != nil {
							t.Fatalf("%s: more than one code table", where)
						}
						rows = codeTableRows(t, where, tb)
					}
				}
				if rows == nil {
					t.Fatalf("%s: no table with a code column", where)
				}
				for _, c := range fam.codes {
					st, ok := rows[string(c)]
					if !ok {
						t.Errorf("%s: code %q is missing", where, c)
						continue
					}
					if st != "" && st != strconv.Itoa(c.Status()) {
						t.Errorf("%s: code %q has status %s, the catalog gives %d", where, c, st, c.Status())
					}
				}
				var stale []string
				for c := range rows {
					if !inCatalog[c] {
						stale = append(stale, c)
					}
				}
				sort.Strings(stale)
				for _, c := range stale {
					t.Errorf("%s: lists %q, which is not a %s code", where, c, fam.name)
				}
			}
		})
	}
}

// TestDocCodeTablesNameRealCodes: every table with a "code" column, in every doc page, lists only
// codes some catalog defines, with the catalog's status.
func TestDocCodeTablesNameRealCodes(t *testing.T) {
	known := map[string]refusal.Code{}
	for _, fam := range refusalFamilies() {
		for _, c := range fam.codes {
			known[string(c)] = c
		}
	}
	n := 0
	for _, file := range docMarkdownFiles(t) {
		for _, tb := range mdTables(readRepoFile(t, file)) {
			if tb.column("code") < 0 {
				continue
			}
			n++
			where := file + ":" + strconv.Itoa(tb.line)
			for code, st := range codeTableRows(t, where, tb) {
				c, ok := known[code]
				if !ok {
					t.Errorf("%s: code table lists %q, which no refusal catalog defines", where, code)
					continue
				}
				if st != "" && st != strconv.Itoa(c.Status()) {
					t.Errorf("%s: code %q has status %s, the catalog gives %d", where, code, st, c.Status())
				}
			}
		}
	}
	if n < len(refusalFamilies()) {
		t.Errorf("found %d code tables in the docs, want at least one per refusal family", n)
	}
}
