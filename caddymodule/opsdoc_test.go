package caddymodule

import (
	"errors"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/gmgate/gmgate/channel"
	"github.com/gmgate/gmgate/gateway"
	"github.com/gmgate/gmgate/keyvault"
	"github.com/gmgate/gmgate/tlcp"
)

// The operations-guide tests keep docs/operations.md true to the code: its troubleshooting tables
// list exactly the codes the Go packages define (with the right HTTP status), its alerting rules
// query metrics and labels that exist, its Caddyfiles adapt, and its gmgate command lines name
// commands and flags that exist.

const opsDocPath = "../docs/operations.md"

func readOpsDoc(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(opsDocPath)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// docSection returns the text of the operations guide under the heading that starts with title.
func docSection(t *testing.T, doc, title string) string {
	t.Helper()
	return docSectionOf(t, doc, "operations.md", title)
}

// docTableRows returns the rows of the tables in text whose first cell is a `code span`, as
// first cell (without backticks) -> the other cells.
func docTableRows(t *testing.T, text string) map[string][]string {
	t.Helper()
	rows := map[string][]string{}
	for _, l := range strings.Split(text, "\n") {
		if !strings.HasPrefix(l, "| `") {
			continue
		}
		cells := strings.Split(strings.Trim(l, "|"), " | ")
		key := strings.Trim(strings.TrimSpace(cells[0]), "`")
		if _, dup := rows[key]; dup {
			t.Errorf("%s: %q has two rows", opsDocPath, key)
		}
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		rows[key] = cells[1:]
	}
	return rows
}

// compareSets reports the difference between what the code defines and what the doc lists.
func compareSets(t *testing.T, what string, code []string, doc map[string][]string) {
	t.Helper()
	inCode := map[string]bool{}
	for _, c := range code {
		inCode[c] = true
		if _, ok := doc[c]; !ok {
			t.Errorf("%s: %s %q is missing from %s", what, what, c, opsDocPath)
		}
	}
	var extra []string
	for k := range doc {
		if !inCode[k] {
			extra = append(extra, k)
		}
	}
	sort.Strings(extra)
	if len(extra) > 0 {
		t.Errorf("%s: %s lists %q, which the code does not define", what, opsDocPath, extra)
	}
}

// vaultErrorKinds is every metric label keyvault.ErrorKind can return (fallback included).
func vaultErrorKinds(t *testing.T) []string {
	t.Helper()
	kinds := keyvault.ErrorKinds()
	// Every listed kind is what ErrorKind really returns for its sentinel (checked on a few).
	for _, c := range []struct {
		err  error
		want string
	}{{keyvault.ErrKeyNotFound, "not_found"}, {keyvault.ErrTokenUnavailable, "token_unavailable"}, {keyvault.ErrBadPIN, "bad_pin"}} {
		if got := keyvault.ErrorKind(c.err); got != c.want {
			t.Fatalf("keyvault.ErrorKind(%v) = %q, want %q", c.err, got, c.want)
		}
	}
	if kinds[len(kinds)-1] != keyvault.ErrorKind(errors.New("not a vault error")) {
		t.Fatalf("keyvault.ErrorKinds() does not end with the fallback kind: %v", kinds)
	}
	return kinds
}

// TestOpsDocErrorCodes: every code a client or a back end can see, every TLCP alert and every
// vault error kind is in the troubleshooting tables (and nothing else), with the right status.
func TestOpsDocErrorCodes(t *testing.T) {
	doc := readOpsDoc(t)

	gw := docTableRows(t, docSection(t, doc, "Codes a client sees (gm_verify)"))
	var gwCodes []string
	for _, c := range gateway.Codes() {
		gwCodes = append(gwCodes, string(c))
		if row, ok := gw[string(c)]; ok && (len(row) < 3 || row[0] != strconv.Itoa(c.Status())) {
			t.Errorf("gateway code %s: doc row %q, want status %d in the second column", c, row, c.Status())
		}
	}
	compareSets(t, "gateway code", gwCodes, gw)

	ch := docTableRows(t, docSection(t, doc, "Codes the back end sees (gm_channel)"))
	var chCodes []string
	for _, c := range channel.Codes() {
		chCodes = append(chCodes, string(c))
		if row, ok := ch[string(c)]; ok && (len(row) < 3 || row[0] != strconv.Itoa(c.Status())) {
			t.Errorf("channel code %s: doc row %q, want status %d in the second column", c, row, c.Status())
		}
	}
	compareSets(t, "channel code", chCodes, ch)

	// TLCP: the result labels handshakeResult gives for every defined alert, sent and received.
	al := docTableRows(t, docSection(t, doc, "TLCP handshake results"))
	var alerts []string
	for i := 0; i < 256; i++ {
		a := tlcp.Alert(i)
		if strings.HasPrefix(a.String(), "alert(") {
			continue // not a defined alert
		}
		label := handshakeResult(&tlcp.AlertError{Alert: a})
		if remote := handshakeResult(&tlcp.AlertError{Alert: a, Remote: true}); remote != "remote_"+label {
			t.Errorf("alert %d: received alert labelled %q, the guide says remote_%s", i, remote, label)
		}
		alerts = append(alerts, label)
		if row, ok := al[label]; ok && (len(row) < 3 || row[0] != strconv.Itoa(i)) {
			t.Errorf("TLCP alert %q: doc row %q, want number %d in the second column", label, row, i)
		}
	}
	compareSets(t, "TLCP result label", alerts, al)
	others := []string{handshakeResult(nil), handshakeResult(io.EOF), handshakeResult(errors.New("x")),
		handshakeResult(timeoutErr{}), "remote_"}
	for _, r := range others { // the labels that are not alerts
		if !strings.Contains(docSection(t, doc, "TLCP handshake results"), "`"+r) {
			t.Errorf("TLCP handshake results: the result label %q is not explained", r)
		}
	}

	vk := docTableRows(t, docSection(t, doc, "Key vault error kinds"))
	compareSets(t, "vault error kind", vaultErrorKinds(t), vk)
}

// TestOpsDocAlertRules: the Prometheus rules of the monitoring section query gmgate collectors and
// allowlisted Caddy metrics, with labels those metrics have (also in {{ $labels.x }}).
func TestOpsDocAlertRules(t *testing.T) {
	doc := readOpsDoc(t)
	sec := docSection(t, doc, "6. Monitoring")
	blocks := fencedBlocks(sec, "yaml")
	if len(blocks) == 0 {
		t.Fatal("the monitoring section has no yaml block of alerting rules")
	}
	known := map[string]promMetric{}
	for n, m := range caddyMetricAllowlist {
		known[n] = m
	}
	for n, m := range gmgateMetrics(t) {
		known[n] = m
	}
	labelRE := regexp.MustCompile(`\$labels\.([A-Za-z_][A-Za-z0-9_]*)`)
	type rule struct {
		name, expr string
		labels     []string
	}
	var rules []*rule
	for _, b := range blocks {
		for _, l := range strings.Split(b, "\n") {
			tl := strings.TrimSpace(l)
			switch {
			case strings.HasPrefix(tl, "- alert:"):
				rules = append(rules, &rule{name: strings.TrimSpace(strings.TrimPrefix(tl, "- alert:"))})
			case len(rules) == 0:
			case strings.HasPrefix(tl, "expr:"):
				rules[len(rules)-1].expr = strings.TrimSpace(strings.TrimPrefix(tl, "expr:"))
			default:
				for _, m := range labelRE.FindAllStringSubmatch(tl, -1) {
					rules[len(rules)-1].labels = append(rules[len(rules)-1].labels, m[1])
				}
			}
		}
	}
	if len(rules) < 5 {
		t.Fatalf("found %d alerting rules, want the documented set", len(rules))
	}
	for _, r := range rules {
		if r.expr == "" {
			t.Errorf("alert %s: no expr", r.name)
			continue
		}
		for _, p := range checkPromQL(r.expr, r.labels, known) {
			t.Errorf("alert %s: %s\n\texpr: %s", r.name, p, r.expr)
		}
	}
}

// fencedBlocks returns the bodies of the ```lang blocks of text.
func fencedBlocks(text, lang string) []string {
	var out []string
	var cur []string
	in := false
	for _, l := range strings.Split(text, "\n") {
		switch {
		case !in && strings.TrimSpace(l) == "```"+lang:
			in, cur = true, nil
		case in && strings.TrimSpace(l) == "```":
			in = false
			out = append(out, strings.Join(cur, "\n"))
		case in:
			cur = append(cur, l)
		}
	}
	return out
}

// TestOpsDocCaddyfiles: every complete Caddyfile of the guide (a block that starts with the
// global options) adapts without warnings, so every option it shows exists.
func TestOpsDocCaddyfiles(t *testing.T) {
	doc := readOpsDoc(t)
	blocks := fencedBlocks(doc, "caddyfile")
	adapter := caddyconfig.GetAdapter("caddyfile")
	n := 0
	for i, b := range blocks {
		if !strings.HasPrefix(strings.TrimSpace(b), "{") {
			continue
		}
		n++
		_, warnings, err := adapter.Adapt([]byte(b+"\n"), map[string]any{"filename": "operations.md"})
		if err != nil {
			t.Errorf("caddyfile block %d does not adapt: %v", i+1, err)
			continue
		}
		for _, w := range warnings {
			t.Errorf("caddyfile block %d: warning: %s", i+1, w.String())
		}
	}
	if n < 2 {
		t.Errorf("found %d complete Caddyfiles in %s, want the production example and the dual-stack one", n, opsDocPath)
	}
}

// gmgateCommandLines returns the `gmgate ...` command lines of doc: code spans that start with
// "gmgate " and lines of sh/ini code blocks that run gmgate.
func gmgateCommandLines(doc string) []string {
	var out []string
	for _, lang := range []string{"sh", "ini"} {
		for _, b := range fencedBlocks(doc, lang) {
			for _, l := range strings.Split(b, "\n") {
				if lang == "ini" && !strings.HasPrefix(l, "Exec") {
					continue // only ExecStart=, ExecReload=, ... run gmgate
				}
				if _, after, ok := strings.Cut(l, "gmgate "); ok && (strings.HasPrefix(l, "gmgate ") || strings.Contains(l, "/gmgate ")) {
					out = append(out, after)
				}
			}
		}
	}
	// Code spans, outside fenced blocks; a span may wrap over lines.
	var prose []string
	in := false
	for _, l := range strings.Split(doc, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "```") {
			in = !in
			prose = append(prose, "")
			continue
		}
		if !in {
			prose = append(prose, l)
		}
	}
	for _, para := range strings.Split(strings.Join(prose, "\n"), "\n\n") {
		flat := regexp.MustCompile(`\s*\n\s*`).ReplaceAllString(para, " ")
		for _, m := range regexp.MustCompile("`([^`]+)`").FindAllStringSubmatch(flat, -1) {
			if after, ok := strings.CutPrefix(m[1], "gmgate "); ok {
				out = append(out, after)
			}
		}
	}
	return out
}

