package gmgate

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"unicode"
)

// The documentation tests keep README.md, CONTRIBUTING.md and docs/**/*.md pointing at things
// that exist: every relative link and image names a file or directory of the repository, and a
// #fragment into a markdown page one of its headings (GitHub's anchor rules) or an explicit
// <a name|id> anchor; every test a page cites as proof is declared; every repository file a page
// names in a code span exists. (Codes, options and Caddyfiles: the doc tests of caddymodule.)

// docPages returns README.md, CONTRIBUTING.md and every markdown page under docs/.
func docPages(t *testing.T) []string {
	t.Helper()
	pages := []string{"README.md", "CONTRIBUTING.md"}
	err := filepath.WalkDir("docs", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".md") {
			pages = append(pages, filepath.ToSlash(p))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(pages)
	return pages
}

var (
	// inlineLink matches [text](target) and ![alt](target), with an optional "title".
	inlineLink = regexp.MustCompile(`\]\(\s*<?([^()\s<>]*(?:\([^()\s]*\)[^()\s<>]*)*)>?(?:\s+(?:"[^"]*"|'[^']*'))?\s*\)`)
	// refLink matches a link reference definition: [label]: target.
	refLink = regexp.MustCompile(`^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$`)
	// htmlAnchor matches <a name="x"> and id="x" attributes.
	htmlAnchor = regexp.MustCompile(`<[a-zA-Z][^>]*\s(?:name|id)="([^"]+)"`)
	codeSpan   = regexp.MustCompile("`+[^`]*`+")
	mdLinkText = regexp.MustCompile(`!?\[([^\]]*)\]\([^)]*\)`)
	htmlTag    = regexp.MustCompile(`<[^>]+>`)
)

// proseLines returns the lines of a markdown page outside fenced code blocks (blank for a line
// inside one, so line numbers stay right).
func proseLines(text string) []string {
	lines := strings.Split(text, "\n")
	out := make([]string, len(lines))
	fence := ""
	for i, l := range lines {
		tl := strings.TrimSpace(l)
		if fence == "" && (strings.HasPrefix(tl, "```") || strings.HasPrefix(tl, "~~~")) {
			fence = tl[:3]
			continue
		}
		if fence != "" {
			if strings.HasPrefix(tl, fence) {
				fence = ""
			}
			continue
		}
		out[i] = l
	}
	return out
}

// githubAnchor is the anchor GitHub gives a heading: the rendered text, lower case, with
// everything but letters, digits, spaces, hyphens and underscores removed and spaces made hyphens.
func githubAnchor(heading string) string {
	h := mdLinkText.ReplaceAllString(heading, "$1")
	h = htmlTag.ReplaceAllString(h, "")
	h = strings.ReplaceAll(h, "`", "")
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(h)) {
		switch {
		case unicode.IsLetter(r), unicode.IsDigit(r), r == '-', r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('-')
		}
	}
	return b.String()
}

// pageAnchors returns the anchors of a markdown page: one per heading (a repeated heading gets
// -1, -2, ...) and the explicit HTML anchors.
func pageAnchors(text string) map[string]bool {
	anchors := map[string]bool{}
	count := map[string]int{}
	for _, l := range proseLines(text) {
		for _, m := range htmlAnchor.FindAllStringSubmatch(l, -1) {
			anchors[m[1]] = true
		}
		level := len(l) - len(strings.TrimLeft(l, "#"))
		if level == 0 || level > 6 || !strings.HasPrefix(l[level:], " ") {
			continue
		}
		text := strings.TrimSpace(strings.TrimRight(strings.TrimSpace(l[level:]), "#"))
		a := githubAnchor(text)
		if n := count[a]; n > 0 {
			anchors[fmt.Sprintf("%s-%d", a, n)] = true
		} else {
			anchors[a] = true
		}
		count[a]++
	}
	return anchors
}

// pageLinks returns the link targets of a markdown page with their line numbers.
func pageLinks(text string) (targets []string, lines []int) {
	for i, l := range proseLines(text) {
		l = codeSpan.ReplaceAllString(l, "")
		for _, m := range inlineLink.FindAllStringSubmatch(l, -1) {
			targets, lines = append(targets, m[1]), append(lines, i+1)
		}
		if m := refLink.FindStringSubmatch(l); m != nil {
			targets, lines = append(targets, m[1]), append(lines, i+1)
		}
	}
	return targets, lines
}

var uriScheme = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]*:`)

// TestDocsRelativeLinks: every relative link of the documentation resolves to a file or
// directory of the repository, and every #fragment into a markdown page to one of its anchors.
func TestDocsRelativeLinks(t *testing.T) {
	anchorsOf := map[string]map[string]bool{}
	anchors := func(page string) map[string]bool {
		if a, ok := anchorsOf[page]; ok {
			return a
		}
		b, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		anchorsOf[page] = pageAnchors(string(b))
		return anchorsOf[page]
	}
	n := 0
	for _, page := range docPages(t) {
		b, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		targets, lines := pageLinks(string(b))
		for i, target := range targets {
			if target == "" || uriScheme.MatchString(target) || strings.HasPrefix(target, "//") {
				continue // absolute: http(s), mailto, ...
			}
			n++
			where := fmt.Sprintf("%s:%d: link %q", page, lines[i], target)
			file, frag, _ := strings.Cut(target, "#")
			dest := page
			if file != "" {
				if strings.HasPrefix(file, "/") {
					dest = path.Clean(strings.TrimPrefix(file, "/"))
				} else {
					dest = path.Join(path.Dir(page), file)
				}
				if strings.HasPrefix(dest, "../") || dest == ".." {
					t.Errorf("%s leaves the repository", where)
					continue
				}
				st, err := os.Stat(filepath.FromSlash(dest))
				if err != nil {
					t.Errorf("%s: %s does not exist", where, dest)
					continue
				}
				if st.IsDir() {
					if frag != "" {
						t.Errorf("%s: a #fragment on a directory", where)
					}
					continue
				}
			}
			if frag == "" || !strings.HasSuffix(dest, ".md") {
				continue // a fragment into a source file (#L10) is GitHub's, not the page's
			}
			if !anchors(dest)[strings.ToLower(frag)] {
				t.Errorf("%s: %s has no heading or anchor %q", where, dest, frag)
			}
		}
	}
	if n < 20 {
		t.Errorf("found %d relative links in the documentation; the link parser is broken", n)
	}
}

// TestGithubAnchor pins the anchor rules on headings the documentation has.
func TestGithubAnchor(t *testing.T) {
	for heading, want := range map[string]string{
		"Configuration (`gm_enroll`)":           "configuration-gm_enroll",
		"Platform: the `gm_cosign` handler":     "platform-the-gm_cosign-handler",
		"6. Monitoring":                         "6-monitoring",
		"Mapping to GM/T 0029 and GM/T 0136":    "mapping-to-gmt-0029-and-gmt-0136",
		"Renewal, download, revocation":         "renewal-download-revocation",
		"The SDK's `client.CoSigner`":           "the-sdks-clientcosigner",
		"[Link](x.md) text":                     "link-text",
		"支付前置 ingress":                          "支付前置-ingress",
		"Codes a client sees (gm_verify)":       "codes-a-client-sees-gm_verify",
		"TLS 1.3 + RFC 8998 -- both ways":       "tls-13--rfc-8998----both-ways",
		"Terminal: the SDK's `client.CoSigner`": "terminal-the-sdks-clientcosigner",
	} {
		if got := githubAnchor(heading); got != want {
			t.Errorf("githubAnchor(%q) = %q, want %q", heading, got, want)
		}
	}
	a := pageAnchors("# A\n## A\n```\n# not a heading\n```\n### A ##\n<a name=\"x\"></a>\n")
	for _, want := range []string{"a", "a-1", "a-2", "x"} {
		if !a[want] {
			t.Errorf("pageAnchors: no %q in %v", want, a)
		}
	}
	if a["not-a-heading"] {
		t.Error("pageAnchors: a # line in a fenced block made an anchor")
	}
}

// repoTestFuncs returns the names of the Test, Fuzz, Benchmark and Example functions of the
// repository's _test.go files.
func repoTestFuncs(t *testing.T) map[string]bool {
	t.Helper()
	decl := regexp.MustCompile(`(?m)^func ((?:Test|Fuzz|Benchmark|Example)[A-Za-z0-9_]*)\(`)
	names := map[string]bool{}
	err := filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p != "." && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range decl.FindAllStringSubmatch(string(b), -1) {
			names[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// docTestName matches a test named in the documentation; names with Xxx are placeholders.
var docTestName = regexp.MustCompile(`\b(?:Test|Fuzz|Benchmark)[A-Z][A-Za-z0-9_]*`)

// TestDocsNameRealTests: every test, fuzz target and benchmark the documentation cites as proof
// exists, so a renamed or deleted test cannot leave a claim without its evidence.
func TestDocsNameRealTests(t *testing.T) {
	funcs := repoTestFuncs(t)
	n := 0
	for _, page := range docPages(t) {
		b, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		for i, l := range strings.Split(string(b), "\n") {
			for _, name := range docTestName.FindAllString(l, -1) {
				if strings.Contains(name, "Xxx") {
					continue
				}
				n++
				if !funcs[name] {
					t.Errorf("%s:%d: names %s, which no _test.go file declares", page, i+1, name)
				}
			}
		}
	}
	if n < 50 {
		t.Errorf("found %d test names in the documentation; the matcher is broken", n)
	}
}

// docRepoPath matches a `code span` naming a file of the repository by its path from the root.
var docRepoPath = regexp.MustCompile("`((?:audit|caddymodule|channel|client|cmd|cosign|cryptosvc|docs|enroll|envelope|gateway|integration|internal|keyvault|pki|refusal|scripts|sealstore|signing|tlcp|tls13sm)/[A-Za-z0-9_./-]*\\.(?:go|md|sh|json|ya?ml))`")

// TestDocsNameRealFiles: every repository file the documentation names in a code span
// (`gateway/errors.go`, `integration/nocgo_test.go`, ...) exists.
func TestDocsNameRealFiles(t *testing.T) {
	n := 0
	for _, page := range docPages(t) {
		b, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		for i, l := range strings.Split(string(b), "\n") {
			for _, m := range docRepoPath.FindAllStringSubmatch(l, -1) {
				n++
				if _, err := os.Stat(filepath.FromSlash(m[1])); err != nil {
					t.Errorf("%s:%d: names %s, which does not exist", page, i+1, m[1])
				}
			}
		}
	}
	if n < 20 {
		t.Errorf("found %d repository paths in the documentation; the matcher is broken", n)
	}
}

// TestDocsIndexReachesEveryPage: every markdown page under docs/ can be reached from
// docs/index.md by following relative links, so no page is orphaned.
func TestDocsIndexReachesEveryPage(t *testing.T) {
	reached := map[string]bool{"docs/index.md": true}
	queue := []string{"docs/index.md"}
	for len(queue) > 0 {
		page := queue[0]
		queue = queue[1:]
		b, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		targets, _ := pageLinks(string(b))
		for _, target := range targets {
			file, _, _ := strings.Cut(target, "#")
			if file == "" || uriScheme.MatchString(file) || !strings.HasSuffix(file, ".md") {
				continue
			}
			dest := path.Join(path.Dir(page), file)
			if !reached[dest] {
				if _, err := os.Stat(dest); err == nil {
					reached[dest] = true
					queue = append(queue, dest)
				}
			}
		}
	}
	for _, page := range docPages(t) {
		if strings.HasPrefix(page, "docs/") && !reached[page] {
			t.Errorf("%s cannot be reached from docs/index.md", page)
		}
	}
}
