package caddymodule

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

// TestCaddyfileExampleAdapts keeps Caddyfile.example true to the code: it must adapt without
// warnings and configure the gmgate listener the way its comments say.
func TestCaddyfileExampleAdapts(t *testing.T) {
	src, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	adapter := caddyconfig.GetAdapter("caddyfile")
	out, warnings, err := adapter.Adapt(src, map[string]any{"filename": "Caddyfile.example"})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range warnings {
		t.Errorf("warning: %s", w.String())
	}
	var cfg struct {
		Apps struct {
			HTTP struct {
				Servers map[string]struct {
					Listen           []string          `json:"listen"`
					ListenerWrappers []json.RawMessage `json:"listener_wrappers"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	wrappers := func(listen string) []string {
		for _, srv := range cfg.Apps.HTTP.Servers {
			if !slices.Contains(srv.Listen, listen) {
				continue
			}
			var names []string
			for _, raw := range srv.ListenerWrappers {
				var w struct {
					Wrapper   string `json:"wrapper"`
					DualStack bool   `json:"dual_stack"`
					SignKey   string `json:"sign_key"`
				}
				if err := json.Unmarshal(raw, &w); err != nil {
					t.Fatal(err)
				}
				name := w.Wrapper
				if w.DualStack {
					name += "+dual_stack"
				}
				if w.SignKey != "" {
					name += "(" + w.SignKey + ")"
				}
				names = append(names, name)
			}
			return names
		}
		t.Fatalf("no server listens on %s:\n%s", listen, out)
		return nil
	}
	for _, tc := range []struct {
		listen   string
		wrappers []string
	}{
		// The ingress: TLCP, RFC 8998 and TLS on one port.
		{":8443", []string{"tlcp+dual_stack", "tls13sm", "tls", "tlcp_join"}},
		// The demo bank: TLCP only, with the demo bank's keys.
		{"127.0.0.1:9443", []string{"tlcp(" + DevBankSignKey + ")"}},
		// The demo back end and the egress: plain HTTP on loopback only (the egress signs
		// whatever reaches it with the platform key).
		{"127.0.0.1:9001", nil},
		{"127.0.0.1:9002", nil},
	} {
		if got := wrappers(tc.listen); !slices.Equal(got, tc.wrappers) {
			t.Errorf("%s: listener wrappers %v, want %v", tc.listen, got, tc.wrappers)
		}
	}
}

// docCaddyfileBlock is one ```caddyfile block of a doc page.
type docCaddyfileBlock struct {
	file string
	line int // of the opening fence
	body string
}

// allDocCaddyfileBlocks returns the ```caddyfile blocks of README.md, CONTRIBUTING.md and
// docs/**/*.md.
func allDocCaddyfileBlocks(t *testing.T) []docCaddyfileBlock {
	t.Helper()
	var out []docCaddyfileBlock
	for _, file := range docMarkdownFiles(t) {
		lines := strings.Split(readRepoFile(t, file), "\n")
		for i := 0; i < len(lines); i++ {
			if strings.TrimSpace(lines[i]) != "```caddyfile" {
				continue
			}
			start := i + 1
			for i++; i < len(lines) && strings.TrimSpace(lines[i]) != "```"; i++ {
			}
			out = append(out, docCaddyfileBlock{file, start, strings.Join(lines[start:i], "\n")})
		}
	}
	return out
}

// syntaxPlaceholder finds what only a syntax reference has outside its comments: <placeholders>,
// a|b alternatives, [optional] parts, ellipses.
var syntaxPlaceholder = regexp.MustCompile(`<[A-Za-z][^>]*>|[a-z0-9]\|[a-z0-9]|\[[<a-z]|…|\.\.\.`)

// isSyntaxBlock tells a syntax reference (checked by TestCaddyfileDocsListEveryOption) from an
// example.
func isSyntaxBlock(body string) bool {
	for _, l := range strings.Split(body, "\n") {
		code, _, _ := strings.Cut(l, "#")
		if syntaxPlaceholder.MatchString(code) {
			return true
		}
	}
	return false
}

// adaptDocCaddyfile adapts a Caddyfile of the docs: a whole Caddyfile (global options or site
// blocks) as it is, a directive or handler block inside a route of a site. It must adapt without
// warnings, except Caddy's "not formatted" lint: the docs align values and comments in columns
// for reading, which caddy fmt would undo (operations.md and Caddyfile.example are formatted,
// TestOpsDocCaddyfiles and TestCaddyfileExampleAdapts check that).
func adaptDocCaddyfile(t *testing.T, blk docCaddyfileBlock) {
	t.Helper()
	body := strings.TrimRight(blk.body, "\n") + "\n"
	first := strings.Fields(body)
	whole := len(first) > 0 && (first[0] == "{" || strings.ContainsAny(first[0], ":.") || strings.HasPrefix(first[0], "http"))
	// Blank lines first, so that the adapter's line numbers are the page's.
	var src strings.Builder
	if whole {
		src.WriteString(strings.Repeat("\n", blk.line))
		src.WriteString(body)
	} else {
		src.WriteString(strings.Repeat("\n", max(blk.line-2, 0)))
		src.WriteString(":8080 {\n\troute {\n")
		for _, l := range strings.Split(strings.TrimRight(body, "\n"), "\n") {
			if l != "" {
				l = "\t\t" + l
			}
			src.WriteString(l + "\n")
		}
		src.WriteString("\t}\n}\n")
	}
	where := fmt.Sprintf("%s:%d", blk.file, blk.line)
	_, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(src.String()), map[string]any{"filename": blk.file})
	if err != nil {
		t.Errorf("%s: the Caddyfile does not adapt: %v", where, err)
		return
	}
	for _, w := range warnings {
		if !strings.Contains(w.Message, "input is not formatted") {
			t.Errorf("%s: warning: %s", where, w.String())
		}
	}
}

// TestDocCaddyfileBlocksAdapt: every ```caddyfile example of the docs adapts with the real
// Caddyfile adapter, without warnings; syntax references (with <placeholders>) have balanced
// braces.
func TestDocCaddyfileBlocksAdapt(t *testing.T) {
	examples, syntax := 0, 0
	for _, b := range allDocCaddyfileBlocks(t) {
		where := fmt.Sprintf("%s:%d", b.file, b.line)
		if isSyntaxBlock(b.body) {
			syntax++
			depth := 0
			for _, l := range strings.Split(b.body, "\n") {
				code, _, _ := strings.Cut(l, "#")
				depth += strings.Count(code, "{") - strings.Count(code, "}")
				if depth < 0 {
					break
				}
			}
			if depth != 0 {
				t.Errorf("%s: syntax block with unbalanced braces", where)
			}
			continue
		}
		examples++
		adaptDocCaddyfile(t, b)
	}
	t.Logf("%d examples adapted, %d syntax references", examples, syntax)
	if examples < 5 || syntax < 5 {
		t.Errorf("found %d examples and %d syntax references: the block finder is broken", examples, syntax)
	}
}