// TestOpsDocCommands: every `gmgate ...` command line of the guide names a registered command
// (and subcommand for pki, vault and audit) and only flags that command has.
func TestOpsDocCommands(t *testing.T) {
	seen := checkGmgateCommands(t, opsDocPath, readOpsDoc(t))
	t.Logf("%d gmgate command lines checked", seen)
	if seen < 20 {
		t.Errorf("found only %d gmgate command lines in %s", seen, opsDocPath)
	}
}

// TestDocGmgateCommands: the `gmgate ...` command lines of every other doc page (README.md,
// CONTRIBUTING.md, docs/**/*.md) name commands, subcommands and flags that exist.
func TestDocGmgateCommands(t *testing.T) {
	seen := 0
	for _, file := range docMarkdownFiles(t) {
		if "../"+file == opsDocPath {
			continue // TestOpsDocCommands
		}
		seen += checkGmgateCommands(t, file, readRepoFile(t, file))
	}
	t.Logf("%d gmgate command lines checked", seen)
	if seen < 20 {
		t.Errorf("found only %d gmgate command lines in the docs", seen)
	}
}

// notCommands are code spans that start with "gmgate " and are no command line.
var notCommands = map[string]bool{
	"cosign session token v1": true, // the HMAC label of gm_cosign's session tokens (cosign.md)
}

