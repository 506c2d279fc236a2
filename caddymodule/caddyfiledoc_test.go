package caddymodule

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// The Caddyfile documentation tests keep the syntax comments in caddyfile.go and the Caddyfile
// blocks of docs/*.md true to the parser: every option a Caddyfile parser accepts (a string
// literal in a case clause, or compared with ==) is listed in its directive's syntax comment and
// in the directive's documented Caddyfile block, and every option those list is parsed.
// Deprecated spellings (a case that calls deprecated) need not be listed.

// caddyfileDirective names the parse functions of one directive, the function whose doc comment
// holds its syntax, and the documentation section(s) that show its Caddyfile block.
type caddyfileDirective struct {
	name    string
	funcs   []string // parse functions (Recv.Name or Name)
	comment string   // the function whose doc comment shows the whole syntax
	docs    []docRef
	shared  []string // parse functions it shares with another directive ("as gm_verify"): may be listed, need not
	ignore  []string // words its blocks show that belong to something else (a neighbour, an argument)
}

type docRef struct{ file, section string }

var caddyfileDirectives = []caddyfileDirective{
	{"gmgate", []string{"parseGmgateOption", "parseVault"}, "parseGmgateOption",
		[]docRef{{"caddyfile.md", "Global option `gmgate`"}}, nil, nil},
	{"tlcp", []string{"ListenerWrapper.UnmarshalCaddyfile"}, "ListenerWrapper.UnmarshalCaddyfile",
		[]docRef{{"caddyfile.md", "Listener wrapper `tlcp`"}}, nil, nil},
	{"tls13sm", []string{"TLS13SMListenerWrapper.UnmarshalCaddyfile"}, "TLS13SMListenerWrapper.UnmarshalCaddyfile",
		[]docRef{{"caddyfile.md", "Listener wrapper `tls13sm`"}}, nil, []string{"dual_stack"}},
	{"gm_channel", []string{"ChannelTransport.UnmarshalCaddyfile", "unmarshalSchemeSettings", "parseChannelTLS13SM"},
		"ChannelTransport.UnmarshalCaddyfile", []docRef{{"caddyfile.md", "Reverse-proxy transport `gm_channel`"}}, nil, nil},
	{"gm_verify", []string{"Verify.UnmarshalCaddyfile", "SchemeOptions.unmarshal", "IdentitiesConfig.unmarshal",
		"ReplayConfig.unmarshal", "ReplayConfig.unmarshalRedisTLS"}, "Verify.UnmarshalCaddyfile",
		[]docRef{{"verify.md", "Caddyfile"}}, nil, []string{"client_auth"}},
	{"gm_cosign", []string{"Cosign.UnmarshalCaddyfile"}, "Cosign.UnmarshalCaddyfile",
		[]docRef{{"caddyfile.md", "Handler `gm_cosign`"}}, []string{"ReplayConfig.unmarshal", "ReplayConfig.unmarshalRedisTLS"}, nil},
	{"gm_enroll", []string{"Enroll.UnmarshalCaddyfile"}, "Enroll.UnmarshalCaddyfile",
		[]docRef{{"enrolment.md", "Configuration (`gm_enroll`)"}, {"enrolment.md", "Configuration"}},
		[]string{"ReplayConfig.unmarshal", "ReplayConfig.unmarshalRedisTLS"}, nil},
	{"gm_crypto", []string{"Crypto.UnmarshalCaddyfile"}, "Crypto.UnmarshalCaddyfile",
		[]docRef{{"caddyfile.md", "Handler `gm_crypto`"}},
		[]string{"SchemeOptions.unmarshal", "IdentitiesConfig.unmarshal", "ReplayConfig.unmarshal", "ReplayConfig.unmarshalRedisTLS"},
		[]string{"min_version"}},
}

func funcKey(fd *ast.FuncDecl) string {
	if fd.Recv == nil || len(fd.Recv.List) == 0 {
		return fd.Name.Name
	}
	t := fd.Recv.List[0].Type
	if s, ok := t.(*ast.StarExpr); ok {
		t = s.X
	}
	if id, ok := t.(*ast.Ident); ok {
		return id.Name + "." + fd.Name.Name
	}
	return fd.Name.Name
}

// parsedOptions returns, per function of caddyfile.go, the option names it accepts.
func parsedOptions(t *testing.T) (map[string][]string, map[string]string) {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "caddyfile.go", nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	opts := map[string][]string{}
	comments := map[string]string{}
	lit := func(e ast.Expr) (string, bool) {
		bl, ok := e.(*ast.BasicLit)
		if !ok || bl.Kind != token.STRING {
			return "", false
		}
		s, err := strconv.Unquote(bl.Value)
		return s, err == nil
	}
	for _, decl := range f.Decls {
		fd, ok := decl.(*ast.FuncDecl)
		if !ok || fd.Body == nil {
			continue
		}
		key := funcKey(fd)
		if fd.Doc != nil {
			comments[key] = fd.Doc.Text()
		}
		ast.Inspect(fd.Body, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CaseClause:
				// deprecated(d, "<old spelling>", "<name>"): the old spelling is not listed.
				old := map[string]bool{}
				for _, st := range n.Body {
					ast.Inspect(st, func(m ast.Node) bool {
						if c, ok := m.(*ast.CallExpr); ok && len(c.Args) == 3 {
							if id, ok := c.Fun.(*ast.Ident); ok && id.Name == "deprecated" {
								if s, ok := lit(c.Args[1]); ok {
									for _, w := range strings.Fields(s) {
										old[w] = true
									}
								}
							}
						}
						return true
					})
				}
				for _, e := range n.List {
					if s, ok := lit(e); ok && !old[s] && !refusedOptions[s] {
						opts[key] = append(opts[key], s)
					}
				}
			case *ast.BinaryExpr:
				if n.Op == token.EQL {
					if id, ok := n.X.(*ast.Ident); ok && (id.Name == "opt") {
						if s, ok := lit(n.Y); ok {
							opts[key] = append(opts[key], s)
						}
					}
				}
			}
			return true
		})
	}
	return opts, comments
}

// optionWord finds the option names a syntax block lists: the first word of a line, a word
// after "{", ";" or "[", and a word named as another spelling ("or crl", "or: serial").
var optionWord = regexp.MustCompile(`(?:^|[{;\[]\s*|\bor:?\s+|older name\s+)` + "`?" + `([a-z][a-z0-9_]*)\b`)

func documentedOptions(text string) map[string]bool {
	words := map[string]bool{}
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "//"))
		line = strings.TrimSpace(line)
		for _, m := range optionWord.FindAllStringSubmatch(line, -1) {
			words[m[1]] = true
		}
	}
	return words
}

// docCaddyfileBlocks returns the text of the ```caddyfile blocks under a section of a docs page.
func docCaddyfileBlocks(t *testing.T, file, section string) (string, bool) {
	t.Helper()
	b, err := os.ReadFile("../docs/" + file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	var out []string
	found := false
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		level := len(l) - len(strings.TrimLeft(l, "#"))
		if level == 0 || !strings.HasPrefix(strings.TrimSpace(l[level:]), section) {
			continue
		}
		found = true
		inBlock := false
		for _, m := range lines[i+1:] {
			ml := len(m) - len(strings.TrimLeft(m, "#"))
			if !inBlock && ml > 0 && ml <= level && strings.HasPrefix(m[ml:], " ") {
				break
			}
			switch {
			case strings.HasPrefix(m, "```caddyfile"):
				inBlock = true
			case strings.HasPrefix(m, "```"):
				inBlock = false
			case inBlock:
				out = append(out, m)
			}
		}
		break
	}
	return strings.Join(out, "\n"), found
}

// syntaxFence returns the indented (code) lines of a doc comment.
func syntaxFence(comment string) string {
	var out []string
	for _, l := range strings.Split(comment, "\n") {
		if strings.HasPrefix(l, "\t") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// ignoredWords are words a syntax block starts a line with that are not options: the directive
// names and the neighbours shown around a listener wrapper.
var ignoredWords = map[string]bool{
	"gmgate": true, "servers": true, "listener_wrappers": true, "tls": true, "tlcp_join": true,
	"transport": true, "reverse_proxy": true, "handle": true, "gm_verify": true, "gm_channel": true,
	"gm_cosign": true, "gm_enroll": true, "gm_crypto": true, "tlcp_vars": true, "route": true,
	"respond": true, "encode": true, "log": true, "root": true, "file_server": true,
}

// refusedOptions are parsed only to refuse them with a better message than "unknown option".
var refusedOptions = map[string]bool{"pin": true}

func TestCaddyfileDocsListEveryOption(t *testing.T) {
	opts, comments := parsedOptions(t)
	for _, dir := range caddyfileDirectives {
		t.Run(dir.name, func(t *testing.T) {
			parsed := map[string]bool{}
			for _, fn := range dir.funcs {
				if len(opts[fn]) == 0 {
					t.Fatalf("caddyfile.go: no options found in %s", fn)
				}
				for _, o := range opts[fn] {
					parsed[o] = true
				}
			}
			accepted := map[string]bool{}
			for _, fn := range dir.shared {
				for _, o := range opts[fn] {
					accepted[o] = true
				}
			}
			for _, w := range dir.ignore {
				accepted[w] = true
			}
			comment, ok := comments[dir.comment]
			if !ok {
				t.Fatalf("caddyfile.go: %s has no doc comment", dir.comment)
			}
			inComment := documentedOptions(syntaxFence(comment))
			var docText string
			for _, ref := range dir.docs {
				text, found := docCaddyfileBlocks(t, ref.file, ref.section)
				if !found {
					t.Errorf("docs/%s: no section %q", ref.file, ref.section)
				}
				docText += text + "\n"
			}
			inDocs := documentedOptions(docText)
			var names []string
			for o := range parsed {
				names = append(names, o)
			}
			sort.Strings(names)
			for _, o := range names {
				if !inComment[o] {
					t.Errorf("%s: option %q is parsed but not in the syntax comment of %s", dir.name, o, dir.comment)
				}
				if !inDocs[o] {
					t.Errorf("%s: option %q is parsed but not in docs/%s", dir.name, o, dir.docs[0].file)
				}
			}
			for _, set := range []struct {
				where string
				words map[string]bool
			}{{"the syntax comment of " + dir.comment, inComment}, {"docs/" + dir.docs[0].file, inDocs}} {
				var extra []string
				for w := range set.words {
					if !parsed[w] && !accepted[w] && !ignoredWords[w] && w != dir.name && strings.Contains(w, "_") {
						extra = append(extra, w)
					}
				}
				sort.Strings(extra)
				for _, w := range extra {
					t.Errorf("%s: %s lists %q, which the parser does not accept", dir.name, set.where, w)
				}
			}
		})
	}
}