// checkGmgateCommands checks the gmgate command lines of a doc page and returns how many it saw.
func checkGmgateCommands(t *testing.T, where, doc string) int {
	t.Helper()
	cmds := caddycmd.Commands()
	built := map[string]*cobra.Command{}
	cobraOf := func(name string) *cobra.Command {
		if c, ok := built[name]; ok {
			return c
		}
		spec, ok := cmds[name]
		if !ok {
			return nil
		}
		c := &cobra.Command{Use: name}
		if spec.CobraFunc != nil {
			spec.CobraFunc(c)
		}
		built[name] = c
		return c
	}
	seen := 0
	for _, line := range gmgateCommandLines(doc) {
		line = strings.TrimSpace(line)
		fields := strings.Fields(line)
		if len(fields) == 0 || strings.HasPrefix(fields[0], "{") {
			continue // the `gmgate { ... }` global option, not a command
		}
		if strings.ContainsAny(fields[0][:1], "-./#") || notCommands[line] {
			continue // a build's output path (go build -o .../gmgate ./cmd/gmgate), a label
		}
		root := cobraOf(ShortCommand([]string{"gmgate", fields[0]})[1]) // the gmgate binary's short names
		if root == nil {
			t.Errorf("%s: `gmgate %s`: no command %q", where, line, fields[0])
			continue
		}
		seen++
		cmd := root
		rest := fields[1:]
		if root.HasSubCommands() {
			if len(rest) == 0 {
				continue // "gmgate vault" as a name, e.g. in prose
			}
			var sub *cobra.Command
			for _, s := range root.Commands() {
				if s.Name() == rest[0] {
					sub = s
				}
			}
			if sub == nil {
				if strings.ContainsAny(rest[0], "|/") || rest[0] == "…" || rest[0] == "..." {
					continue
				}
				t.Errorf("%s: `gmgate %s`: %s has no subcommand %q", where, line, fields[0], rest[0])
				continue
			}
			cmd, rest = sub, rest[1:]
		}
		for _, a := range rest {
			if !strings.HasPrefix(a, "--") {
				continue
			}
			name := strings.TrimPrefix(a, "--")
			name, _, _ = strings.Cut(name, "=")
			if cmd.Flags().Lookup(name) == nil && cmd.InheritedFlags().Lookup(name) == nil &&
				root.PersistentFlags().Lookup(name) == nil {
				t.Errorf("%s: `gmgate %s`: %s has no flag --%s", where, line, cmd.CommandPath(), name)
			}
		}
	}
	return seen
}

// timeoutErr is a net.Error timeout, as a handshake deadline gives.
type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }
